#!/usr/bin/env python3
"""Check `loft merge` against transformers and PEFT, and write the fixture
Tests/LoftModelsTests/Fixtures/merge/expected.json that MergeTests compares with.

    swift build && /opt/refvenv/bin/python tools/check_merge_transformers.py [--loft .build/debug/loft]

For each tiny case: `loft merge BASE --adapter ADAPTER --out TMP --dtype fp32`,
then transformers loads TMP (AutoModelForCausalLM, float32, eager) and its
logits are compared with (a) PEFT's base+adapter and (b) PEFT's
merge_and_unload(); both within 1e-4 of the largest |logit|. The logits
transformers computes from Loft's merged directory are the fixture.

With --smollm2 (and --gemma3, with an adapter trained on Gemma 3 270M), the real GGUF base: the merged directory's logits against
transformers' GGUF loader + PEFT, and its tokenizer (the tokenizer.json and
tokenizer_config.json Loft rebuilds from the GGUF) loaded by AutoTokenizer
must encode texts exactly as transformers' own GGUF tokenizer does and render
the chat template as it does.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

torch.set_num_threads(2)
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = {
    "tiny_llama": ("Tests/LoftModelsTests/Fixtures/tiny/llama", "Tests/LoftTrainingTests/Fixtures/tiny_llama/initial_adapter"),
    "tiny_qwen3": ("Tests/LoftModelsTests/Fixtures/tiny/qwen3", "Tests/LoftTrainingTests/Fixtures/tiny_qwen3/initial_adapter"),
    "tiny_gemma3": ("Tests/LoftModelsTests/Fixtures/tiny/gemma3", "Tests/LoftTrainingTests/Fixtures/tiny_gemma3/initial_adapter"),
    "tiny_gemma2": ("Tests/LoftModelsTests/Fixtures/tiny/gemma2", "Tests/LoftTrainingTests/Fixtures/tiny_gemma2/initial_adapter"),
    # Phi-3: the adapter is on the fused qkv_proj and gate_up_proj, merged back into them
    "tiny_phi3": ("Tests/LoftModelsTests/Fixtures/tiny/phi3", "Tests/LoftTrainingTests/Fixtures/tiny_phi3/initial_adapter"),
    # mixture of experts: the router and every expert written beside the merged attention
    "tiny_qwen3_moe": ("Tests/LoftModelsTests/Fixtures/tiny/qwen3_moe", "Tests/LoftTrainingTests/Fixtures/tiny_qwen3_moe/initial_adapter"),
    "tiny_mixtral": ("Tests/LoftModelsTests/Fixtures/tiny/mixtral", "Tests/LoftTrainingTests/Fixtures/tiny_mixtral/initial_adapter"),
}
IDS = [1, 17, 42, 99, 5, 63, 120, 7]


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def check_gguf_base(args, name, base, adapter, ids, texts):
    """The real GGUF base: transformers' GGUF loader + PEFT is the reference for the merged
    directory's logits, and transformers' own GGUF tokenizer for the tokenizer.json Loft writes."""
    from transformers import AutoTokenizer
    ids = torch.tensor([ids])
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "merged")
        subprocess.run([args.loft, "merge", base, "--adapter", adapter, "--out", out], check=True)
        with torch.no_grad():
            got = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()(ids).logits[0]
            ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(base), gguf_file=os.path.basename(base),
                                                       dtype=torch.float32, attn_implementation="eager")
            want = PeftModel.from_pretrained(ref, adapter).eval()(ids).logits[0]
        tok = AutoTokenizer.from_pretrained(out)
        ref_tok = AutoTokenizer.from_pretrained(os.path.dirname(base), gguf_file=os.path.basename(base))
        differ = [t for t in texts if tok.encode(t) != ref_tok.encode(t)]
        msgs = [{"role": "user", "content": "Who are you?"}]
        template = os.path.join(adapter, "chat_template.jinja")
        if ref_tok.chat_template is None and os.path.exists(template):
            ref_tok.chat_template = open(template).read()  # the pretrained GGUF has none; the adapter's
        chat_same = (tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                     == ref_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        print(f"{name} merged tokenizer: {len(texts) - len(differ)}/{len(texts)} texts encode as transformers' GGUF tokenizer"
              f"{' (differ: ' + repr(differ[:3]) + ')' if differ else ''}; chat template "
              f"{'renders the same' if chat_same else 'DIFFERS'}; eos {tok.eos_token!r}")
    e = rel(got, want)
    print(f"{name} (GGUF base): transformers(loft merged) vs transformers GGUF + PEFT {e:.2e}")
    return not differ and chat_same and e < 1e-4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loft", default=os.path.join(REPO, ".build/debug/loft"))
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/LoftModelsTests/Fixtures/merge/expected.json"))
    ap.add_argument("--smollm2", action="store_true", help="also check the real SmolLM2 GGUF (not part of the fixture)")
    ap.add_argument("--gemma3", action="store_true", help="also check the real Gemma 3 270M GGUF (tools/fetch-gemma3.sh)")
    ap.add_argument("--gemma3-adapter", default=os.path.join(REPO, "outputs/quickstart-gemma3"),
                    help="an adapter trained on it (loft train examples/quickstart-gemma3.yaml)")
    args = ap.parse_args()
    expected = {"ids": IDS, "cases": {}}
    ok = True
    for name, (base, adapter) in CASES.items():
        base, adapter = os.path.join(REPO, base), os.path.join(REPO, adapter)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "merged")
            subprocess.run([args.loft, "merge", base, "--adapter", adapter, "--out", out, "--dtype", "fp32"], check=True)
            merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
            ids = torch.tensor([IDS])
            with torch.no_grad():
                got = merged(ids).logits[0]
                peft = PeftModel.from_pretrained(
                    AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager"), adapter).eval()
                want = peft(ids).logits[0]
                unloaded = peft.merge_and_unload()(ids).logits[0]
        e1, e2 = rel(got, want), rel(got, unloaded)
        print(f"{name}: transformers(loft merged) vs PEFT base+adapter {e1:.2e}, vs PEFT merge_and_unload {e2:.2e}")
        ok = ok and e1 < 1e-4 and e2 < 1e-4
        expected["cases"][name] = {"base": os.path.relpath(base, REPO), "adapter": os.path.relpath(adapter, REPO),
                                   "logits": [float(x) for x in got.flatten()]}
    if args.smollm2:
        ok = check_gguf_base(args, "smollm2", os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
                             os.path.join(REPO, "Tests/LoftTrainingTests/Fixtures/smollm2/initial_adapter"),
                             [504, 3575, 282, 4649, 314],
                             ["Hello world", "  spaces\tand\nnewlines 12345", " ünïcödé ✓ 3.14159",
                              "<|im_start|>user\nHi<|im_end|>", "The quick brown fox jumps over the lazy dog."]) and ok
    if args.gemma3:
        corpus = json.load(open(os.path.join(REPO, "Tests/LoftTokenizersTests/Fixtures/tokenizers/gemma3.json")))
        ok = check_gguf_base(args, "gemma3", os.path.expanduser("~/.cache/loft/models/gemma-3-270m-q4_k_m.gguf"),
                             args.gemma3_adapter, [2, 818, 5279, 529, 7001, 563],
                             [c["text"] for c in corpus["cases"]]) and ok
    with open(args.out, "w") as f:
        json.dump(expected, f)
        f.write("\n")
    print("wrote", args.out)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
