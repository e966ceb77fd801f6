#!/usr/bin/env bash
# Prepares the CUDA backend's check on a GPU machine, which has no Swift: builds
# a stripped release `loft` with the Swift runtime linked in, copies it with
# the non-system libraries it needs (OpenBLAS, gfortran) into .gpu/ (ignored
# by git), and checks that it fits the device tool's 64 MiB limit.
#
# Then, in the Loft session, one call of the device tool's `run` verb:
#
#   run(command: "export LD_LIBRARY_PATH=$PWD/.gpu/lib; .gpu/loft info --devices && .gpu/loft cuda selftest && .gpu/loft cuda bench",
#       carry: [".gpu"], timeout_s: 600)
#
# `selftest` compares every kernel and GEMM with the CPU backend on fresh random
# inputs and runs one training step of a tiny Llama on both (exit 1 on any
# failure; the seed is printed for replay); `bench` times GEMMs and attention.
# NVRTC and cuBLASLt come from the machine's CUDA (or pip's nvidia wheels);
# LOFT_CUDA_LIBS=<dir> points at others. Copy .gpu/ into the checkout the
# session was started in (the tool carries that one).
set -euo pipefail
cd "$(dirname "$0")/.."
# A build folder of its own: other flags would rebuild .build/release.
swift build -c release --static-swift-stdlib --build-path .build-gpu --product loft
bin=$(swift build -c release --static-swift-stdlib --build-path .build-gpu --show-bin-path)/loft
rm -rf .gpu
mkdir -p .gpu/lib
cp "$bin" .gpu/loft
strip .gpu/loft
# Libraries outside the C runtime that a bare CUDA image may lack.
ldd .gpu/loft | awk '/=> \// { print $3 }' | while read -r so; do
    case "$(basename "$so")" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
        *) cp -L "$so" .gpu/lib/ ;;
    esac
done
total=$(du -cb .gpu/loft .gpu/lib/* | tail -1 | cut -f1)
limit=$((64 * 1024 * 1024))
echo "gpu-check: .gpu holds $((total / 1024 / 1024)) MiB (binary $(( $(stat -c %s .gpu/loft) / 1024 / 1024 )) MiB); the limit for everything carried is 64 MiB"
if [ "$total" -ge "$limit" ]; then
    echo "gpu-check: .gpu is over 64 MiB and cannot be carried" >&2
    exit 1
fi
