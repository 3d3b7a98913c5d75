#!/usr/bin/env bash
# One device slot of a resumable training run (default: trainer/configs/tiny-gpu-base.toml):
# the run goes on for MINUTES (default 7) from where the run folder RUN (default runs/gpu-base)
# stands, stops with a compact checkpoint, and everything needed to go on — the checkpoint, the
# loss log, the model directory as far as it is written — comes back through OUT (default
# runs/device-out) as xz-compressed parts of at most 15 MiB: run.tar.xz.part-aa, -ab, …, with
# log.txt and gpu.txt. The data set is not carried: it is regenerated from the config's seed,
# the same on every machine.
#
# Before the slot, on the development machine (the CUDA build of scripts/device/train-throughput.sh;
# the trainer travels compressed, the tree is capped at 64 MiB):
#
#   xz -9 -k -c target/cuda/release/skeleguide-train >runs/device/skeleguide-train.xz
#
# and, to continue an earlier slot, that slot's parts unpacked into RUN (scripts/device/unpack-run.sh).
# On the device, from the repository root, carrying runs/device/skeleguide-train.xz (and RUN's
# checkpoint, config and log when continuing):
#
#   scripts/device/train-base.sh
#
# Back here: scripts/device/unpack-run.sh FILES_AT runs/gpu-base, then go on with
# `skeleguide-train train --config CONFIG --out runs/gpu-base --resume` (here or in the next slot).
# BIN names a folder holding an uncompressed skeleguide-train instead (a test of this script on
# the CPU does that).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/device-out}
run=${RUN:-runs/gpu-base}
config=${CONFIG:-trainer/configs/tiny-gpu-base.toml}
minutes=${MINUTES:-7}
mkdir -p "$out" "$run"
if [ -n "${BIN:-}" ]; then
    trainer="$BIN/skeleguide-train"
else
    trainer=$(mktemp -d)/skeleguide-train
    xz -d -c runs/device/skeleguide-train.xz >"$trainer"
    chmod +x "$trainer"
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 1000 \
        >"$out/util.csv" &
    smi=$!
else
    echo "no nvidia-smi: the CPU" >"$out/gpu.txt"
    smi=
fi
resume=()
[ -f "$run/checkpoint.safetensors" ] && resume=(--resume)
status=0
"$trainer" train --config "$config" --out "$run" --minutes "$minutes" "${resume[@]}" \
    >"$out/log.txt" 2>&1 || status=$?
[ -n "$smi" ] && kill "$smi" 2>/dev/null || true
echo "train: exit $status" >>"$out/gpu.txt"
# The data set, the base as it was at the checkpoint (the checkpoint holds it) and the adopted
# autoencoder (the repository holds it) stay behind.
tar -C "$run" -cf - --exclude=./data --exclude=./model-at-checkpoint \
    --exclude=./model/ae.safetensors . | xz -T0 -6 | split -b 15M -a 2 - "$out/run.tar.xz.part-"
ls -l "$out" >>"$out/gpu.txt"
exit "$status"
