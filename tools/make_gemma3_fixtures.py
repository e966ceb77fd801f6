#!/usr/bin/env python3
"""Reference values for the real Gemma 3 270M GGUF (tools/fetch-gemma3.sh), from
transformers' GGUF loader (dequantized to float32, eager attention, CPU):

    /work/refvenv/bin/python tools/make_gemma3_fixtures.py [--gguf PATH]

Writes Tests/LoftModelsTests/Fixtures/gemma3/expected.json: for each prompt its
token ids, the 64 largest last-position logits with their ids, every 64th logit
of the last position (4096 values: a spread sample of the 262 144), and the
greedy continuation. The full logit rows would be 1 MiB each.
"""
import argparse
import json
import math
import os

import numpy as np
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests", "LoftModelsTests", "Fixtures", "gemma3")
DEFAULT = os.environ.get("LOFT_TEST_GEMMA3", os.path.expanduser("~/.cache/loft/models/gemma-3-270m-q4_k_m.gguf"))

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
]
# Past the 512-token sliding window of the local layers, so the window matters.
LONG = " ".join(f"Item {i}: the {['red', 'green', 'blue', 'yellow'][i % 4]} box holds {i * 7 % 13} stones." for i in range(60))


def f32list(t):
    a = t.detach().to(torch.float32).contiguous().view(-1).numpy()
    return [float(np.format_float_positional(x, unique=True, trim="0")) if math.isfinite(x) else None for x in a]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=DEFAULT)
    a = ap.parse_args()
    d, f = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    cases = []
    for i, text in enumerate(PROMPTS + [LONG]):
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        last = logits[-1]
        top = torch.topk(last, 64)
        case = {"text": text, "input_ids": ids, "top64_ids": top.indices.tolist(), "top64_logits": f32list(top.values),
                "every64th_logits": f32list(last[::64]), "argmax_all_positions": logits.argmax(-1).tolist()}
        if i < len(PROMPTS):
            with torch.no_grad():
                out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     do_sample=False, max_new_tokens=16, num_beams=1, pad_token_id=0)
            new = out[0, len(ids):].tolist()
            case["greedy_new_ids"] = new
            case["greedy_text"] = tok.decode(new)
        cases.append(case)
        print(f"prompt {i}: {len(ids)} tokens, argmax {int(last.argmax())}, "
              f"{case.get('greedy_text', '')!r}")
    assert len(cases[-1]["input_ids"]) > 512, len(cases[-1]["input_ids"])
    os.makedirs(OUT, exist_ok=True)
    doc = {
        "model_file": f, "model_file_size": os.path.getsize(a.gguf),
        "loader": "transformers AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=float32, "
                  "attn_implementation='eager'); norms de-offset by transformers' Gemma2TensorProcessor (w - 1)",
        "transformers": transformers.__version__, "torch": torch.__version__,
        "vocab_size": model.config.vocab_size,
        "config": {k: getattr(model.config, k, None) for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "head_dim", "sliding_window", "query_pre_attn_scalar", "rms_norm_eps", "layer_types")},
        "rope_parameters": model.config.rope_parameters,
        "cases": cases,
    }
    path = os.path.join(OUT, "expected.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    print("wrote", os.path.relpath(path, REPO), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
