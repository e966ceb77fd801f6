#!/usr/bin/env python3
"""Joins one `loft bench --json` result and one bench/hf_bench.py result into
bench/results/<stamp>.json and a markdown table (Loft vs transformers+PEFT).

    python3 bench/report.py --loft loft.json --hf hf.json --meta meta.json \
        --tokenizer tok.txt --out-json X.json --out-md X.md

Standard library only. Called by bench/run.sh, which gathers meta.json (machine,
versions, command, load averages). Missing parts (--only) show as "—".
"""
import argparse
import json
import re
import sys


def load(path):
    if not path:
        return None
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, json.JSONDecodeError) as e:
        print(f"warning: could not read {path}: {e}", file=sys.stderr)
        return None


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fmt(x, digits=1):
    return "—" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def tokenizer_rows(text):
    """MB/s lines of tools/bench_tokenizer.sh: best of the runs per side."""
    if not text:
        return None
    loft, hf, side = [], [], None
    for line in text.splitlines():
        if line.startswith("== loft"):
            side = loft
        elif line.startswith("== HF"):
            side = hf
        elif side is not None:
            m = re.search(r"MB/s\s*[:=]?\s*([0-9.]+)", line) or re.search(r"([0-9.]+)\s*MB/s", line)
            if m and not line.lstrip().startswith("docs"):
                side.append(float(m.group(1)))
    return {"loft_mb_s": max(loft) if loft else None, "hf_mb_s": max(hf) if hf else None, "raw": text}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loft")
    ap.add_argument("--hf")
    ap.add_argument("--loft-bf16", help="loft bench --only train --precision bf16 output")
    ap.add_argument("--meta", required=True)
    ap.add_argument("--tokenizer")
    ap.add_argument("--out-json", required=True)
    ap.add_argument("--out-md", required=True)
    a = ap.parse_args()

    meta = load(a.meta) or {}
    loft, hf = load(a.loft), load(a.hf)
    loft_bf16 = load(a.loft_bf16) if a.loft_bf16 else None
    tok = None
    if a.tokenizer:
        try:
            tok = tokenizer_rows(open(a.tokenizer).read())
        except OSError:
            pass
    result = {"meta": meta, "loft": loft, "loft_bf16": loft_bf16, "transformers": hf, "tokenizer": tok}
    with open(a.out_json, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    hf_train = get(hf, "train_lora_r16_all_linear") or {}
    lb_train = get(loft_bf16, "train_lora_r16_all_linear") or {}
    # (name, Loft fp32, Loft bf16, HF fp32, HF bf16)
    rows = [
        ("sgemm 1024³ fp32 (GFLOP/s)", get(loft, "sgemm_1024_gflops"), None, get(hf, "sgemm_1024_gflops"), None),
        ("prefill 1×128 (tok/s)", get(loft, "prefill", "1x128", "tokens_per_s"), None,
         get(hf, "float32", "prefill_1x128", "tokens_per_s"), get(hf, "bfloat16", "prefill_1x128", "tokens_per_s")),
        ("prefill 4×128 (tok/s)", get(loft, "prefill", "4x128", "tokens_per_s"), None,
         get(hf, "float32", "prefill_4x128", "tokens_per_s"), get(hf, "bfloat16", "prefill_4x128", "tokens_per_s")),
        ("generate 64 after 16, greedy (tok/s)", get(loft, "generate_16+64", "tokens_per_s"), None,
         get(hf, "float32", "generate_16+64", "tokens_per_s"), get(hf, "bfloat16", "generate_16+64", "tokens_per_s")),
        ("LoRA r16 train step (tok/s)", get(loft, "train_lora_r16_all_linear", "tokens_per_s"), get(lb_train, "tokens_per_s"),
         get(hf_train, "float32", "tokens_per_s"), get(hf_train, "bfloat16", "tokens_per_s")),
        ("LoRA r16 median step (s)", get(loft, "train_lora_r16_all_linear", "median_step_s"), get(lb_train, "median_step_s"),
         get(hf_train, "float32", "median_step_s"), get(hf_train, "bfloat16", "median_step_s")),
        ("peak RSS, inference process (MiB)", get(loft, "peak_rss_mib") if not get(loft, "train_lora_r16_all_linear") else None,
         None, get(hf, "peak_rss_mib") if get(hf, "load_s") is not None else None, None),
        ("peak RSS, training process (MiB)", get(loft, "peak_rss_mib") if get(loft, "train_lora_r16_all_linear") else None,
         get(loft_bf16, "peak_rss_mib") if lb_train else None,
         get(hf_train, "float32", "peak_rss_mib"), get(hf_train, "bfloat16", "peak_rss_mib")),
        ("model load (s)", get(loft, "load_s"), None, get(hf, "load_s"), None),
    ]
    if tok:
        rows.append(("tokenizer encode, 1 core (MB/s)", tok["loft_mb_s"], None, tok["hf_mb_s"], None))

    m = meta
    lines = [f"# Loft vs transformers+PEFT — {m.get('date', '?')} on {m.get('host', '?')}", ""]
    for warn in m.get("load_warnings") or []:
        lines += [f"> **Warning:** {warn}", ""]
    lines += [
        "| measurement | Loft fp32 | Loft bf16 | transformers fp32 | transformers bf16 | best Loft / best HF |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, l, lb, h, hb in rows:
        lower_is_better = "(s)" in name or "MiB" in name
        pick = min if lower_is_better else max
        best_l = pick([x for x in (l, lb) if x is not None], default=None)
        best_h = pick([x for x in (h, hb) if x is not None], default=None)
        r = ratio(best_h, best_l) if lower_is_better else ratio(best_l, best_h)
        digits = 2 if "(s)" in name else 1
        lines.append(f"| {name} | {fmt(l, digits)} | {fmt(lb, digits)} | {fmt(h, digits)} | {fmt(hb, digits)} | {r} |")
    train = m.get("train") or {}
    lines += ["", "Ratios are Loft's advantage, its better configuration against transformers' better one "
              "(>1× = Loft faster or smaller)."]
    if "train" in (m.get("only") or ""):
        lines[-1] += (
            " Training: LoRA r=16, alpha=32, dropout 0 on q,k,v,o,gate,up,down; micro-batch "
            f"{train.get('batch', '?')}×{train.get('seq', '?')} random ids (labels = ids); AdamW lr 1e-4, "
            f"clip 1.0; median of {train.get('steps', '?')} timed step(s) after one warmup step"
            + ("; gradient checkpointing" if train.get("gradient_checkpointing") else "") + ". "
            "HF training runs in its own subprocess per dtype (its own peak RSS); HF bf16 = model loaded with "
            "dtype=bfloat16, LoRA weights as PEFT makes them "
            f"({get(hf_train, 'bfloat16', 'lora_weight_dtype') or '—'}).")
    lines += [
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m.get('cpu_model', '?')} — {m.get('cores', '?')} cores online "
        f"({m.get('sockets', '?')} socket(s), {m.get('threads_per_core', '?')} thread(s)/core), "
        f"memory {m.get('mem_total', '?')}",
        f"- threads used: {m.get('threads', '?')} (OPENBLAS_NUM_THREADS/OMP_NUM_THREADS; torch set_num_threads "
        f"→ {get(hf, 'torch_threads') or '?'}"
        + (f"; both run under `{m['pinned_with']}`" if m.get("pinned_with") else "") + ")",
        f"- load average (1, 5, 15 min): before {m.get('loadavg_before', '?')}, after {m.get('loadavg_after', '?')}",
        f"- OS: {m.get('os', '?')}; Swift: {m.get('swift', '?')}",
        f"- Loft: commit {m.get('git_commit', '?')}{' (dirty tree)' if m.get('git_dirty') else ''}",
        f"- Python {m.get('python', '?')}: torch {m.get('torch', '?')}, transformers {m.get('transformers', '?')}, "
        f"peft {m.get('peft', '?')}, gguf {m.get('gguf', '?')}, accelerate {m.get('accelerate', '?')}",
        f"- transformers base linear layer: inference {get(hf, 'base_linear') or '—'}, "
        f"training {get(hf_train, 'float32', 'base_linear') or '—'}; attention {get(hf, 'attn_implementation') or '?'}",
        f"- Loft's GEMMs: fp32 on OpenBLAS sgemm split over Loft's threads; bf16: {get(loft_bf16, 'bf16_gemm') or get(loft, 'bf16_gemm') or '—'} "
        f"(CPU as Loft keys it: {get(loft, 'cpu') or '?'})",
        f"- model: {m.get('model', '?')}",
        f"- command: `{m.get('command', '?')}`",
        "",
    ]
    md = "\n".join(lines)
    with open(a.out_md, "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
