#!/usr/bin/env bash
# Encode throughput of Loft's tokenizer vs Hugging Face `tokenizers`, one core each,
# on the same ~10 MB of English text (alpaca_en_demo outputs, repeated).
#
#   tools/bench_tokenizer.sh [SOURCE] [PYTHON]
#
# The "whole" lines end with a checksum of all ids: equal checksums mean identical ids.
# SOURCE defaults to the SmolLM2 GGUF; the HF side loads the same tokenizer with
# transformers' GGUF loader (plus SmolLM2's Digits pre-tokenizer, as the fixtures do)
# or, for a tokenizer.json, with tokenizers.Tokenizer.from_file.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=${1:-${LOFT_TEST_MODEL:-$HOME/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf}}
PY=${2:-/opt/refvenv/bin/python}
DATA=../shared/fixtures/datasets/alpaca_en_demo.json
TEXT=${TMPDIR:-/tmp}/loft_bench_10mb.txt
"$PY" - "$DATA" "$TEXT" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1], encoding="utf-8"))
chunk = "\n\n".join(r["output"] for r in rows) + "\n\n"
reps = 10_000_000 // len(chunk.encode()) + 1
open(sys.argv[2], "w", encoding="utf-8").write(chunk * reps)
PYEOF
loft=${LOFT_BIN:-}  # a loft binary already built, or build one
if [ -z "$loft" ]; then
    swift build -c release --product loft >/dev/null
    loft=.build/release/loft
fi
echo "text: $(wc -c < "$TEXT") bytes"
echo "== loft (Swift, one core)"
for i in 1 2; do "$loft" tokenize "$SOURCE" --file "$TEXT" --no-special --stats; done
echo "== HF tokenizers $("$PY" -c 'import tokenizers; print(tokenizers.__version__)') (RAYON_NUM_THREADS=1)"
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$PY" - "$SOURCE" "$TEXT" <<'PYEOF' 2>/dev/null
import os, sys, time
src, path = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
if src.endswith(".gguf"):
    from transformers import AutoTokenizer
    from tokenizers import pre_tokenizers
    d, f = os.path.split(src)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f).backend_tokenizer
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
else:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(src)
n = len(text.encode())
docs = text.split("\n\n")
for _ in range(2):
    t0 = time.perf_counter()
    ids = tok.encode(text, add_special_tokens=False).ids
    dt = time.perf_counter() - t0
    h = 0
    for i in ids:
        h = (h * 1_000_003 + i) & 0xFFFFFFFFFFFFFFFF
    print(f"whole: tokens {len(ids)}  bytes {n}  seconds {dt:.3f}  MB/s {n / 1e6 / dt:.2f}  ids-checksum {h:016x}")
    t0 = time.perf_counter()
    m = sum(len(e.ids) for e in (tok.encode(d, add_special_tokens=False) for d in docs))
    dt = time.perf_counter() - t0
    print(f"docs:  tokens {m}  docs {len(docs)}  seconds {dt:.3f}  MB/s {n / 1e6 / dt:.2f}")
PYEOF
