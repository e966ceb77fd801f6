#!/usr/bin/env bash
# Compiles every CUDA kernel for sm_80 and sm_90 through Loft's own NVRTC path
# (`loft cuda compile-kernels`), on a machine without a GPU: a kernel that does
# not compile fails CI. NVRTC comes from PyPI's nvidia-cuda-nvrtc-cu12 wheel,
# installed once into ~/.cache/loft/nvrtc (LOFT_NVRTC_DIR overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${LOFT_NVRTC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/loft/nvrtc}"
lib="$dir/nvidia/cuda_nvrtc/lib"
wheel="nvidia-cuda-nvrtc-cu12==12.9.86"
if ! ls "$lib"/libnvrtc.so.* >/dev/null 2>&1; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "check-kernels: SKIPPED: pip is unavailable, so NVRTC ($wheel) cannot be installed and the CUDA kernels were not compiled; install python3-pip to run this check"
        exit 0
    fi
    echo "check-kernels: installing $wheel into $dir"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "$wheel"
fi
loft="${LOFT_BIN:-.build/release/loft}"
if [ ! -x "$loft" ]; then
    echo "check-kernels: $loft is missing; build it first (swift build -c release)" >&2
    exit 1
fi
# A throwaway kernel cache: every module is compiled now, never read back.
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
LOFT_CUDA_LIBS="$lib" LOFT_KERNEL_CACHE="$cache" "$loft" cuda compile-kernels --arch sm_80 --arch sm_90 --no-cache
echo "check-kernels: every kernel compiles for sm_80 and sm_90"
