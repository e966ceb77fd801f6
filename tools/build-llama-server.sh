#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (the peer of `loft serve` in
# BENCHMARKS.md) from the llama.cpp sources that PyPI's llama-cpp-python sdist
# carries (vendor/llama.cpp). Nothing is downloaded except that sdist.
#
#   tools/build-llama-server.sh            # prints the path of llama-server
#
# Installs cmake and a C++ compiler with apt when missing. The build is cached
# under ${LOFT_CACHE:-~/.cache/loft}/llama.cpp-<version>; CPU only, tuned for
# this CPU (GGML_NATIVE), as llama.cpp's own build does by default.
set -euo pipefail

version="${LLAMA_CPP_PYTHON_VERSION:-0.3.16}"
root="${LOFT_CACHE:-$HOME/.cache/loft}/llama.cpp-$version"
server="$root/build/bin/llama-server"
if [ -x "$server" ]; then echo "$server"; exit 0; fi

if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
    echo "installing cmake and build-essential with apt…" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake build-essential >&2
fi
python=$(command -v python3 || command -v python)
mkdir -p "$root"
if [ ! -f "$root/src/CMakeLists.txt" ]; then
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    echo "fetching the llama-cpp-python $version sdist from PyPI…" >&2
    "$python" -m pip download --quiet --no-binary llama-cpp-python --no-deps --disable-pip-version-check -d "$tmp" "llama-cpp-python==$version" >&2
    tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
    rm -rf "$root/src"
    mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$root/src"
fi
jobs="${JOBS:-$(nproc)}"
echo "building llama-server with $jobs jobs (several minutes)…" >&2
cmake -S "$root/src" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$root/build" --target llama-server -j "$jobs" >&2
echo "$server"
