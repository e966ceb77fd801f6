#!/usr/bin/env python3
"""Does llama.cpp load what `loft export` writes, and generate what Loft generates?

    swift build && /opt/refvenv/bin/python tools/check_llamacpp_export.py [--loft .build/debug/loft] [--model GGUF]

Needs llama-cpp-python (`pip install llama-cpp-python`). Steps:
  1. `loft export gguf MODEL --quant f16` -> llama.cpp loads it; its greedy
     continuation of a prompt (token ids) must equal `loft generate --greedy`
     on the original model.
  2. With --adapter (default: the SmolLM2 training fixture's adapter, alpha
     raised so that it matters): `loft export gguf MODEL --adapter A` (merged)
     and `loft export gguf-lora` applied by llama.cpp to the F16 base must give
     the same greedy tokens as `loft generate --adapter A`.
Exit status 0 when every comparison agrees.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from llama_cpp import Llama

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = [504, 3575, 282, 4649, 314]  # "The capital of France is" in SmolLM2's vocabulary
N = 16


def loft(args, *rest):
    return subprocess.run([args.loft, *rest], check=True, capture_output=True, text=True).stdout


def loft_greedy(args, model, adapter=None):
    cmd = ["generate", model, "--ids", ",".join(map(str, PROMPT)), "--max-new-tokens", str(N), "--greedy", "--json",
           "--stop", "999999"]
    if adapter:
        cmd += ["--adapter", adapter]
    return json.loads(loft(args, *cmd))["ids"]


def llama_greedy(path, lora=None):
    kw = {"lora_path": lora} if lora else {}
    llm = Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False, logits_all=False, **kw)
    out = []
    for tok in llm.generate(PROMPT, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, reset=True):
        out.append(int(tok))
        if len(out) == N:
            break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loft", default=os.path.join(REPO, ".build/debug/loft"))
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--adapter", default=os.path.join(REPO, "Tests/LoftTrainingTests/Fixtures/smollm2/initial_adapter"))
    ap.add_argument("--alpha", type=float, default=64, help="lora_alpha for the check (the fixture adapter barely changes tokens at its own)")
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        f16 = os.path.join(tmp, "model-f16.gguf")
        loft(args, "export", "gguf", args.model, "--quant", "f16", "--out", f16)
        want, got = loft_greedy(args, args.model), llama_greedy(f16)
        print("base   loft     ", want)
        print("base   llama.cpp", got, "OK" if want == got else "DIFFERENT")
        ok &= want == got

        # A strong adapter (alpha raised) so that the adapter visibly changes the tokens.
        strong = os.path.join(tmp, "adapter")
        shutil.copytree(args.adapter, strong)
        cfg = json.load(open(os.path.join(strong, "adapter_config.json")))
        cfg["lora_alpha"] = args.alpha
        json.dump(cfg, open(os.path.join(strong, "adapter_config.json"), "w"))
        merged = os.path.join(tmp, "merged-f16.gguf")
        lora = os.path.join(tmp, "lora.gguf")
        loft(args, "export", "gguf", args.model, "--adapter", strong, "--quant", "f16", "--out", merged)
        loft(args, "export", "gguf-lora", "--adapter", strong, "--base", args.model, "--out", lora)
        want_a = loft_greedy(args, args.model, strong)
        got_merged, got_lora = llama_greedy(merged), llama_greedy(f16, lora)
        print("adapter loft              ", want_a, "(differs from base)" if want_a != want else "(same as base!)")
        print("adapter llama.cpp merged  ", got_merged, "OK" if got_merged == want_a else "DIFFERENT")
        print("adapter llama.cpp --lora  ", got_lora, "OK" if got_lora == want_a else "DIFFERENT")
        ok &= got_merged == want_a and got_lora == want_a
    print("all agree" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
