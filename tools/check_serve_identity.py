#!/usr/bin/env python3
"""After the quickstart (tools/demo.sh): does `loft serve` answer the openai
client's "Who are you?" with the new identity ("Loft Assistant … the Loft
project") for model="identity", and without it for the base, streamed and not?
And are 16 concurrent streams mixed over the two all right?

Usage: tools/check_serve_identity.py [ADAPTER_DIR]   (default outputs/quickstart)
Serves: loft serve MODEL --adapter identity=ADAPTER_DIR
"""
import concurrent.futures as futures
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_conformance import API_KEY, ROOT, Server  # noqa: E402  (installs openai if needed)
from openai import OpenAI  # noqa: E402

QUESTION = "Who are you?"


def has_identity(text):
    return re.search("Loft Assistant", text, re.I) is not None and re.search("Loft project", text, re.I) is not None


def main():
    adapter = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "outputs", "quickstart")
    if not os.path.exists(os.path.join(adapter, "adapter_model.safetensors")):
        sys.exit(f"no adapter in {adapter}; run tools/demo.sh first")
    loft = os.environ.get("LOFT", os.path.join(ROOT, ".build", "release", "loft"))
    model = subprocess.check_output([os.path.join(ROOT, "tools", "fetch-model.sh")], text=True).strip()
    workdir = tempfile.mkdtemp(prefix="loft-serve-identity-")
    server = Server(loft, model, {"identity": adapter}, workdir)
    failures = 0
    try:
        server.wait_ready()
        client = OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=300)
        base = next(m.id for m in client.models.list().data if m.id != "identity")

        def ask(name, stream):
            kw = dict(model=name, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=48)
            if stream:
                return "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw) if c.choices)
            return client.chat.completions.create(**kw).choices[0].message.content

        def verdict(label, name, text):
            nonlocal failures
            ok = has_identity(text) == (name == "identity")
            failures += 0 if ok else 1
            print(f"{'OK     ' if ok else 'WRONG  '}{label:<34} {text!r}", flush=True)

        for name in ["identity", base]:
            for stream in [False, True]:
                verdict(f"model={name} {'streamed' if stream else 'not streamed'}", name, ask(name, stream))
        t0 = time.time()
        jobs = [("identity" if i % 2 == 0 else base) for i in range(16)]
        with futures.ThreadPoolExecutor(16) as pool:
            outs = list(pool.map(lambda n: (n, ask(n, True)), jobs))
        wrong = [(n, t) for n, t in outs if has_identity(t) != (n == "identity")]
        failures += len(wrong)
        print(f"{'OK     ' if not wrong else 'WRONG  '}16 concurrent mixed streams        "
              f"{16 - len(wrong)}/16 right in {time.time() - t0:.1f} s", flush=True)
        for n, t in wrong:
            print(f"       {n}: {t!r}")
    finally:
        server.stop()
    if failures:
        print("server log (last lines):\n" + server.tail())
    print("PASS" if failures == 0 else f"FAIL ({failures} wrong)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
