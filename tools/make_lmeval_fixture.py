#!/usr/bin/env python3
"""Writes the lm-eval parity fixture (Tests/LoftEvalTests/Fixtures/lmeval_mc/):

1. a local multiple-choice task from questions that ship inside the lm-eval
   package itself: the MMLU dev exemplars of lm_eval/tasks/mmlu/flan_cot_fewshot/
   _cot_prompts.json (the 12 shortest first questions of the 57 subjects, so
   the fixture is quick to make and to check on a CPU; MIT license, see
   LICENSE.lm-eval next to the data), as JSONL plus an lm-eval task YAML
   (dataset_path: json, 1-shot with the first_n sampler);
2. runs `lm_eval --model hf` (float32, CPU) on it for the base model (the GGUF
   written as a transformers directory by `loft merge MODEL --out DIR`) and with
   `peft=` for an adapter (the SmolLM2 starting adapter of the training fixtures);
3. keeps every request's log-likelihood and is_greedy, and acc/acc_norm, from
   lm-eval's --log_samples output in parity.json.

Run:  /work/refvenv/bin/python tools/make_lmeval_fixture.py .build/release/loft "$(tools/fetch-model.sh)"
"""
import glob, json, os, re, subprocess, sys, tempfile
import importlib.metadata
import lm_eval

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "Tests", "LoftEvalTests", "Fixtures", "lmeval_mc")
ADAPTER = os.path.join(ROOT, "Tests", "LoftTrainingTests", "Fixtures", "smollm2", "initial_adapter")
TASK = "loft_mmlu_exemplars"

TASK_YAML = f"""task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: mmlu_exemplars.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
target_delimiter: " "
num_fewshot: 1
fewshot_config:
  sampler: first_n
metric_list:
  - metric: acc
  - metric: acc_norm
"""

def questions(limit=12):
    path = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "mmlu", "flan_cot_fewshot", "_cot_prompts.json")
    prompts = json.load(open(path))
    rows = []
    for subject in sorted(prompts):
        for block in prompts[subject].split("\n\nQ: ")[1:]:
            m = re.search(r"^(.*?)\n\(A\) (.*?) \(B\) (.*?) \(C\) (.*?) \(D\) (.*?)\nA: .*The answer is \(([ABCD])\)", block, re.S)
            if not m:
                continue
            q = m.group(1).strip()
            choices = [c.strip() for c in m.group(2, 3, 4, 5)]
            if any("\n" in c or not c for c in choices) or len(q) > 400:
                continue
            rows.append({"subject": subject, "question": q, "choices": choices, "answer": "ABCD".index(m.group(6))})
            break
    # The shortest, kept in subject order.
    short = sorted(rows, key=lambda r: len(r["question"]) + sum(len(c) for c in r["choices"]))[:limit]
    return [r for r in rows if r in short]

def run_lm_eval(model_args, workdir):
    out = os.path.join(workdir, "out")
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args, "--tasks", TASK,
           "--include_path", OUT, "--device", "cpu", "--batch_size", "1", "--log_samples", "--output_path", out]
    subprocess.run(cmd, check=True, cwd=OUT)
    files = sorted(glob.glob(os.path.join(out, "**", f"samples_{TASK}_*.jsonl"), recursive=True))
    samples = [json.loads(l) for l in open(files[-1])]
    samples.sort(key=lambda s: s["doc_id"])
    import shutil; shutil.rmtree(out)
    # lm-eval 0.4.13 logs each response as strings ("-4.71", "True").
    def flag(v):
        return v if isinstance(v, bool) else str(v) == "True"
    return [{"doc_id": s["doc_id"], "loglikelihoods": [float(r[0]) for r in s["filtered_resps"]],
             "is_greedy": [flag(r[1]) for r in s["filtered_resps"]], "acc": s["acc"], "acc_norm": s["acc_norm"],
             "context": s["arguments"][0][0] if isinstance(s["arguments"], list) else s["arguments"]["gen_args_0"]["arg_0"]}
            for s in samples]

def main():
    loft, model = sys.argv[1], sys.argv[2]
    os.makedirs(OUT, exist_ok=True)
    rows = questions()
    with open(os.path.join(OUT, "mmlu_exemplars.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(OUT, f"{TASK}.yaml"), "w") as f:
        f.write(TASK_YAML)
    with tempfile.TemporaryDirectory() as work:
        hf = os.path.join(work, "hf")
        subprocess.run([loft, "merge", model, "--out", hf], check=True)
        base = run_lm_eval(f"pretrained={hf},dtype=float32", work)
        adapter = run_lm_eval(f"pretrained={hf},dtype=float32,peft={ADAPTER}", work)
    fixture = {
        "source": "tools/make_lmeval_fixture.py; lm-eval %s, torch %s, transformers %s, peft %s" % tuple(
            importlib.metadata.version(p) for p in ("lm-eval", "torch", "transformers", "peft")),
        "task": TASK, "base": base, "adapter": adapter,
    }
    with open(os.path.join(OUT, "parity.json"), "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
    for name, s in (("base", base), ("adapter", adapter)):
        n = len(s)
        print(name, "acc", sum(x["acc"] for x in s) / n, "acc_norm", sum(x["acc_norm"] for x in s) / n)

if __name__ == "__main__":
    main()
