#!/bin/sh
# Builds the tiny byte-level model directory GGUFExportTests exports (tiny Llama
# weights + the tiny byte-level tokenizer fixture) into $1, exports it with
# `loft export gguf --quant q8_0`, and dumps it with the gguf package:
#   mkdir -p /tmp/fx && tools/make_export_fixture_model.sh /tmp/fx/tinytok && \
#   /opt/refvenv/bin/python tools/check_gguf_export.py dump /tmp/fx/tinytok.gguf \
#       --out Tests/LoftModelsTests/Fixtures/export/tiny_llama_q8_0.json
set -e
cd "$(dirname "$0")/.."
rm -rf "$1" "$1.gguf"; mkdir -p "$1"
cp Tests/LoftModelsTests/Fixtures/tiny/llama/* "$1/"
cp Tests/LoftTokenizersTests/Fixtures/tokenizers/tiny-bytelevel/* "$1/"
${LOFT:-.build/debug/loft} export gguf "$1" --adapter Tests/LoftTrainingTests/Fixtures/tiny_llama/initial_adapter --quant q8_0 --out "$1.gguf"
