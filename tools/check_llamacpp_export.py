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
  3. K-quants: `loft export gguf MODEL --quant f32` quantized by llama.cpp's
     own llama_model_quantize to Q4_K_M, Q5_K_M and Q6_K must equal Loft's
     `--quant q4_k_m|q5_k_m|q6_k` exports tensor for tensor: the same type and
     the same bytes. llama.cpp then loads Loft's Q4_K_M file and continues the
     prompt; its greedy tokens are compared with Loft's on the same file.
     --write-fixture records llama.cpp's tensor types per file type in
     Tests/LoftModelsTests/Fixtures/llamacpp_quant_types.json.
Exit status 0 when every comparison agrees.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import ctypes

import llama_cpp
from gguf import GGUFReader
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


FTYPES = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}  # llama_ftype


def llama_quantize(src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed ({rc})")


def tensors(path):
    r = GGUFReader(path)
    ft = r.fields["general.file_type"]
    return int(ft.parts[ft.data[0]][0]), {t.name: (t.tensor_type.name, [int(x) for x in t.shape], bytes(t.data.tobytes())) for t in r.tensors}


def check_kquants(args, tmp):
    ok = True
    f32 = os.path.join(tmp, "model-f32.gguf")
    loft(args, "export", "gguf", args.model, "--quant", "f32", "--out", f32)
    fixture = {}
    for name, ftype in FTYPES.items():
        ref, ours = os.path.join(tmp, f"llamacpp-{name}.gguf"), os.path.join(tmp, f"loft-{name}.gguf")
        llama_quantize(f32, ref, ftype)
        loft(args, "export", "gguf", args.model, "--quant", name, "--out", ours)
        (rft, rt), (oft, ot) = tensors(ref), tensors(ours)
        same_types = {k: v[0] for k, v in rt.items()} == {k: v[0] for k, v in ot.items()}
        same_bytes = [k for k in rt if k in ot and rt[k][2] == ot[k][2]]
        counts = {}
        for v in rt.values():
            counts[v[0]] = counts.get(v[0], 0) + 1
        print(f"{name}: llama.cpp's types {dict(sorted(counts.items()))}; file_type {rft} vs loft {oft}; "
              f"types {'equal' if same_types else 'DIFFERENT'}; {len(same_bytes)}/{len(rt)} tensors byte-identical")
        for k in rt:
            if k not in ot or rt[k][0] != ot[k][0] or rt[k][2] != ot[k][2]:
                print(f"   {k}: llama.cpp {rt[k][0]}, loft {ot.get(k, ('missing',))[0]}")
                break
        ok &= same_types and len(same_bytes) == len(rt) and rft == oft
        fixture[name] = {k: {"type": v[0], "shape": v[1]} for k, v in rt.items()}
        if name == "q4_k_m":
            want, got = loft_greedy(args, ours), llama_greedy(ours)
            print("q4_k_m loft      ", want)
            print("q4_k_m llama.cpp ", got, "OK" if want == got else "DIFFERENT")
            print("q4_k_m text (llama.cpp):", repr(Llama(model_path=ours, n_ctx=256, n_threads=2, verbose=False)
                                               .detokenize(got).decode("utf-8", "replace")))
            ok &= want == got
    if args.write_fixture:
        path = os.path.join(REPO, "Tests/LoftModelsTests/Fixtures/llamacpp_quant_types.json")
        with open(path, "w") as f:
            json.dump({"source": f"llama_model_quantize of llama-cpp-python {llama_cpp.__version__} on Loft's f32 export of "
                                 f"{os.path.basename(args.model)}", "files": fixture}, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote", path)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loft", default=os.path.join(REPO, ".build/debug/loft"))
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--adapter", default=os.path.join(REPO, "Tests/LoftTrainingTests/Fixtures/smollm2/initial_adapter"))
    ap.add_argument("--alpha", type=float, default=64, help="lora_alpha for the check (the fixture adapter barely changes tokens at its own)")
    ap.add_argument("--write-fixture", action="store_true", help="record llama.cpp's tensor types for the Swift tests")
    ap.add_argument("--only-kquants", action="store_true")
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ok &= check_kquants(args, tmp)
        if args.only_kquants:
            print("all agree" if ok else "MISMATCH")
            sys.exit(0 if ok else 1)
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
