#!/usr/bin/env python3
"""An OpenAI-API load generator for comparing servers (`loft serve`, llama.cpp's
llama-server) on the same prompts: streamed chat completions, greedy, measuring
time to first token and tokens/s. Standard library only.

    bench/serve_bench.py --url http://127.0.0.1:8000 --concurrency 1,4,16 \
        [--model NAME[,NAME...]] [--requests-per-stream 2] [--max-tokens 128] \
        [--api-key KEY] [--lora-ids 0,1,...] [--label TEXT] [--json OUT]

- Every stream sends the same prompt list (PROMPTS, in order, starting at a
  different offset per stream) with temperature 0 and max_tokens; requests of
  one stream run back to back, streams run concurrently.
- `--model a,b,c` spreads requests over several models (adapters) round-robin
  by stream: stream i uses model i mod len. `--lora-ids 0,1,2` does the same
  for llama-server's per-request `lora` field ([{"id": i, "scale": 1}]; the
  other loaded adapters get scale 0).
- Tokens are counted from the final usage chunk (stream_options.include_usage)
  when the server sends one, else as content chunks.
- Per request: TTFT = first content chunk - request sent; decode tokens/s =
  (tokens - 1) / (last chunk - first chunk). Per level: aggregate tokens/s =
  all completion tokens / wall time of the level (first request sent to last
  chunk received).
Prints one line per concurrency level and, with --json, writes every number.
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator works, step by step, for a curious ten-year-old.",
    "List ten ideas for a rainy weekend with friends, with one sentence about each.",
    "Describe the water cycle and why it matters for farming.",
    "Write a polite email asking a landlord to fix a broken heater.",
    "What are the pros and cons of learning to play the piano as an adult?",
    "Summarize the plot of a heist movie you would like to see, scene by scene.",
    "Give a beginner's guide to planting tomatoes on a balcony.",
]


def stream_one(url, model, prompt, max_tokens, api_key, lora):
    """One streamed chat completion; returns (t_sent, t_first, t_last, tokens, text)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if lora is not None:
        body["lora"] = lora
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    t_sent = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{url} answered {resp.status}: {resp.read()[:500]!r}")
    t_first = t_last = None
    chunks = 0
    usage_tokens = None
    text = []
    buf = b""
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            break
        event = json.loads(payload)
        usage = event.get("usage")
        if usage and usage.get("completion_tokens") is not None:
            usage_tokens = usage["completion_tokens"]
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                now = time.perf_counter()
                if t_first is None:
                    t_first = now
                t_last = now
                chunks += 1
                text.append(content)
    conn.close()
    del buf
    tokens = usage_tokens if usage_tokens is not None else chunks
    return t_sent, t_first, t_last, tokens, "".join(text)


