#!/usr/bin/env bash
# Builds the `cuda` feature on a machine with no CUDA toolkit and no GPU (such as the 2-core dev
# machines): fetches NVIDIA's CUDA 13.0 compiler, headers and libraries as Python wheels from
# PyPI, unpacks them into DIR and writes DIR/env.sh. Then:
#
#   scripts/cuda-toolkit.sh            # DIR defaults to ~/.cache/skeleguide-cuda
#   source ~/.cache/skeleguide-cuda/env.sh
#   cargo build --release -p skeleguide-trainer --features skeleguide-engine/cuda
#
# The binary lands in target/cuda/release (a separate target directory, so the CPU build stays
# valid). It runs on any machine with an NVIDIA driver for CUDA >= 13.0 and the CUDA 13 cuBLAS,
# cuRAND and runtime libraries on LD_LIBRARY_PATH (a CUDA 13 toolkit, or the nvidia/cu13/lib
# folder of a PyTorch cu130 install).
#
# The driver library (libcuda.so.1) comes with the GPU driver, never from PyPI: for linking,
# this script writes a stub with the same soname that defines every driver function cudarc
# declares (the same role as the toolkit's lib64/stubs/libcuda.so); the real driver replaces it
# at run time. CUDA_COMPUTE_CAP (default 90, Hopper) picks the GPU generation the kernels are
# compiled for.
set -euo pipefail

DIR=${1:-$HOME/.cache/skeleguide-cuda}
CAP=${CUDA_COMPUTE_CAP:-90}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CU=$DIR/root/nvidia/cu13
WHEELS=(
  "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*"
  "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*" "nvidia-cublas==13.0.*"
  "nvidia-cuda-nvrtc==13.0.*" "nvidia-curand==10.4.0.*" "nvidia-nccl-cu13"
)

command -v python3 >/dev/null || { echo "cuda-toolkit.sh: python3 (with pip) is needed to fetch the wheels" >&2; exit 1; }
command -v gcc >/dev/null || { echo "cuda-toolkit.sh: gcc is needed (nvcc's host compiler)" >&2; exit 1; }
mkdir -p "$DIR/wheels" "$DIR/root"

echo "fetching the CUDA 13.0 wheels into $DIR/wheels"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DIR/wheels" "${WHEELS[@]}"
for w in "$DIR"/wheels/*.whl; do
  python3 -m zipfile -e "$w" "$DIR/root"
done
chmod +x "$CU"/bin/* "$CU"/nvvm/bin/* 2>/dev/null || true

# Unversioned names for the linker (the wheels ship only the sonames).
# NCCL (the `nccl` feature) unpacks beside the toolkit; link it with the other libraries
ln -sf "$DIR/root/nvidia/nccl/lib/libnccl.so.2" "$CU/lib/libnccl.so.2"
for f in "$CU"/lib/lib*.so.*; do
  base=$(basename "$f")
  ln -sf "$base" "$CU/lib/${base%%.so.*}.so"
done

# The driver stub: every cu* function cudarc's driver bindings declare.
(cd "$ROOT" && cargo fetch --quiet)
BINDINGS=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*cudarc-0.19.*/src/driver/sys/mod.rs' | sort | tail -1)
[ -n "$BINDINGS" ] || { echo "cuda-toolkit.sh: cudarc 0.19's driver bindings were not found under \$CARGO_HOME/registry" >&2; exit 1; }
grep -oP '^\s+fn \Kcu[A-Za-z0-9_]+(?=\()' "$BINDINGS" | sort -u |
  awk '{ print "void " $1 "(void) {}" }' > "$DIR/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CU/lib/libcuda.so" "$DIR/libcuda_stub.c"

# Check: the compiler works.
printf 'extern "C" __global__ void k(float *x) { x[threadIdx.x] += 1.0f; }\n' > "$DIR/check.cu"
"$CU/bin/nvcc" --ptx -arch="sm_$CAP" "$DIR/check.cu" -o "$DIR/check.ptx"

cat > "$DIR/env.sh" <<EOF
# CUDA 13.0 build environment for SkeleGuide's \`cuda\` feature (written by scripts/cuda-toolkit.sh).
export PATH="$CU/bin:\$PATH"
export CUDA_HOME="$CU"
export CUDA_COMPUTE_CAP="$CAP"
export LIBRARY_PATH="$CU/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CARGO_TARGET_DIR="$ROOT/target/cuda"
EOF
echo "ready: source $DIR/env.sh, then cargo build --release -p skeleguide-trainer --features skeleguide-engine/cuda"
