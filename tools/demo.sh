#!/usr/bin/env bash
# The main job on the bundled example. Until training lands: greedy
# generation with the real SmolLM2-135M-Instruct model.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
model=$(tools/fetch-model.sh)
swift build -c release --product loft >&2
loft=.build/release/loft
$loft info "$model"
echo "prompt ids of \"The capital of France is\": 504,3575,282,4649,314"
$loft generate "$model" --ids 504,3575,282,4649,314 --max-new-tokens 12 --greedy --json
