#!/usr/bin/env bash
# Side-by-side benchmark: `loft bench` vs transformers+PEFT (bench/hf_bench.py) on
# the same SmolLM2-135M-Instruct GGUF, the same threads, one after the other.
#
#   bench/run.sh [--threads N] [--only gemm,prefill,generate,train] [--train-steps 3]
#                [--train-batch 4] [--train-seq 512] [--gradient-checkpointing]
#                [--repeats 3] [--quick] [--no-bf16] [--no-tokenizer] [--out DIR]
#                [--model GGUF]   (default: SmolLM2 from tools/fetch-model.sh;
#                                  e.g. --model "$(tools/fetch-gemma3.sh)")
#
# 1. Python: $LOFT_BENCH_PYTHON if set (e.g. /opt/refvenv/bin/python), otherwise a
#    venv at .venv-bench (created, then torch transformers peft gguf accelerate
#    installed from PyPI if any is missing).
# 2. Builds `loft` in release (or uses $LOFT_BIN), fetches the model with tools/fetch-model.sh.
# 3. Runs `loft bench --json`, with training also in bf16 (`--precision bf16`,
#    unless --no-bf16), then hf_bench.py, then (if present, and unless
#    --no-tokenizer or --only is given) tools/bench_tokenizer.sh.
# 4. Writes DIR/<date>-<host>.json and .md (default DIR: bench/results) and
#    prints the markdown table: machine (lscpu), versions, load averages, command.
# The machine should be quiet: a 1-minute load average above the core count is
# reported as a warning in the output ("numbers are not trustworthy").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
command_line=bench/run.sh
for arg in "$@"; do  # shell-quoted only where needed, so the line can be pasted back
    if [[ $arg =~ ^[A-Za-z0-9_,./=:+-]+$ ]]; then command_line+=" $arg"; else command_line+=" $(printf %q "$arg")"; fi
done
[ -n "${LOFT_BENCH_PYTHON:-}" ] && command_line="LOFT_BENCH_PYTHON=$LOFT_BENCH_PYTHON $command_line"

threads=$(nproc)
only=gemm,prefill,generate,train
only_given=0
train_steps=3 train_batch=4 train_seq=512 repeats=3
gc=0 quick=0 no_bf16=0 tokenizer=1
out_dir=bench/results
model_arg=
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --only) only=$2; only_given=1; shift 2 ;;
        --train-steps) train_steps=$2; shift 2 ;;
        --train-batch) train_batch=$2; shift 2 ;;
        --train-seq) train_seq=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        --gradient-checkpointing) gc=1; shift ;;
        --quick) quick=1; shift ;;
        --no-bf16) no_bf16=1; shift ;;
        --no-tokenizer) tokenizer=0; shift ;;
        --out) out_dir=$2; shift 2 ;;
        --model) model_arg=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$only_given" = 1 ] && tokenizer=0

say() { echo "== $*" >&2; }
cores=$(nproc)
load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
check_load() {  # prints a warning (and returns it on stdout) when load1 > cores
    local l; l=$(load1)
    if awk -v l="$l" -v c="$cores" 'BEGIN { exit !(l > c) }'; then
        echo "1-minute load average $l ($1) exceeds the $cores cores: other processes compete for the CPU, numbers are not trustworthy"
    fi
    return 0
}

# --- 1. Python ------------------------------------------------------------
if [ -n "${LOFT_BENCH_PYTHON:-}" ]; then
    py=$LOFT_BENCH_PYTHON
else
    py=$root/.venv-bench/bin/python
    if [ ! -x "$py" ]; then
        say "creating .venv-bench"
        python3 -m venv "$root/.venv-bench"
    fi
fi
if ! "$py" -c 'import torch, transformers, peft, gguf, accelerate' 2>/dev/null; then
    if [ -n "${LOFT_BENCH_PYTHON:-}" ]; then
        echo "error: $py lacks one of torch transformers peft gguf accelerate" >&2; exit 1
    fi
    say "installing torch transformers peft gguf accelerate from PyPI into .venv-bench"
    "$py" -m pip install --quiet --disable-pip-version-check torch transformers peft gguf accelerate
fi

# --- 2. build and model ---------------------------------------------------
if [ -n "${LOFT_BIN:-}" ]; then
    loft=$LOFT_BIN
else
    say "building loft (release)"
    swift build -c release --product loft >&2
    loft=$root/.build/release/loft
fi
model=${model_arg:-$(tools/fetch-model.sh)}

# Same threads for both: OpenBLAS and torch thread counts, and, below the core
# count, CPU affinity (Loft's own parallel loops use every core it may run on).
pin=()
if [ "$threads" -lt "$cores" ] && command -v taskset >/dev/null; then
    pin=(taskset -c "0-$((threads - 1))")
fi
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
load_before=$(loadavg)
warn_before=$(check_load "before")
[ -n "$warn_before" ] && echo "WARNING: $warn_before" >&2

# --- 3. the benchmarks ----------------------------------------------------
loft_args=(bench "$model" --only "$only" --repeats "$repeats" --train-steps "$train_steps"
           --train-batch "$train_batch" --train-seq "$train_seq" --json)
hf_args=(bench/hf_bench.py --model "$model" --only "$only" --threads "$threads"
         --train-steps "$train_steps" --train-batch "$train_batch" --train-seq "$train_seq")
