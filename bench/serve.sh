#!/usr/bin/env bash
# Serving benchmark: `loft serve` against llama.cpp's llama-server on the same
# GGUF (SmolLM2-135M-Instruct Q4_1 from tools/fetch-model.sh), the same
# threads, one after the other in one run, driven by bench/serve_bench.py
# (streamed chat completions, greedy, same prompts).
#
#   bench/serve.sh [--threads N] [--concurrency 1,4,16] [--max-tokens 128]
#                  [--requests-per-stream 2] [--only loft|llama] [--rounds N] [--out DIR]
#                  [--adapter-precision f16|f32|f16,f32]
#
# Configurations, each on both servers: the base alone; one adapter unmerged;
# the same adapter merged into the weights (exported with `loft export gguf
# --quant q4_1`, the base's own format; the tied output head becomes Q6_K as
# llama-quantize makes it); 8 distinct adapters mixed, stream i using
# adapter i mod 8 (llama-server: all 8 loaded with --lora-init-without-apply,
# chosen per request with its `lora` field). Adapters are random rank-16 LoRAs
# on every projection (bench/make_bench_adapters.py); llama-server gets them
# as GGUF LoRA files written by `loft export gguf-lora`. Loft's unmerged and
# mixed configurations run once per --adapter-precision listed (default: the
# server's own default).
#
# Writes DIR/serve-<date>.jsonl (every number) and prints the markdown table
# (default DIR: bench/results). llama-server comes from
# tools/build-llama-server.sh (built from the llama-cpp-python sdist's sources).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=$(nproc) concurrency=1,4,16 max_tokens=128 per_stream=2 only=loft,llama out_dir=bench/results rounds=1 precisions=default
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --concurrency) concurrency=$2; shift 2 ;;
        --max-tokens) max_tokens=$2; shift 2 ;;
        --requests-per-stream) per_stream=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --out) out_dir=$2; shift 2 ;;
        --adapter-precision) precisions=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { echo "== $*" >&2; }
python=$(command -v python3)
model=$(tools/fetch-model.sh)
mkdir -p "$out_dir"
results="$out_dir/serve-$(date -u +%Y-%m-%d-%H%M).jsonl"
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# LOFT_BIN names a loft binary already built (a test build's, say); else one is built.
loft=${LOFT_BIN:-.build/release/loft}
if [ -z "${LOFT_BIN:-}" ]; then
    say "building loft (release)"
    swift build -c release --product loft >&2
fi
say "8 random rank-16 adapters, their GGUF LoRA files, and a0 merged (q4_1)"
"$python" bench/make_bench_adapters.py "$work/adapters" --count 8 >/dev/null
for i in 0 1 2 3 4 5 6 7; do
    "$loft" export gguf-lora --adapter "$work/adapters/a$i" --base "$model" --out "$work/a$i.lora.gguf" >/dev/null
done
merged="$work/merged-a0.q4_1.gguf"
"$loft" export gguf "$model" --adapter "$work/adapters/a0" --quant q4_1 --out "$merged" >/dev/null

export OPENBLAS_NUM_THREADS=$threads
wait_ready() {  # url pid
    for _ in $(seq 1 600); do
        if curl -sf "$1/health" >/dev/null 2>&1; then return 0; fi
        kill -0 "$2" 2>/dev/null || { echo "error: the server exited before it was ready (log: $3)" >&2; cat "$3" >&2; return 1; }
        sleep 0.5
    done
    echo "error: $1 not ready after 300 s" >&2; return 1
}
bench() {  # label url [serve_bench args...]
    local label=$1 url=$2; shift 2
    "$python" bench/serve_bench.py --url "$url" --label "$label" --concurrency "$concurrency" --max-tokens "$max_tokens" \
        --requests-per-stream "$per_stream" --json "$results" "$@" || say "$label: some requests failed (see $results)"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

llama_run() {  # label bench-args-string server-args...
    local label=$1 bargs=$2; shift 2
    local log="$work/llama.log" port=8181
    "$llama" --host 127.0.0.1 --port $port -t "$threads" -tb "$threads" -c 16384 -np 16 --no-webui "$@" >"$log" 2>&1 &
    local pid=$!; pids+=("$pid")
    wait_ready "http://127.0.0.1:$port" "$pid" "$log" && bench "llama-server, $label" "http://127.0.0.1:$port" $bargs
    stop "$pid"
}
loft_run() {  # label bench-args-string serve-args...
    local label=$1 bargs=$2; shift 2
    local log="$work/loft.log" port=8182
    "$loft" serve "$@" --host 127.0.0.1 --port $port --max-batch 16 >"$log" 2>&1 &
    local pid=$!; pids+=("$pid")
    wait_ready "http://127.0.0.1:$port" "$pid" "$log" && bench "loft serve, $label" "http://127.0.0.1:$port" $bargs
    stop "$pid"
}

lora_args=() adapter_args=() names=()
for i in 0 1 2 3 4 5 6 7; do
    lora_args+=(--lora "$work/a$i.lora.gguf"); adapter_args+=(--adapter "a$i=$work/adapters/a$i"); names+=("a$i")
done
all=$(IFS=,; echo "${names[*]}")

if [[ $only == *llama* ]]; then
    llama=$(tools/build-llama-server.sh)
    say "llama-server: $llama"
fi
# Each round runs every configuration on llama-server then on Loft, so slow
# drifts of a shared machine hit both; the table gives each cell's median.
for round in $(seq 1 "$rounds"); do
    [ "$rounds" -gt 1 ] && say "round $round of $rounds"
    for config in base unmerged merged mixed; do
        if [[ $only == *llama* ]]; then
            case $config in
                base) llama_run "base" "" -m "$model" ;;
                unmerged) llama_run "1 adapter unmerged" "" -m "$model" --lora "$work/a0.lora.gguf" ;;
                merged) llama_run "1 adapter merged (q4_1)" "" -m "$merged" ;;
                mixed) llama_run "8 adapters mixed" "--lora-ids 0,1,2,3,4,5,6,7 --lora-count 8" -m "$model" "${lora_args[@]}" --lora-init-without-apply ;;
            esac
        fi
        if [[ $only == *loft* ]]; then
            for precision in ${precisions//,/ }; do
                # the adapter-free configurations once, not once per precision
                [[ $config == base || $config == merged ]] && [[ $precision != "${precisions%%,*}" ]] && continue
                pargs=() suffix=""
                if [ "$precision" != default ]; then pargs=(--adapter-precision "$precision"); suffix=" ($precision adapters)"; fi
                case $config in
                    base) loft_run "base" "" "$model" ;;
                    unmerged) loft_run "1 adapter unmerged$suffix" "--model a0" "$model" --adapter "a0=$work/adapters/a0" "${pargs[@]}" ;;
                    merged) loft_run "1 adapter merged (q4_1)" "" "$merged" ;;
                    mixed) loft_run "8 adapters mixed$suffix" "--model $all" "$model" "${adapter_args[@]}" "${pargs[@]}" ;;
                esac
            done
        fi
    done
done

echo
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $threads threads; $(date -u +%Y-%m-%dT%H:%MZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Command: bench/serve.sh --threads $threads --concurrency $concurrency --max-tokens $max_tokens --requests-per-stream $per_stream --rounds $rounds --adapter-precision $precisions"
"$python" bench/serve_bench.py --report "$results"
