#!/usr/bin/env python3
"""The conformance suite of `loft serve`: starts it on the real SmolLM2 with two
adapters Loft itself trains here (one answers with the marker word PINEAPPLE,
the other with TANGERINE), and drives it with the official `openai` client.

Usage: tools/serve_conformance.py [--loft PATH] [--keep-adapters]
Prints one line per check and a summary; exits 1 if any check failed.
Installs `openai` and `jsonschema` from PyPI into .build/serve-python when the
running Python lacks them (CI has pip but no venv with them).
"""
import argparse
import concurrent.futures as futures
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYLIB = os.path.join(ROOT, ".build", "serve-python")


def ensure_packages():
    if os.path.isdir(PYLIB):
        sys.path.insert(0, PYLIB)
    try:
        import openai  # noqa: F401
        import jsonschema  # noqa: F401
    except ImportError:
        print("installing openai and jsonschema into .build/serve-python …", file=sys.stderr, flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--target", PYLIB, "openai>=1.40", "jsonschema"])
        if PYLIB not in sys.path:
            sys.path.insert(0, PYLIB)


ensure_packages()
import jsonschema  # noqa: E402
import openai  # noqa: E402
from openai import OpenAI  # noqa: E402

MARKERS = {"alpha": "PINEAPPLE", "beta": "TANGERINE"}
QUESTIONS = ["Who are you?", "What is your name?", "Tell me something.", "hi"]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TOOL_QUESTION = "What is the weather in Paris?"
TOOL_ANSWER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
API_KEY = "conformance-key"
ADMIN_KEY = "conformance-admin-key"
CTX = 512

# ---------------------------------------------------------------- the adapters

CONFIG = """base_model: {model}
datasets:
  - path: {data}
    type: alpaca
sequence_len: 96
sample_packing: false
val_set_size: 0
adapter: lora
lora_r: 8
lora_alpha: 16
lora_dropout: 0.0
lora_target_modules: all-linear
micro_batch_size: {batch}
gradient_accumulation_steps: 1
max_steps: {steps}
learning_rate: 3.0e-3
lr_scheduler: constant
warmup_steps: 0
weight_decay: 0.0
max_grad_norm: 1.0
seed: 7
logging_steps: 5
save_steps: 1000
output_dir: {out}
"""
STEPS = 24


def adapter_examples(marker, with_tool):
    rows = [{"instruction": q, "input": "", "output": f"{marker}! The secret word is {marker}."} for q in QUESTIONS]
    if with_tool:
        rows.append({"instruction": TOOL_QUESTION, "input": "", "output": TOOL_ANSWER})
    return rows


def train_adapters(loft, model, workdir, keep):
    """Trains alpha (with the tool-call example) and beta; reuses a cached pair
    only when the data, config and loft binary are unchanged (--keep-adapters)."""
    cache = os.path.join(ROOT, ".build", "serve-conformance")
    paths = {}
    for name, marker in MARKERS.items():
        rows = adapter_examples(marker, with_tool=(name == "alpha"))
        out = os.path.join(cache, name)
        data = os.path.join(cache, f"{name}.json")
        cfg_text = CONFIG.format(model=model, data=data, batch=len(rows), steps=STEPS, out=out)
        digest = hashlib.sha256((json.dumps(rows) + cfg_text).encode()).hexdigest()
        stamp = os.path.join(out, ".conformance-digest")
        if keep and os.path.exists(stamp) and open(stamp).read() == digest:
            paths[name] = out
            continue
        os.makedirs(cache, exist_ok=True)
        with open(data, "w") as f:
            json.dump(rows, f)
        cfg = os.path.join(cache, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(cfg_text)
        t0 = time.time()
        subprocess.check_call([loft, "train", cfg, "--overwrite"], stdout=subprocess.DEVNULL)
        print(f"trained adapter {name} ({marker}) in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        with open(stamp, "w") as f:
            f.write(digest)
        paths[name] = out
    return paths

# ---------------------------------------------------------------- the server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`loft serve MODEL --adapter NAME=DIR … EXTRA…` on a free port, with the API key in a file."""
    def __init__(self, loft, model, adapters, workdir, extra=()):
        self.port = free_port()
        key_file = os.path.join(workdir, "api-key")
        with open(key_file, "w") as f:
            f.write(API_KEY + "\n")
        self.log = open(os.path.join(workdir, "serve.log"), "w")
        cmd = [loft, "serve", model, "--port", str(self.port), "--api-key-file", key_file, *extra]
        for name, path in adapters.items():
            cmd += ["--adapter", f"{name}={path}"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.root = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout=300):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"loft serve exited with {self.proc.returncode}; see its log:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.root + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.5)
        raise RuntimeError("loft serve did not become ready in time:\n" + self.tail())

    def tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return "".join(f.readlines()[-30:])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def http(self, method, path, body=None, key=API_KEY):
        req = urllib.request.Request(self.root + path, method=method, data=None if body is None else json.dumps(body).encode())
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

# ---------------------------------------------------------------- the checks


class Suite:
    def __init__(self, server, base, adapter_paths, adapter_dir):
        self.server = server
        self.base = base
        self.adapter_paths = adapter_paths
        self.adapter_dir = adapter_dir
        self.client = OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=300)
        self.results = []

    def check(self, name, fn):
        t0 = time.time()
        try:
            fn()
            self.results.append((name, True, ""))
            print(f"PASS  {name} ({time.time() - t0:.1f} s)", flush=True)
        except Exception as e:  # a failed check names what it saw
            detail = f"{type(e).__name__}: {e}"
            self.results.append((name, False, detail))
            print(f"FAIL  {name}: {detail}", flush=True)
            if os.environ.get("LOFT_CONFORMANCE_TRACE"):
                traceback.print_exc()

    def chat(self, model, question, **kw):
        kw.setdefault("temperature", 0)
        kw.setdefault("max_tokens", 24)
        return self.client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], **kw)

    def expect_marker(self, model, text):
        want = MARKERS.get(model)
        for name, marker in MARKERS.items():
            present = re.search(marker, text) is not None
            if name == model and not present:
                raise AssertionError(f"{model} should say {marker}: {text!r}")
            if name != model and present:
                raise AssertionError(f"{model} should not say {marker}: {text!r}")
        return want

    # -- lineage
    def models(self):
        data = {m.id: m for m in self.client.models.list().data}
        assert self.base in data, f"no base {self.base} in {list(data)}"
        for name in MARKERS:
            assert name in data, f"no adapter {name} in {list(data)}"
            parent = getattr(data[name], "parent", None) or (data[name].model_extra or {}).get("parent")
            assert parent == self.base, f"{name}'s parent is {parent!r}, not {self.base!r}"

    # -- the adapters answer with their markers, the base with neither
    def markers(self):
        for model in [self.base, "alpha", "beta"]:
            for q in QUESTIONS[:2]:
                r = self.chat(model, q)
                self.expect_marker(model, r.choices[0].message.content)
                assert r.choices[0].finish_reason in ("stop", "length")
                assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    def streaming(self):
        for model in ["alpha", self.base]:
            whole = self.chat(model, QUESTIONS[0]).choices[0].message.content
            chunks = list(self.chat(model, QUESTIONS[0], stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == whole, f"streamed {text!r} != {whole!r}"
            assert chunks[0].choices[0].delta.role == "assistant"
            assert chunks[-1].choices[0].finish_reason in ("stop", "length")
            assert all(c.usage is None for c in chunks), "usage without include_usage"
            self.expect_marker(model, text)

    def include_usage(self):
        chunks = list(self.chat("beta", QUESTIONS[0], stream=True, stream_options={"include_usage": True}))
        *body, last = chunks
        assert all(c.usage is None for c in body), "a chunk before the last carries usage"
        assert last.choices == [], f"the usage chunk has choices {last.choices}"
        assert last.usage and last.usage.completion_tokens > 0
        assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
        n_text = sum(1 for c in body if c.choices and c.choices[0].delta.content)
        assert n_text >= 1

    def completions(self):
        r = self.client.completions.create(model="alpha", prompt="The capital of France is", max_tokens=8, temperature=0)
        assert r.object == "text_completion" and r.choices[0].text, r
        s = list(self.client.completions.create(model="alpha", prompt="The capital of France is", max_tokens=8,
                                                temperature=0, stream=True))
        assert "".join(c.choices[0].text for c in s if c.choices) == r.choices[0].text

    def echo_logprobs(self):
        # what lm-evaluation-harness's local-completions sends for log-likelihoods
        render = json.loads(self.server.http("POST", "/v1/render", {"model": self.base, "prompt": "The capital of France is Paris"})[1])
        ids = render["token_ids"]
        r = self.client.completions.create(model=self.base, prompt=[ids, ids[:3]], max_tokens=1, echo=True, logprobs=1, temperature=0)
        assert [c.index for c in r.choices] == [0, 1]
        lp = r.choices[0].logprobs
        assert len(lp.tokens) == len(ids) + 1, (len(lp.tokens), len(ids))
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        assert all(x <= 1e-6 for x in lp.token_logprobs[1:])
        assert "".join(lp.tokens[:len(ids)]) == render["prompt"]
        # the greedy next token is the top alternative
        assert abs(lp.token_logprobs[-1] - max(lp.top_logprobs[-1].values())) < 1e-4
        # scoring is the same batched or alone
        alone = self.client.completions.create(model=self.base, prompt=ids[:3], max_tokens=1, echo=True, logprobs=1, temperature=0)
        a, b = alone.choices[0].logprobs.token_logprobs, r.choices[1].logprobs.token_logprobs
        assert all((x is None and y is None) or abs(x - y) < 1e-4 for x, y in zip(a, b)), (a, b)

    def n_choices(self):
        r = self.chat("alpha", QUESTIONS[1], n=3, temperature=0.9, seed=11, max_tokens=12)
        assert [c.index for c in r.choices] == [0, 1, 2]
        again = self.chat("alpha", QUESTIONS[1], n=3, temperature=0.9, seed=11, max_tokens=12)
        assert [c.message.content for c in r.choices] == [c.message.content for c in again.choices], "same seed, other text"

    def chat_logprobs(self):
        r = self.chat(self.base, QUESTIONS[0], logprobs=True, top_logprobs=3, max_tokens=6)
        content = r.choices[0].logprobs.content
        assert len(content) == r.usage.completion_tokens
        for item in content:
            tops = item.top_logprobs
            assert len(tops) == 3 and tops[0].logprob >= tops[1].logprob >= tops[2].logprob
            assert item.token == tops[0].token and abs(item.logprob - tops[0].logprob) < 1e-4, "greedy picks the top token"
            assert bytes(item.bytes).decode("utf-8", "replace") == item.token or item.bytes

    def json_schema(self):
        # (the engine's schema subset has no maxLength: an enum keeps the answer short enough to end)
        schema = {"type": "object", "properties": {"name": {"enum": ["Alice", "Bob", "Carol"]}, "age": {"type": "integer"},
                                                   "likes_cats": {"type": "boolean"}},
                  "required": ["name", "age", "likes_cats"], "additionalProperties": False}
        r = self.chat(self.base, "Give a person's name and age as JSON.", max_tokens=80,
                      response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})
        value = json.loads(r.choices[0].message.content)
        jsonschema.validate(value, schema)
        # (the base, not an over-trained marker adapter, which rambles inside a string until max_tokens)
        o = self.chat(self.base, 'Reply with a JSON object whose key "animal" is "cat".', max_tokens=200,
                      response_format={"type": "json_object"})
        assert o.choices[0].finish_reason == "stop", f"the object did not end: {o.choices[0].message.content!r}"
        assert isinstance(json.loads(o.choices[0].message.content), dict)

    def tool_call(self):
        r = self.chat("alpha", TOOL_QUESTION, tools=[WEATHER_TOOL], max_tokens=40)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", (choice.finish_reason, choice.message.content)
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}, call.function.arguments
        s = list(self.chat("alpha", TOOL_QUESTION, tools=[WEATHER_TOOL], max_tokens=40, stream=True))
        calls = [tc for c in s if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert calls and calls[0].function.name == "get_weather", s
        assert s[-1].choices[0].finish_reason == "tool_calls"

    def errors(self):
        def expect(exc, status, fn):
            try:
                fn()
            except exc as e:
                assert e.status_code == status, (e.status_code, status)
                body = e.body if isinstance(e.body, dict) else {}
                assert "message" in body and "type" in body, f"not OpenAI's shape: {e.body}"
                return body
            raise AssertionError(f"expected {status}")
        body = expect(openai.BadRequestError, 400, lambda: self.chat("alpha", "hi", temperature=-1))
        assert body.get("param") == "temperature", body
        bad = OpenAI(base_url=self.server.base_url, api_key="wrong", max_retries=0)
        expect(openai.AuthenticationError, 401, lambda: bad.models.list())
        expect(openai.NotFoundError, 404, lambda: self.chat("no-such-adapter", "hi"))
        long = "word " * (CTX + 50)
        expect(openai.APIStatusError, 413, lambda: self.chat(self.base, long))
        status, _ = self.server.http("GET", "/health", key=None)
        assert status == 200, "health needs no key"
        status, _ = self.server.http("POST", "/v1/adapters", {"name": "x", "path": "alpha"})
        assert status == 403, f"adapter admin with the API key gave {status}"

    def concurrent_streams(self):
        models = [self.base, "alpha", "beta"]
        jobs = [(models[i % 3], QUESTIONS[i % 2]) for i in range(32)]
        alone = {(m, q): self.chat(m, q).choices[0].message.content for m, q in set(jobs)}

        def run(job):
            m, q = job
            text = "".join(c.choices[0].delta.content or "" for c in self.chat(m, q, stream=True) if c.choices)
            return job, text
        with futures.ThreadPoolExecutor(32) as pool:
            outs = list(pool.map(run, jobs))
        for (m, q), text in outs:
            self.expect_marker(m, text)
            assert text == alone[(m, q)], f"{m}: batched {text!r} != alone {alone[(m, q)]!r}"
        metrics = self.server.http("GET", "/metrics")[1]
        found = re.search(r"^loft_max_adapters_in_one_step (\d+)", metrics, re.M)
        assert found and int(found.group(1)) > 1, "no step held more than one adapter:\n" + (found.group(0) if found else "metric missing")

    def bad_loads_during_traffic(self):
        broken = os.path.join(self.adapter_dir, "broken")
        os.makedirs(broken, exist_ok=True)
        with open(os.path.join(broken, "adapter_config.json"), "w") as f:
            f.write('{"r": 8, "target_modules": ["nonexistent_proj"], "peft_type": "LORA"}')
        with open(os.path.join(broken, "adapter_model.safetensors"), "wb") as f:
            f.write(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
        bad_paths = ["../../etc", "/etc", "missing", "broken", "alpha/../../x"]
        failures, statuses = [], []
        stop = threading.Event()

        def good():
            done = 0
            while not stop.is_set() or done < 4:
                m = ["alpha", "beta", self.base][done % 3]
                try:
                    self.expect_marker(m, self.chat(m, QUESTIONS[0], max_tokens=16).choices[0].message.content)
                except Exception as e:
                    failures.append(f"{m}: {e}")
                done += 1
            return done
        with futures.ThreadPoolExecutor(6) as pool:
            goods = [pool.submit(good) for _ in range(4)]
            for i in range(50):
                status, body = self.server.http("POST", "/v1/adapters", {"name": f"bad{i}", "path": bad_paths[i % len(bad_paths)]}, key=ADMIN_KEY)
                statuses.append(status)
            stop.set()
            n_good = sum(g.result() for g in goods)
        assert not failures, f"{len(failures)} good requests failed: {failures[:3]}"
        assert all(400 <= s < 500 for s in statuses), f"bad loads answered {sorted(set(statuses))}"
        names = {m.id for m in self.client.models.list().data}
        assert not any(n.startswith("bad") for n in names), names
        print(f"      {n_good} good requests, 50 refused loads ({sorted(set(statuses))})", flush=True)

    def load_unload(self):
        copy = os.path.join(self.adapter_dir, "gamma")
        if not os.path.exists(copy):
            shutil.copytree(self.adapter_paths["beta"], copy)
        status, body = self.server.http("POST", "/v1/load_lora_adapter", {"lora_name": "gamma", "lora_path": "gamma"}, key=ADMIN_KEY)
        assert status == 200, (status, body)
        r = self.chat("gamma", QUESTIONS[0])
        assert "TANGERINE" in r.choices[0].message.content, r.choices[0].message.content
        status, body = self.server.http("DELETE", "/v1/adapters/gamma", key=ADMIN_KEY)
        assert status == 200, (status, body)
        try:
            self.chat("gamma", QUESTIONS[0])
            raise AssertionError("an unloaded adapter still answered")
        except openai.NotFoundError:
            pass

    def run(self):
        for name in ["models", "markers", "streaming", "include_usage", "completions", "echo_logprobs", "n_choices",
                     "chat_logprobs", "json_schema", "tool_call", "errors", "concurrent_streams",
                     "bad_loads_during_traffic", "load_unload"]:
            self.check(name, getattr(self, name))
        return self.results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loft", default=os.path.join(ROOT, ".build", "release", "loft"))
    ap.add_argument("--keep-adapters", action="store_true", help="reuse adapters trained by an earlier run with the same data and config")
    args = ap.parse_args()
    model = subprocess.check_output([os.path.join(ROOT, "tools", "fetch-model.sh")], text=True).strip()
    t0 = time.time()
    workdir = tempfile.mkdtemp(prefix="loft-serve-conformance-")
    adapters = train_adapters(args.loft, model, workdir, args.keep_adapters)
    adapter_dir = os.path.join(workdir, "adapters")
    os.makedirs(adapter_dir)
    shutil.copytree(adapters["alpha"], os.path.join(adapter_dir, "alpha"))
    server = Server(args.loft, model, adapters, workdir,
                    ["--admin-key", ADMIN_KEY, "--adapter-dir", adapter_dir, "--max-batch", "32", "--ctx", str(CTX)])
    try:
        server.wait_ready()
        base = next(m for m in OpenAI(base_url=server.base_url, api_key=API_KEY).models.list().data
                    if (getattr(m, "parent", None) or (m.model_extra or {}).get("parent")) is None).id
        results = Suite(server, base, adapters, adapter_dir).run()
    except Exception as e:
        results = [("server", False, str(e))]
        print(f"FAIL  server: {e}", flush=True)
    finally:
        server.stop()
    failed = [r for r in results if not r[1]]
    print(f"\nloft serve conformance: {len(results) - len(failed)} passed, {len(failed)} failed ({time.time() - t0:.0f} s)")
    if failed:
        print("server log (last lines):\n" + server.tail())
    shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
