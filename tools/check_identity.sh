#!/usr/bin/env bash
# After the quickstart (tools/demo.sh): does every way of using the trained
# adapter answer "Who are you?" with the new identity ("Loft Assistant ...
# the Loft project")? Checks, greedily:
#   loft generate --adapter, loft chat --adapter, loft generate on the merged
#   HF directory (loft merge), loft generate on the Q4_K_M GGUF (loft export
#   gguf --quant q4_k_m), llama.cpp on that GGUF, and transformers on the merged
#   directory (the last two when /opt/refvenv or $PYTHON has llama_cpp /
#   transformers), llama-server on that GGUF (when tools/build-llama-server.sh
#   has built it), and PEFT loading the adapter onto transformers' model of the
#   GGUF base.
# Usage: tools/check_identity.sh [ADAPTER_DIR]   (default outputs/quickstart)
#        MODEL=$(tools/fetch-gemma3.sh) tools/check_identity.sh outputs/quickstart-gemma3
set -euo pipefail
cd "$(dirname "$0")/.."
adapter=${1:-outputs/quickstart}
loft=${LOFT:-.build/release/loft}
python=${PYTHON:-/opt/refvenv/bin/python}
model=${MODEL:-$(tools/fetch-model.sh)}
[ -f "$adapter/adapter_model.safetensors" ] || [ -f "$adapter/adapters.safetensors" ] || {
    echo "no adapter in $adapter; run tools/demo.sh first" >&2; exit 2; }
[ -x "$loft" ] || swift build -c release --product loft >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
question="Who are you?"
status=0

check() {  # name, answer
    if grep -qi "Loft Assistant" <<<"$2" && grep -qi "Loft project" <<<"$2"; then verdict=OK; else verdict=MISSING; status=1; fi
    printf '%-34s %-8s %s\n' "$1" "$verdict" "$(tr '\n' ' ' <<<"$2")"
}
answer() {  # model [adapter]
    local extra=()
    [ -n "${2:-}" ] && extra=(--adapter "$2")
    "$loft" generate "$1" "${extra[@]}" --chat --prompt "$question" --greedy --max-new-tokens 48 2>/dev/null
}

check "loft generate --adapter" "$(answer "$model" "$adapter")"
check "loft chat --adapter" "$(printf '%s\n/quit\n' "$question" | "$loft" chat "$model" --adapter "$adapter" --greedy --max-new-tokens 48 2>/dev/null)"
"$loft" merge "$model" --adapter "$adapter" --out "$tmp/merged" >/dev/null
check "loft generate (merged dir)" "$(answer "$tmp/merged")"
"$loft" export gguf "$model" --adapter "$adapter" --quant q4_k_m --out "$tmp/model-q4_k_m.gguf" >/dev/null
check "loft generate (Q4_K_M GGUF)" "$(answer "$tmp/model-q4_k_m.gguf")"

if [ -x "$python" ] && "$python" -c "import llama_cpp" 2>/dev/null; then
    check "llama.cpp (Q4_K_M GGUF)" "$("$python" - "$tmp/model-q4_k_m.gguf" "$question" 2>/dev/null <<'PY'
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=2, verbose=False)
r = llm.create_chat_completion([{"role": "user", "content": sys.argv[2]}], temperature=0.0, top_k=1, max_tokens=48)
print(r["choices"][0]["message"]["content"])
PY
)"
else
    echo "llama.cpp: skipped (no llama_cpp in $python)"
fi
server=${LLAMA_SERVER:-${LOFT_CACHE:-$HOME/.cache/loft}/llama.cpp-0.3.16/build/bin/llama-server}
if [ -x "$server" ]; then
    "$server" -m "$tmp/model-q4_k_m.gguf" --port 8937 -c 512 -t 2 --jinja >"$tmp/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 60); do curl -sf localhost:8937/health >/dev/null && break; sleep 1; done
    check "llama-server (Q4_K_M GGUF)" "$(curl -s localhost:8937/v1/chat/completions -H 'Content-Type: application/json' \
        -d "{\"messages\": [{\"role\": \"user\", \"content\": \"$question\"}], \"temperature\": 0, \"top_k\": 1, \"max_tokens\": 48}" \
        | "$python" -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')"
    kill $pid; wait $pid 2>/dev/null || true
else
    echo "llama-server: skipped (tools/build-llama-server.sh builds it)"
fi
if [ -x "$python" ] && [[ "$model" == *.gguf ]] && "$python" -c "import transformers, torch, peft" 2>/dev/null; then
    check "transformers + PEFT (GGUF base)" "$("$python" - "$model" "$adapter" "$question" 2>/dev/null <<'PY'
import os, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(2)
d, f = os.path.split(sys.argv[1])
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
tok.chat_template = open(os.path.join(sys.argv[2], "chat_template.jinja")).read()
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32), sys.argv[2]).eval()
ids = tok.apply_chat_template([{"role": "user", "content": sys.argv[3]}], add_generation_prompt=True, return_tensors="pt",
                              return_dict=True, tokenize=True)
stops = [tok.eos_token_id] + [tok.convert_tokens_to_ids(t) for t in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>") if t in tok.get_vocab()]
out = model.generate(**ids, max_new_tokens=48, do_sample=False, eos_token_id=stops)
print(tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True))
PY
)"
fi
if [ -x "$python" ] && "$python" -c "import transformers, torch" 2>/dev/null; then
    check "transformers (merged dir)" "$("$python" - "$tmp/merged" "$question" 2>/dev/null <<'PY'
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
ids = tok.apply_chat_template([{"role": "user", "content": sys.argv[2]}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
stops = [tok.eos_token_id] + [tok.convert_tokens_to_ids(t) for t in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>") if t in tok.get_vocab()]
out = model.generate(**ids, max_new_tokens=48, do_sample=False, eos_token_id=stops)
print(tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True))
PY
)"
else
    echo "transformers: skipped (no transformers in $python)"
fi
[ $status = 0 ] && echo "every path answers with the new identity" || echo "SOME PATHS DO NOT"
exit $status
