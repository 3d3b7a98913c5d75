#!/usr/bin/env bash
# The GPU half of the training-throughput figures, prepared to run in one short device slot:
# `skeleguide bench train` at batch 32, 128 and 512 (every phase, forward / backward / optimiser)
# and the GPU's utilisation during a short phase-0 run at batch 32 and 256. Everything it makes
# goes to OUT (default runs/device-out): bench-train.json, util-b32.csv, util-b256.csv,
# train-b*.jsonl, gpu.txt.
#
# Build first, on the development machine (see scripts/cuda-toolkit.sh), then strip the two
# binaries so they travel with the working tree:
#
#   scripts/cuda-toolkit.sh && source ~/.cache/skeleguide-cuda/env.sh
#   cargo build --release --workspace --features skeleguide-engine/cuda --target-dir target/cuda
#   mkdir -p runs/device && strip -o runs/device/skeleguide target/cuda/release/skeleguide \
#       && strip -o runs/device/skeleguide-train target/cuda/release/skeleguide-train
#
# The working tree that travels to the device is capped at 64 MiB and the tracked files take
# about 55 MB, while the stripped CUDA trainer alone is about 70 MB (its kernels): carry each
# binary compressed (`xz -9 -k`, about 9 MB for the trainer) and unpack it there with `xz -d`.
#
# and run, on the device machine, from the repository root: scripts/device/train-throughput.sh
# It needs the CUDA 13 cuBLAS, cuRAND and runtime libraries on LD_LIBRARY_PATH (the device's
# toolkit or a PyTorch cu130 install), and takes about 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/device-out}
bin=${BIN:-runs/device}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt"
timeout 240 "$bin/skeleguide" bench train --batch 32,128,512 --iters 10 --json \
    >"$out/bench-train.json" 2>"$out/bench-train.log" || echo "bench train: exit $?" >>"$out/gpu.txt"

# Utilisation while phase 0's DiT trains (the shipped autoencoder, 500 synthetic scenes).
data=$(mktemp -d)
"$bin/skeleguide-train" synth --out "$data/synth" --count 500 --seed 0 --split train --size 128 \
    >/dev/null
for b in 32 256; do
    cfg="$data/b$b.toml"
    sed -e "s/^batch = 32/batch = $b/" -e 's/^dit_steps = 3000/dit_steps = 60/' \
        -e 's/^synth_count = 4000/synth_count = 500/' trainer/configs/tiny-cpu-base.toml >"$cfg"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 \
        >"$out/util-b$b.csv" &
    smi=$!
    timeout 150 "$bin/skeleguide-train" train --config "$cfg" --out "$data/run-b$b" \
        --data "$data/synth" --phase 0 >"$out/train-b$b.log" 2>&1 || echo "train b$b: exit $?" >>"$out/gpu.txt"
    kill "$smi" 2>/dev/null || true
    cp "$data/run-b$b/train.jsonl" "$out/train-b$b.jsonl" 2>/dev/null || true
done
rm -rf "$data"
echo "done: $(ls "$out")"
