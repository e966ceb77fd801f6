#!/usr/bin/env bash
# Memory and speed of each training mode, one after the other in one run:
# the quickstart's model and data (SmolLM2-135M-Instruct Q4_1, identity.json),
# LoRA r=16 on all linear layers, packed micro-batches of 2 × 256 tokens,
# `--steps` optimizer steps per mode (default 8). Prints a markdown table of
# tokens/s (median over the steps after the first two) and the run's own
# peak RSS (VmHWM, from loft_run.json), beside what `loft plan` predicted.
#
#   bench/modes.sh [--steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=8
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps=$2; shift 2 ;;
        *) echo "usage: bench/modes.sh [--steps N]" >&2; exit 2 ;;
    esac
done
tools/fetch-model.sh >/dev/null
swift build -c release --product loft >/dev/null
loft=.build/release/loft
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp examples/identity.json "$work/"

modes=(
    "f32 base, AdamW|"
    "f32 base, 8-bit AdamW|optimizer: adamw_8bit"
    "f32 base, gradient checkpointing|gradient_checkpointing: true"
    "f32 base, fp16 compute (loss scaling)|fp16: true"
    "bf16 base, bf16 compute|bf16: true"
    "int8 base (load_in_8bit)|load_in_8bit: true"
    "NF4 + double quant (QLoRA)|adapter: qlora
load_in_4bit: true"
    "NF4 (QLoRA), 8-bit AdamW, checkpointing|adapter: qlora
load_in_4bit: true
optimizer: adamw_8bit
gradient_checkpointing: true"
    "GGUF Q4_1 blocks kept|keep_gguf_quantization: true"
)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: bench/modes.sh --steps $steps ($(date -u +%Y-%m-%d))"
echo
echo "| mode | tokens/s | peak RSS (MiB) | planned (MiB) |"
echo "|---|---|---|---|"
i=0
for entry in "${modes[@]}"; do
    name=${entry%%|*}
    extra=${entry#*|}
    i=$((i + 1))
    cfg="$work/mode$i.yaml"
    cat > "$cfg" <<YAML
base_model: $HOME/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf
datasets:
  - path: identity.json
    type: alpaca
    variables: {name: Loft Assistant, author: the Loft project}
sequence_len: 256
sample_packing: true
lora_r: 16
lora_alpha: 32
lora_target_modules: all-linear
micro_batch_size: 2
max_steps: $steps
learning_rate: 1.0e-3
output_dir: $work/out$i
$extra
YAML
    "$loft" train "$cfg" --json > "$work/train$i.jsonl" 2>/dev/null
    python3 - "$work/out$i" "$name" <<'PY'
import json, statistics, sys
out, name = sys.argv[1], sys.argv[2]
rates = [json.loads(l)["tokens_per_s"] for l in open(out + "/metrics.jsonl") if '"tokens_per_s"' in l]
meta = json.load(open(out + "/loft_run.json"))
rate = statistics.median(rates[2:] or rates)
peak, plan = meta["peak_rss_bytes"] / 2**20, (meta.get("predicted_peak_bytes") or 0) / 2**20
print(f"| {name} | {rate:.0f} | {peak:.0f} | {plan:.0f} |")
PY
done
