#!/usr/bin/env python3
"""Peer side of Loft's benchmark: transformers/PyTorch on CPU with the same GGUF.

    /opt/refvenv/bin/python bench/hf_bench.py [--model PATH] [--quick] [--no-bf16] [--threads N]
        [--only gemm,prefill,generate,train] [--train-steps 3] [--train-batch 4]
        [--train-seq 512] [--train-dtypes float32,bfloat16] [--gradient-checkpointing]

bench/run.sh runs this next to `loft bench` and writes the side-by-side table.

Prints one JSON object on stdout (progress goes to stderr). Measures:
  * prefill (one forward, use_cache=False, logits for all positions) tokens/s
    for batch 1 x 128 and 4 x 128 tokens: median of several runs after a warmup;
  * greedy generation tokens/s: model.generate(do_sample=False, KV cache) of
    64 new tokens after a 16-token prompt (the time includes the 16-token
    prefill; tokens/s = 64 / median wall time);
  * torch sgemm GFLOP/s for a 1024x1024x1024 float32 matmul;
  * LoRA training, the same step as `loft bench`'s train_lora_r16_all_linear:
    transformers + PEFT, LoRA r=16, alpha=32, dropout 0 on q,k,v,o,gate,up,down,
    a micro-batch of 4 x 512 random token ids (100..9999, labels = ids), AdamW
    lr 1e-4 (weight decay 0), grad-norm clip 1.0; forward+backward+clip+step timed
    for --train-steps steps after one warmup step; median step seconds and
    tokens/s. Each dtype (float32; bfloat16 = the model loaded with
    dtype=torch.bfloat16, LoRA weights as PEFT makes them, which it upcasts to
    float32 by default) trains in a fresh subprocess, so its peak RSS is the
    training's own. --gradient-checkpointing uses
    model.gradient_checkpointing_enable() + enable_input_require_grads();
  * torch threads, peak RSS (getrusage ru_maxrss), load average before/after.
On a shared, oversubscribed machine (load average above the core count) torch's
OpenMP threads can stall badly on small ops (decode steps): compare --threads 1
with the default there, and read the load averages before trusting the numbers.
Older transformers dequantize the GGUF to dense float32 (then cast to bfloat16
for the bf16 pass), so this measures dense PyTorch kernels; transformers builds
that keep GGUF blocks packed (with the `kernels` package) compute differently,
so the output records what a q_proj became ("base_linear").
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

DEFAULT_MODEL = os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def timed(fn, reps, warmup=1, warm_fn=None):
    for _ in range(warmup):
        (warm_fn or fn)()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


def sgemm_gflops(reps):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 1024, generator=g)
    b = torch.randn(1024, 1024, generator=g)
    c = torch.empty(1024, 1024)
    med, ts = timed(lambda: torch.mm(a, b, out=c), reps, warmup=2)
    return 2 * 1024 ** 3 / med / 1e9, ts


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def bench_model(model, vocab, reps, gen_reps, label, parts):
    g = torch.Generator().manual_seed(1)
    res = {}
    with torch.inference_mode():
        for batch in ((1, 4) if "prefill" in parts else ()):
            ids = torch.randint(100, vocab, (batch, 128), generator=g)
            r = reps if batch == 1 else max(1, reps // 2)
            med, ts = timed(lambda: model(input_ids=ids, use_cache=False), r)
            res[f"prefill_{batch}x128"] = {
                "tokens_per_s": round(batch * 128 / med, 2), "median_s": round(med, 4),
                "runs_s": [round(t, 4) for t in ts]}
            log(f"[{label}] prefill {batch}x128: {batch * 128 / med:.1f} tok/s (median {med:.3f}s of {r})")
        if "generate" not in parts:
            return res
        prompt = torch.randint(100, vocab, (1, 16), generator=g)
        mask = torch.ones_like(prompt)

        def gen(n=64):
            out = model.generate(input_ids=prompt, attention_mask=mask, do_sample=False, num_beams=1,
                                 max_new_tokens=n, min_new_tokens=n, use_cache=True, pad_token_id=0)
            assert out.shape[1] == 16 + n

        med, ts = timed(gen, gen_reps, warm_fn=lambda: gen(4))
        res["generate_16+64"] = {"tokens_per_s": round(64 / med, 2), "median_s": round(med, 4),
                                 "runs_s": [round(t, 4) for t in ts]}
        log(f"[{label}] generate 64 after 16: {64 / med:.1f} tok/s (median {med:.3f}s of {gen_reps})")
    return res


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_model(path, dtype, attn):
    from transformers import AutoModelForCausalLM
    if path.endswith(".gguf"):
        d, name = os.path.split(os.path.abspath(path))
        return AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=dtype, attn_implementation=attn)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)


def linear_kind(model):
    """What a q_proj is after loading: nn.Linear (dequantized) or a packed-GGUF module."""
    for name, mod in model.named_modules():
        if name.endswith("q_proj") or name.endswith("q_proj.base_layer"):
            if not hasattr(mod, "lora_A"):
                w = getattr(mod, "weight", None)
                return f"{type(mod).__name__}({w.dtype if w is not None else '?'})".replace("torch.", "")
    return "?"


def train_worker(a):
    """Runs in its own process: one LoRA training measurement, JSON on stdout."""
    from peft import LoraConfig, get_peft_model
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.train_worker]
    t0 = time.perf_counter()
    model = load_model(a.model, dtype, a.attn)
    load_s = time.perf_counter() - t0
    model.config.use_cache = False
    if a.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                     bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(100, 10000, (a.train_batch, a.train_seq), generator=g)

    losses = []

    def step():
        out = model(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())

    med, ts = timed(step, a.train_steps, warmup=1)
    tokens = a.train_batch * a.train_seq
    res = {
        "dtype": a.train_worker, "batch": a.train_batch, "seq": a.train_seq,
        "gradient_checkpointing": a.gradient_checkpointing, "steps": a.train_steps,
        "tokens_per_s": round(tokens / med, 2), "median_step_s": round(med, 4),
        "steps_s": [round(t, 4) for t in ts], "losses": [round(x, 4) for x in losses],
        "trainable_params": sum(p.numel() for p in params),
        "lora_weight_dtype": str(params[0].dtype).replace("torch.", ""),
        "base_linear": linear_kind(model),
        "torch_threads": torch.get_num_threads(), "load_s": round(load_s, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(res))


def bench_train(a, dtype):
    """Starts train_worker in a fresh interpreter so its peak RSS is training's alone."""
    cmd = [sys.executable, os.path.abspath(__file__), "--train-worker", dtype, "--model", a.model,
           "--attn", a.attn, "--train-steps", str(a.train_steps), "--train-batch", str(a.train_batch),
           "--train-seq", str(a.train_seq), "--threads", str(a.threads)]
    if a.gradient_checkpointing:
        cmd.append("--gradient-checkpointing")
    log(f"[train {dtype}] {a.train_batch}x{a.train_seq}, {a.train_steps} timed steps after 1 warmup"
        + (", gradient checkpointing" if a.gradient_checkpointing else ""))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        return {"error": f"training subprocess exited with {p.returncode}"}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    log(f"[train {dtype}] {res['tokens_per_s']:.1f} tok/s (median step {res['median_step_s']:.2f}s), "
        f"peak RSS {res['peak_rss_mib']:.0f} MiB")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL, help="path to a .gguf file (or an HF model dir)")
    ap.add_argument("--quick", action="store_true", help="fewer inference repetitions, no bf16 inference pass (training: see --train-*)")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--only", default="gemm,prefill,generate,train",
                    help="parts to run, comma-separated: gemm, prefill, generate, train")
    ap.add_argument("--attn", default="eager", help="attn_implementation (eager, sdpa)")
    ap.add_argument("--train-steps", type=int, default=3, help="timed training steps (after 1 warmup)")
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--train-seq", type=int, default=512)
    ap.add_argument("--train-dtypes", default="float32,bfloat16",
                    help="dtypes to train in, comma-separated (--no-bf16 drops bfloat16)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--train-worker", choices=["float32", "bfloat16"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.train_worker:
        return train_worker(a)
    parts = {p.strip() for p in a.only.split(",") if p.strip()}
    unknown = parts - {"gemm", "prefill", "generate", "train"}
    if unknown:
        ap.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")

    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    reps, gen_reps, gemm_reps = (2, 1, 5) if a.quick else (4, 2, 20)

    import transformers

    out = {
        "impl": "transformers",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": os.path.basename(a.model),
        "cpu": cpu_name(),
        "os_cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "quick": a.quick,
        "only": sorted(parts),
        "attn_implementation": a.attn,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }

    if "gemm" in parts:
        gf, ts = sgemm_gflops(gemm_reps)
        out["sgemm_1024_gflops"] = round(gf, 2)
        log(f"sgemm 1024^3: {gf:.1f} GFLOP/s")

    if parts & {"prefill", "generate"}:
        t0 = time.perf_counter()
        model = load_model(a.model, torch.float32, a.attn)
        model.eval()
        out["load_s"] = round(time.perf_counter() - t0, 2)
        vocab = model.config.vocab_size
        out["params"] = sum(p.numel() for p in model.parameters())
        out["base_linear"] = linear_kind(model)
        log(f"loaded in {out['load_s']}s, {out['params']} params")

        out["float32"] = bench_model(model, vocab, reps, gen_reps, "float32", parts)

        if not (a.quick or a.no_bf16):
            try:
                model = model.to(torch.bfloat16)
                # probe: skip bf16 if a single 1x128 forward is too slow for the time budget
                ids = torch.randint(100, vocab, (1, 128), generator=torch.Generator().manual_seed(2))
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    model(input_ids=ids, use_cache=False)
                    probe = time.perf_counter() - t0
                if probe > 5.0:
                    out["bfloat16"] = {"skipped": f"1x128 forward took {probe:.1f}s"}
                else:
                    out["bfloat16"] = bench_model(model, vocab, 2, 1, "bfloat16", parts)
            except Exception as e:  # bf16 not supported by this build/CPU
                out["bfloat16"] = {"error": f"{type(e).__name__}: {e}"}
        del model
    # peak RSS of this (inference) process; training reports its own subprocess's
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    if "train" in parts:
        dtypes = [d.strip() for d in a.train_dtypes.split(",") if d.strip()]
        if a.no_bf16:
            dtypes = [d for d in dtypes if d != "bfloat16"]
        import peft
        out["peft"] = peft.__version__
        key = "train_lora_r16_all_linear"
        out[key] = {d: bench_train(a, d) for d in dtypes}

    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
