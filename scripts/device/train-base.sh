#!/usr/bin/env bash
# One device slot of a resumable training run (default: trainer/configs/tiny-gpu-base.toml):
# the run goes on for MINUTES (default 7) from where the run folder RUN (default runs/gpu-base)
# stands, stops with a checkpoint (compact in that config), and everything needed to go on — the
# checkpoint, the loss log, the model directory as far as it is written — comes back through OUT
# (default runs/device-out) as xz-compressed parts of at most 15 MiB (run.tar.xz.part-aa, -ab, …),
# with log.txt and gpu.txt. The data set is not carried: it is regenerated from the config's seed,
# the same on every machine.
#
# Before the slot, on the development machine: the CUDA build of scripts/device/train-throughput.sh,
# its trainer compressed (it is about 70 MB stripped, 9 MB compressed):
#
#   xz -9 -c target/cuda/release/skeleguide-train >runs/device/skeleguide-train.xz
#
# and, to continue an earlier slot, that slot's parts unpacked into RUN (scripts/device/unpack-run.sh).
# On the device, from the repository root, with runs/device/skeleguide-train.xz (and RUN without
# its data/ when continuing) carried along:
#
#   scripts/device/train-base.sh
#
# Back here: scripts/device/unpack-run.sh FILES runs/gpu-base, then go on with
# `skeleguide-train train --config CONFIG --out runs/gpu-base --resume`. Where the tree sent to
# the device is capped below the repository plus a packed phase-0 checkpoint (about 55 + 50 MB),
# a run stopped inside phase 0 goes on here, not in a later slot; the LoRA phases go on here at a
# CPU's batch (a copy of the config with `batch = 32`: the batch shapes no tensor).
# BIN names a folder holding an uncompressed skeleguide-train instead (the script's test on the
# CPU does that). Exits with the trainer's status; the parts are written either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/device-out}
run=${RUN:-runs/gpu-base}
config=${CONFIG:-trainer/configs/tiny-gpu-base.toml}
minutes=${MINUTES:-7}
mkdir -p "$out" "$run"
rm -f "$out"/run.tar.xz.part-*
work=$(mktemp -d)
smi=
cleanup() {
    [ -n "$smi" ] && kill "$smi" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${BIN:-}" ]; then
    trainer="$BIN/skeleguide-train"
else
    trainer="$work/skeleguide-train"
    if ! xz -d -c runs/device/skeleguide-train.xz >"$trainer"; then
        echo "runs/device/skeleguide-train.xz: cannot unpack the trainer" | tee "$out/gpu.txt" >&2
        exit 2
    fi
    chmod +x "$trainer"
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 1000 \
        >"$out/util.csv" &
    smi=$!
else
    echo "no nvidia-smi: the CPU" >"$out/gpu.txt"
fi
resume=
[ -f "$run/checkpoint.safetensors" ] && resume=--resume
status=0
# shellcheck disable=SC2086 # $resume is one flag or nothing
"$trainer" train --config "$config" --out "$run" --minutes "$minutes" $resume \
    >"$out/log.txt" 2>&1 || status=$?
echo "train: exit $status" >>"$out/gpu.txt"
# The data set and the base as it was at the checkpoint (the checkpoint holds it) stay behind.
tar -C "$run" -cf - --exclude=./data --exclude=./model-at-checkpoint . |
    xz -T0 -6 | split -b 15M -a 2 - "$out/run.tar.xz.part-"
ls -l "$out" >>"$out/gpu.txt"
exit "$status"
