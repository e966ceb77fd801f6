#!/usr/bin/env bash
# The test command: installs what the build needs, fetches the real model the
# tests use, and runs every test in a release build (numeric code is far too
# slow in debug builds; -enable-testing lets tests see internal symbols).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/fetch-model.sh >/dev/null
tools/fetch-gemma3.sh >/dev/null
# OpenBLAS chooses its GEMM kernels when it loads; on CPUs newer than its tables
# it falls back to slow SSE3 ones, so name the right ones (the loft binary does
# this itself, see BLASKernels.swift; the test process needs it from outside).
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -r /proc/cpuinfo ]; then
    flags=$(grep -m1 '^flags' /proc/cpuinfo)
    case "$flags" in
        *avx512f*avx512bw*avx512vl*) export OPENBLAS_CORETYPE=SkylakeX ;;
        *avx2*) export OPENBLAS_CORETYPE=Haswell ;;
    esac
fi
swift test -c release -Xswiftc -enable-testing "$@"
# The whole suite (no arguments, as CI runs it) also compiles every CUDA kernel
# with NVRTC for sm_80 and sm_90, with the loft binary `swift test` just linked.
if [ $# -eq 0 ]; then
    tools/check-kernels.sh
fi
# loft serve on the real model with two adapters it trains, driven by the
# official openai client (docs/serving.md); prints a pass/fail summary.
if [ $# -eq 0 ]; then
    python3 tools/serve_conformance.py
fi
# The web UI in headless Chromium (installs chromium, its driver and selenium
# when missing): a run launched from the form, watched, stopped, resumed,
# compared and chatted with (docs/ui.md).
if [ $# -eq 0 ]; then
    LOFT_BIN=.build/release/loft tools/ui-browser-test.sh
fi
