#!/usr/bin/env bash
# Prepares the CUDA backend's check on a GPU machine, which has no Swift: builds
# a stripped release `loft` with the Swift runtime linked in, packs it with the
# non-system libraries it needs (OpenBLAS, gfortran) into .gpu/loft.tar.gz
# (.gpu is ignored by git; unpacked they are about 100 MiB, gzipped about 35),
# and checks that the archive fits the device tool's 64 MiB limit.
#
# Then, in the Loft session, one call of the device tool's `run` verb:
#
#   run(command: "mkdir -p /tmp/loft && tar -xzf .gpu/loft.tar.gz -C /tmp/loft && export LD_LIBRARY_PATH=/tmp/loft/lib && /tmp/loft/loft info --devices && /tmp/loft/loft cuda selftest && /tmp/loft/loft cuda bench",
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
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/lib"
cp "$bin" "$stage/loft"
strip "$stage/loft"
# Libraries outside the C runtime that a bare CUDA image may lack.
ldd "$stage/loft" | awk '/=> \// { print $3 }' | while read -r so; do
    case "$(basename "$so")" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
        *) cp -L "$so" "$stage/lib/" ;;
    esac
done
rm -rf .gpu
mkdir -p .gpu
tar -C "$stage" -cf - loft lib | gzip -9 > .gpu/loft.tar.gz
size=$(stat -c %s .gpu/loft.tar.gz)
echo "gpu-check: .gpu/loft.tar.gz is $((size / 1024 / 1024)) MiB (binary $(( $(stat -c %s "$stage/loft") / 1024 / 1024 )) MiB unpacked); everything carried must stay under 64 MiB"
if [ "$size" -ge $((56 * 1024 * 1024)) ]; then
    echo "gpu-check: the archive leaves no room for the working tree under the 64 MiB limit" >&2
    exit 1
fi