[ "$gc" = 1 ] && { loft_args+=(--gradient-checkpointing); hf_args+=(--gradient-checkpointing); }
[ "$quick" = 1 ] && hf_args+=(--quick)
[ "$no_bf16" = 1 ] && hf_args+=(--no-bf16)

say "loft ${loft_args[*]}"
"${pin[@]}" "$loft" "${loft_args[@]}" > "$tmp/loft.json" || echo "warning: loft bench failed" >&2
cat "$tmp/loft.json" >&2
loft_bf16=()
if [ "$no_bf16" = 0 ] && [[ ,$only, == *,train,* ]]; then
    bf16_args=(bench "$model" --only train --precision bf16 --train-steps "$train_steps"
               --train-batch "$train_batch" --train-seq "$train_seq" --json)
    [ "$gc" = 1 ] && bf16_args+=(--gradient-checkpointing)
    say "loft ${bf16_args[*]}"
    "${pin[@]}" "$loft" "${bf16_args[@]}" > "$tmp/loft_bf16.json" || echo "warning: loft bench (bf16) failed" >&2
    cat "$tmp/loft_bf16.json" >&2
    loft_bf16=(--loft-bf16 "$tmp/loft_bf16.json")
fi
say "$py ${hf_args[*]}"
"${pin[@]}" "$py" "${hf_args[@]}" > "$tmp/hf.json" || echo "warning: hf_bench.py failed" >&2
if [ "$tokenizer" = 1 ] && [ -x tools/bench_tokenizer.sh ]; then
    say "tools/bench_tokenizer.sh"
    tools/bench_tokenizer.sh "$model" "$py" > "$tmp/tok.txt" 2>&2 || echo "warning: bench_tokenizer.sh failed" >&2
    cat "$tmp/tok.txt" >&2
fi

load_after=$(loadavg)
warn_after=$(check_load "after")
[ -n "$warn_after" ] && echo "WARNING: $warn_after" >&2

# --- 4. report ------------------------------------------------------------
lscpu_field() { lscpu | sed -n "s/^$1:[[:space:]]*//p" | head -1; }
stamp="$(date +%Y-%m-%d-%H%M)-$(hostname -s 2>/dev/null || hostname)"
mkdir -p "$out_dir"
CPU_MODEL=$(lscpu_field 'Model name') SOCKETS=$(lscpu_field 'Socket(s)') TPC=$(lscpu_field 'Thread(s) per core') \
MEM=$(free -h | awk '/^Mem:/ {print $2}') OS=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -sr) \
SWIFT=$(swift --version 2>/dev/null | head -1) COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo '?') \
DIRTY=$(git status --porcelain 2>/dev/null | grep -qv '^??' && echo 1 || echo 0) \
PIN="${pin[*]}" ONLY=$only TB=$train_batch TS=$train_seq TN=$train_steps GC=$gc CORES=$cores THREADS=$threads LOAD_BEFORE=$load_before LOAD_AFTER=$load_after MODEL=$model \
WARN_BEFORE=$warn_before WARN_AFTER=$warn_after CMD=$command_line HOST=$(hostname) DATE=$(date -Iseconds) \
"$py" - > "$tmp/meta.json" <<'PY'
import json, os, platform
from importlib import metadata
e = os.environ
def ver(p):
    try:
        return metadata.version(p)
    except metadata.PackageNotFoundError:
        return None
print(json.dumps({
    "date": e["DATE"], "host": e["HOST"], "command": e["CMD"],
    "cpu_model": e["CPU_MODEL"], "cores": int(e["CORES"]), "pinned_with": e["PIN"] or None, "sockets": e["SOCKETS"],
    "threads_per_core": e["TPC"], "mem_total": e["MEM"], "os": e["OS"], "threads": int(e["THREADS"]),
    "loadavg_before": e["LOAD_BEFORE"], "loadavg_after": e["LOAD_AFTER"],
    "load_warnings": [w for w in (e["WARN_BEFORE"], e["WARN_AFTER"]) if w],
    "only": e["ONLY"], "train": {"batch": int(e["TB"]), "seq": int(e["TS"]), "steps": int(e["TN"]),
                                 "gradient_checkpointing": e["GC"] == "1"},
    "swift": e["SWIFT"], "git_commit": e["COMMIT"], "git_dirty": e["DIRTY"] == "1", "model": e["MODEL"],
    "python": platform.python_version(),
    **{p: ver(p) for p in ("torch", "transformers", "peft", "gguf", "accelerate", "tokenizers")},
}, indent=1))
PY
tok_arg=()
[ -s "$tmp/tok.txt" ] && tok_arg=(--tokenizer "$tmp/tok.txt")
"$py" bench/report.py --loft "$tmp/loft.json" "${loft_bf16[@]}" --hf "$tmp/hf.json" --meta "$tmp/meta.json" "${tok_arg[@]}" \
    --out-json "$out_dir/$stamp.json" --out-md "$out_dir/$stamp.md"
say "wrote $out_dir/$stamp.json and $out_dir/$stamp.md"
[ -n "$warn_before$warn_after" ] && echo "WARNING: the load average exceeded the core count during the run: numbers are not trustworthy" >&2
exit 0
