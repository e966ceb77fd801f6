#!/usr/bin/env bash
# Preference training side by side: `loft train` with rl: dpo against TRL's
# DPOTrainer + PEFT (bench/trl_dpo_bench.py), on the same machine, one after the
# other, on the same pairs: the first N rows of dpo_en_demo.json, one epoch,
# micro-batch 1, sequence_len 512, LoRA r=16 alpha=32 on all linear projections,
# fp32, reference = base with the adapter disabled, no gradient checkpointing.
#
#   bench/dpo_bench.sh [--rows 16] [--seq 512] [--python /work/refvenv/bin/python]
#
# Prints a markdown table: pairs/s and peak RSS of each, their ratios, the CPU
# model and the load averages (a 1-minute load above the core count makes the
# numbers untrustworthy, and is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
rows=16 seq=512 python=${LOFT_BENCH_PYTHON:-/work/refvenv/bin/python}
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows=$2; shift 2 ;;
        --seq) seq=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        *) echo "error: unknown option $1" >&2; exit 2 ;;
    esac
done
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$(nproc)}
model=$(tools/fetch-model.sh)
work=$(mktemp -d)
"$python" - "$rows" "$work/pairs.jsonl" <<'PY'
import json, sys
rows = json.load(open("../shared/fixtures/datasets/dpo_en_demo.json"))[: int(sys.argv[1])]
with open(sys.argv[2], "w") as f:
    for r in rows: f.write(json.dumps(r) + "\n")
PY
cat > "$work/dpo.yaml" <<YAML
base_model: $model
rl: dpo
rl_beta: 0.1
datasets: [{path: $work/pairs.jsonl}]
sequence_len: $seq
adapter: lora
lora_r: 16
lora_alpha: 32
lora_dropout: 0.0
lora_target_modules: all-linear
micro_batch_size: 1
num_epochs: 1
learning_rate: 5.0e-5
lr_scheduler: linear
output_dir: $work/loft-out
YAML
# An existing release build is used as it is (a build with other flags would recompile everything).
[ -x .build/release/loft ] || swift build -c release --product loft >/dev/null
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s.%N)
.build/release/loft train "$work/dpo.yaml" --json > "$work/loft.jsonl"
loft_wall=$(echo "$(date +%s.%N) - $start" | bc)
# The trainer prints its own log dicts on stdout too: the result is the last line.
trl_json=$("$python" bench/trl_dpo_bench.py --gguf "$model" --data "$work/pairs.jsonl" --seq "$seq" --threads "$(nproc)" | tail -n 1)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
"$python" - "$work" "$loft_wall" "$trl_json" "$load_before" "$load_after" "$rows" "$seq" <<'PY'
import json, subprocess, sys
work, loft_wall, trl, lb, la, rows, seq = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3]), *sys.argv[4:]
run = json.load(open(f"{work}/loft-out/loft_run.json"))
metrics = [json.loads(l) for l in open(f"{work}/loft-out/metrics.jsonl") if '"pairs_per_s"' in l]
loft_pps = metrics[-1]["pairs_per_s"]
cpu = [l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")][0]
print(f"CPU: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; load average before {lb}, after {la}")
print(f"DPO (sigmoid), {run['train_examples']} pairs of dpo_en_demo (first {rows} rows), sequence_len {seq}, LoRA r=16 all-linear, fp32, micro-batch 1\n")
print("| | pairs/s | peak RSS |")
print("|---|---|---|")
print(f"| Loft | {loft_pps:.3f} | {run['peak_rss_bytes'] / 2**20:.0f} MiB |")
print(f"| TRL {trl['versions']['trl']} + PEFT (torch {trl['versions']['torch']}) | {trl['pairs_per_s']:.3f} | {trl['peak_rss_bytes'] / 2**20:.0f} MiB |")
print(f"| Loft / TRL | {loft_pps / trl['pairs_per_s']:.2f}× | {run['peak_rss_bytes'] / trl['peak_rss_bytes']:.2f}× |")
PY
