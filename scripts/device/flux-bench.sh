#!/usr/bin/env bash
# FLUX.1-dev at full size on one GPU, prepared for one short device slot: `skeleguide bench flux`
# (random weights of the real shapes made on the GPU, bf16) at 1024² and at 512², written as JSON
# to OUT (default runs/device-out): flux-1024.json, flux-512.json, their logs, gpu.txt.
#
# Build the CUDA binary first and strip it into runs/device/ as scripts/device/train-throughput.sh
# says; run from the repository root on the device machine. About 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/device-out}
bin=${BIN:-runs/device}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt"
for s in 1024 512; do
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 >"$out/mem-$s.csv" &
    smi=$!
    timeout 200 "$bin/skeleguide" bench flux --size "$s" --json >"$out/flux-$s.json" \
        2>"$out/flux-$s.log" || echo "bench flux --size $s: exit $?" >>"$out/gpu.txt"
    kill "$smi" 2>/dev/null || true
done
echo "done: $(ls "$out")"
