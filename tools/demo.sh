#!/usr/bin/env bash
# The main job on the bundled example: fine-tune SmolLM2-135M-Instruct on
# examples/identity.json (examples/quickstart.yaml), then ask the base model
# and the adapter "Who are you?".
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
model=$(tools/fetch-model.sh)
swift build -c release --product loft >&2
loft=.build/release/loft
out=outputs/quickstart
# outputs/quickstart belongs to this demo: each run trains it afresh
# (pass --reuse to keep an adapter a previous run finished).
if [ "${1:-}" = "--reuse" ] && [ -f "$out/adapter_model.safetensors" ]; then
    echo "reusing the adapter in $out" >&2
else
    $loft train examples/quickstart.yaml --overwrite
fi
echo
echo "== base model:"
$loft generate "$model" --chat --prompt "Who are you?" --max-new-tokens 48
echo
echo "== with the adapter:"
$loft generate "$model" --adapter "$out" --chat --prompt "Who are you?" --max-new-tokens 48
