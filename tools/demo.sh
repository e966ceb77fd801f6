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
if [ -f "$out/adapter_model.safetensors" ] && [ "${1:-}" != "--retrain" ]; then
    echo "using the adapter already in $out (pass --retrain to train again)" >&2
else
    $loft train examples/quickstart.yaml --overwrite
fi
echo
echo "== base model:"
$loft generate "$model" --chat --prompt "Who are you?" --max-new-tokens 48
echo
echo "== with the adapter:"
$loft generate "$model" --adapter "$out" --chat --prompt "Who are you?" --max-new-tokens 48
