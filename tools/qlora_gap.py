#!/usr/bin/env python3
"""The reference stack's QLoRA gap on the quickstart: transformers + PEFT LoRA on
the bf16 base against transformers + PEFT + bitsandbytes QLoRA (NF4, double-quantized
absmax, as bnb.nn.Linear4bit computes it) on the same batches, with the quickstart's hyperparameters.

Loft's own numbers for the same comparison come from `loft train` on
examples/quickstart.yaml and examples/quickstart-qlora.yaml with --set max_steps=50
(BENCHMARKS.md, "QLoRA loss"). This script answers whether a gap there is Loft's
or NF4's: if PyTorch + bitsandbytes shows the same gap, it is the quantization.

    /opt/refvenv/bin/python tools/qlora_gap.py [--steps 50] [--gguf PATH] [--json OUT]

Needs torch, transformers, peft, gguf and bitsandbytes (>= 0.48 runs NF4 on the CPU).
The data are rebuilt here (chat template, assistant-only labels, best-fit packing of
2x256 tokens, each sequence run on its own as Loft's packing isolates them), so the
batches are the same for both PyTorch runs but not token-for-token Loft's.
"""
import argparse
import json
import os
import random
import resource
import time

import torch
import bitsandbytes as bnb
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def examples(tok):
    rows = json.load(open(os.path.join(REPO, "examples/identity.json")))
    out = []
    for r in rows:
        answer = r["output"].replace("{{name}}", "Loft Assistant").replace("{{author}}", "the Loft project")
        user = r["instruction"] + ("\n" + r["input"] if r["input"] else "")
        prompt = tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                         tokenize=False)
        full = tok.apply_chat_template([{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                                       tokenize=False)
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        f = tok(full, add_special_tokens=False)["input_ids"][:256]
        out.append((f, [-100] * len(p) + f[len(p):]))
    return out


def micro_batches(data, capacity, seed, epoch):
    """Best-fit decreasing bins of sequences, in a seeded order per epoch."""
    order = sorted(range(len(data)), key=lambda i: -len(data[i][0]))
    bins = []
    for i in order:
        n = len(data[i][0])
        best = None
        for b in bins:
            if b[0] + n <= capacity and (best is None or b[0] > best[0]):
                best = b
        if best is None:
            bins.append([n, [i]])
        else:
            best[0] += n
            best[1].append(i)
    rng = random.Random(seed * 1000 + epoch)
    rng.shuffle(bins)
    return [b[1] for b in bins]


def to_4bit(model, double_quant):
    """Replace every target nn.Linear with bitsandbytes' Linear4bit (NF4, blocksize 64),
    as from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit=True)) does."""
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if child_name in TARGETS and isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.float32, compress_statistics=double_quant,
                                      quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.contiguous(), requires_grad=False,
                                             compress_statistics=double_quant, quant_type="nf4")
                q.weight = q.weight._quantize("cpu") if hasattr(q.weight, "_quantize") else q.weight.to("cpu")
                assert q.weight.dtype == torch.uint8 and q.weight.quant_state is not None, "not quantized"
                setattr(mod, child_name, q)
    return model


def to_4bit_dequantized(model, double_quant):
    """The same base as to_4bit, held as dequantize_4bit(quantize_4bit(W)) in plain
    nn.Linear: Linear4bit's forward with compute_dtype float32 is x @ that, and its
    backward the same; bitsandbytes' CPU Linear4bit is ~10x slower on 2 cores."""
    import bitsandbytes.functional as F
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.split(".")[-1] in TARGETS and isinstance(mod, torch.nn.Linear):
                w = mod.weight.detach().float().contiguous()
                q, s = F.quantize_4bit(w, blocksize=64, compress_statistics=double_quant, quant_type="nf4")
                mod.weight.copy_(F.dequantize_4bit(q, s))
    return model


def run(kind, gguf, data, steps, seed, linear4bit=False):
    gdir, gname = os.path.split(os.path.abspath(gguf))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
    with torch.no_grad():  # the bf16 base: every weight rounded to bf16, computed in fp32 as Loft's CPU does
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
    if kind == "qlora":
        (to_4bit if linear4bit else to_4bit_dequantized)(model, double_quant=True)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8)
    sched = get_cosine_schedule_with_warmup(opt, 5, steps)
    losses, epoch, plan, cursor, tokens = [], 0, micro_batches(data, 512, seed, 0), 0, 0
    started = time.time()
    for step in range(steps):
        if cursor >= len(plan):
            epoch, cursor = epoch + 1, 0
            plan = micro_batches(data, 512, seed, epoch)
        batch = [data[i] for i in plan[cursor]]
        cursor += 1
        targets = sum(sum(1 for x in lab[1:] if x != -100) for _, lab in batch)
        total = 0.0
        for ids, lab in batch:
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor(lab[1:]), ignore_index=-100,
                                                     reduction="sum") / targets
            loss.backward()
            total += loss.item()
            tokens += len(ids)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(total)
        print(f"{kind} step {step + 1} loss {total:.4f}", flush=True)
    return {"losses": losses, "tokens_per_s": tokens / (time.time() - started),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--gguf", default=os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--only", choices=["lora", "qlora"])
    ap.add_argument("--json")
    ap.add_argument("--linear4bit", action="store_true",
                    help="run the QLoRA base as bnb.nn.Linear4bit (slow on CPU) instead of its dequantized weights")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    gdir, gname = os.path.split(os.path.abspath(a.gguf))
    data = examples(AutoTokenizer.from_pretrained(gdir, gguf_file=gname))
    result = {"steps": a.steps, "versions": {m.__name__: m.__version__ for m in (torch, bnb)}}
    for kind in ["lora", "qlora"]:
        if a.only in (None, kind):
            result[kind] = run(kind, a.gguf, data, a.steps, 42, a.linear4bit)
    for kind in ["lora", "qlora"]:
        if kind in result:
            ls = result[kind]["losses"]
            result[kind]["last10_mean"] = sum(ls[-10:]) / len(ls[-10:])
            print(f"{kind}: mean of the last 10 losses {result[kind]['last10_mean']:.4f}, first {ls[0]:.4f}")
    if "lora" in result and "qlora" in result:
        gap = result["qlora"]["last10_mean"] / result["lora"]["last10_mean"] - 1
        result["gap"] = gap
        print(f"QLoRA above bf16 LoRA: {100 * gap:+.1f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
