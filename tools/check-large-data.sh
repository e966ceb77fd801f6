#!/usr/bin/env bash
# Training memory is flat in the dataset's size: trains SmolLM2-135M for a few
# steps on a small and on a large generated alpaca JSONL (default 0.1 and 2 GB)
# and prints each run's peak RSS (GNU time) beside the file and token-cache
# sizes. The two peaks should be within a few tens of MB while the data grows
# 20-fold; the tokenized examples of the large file (ids and labels) are
# several GB, so a run that held them could not stay flat.
#
#   LOFT_BIN=.build/release/loft tools/check-large-data.sh [small_gb large_gb]
#
# The tokenizing pass takes ~2 MB of JSONL a second on 2 cores (a 2 GB file:
# ~15-20 minutes). Everything is written under $WORK (default /tmp/loft-large-data)
# and left there; the token cache goes to $WORK/cache, not ~/.cache/loft.
set -euo pipefail
cd "$(dirname "$0")/.."
loft=${LOFT_BIN:-.build/release/loft}
model=$(tools/fetch-model.sh)
work=${WORK:-/tmp/loft-large-data}
small=${1:-0.1}
large=${2:-2}
mkdir -p "$work"

generate() {   # path gigabytes: alpaca rows of random common words (seeded)
    python3 - "$1" "$2" <<'EOF'
import json, random, sys
path, gb = sys.argv[1], float(sys.argv[2])
words = ("the of and to in is it you that he was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their "
         "time if will way about many then them write would like so these her long make thing see him two has look").split()
rng = random.Random(7)
target = int(gb * 1e9)
with open(path, "w") as f:
    written = 0
    while written < target:
        lines = []
        for _ in range(2000):
            row = {"instruction": " ".join(rng.choices(words, k=rng.randint(8, 40))),
                   "input": "",
                   "output": " ".join(rng.choices(words, k=rng.randint(20, 160)))}
            lines.append(json.dumps(row))
        chunk = "\n".join(lines) + "\n"
        f.write(chunk)
        written += len(chunk)
EOF
}

run() {   # gigabytes
    local gb=$1 data="$work/alpaca-$1gb.jsonl" out="$work/out-$1gb"
    [ -f "$data" ] || { echo "generating $data…" >&2; generate "$data" "$gb"; }
    cat > "$work/train-$gb.yaml" <<EOF
base_model: $model
datasets:
  - path: $data
    type: alpaca
sequence_len: 256
sample_packing: true
val_set_size: 64
adapter: lora
lora_r: 16
lora_alpha: 32
lora_target_modules: all-linear
micro_batch_size: 2
gradient_accumulation_steps: 1
max_steps: 3
learning_rate: 1.0e-4
logging_steps: 1
save_steps: 1000
output_dir: $out
EOF
    LOFT_CACHE="$work/cache" /usr/bin/time -v "$loft" train "$work/train-$gb.yaml" --overwrite 2> "$work/train-$gb.log" >/dev/null || {
        tail -20 "$work/train-$gb.log" >&2; exit 1; }
    local rss file cache
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/train-$gb.log")
    file=$(du -m "$data" | cut -f1)
    cache=$(du -sm "$work/cache" | cut -f1)
    echo "$gb GB: JSONL ${file} MB, token cache (all runs so far) ${cache} MB, peak RSS $((rss / 1024)) MB, $(grep -m1 '^data:' "$work/train-$gb.log")"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores"
run "$small"
run "$large"
