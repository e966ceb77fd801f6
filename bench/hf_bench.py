#!/usr/bin/env python3
"""Peer side of Loft's benchmark: transformers/PyTorch on CPU with the same GGUF.

    /opt/refvenv/bin/python bench/hf_bench.py [--model PATH] [--quick] [--no-bf16] [--threads N]

Prints one JSON object on stdout (progress goes to stderr). Measures:
  * prefill (one forward, use_cache=False, logits for all positions) tokens/s
    for batch 1 x 128 and 4 x 128 tokens: median of several runs after a warmup;
  * greedy generation tokens/s: model.generate(do_sample=False, KV cache) of
    64 new tokens after a 16-token prompt (the time includes the 16-token
    prefill; tokens/s = 64 / median wall time);
  * torch sgemm GFLOP/s for a 1024x1024x1024 float32 matmul;
  * torch threads, peak RSS (getrusage ru_maxrss), load average before/after.
On a shared, oversubscribed machine (load average above the core count) torch's
OpenMP threads can stall badly on small ops (decode steps): compare --threads 1
with the default there, and read the load averages before trusting the numbers.
The GGUF is dequantized by transformers to float32 (then cast to bfloat16 for
the bf16 pass), so this measures dense PyTorch kernels, not quantized ones.
"""
import argparse
import json
import os
import platform
import resource
import statistics
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


def bench_model(model, vocab, reps, gen_reps, label):
    g = torch.Generator().manual_seed(1)
    res = {}
    with torch.inference_mode():
        for batch in (1, 4):
            ids = torch.randint(100, vocab, (batch, 128), generator=g)
            r = reps if batch == 1 else max(1, reps // 2)
            med, ts = timed(lambda: model(input_ids=ids, use_cache=False), r)
            res[f"prefill_{batch}x128"] = {
                "tokens_per_s": round(batch * 128 / med, 2), "median_s": round(med, 4),
                "runs_s": [round(t, 4) for t in ts]}
            log(f"[{label}] prefill {batch}x128: {batch * 128 / med:.1f} tok/s (median {med:.3f}s of {r})")
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL, help="path to a .gguf file (or an HF model dir)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, no bf16")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    a = ap.parse_args()

    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    reps, gen_reps, gemm_reps = (2, 1, 5) if a.quick else (4, 2, 20)

    from transformers import AutoModelForCausalLM
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
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }

    gf, ts = sgemm_gflops(gemm_reps)
    out["sgemm_1024_gflops"] = round(gf, 2)
    log(f"sgemm 1024^3: {gf:.1f} GFLOP/s")

    t0 = time.perf_counter()
    if a.model.endswith(".gguf"):
        d, name = os.path.split(os.path.abspath(a.model))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                     attn_implementation="eager")
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    out["load_s"] = round(time.perf_counter() - t0, 2)
    out["attn_implementation"] = "eager"
    vocab = model.config.vocab_size
    out["params"] = sum(p.numel() for p in model.parameters())
    log(f"loaded in {out['load_s']}s, {out['params']} params")

    out["float32"] = bench_model(model, vocab, reps, gen_reps, "float32")

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
                out["bfloat16"] = bench_model(model, vocab, 2, 1, "bfloat16")
        except Exception as e:  # bf16 not supported by this build/CPU
            out["bfloat16"] = {"error": f"{type(e).__name__}: {e}"}

    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