def served_models(url, api_key):
    """The ids /v1/models lists, in order."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
    conn.request("GET", "/v1/models", headers={"Authorization": "Bearer " + api_key} if api_key else {})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return [m["id"] for m in body.get("data", [])]


def report(path):
    """A markdown table of a results file (one JSON line per server, configuration and round):
    each cell is the median over the rounds of that configuration, with the rounds' range when
    there are several."""
    runs = [json.loads(l) for l in open(path) if l.strip()]
    levels = sorted({lv["concurrency"] for r in runs for lv in r["levels"]})
    labels = list(dict.fromkeys(r["label"] for r in runs))
    rounds = max(sum(1 for r in runs if r["label"] == label) for label in labels)
    head = "| server, configuration | decode tok/s (1 stream) | TTFT ms (1 stream) | " + " | ".join(
        f"aggregate tok/s, {c} streams" for c in levels) + " |"
    print(head)
    print("|" + "---|" * (3 + len(levels)))

    def cell(values, fmt):
        values = [v for v in values if v is not None]
        if not values:
            return ""
        text = fmt.format(statistics.median(values))
        if len(values) > 1:
            text += " (" + fmt.format(min(values)) + "–" + fmt.format(max(values)) + ")"
        return text

    for label in labels:
        mine = [{lv["concurrency"]: lv for lv in r["levels"]} for r in runs if r["label"] == label]
        dec = cell([by.get(1, {}).get("decode_tokens_per_s_median") for by in mine], "{:.1f}")
        ttft = cell([by[1]["ttft_s_median"] * 1000 if by.get(1, {}).get("ttft_s_median") is not None else None
                     for by in mine], "{:.0f}")
        cells = []
        for c in levels:
            agg = cell([by[c]["aggregate_tokens_per_s"] for by in mine if c in by], "{:.1f}")
            if any(by[c]["errors"] for by in mine if c in by):
                agg += " (errors)"
            cells.append(agg)
        print(f"| {label} | {dec} | {ttft} | " + " | ".join(cells) + " |")
    if rounds > 1:
        print(f"\nEach cell: the median over {rounds} rounds (min–max in brackets).")


def run_level(args, concurrency, models, loras):
    results = []
    errors = []
    lock = threading.Lock()

    def stream(i):
        model = models[i % len(models)]
        lora = loras[i % len(loras)] if loras else None
        for r in range(args.requests_per_stream):
            prompt = PROMPTS[(i + r) % len(PROMPTS)]
            try:
                res = stream_one(args.url, model, prompt, args.max_tokens, args.api_key, lora)
            except Exception as e:  # reported, never hidden
                with lock:
                    errors.append(f"stream {i} request {r}: {e}")
                return
            with lock:
                results.append((i, model) + res)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r[3] is not None]
    t_end = max((r[4] for r in done), default=time.perf_counter())
    wall = t_end - t0
    tokens = sum(r[5] for r in results)
    ttfts = [r[3] - r[2] for r in done]
    decode = [(r[5] - 1) / (r[4] - r[3]) for r in done if r[5] > 1 and r[4] > r[3]]
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "errors": errors,
        "completion_tokens": tokens,
        "wall_s": wall,
        "aggregate_tokens_per_s": tokens / wall if wall > 0 else 0,
        "ttft_s_median": statistics.median(ttfts) if ttfts else None,
        "ttft_s_all": ttfts,
        "decode_tokens_per_s_median": statistics.median(decode) if decode else None,
        "texts": [r[6][:200] for r in results[:4]],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url")
    p.add_argument("--report", default=None, help="print the markdown table of a --json results file and exit")
    p.add_argument("--model", default="auto", help="model name(s), comma-separated, spread over streams (auto: the first /v1/models lists)")
    p.add_argument("--lora-ids", default=None, help="llama-server adapter ids spread over streams (per-request lora field)")
    p.add_argument("--lora-count", type=int, default=0, help="adapters llama-server has loaded (the others get scale 0)")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--requests-per-stream", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--api-key", default=None)
    p.add_argument("--label", default="")
    p.add_argument("--warmup", type=int, default=1, help="requests sent (and not measured) before the first level")
    p.add_argument("--json", default=None, help="append the results as one JSON line to this file")
    args = p.parse_args()
    if args.report:
        report(args.report)
        return
    if not args.url:
        p.error("--url is needed")
    models = served_models(args.url, args.api_key)[:1] if args.model == "auto" else args.model.split(",")
    loras = None
    if args.lora_ids is not None:
        ids = [int(i) for i in args.lora_ids.split(",")]
        count = max(args.lora_count, max(ids) + 1)
        loras = [[{"id": j, "scale": 1.0 if j == i else 0.0} for j in range(count)] for i in ids]
    for w in range(args.warmup):
        stream_one(args.url, models[0], PROMPTS[w % len(PROMPTS)], 16, args.api_key, loras[0] if loras else None)
    levels = []
    for c in [int(c) for c in args.concurrency.split(",")]:
        level = run_level(args, c, models, loras)
        level["label"] = args.label
        levels.append(level)
        ttft = level["ttft_s_median"]
        dec = level["decode_tokens_per_s_median"]
        print(f"{args.label:28s} streams {c:3d}: {level['aggregate_tokens_per_s']:7.1f} tok/s aggregate, "
              f"decode/stream {dec if dec is None else round(dec, 1)} tok/s, "
              f"TTFT median {ttft if ttft is None else round(ttft * 1000)} ms, "
              f"{level['completion_tokens']} tokens in {level['wall_s']:.1f} s"
              + (f", {len(level['errors'])} ERRORS: {level['errors'][:2]}" if level["errors"] else ""), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"label": args.label, "url": args.url, "models": models, "levels": levels}) + "\n")
    sys.exit(1 if any(l["errors"] for l in levels) else 0)


if __name__ == "__main__":
    main()
