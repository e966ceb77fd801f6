#!/usr/bin/env python3
"""Expected token ids and labels for LoftData's tests, computed independently
with Hugging Face transformers from SmolLM2-135M-Instruct's GGUF.

Rows are turned into chat messages here (in Python), rendered with
`apply_chat_template(messages, tokenize=False)`, tokenized once with
`add_special_tokens=False`, and labelled by locating each message's rendered
ChatML block `<|im_start|>ROLE\\nCONTENT<|im_end|>\\n` in the text with
`str.find` (a different method from the Swift side, which renders prefixes of
the conversation). A token is trained when its character offset start lies in a
trained range: an assistant message's content or the `<|im_end|>` after it.

Run: /opt/refvenv/bin/python tools/make_data_fixtures.py
Writes Tests/LoftDataTests/Fixtures/data_expected.json.
"""
import json, os, sys

MODEL_DIR = os.path.expanduser(os.environ.get("LOFT_CACHE", "~/.cache/loft") + "/models")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "fixtures", "datasets")
OUT = os.path.join(HERE, "..", "Tests", "LoftDataTests", "Fixtures", "data_expected.json")
VARIABLES = {"name": "Loft", "author": "the Loft team"}

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
# transformers has no entry for the GGUF's `tokenizer.ggml.pre = "smollm"` and falls back to plain
# ByteLevel; SmolLM2's own tokenizer.json (and llama.cpp) split digits first. Use the model's
# pre-tokenizer, as tools/make_tokenizer_fixtures.py does (it changes e.g. ":\n\n1." in alpaca rows).
tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
EOT = "<|im_end|>"


def fill(s):
    for k, v in VARIABLES.items():
        s = s.replace("{{" + k + "}}", v)
    return s


def load(name):
    path = os.path.join(DATA, name)
    if name.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            return [json.loads(l) for l in f if l.strip()]
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def alpaca_messages(row):
    msgs = []
    if row.get("system"):
        msgs.append({"role": "system", "content": row["system"]})
    user = row["instruction"]
    if row.get("input"):
        user = user + "\n" + row["input"]
    msgs.append({"role": "user", "content": user})
    msgs.append({"role": "assistant", "content": row["output"]})
    return msgs, [False, False, True] if row.get("system") else [False, True]


def typed_text(content):
    if isinstance(content, str):
        return content
    return "".join(p.get("text", p.get("value", "")) for p in content if p.get("type", "text") == "text")


def messages_messages(row):
    msgs, train = [], []
    for m in row["messages"]:
        msgs.append({"role": m["role"], "content": typed_text(m["content"])})
        if "loss_weight" in m:
            train.append(m["role"] == "assistant" and m["loss_weight"] > 0)
        else:
            train.append(m["role"] == "assistant")
    return msgs, train


ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
        "observation": "tool", "tool": "tool", "function_call": "assistant"}


def sharegpt_messages(row):
    msgs, train = [], []
    for m in row["conversations"]:
        role = ROLE[m["from"]]
        msgs.append({"role": role, "content": m["value"]})
        train.append(role == "assistant")
    return msgs, train


def label_chat(msgs, train, tools=None, train_on_eos="turn"):
    kwargs = {"tools": tools} if tools else {}
    text = tok.apply_chat_template(msgs, tokenize=False, **kwargs)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    ranges, eos_ranges, cursor = [], [], 0
    for m, t in zip(msgs, train):
        header = "<|im_start|>" + m["role"] + "\n"
        block = header + m["content"] + EOT + "\n"
        at = text.find(block, cursor)
        assert at >= 0, (block[:80], cursor)
        c0 = at + len(header)
        c1 = c0 + len(m["content"])
        eos = (c1, c1 + len(EOT))
        eos_ranges.append(eos)
        if t:
            ranges.append((c0, c1))
        cursor = at + len(block)
    trained_eos = [eos_ranges[i] for i, t in enumerate(train) if t]
    if train_on_eos == "turn":
        ranges += trained_eos
    elif train_on_eos == "last":
        ranges += trained_eos[-1:]
    labels = []
    for i, (s, e) in zip(ids, offsets):
        # "all": every end-of-turn token in the text, the template's default system prompt's included.
        eos_all = train_on_eos == "all" and i == tok.convert_tokens_to_ids(EOT)
        labels.append(i if eos_all or any(a <= s < b for a, b in ranges) else -100)
    return text, ids, labels


cases = []


def add(file, row_index, text, ids, labels, options=None):
    cases.append({"file": file, "row": row_index, "options": options or {}, "text": text, "ids": ids, "labels": labels})


for name, rows_idx in [("identity.json", [0, 3, 90]), ("alpaca_en_demo.json", [0, 1, 2, 500, 998])]:
    rows = load(name)
    for i in rows_idx:
        row = {k: fill(v) if isinstance(v, str) else v for k, v in rows[i].items()}
        msgs, train = alpaca_messages(row)
        add(name, i, *label_chat(msgs, train))

rows = load("v1_sft_demo.jsonl")
for i in [0, 1, 120, 250, 499]:
    row = rows[i]
    for m in row["messages"]:
        for p in m["content"] if isinstance(m["content"], list) else []:
            for key in ("text", "value"):
                if key in p:
                    p[key] = fill(p[key])
        if isinstance(m["content"], str):
            m["content"] = fill(m["content"])
    msgs, train = messages_messages(row)
    add("v1_sft_demo.jsonl", i, *label_chat(msgs, train))

rows = load("glaive_toolcall_en_demo.json")
for i in [0, 1, 7, 299]:
    msgs, train = sharegpt_messages(rows[i])
    tools = json.loads(rows[i]["tools"]) if rows[i].get("tools") else None
    add("glaive_toolcall_en_demo.json", i, *label_chat(msgs, train, tools))
for mode in ["last", "all"]:
    msgs, train = sharegpt_messages(rows[0])
    add("glaive_toolcall_en_demo.json", 0, *label_chat(msgs, train, json.loads(rows[0]["tools"]), train_on_eos=mode),
        options={"train_on_eos": mode})
# train_on_inputs: every message trained (system default prompt excluded: it is not a message).
msgs, train = sharegpt_messages(rows[0])
add("glaive_toolcall_en_demo.json", 0, *label_chat(msgs, [True] * len(msgs), json.loads(rows[0]["tools"])),
    options={"train_on_inputs": True})
# roles_to_train: assistant and tool.
add("glaive_toolcall_en_demo.json", 0, *label_chat(msgs, [m["role"] in ("assistant", "tool") for m in msgs], json.loads(rows[0]["tools"])),
    options={"roles_to_train": ["assistant", "tool"]})

rows = load("c4_demo.jsonl")
for i in [0, 1, 299]:
    text = rows[i]["text"]
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    add("c4_demo.jsonl", i, text, ids, list(ids))

meta = {"model": GGUF, "variables": VARIABLES, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id,
        "transformers": __import__("transformers").__version__}
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w", encoding="utf-8") as f:
    json.dump({"meta": meta, "cases": cases}, f, ensure_ascii=False)
print("wrote", len(cases), "cases to", OUT)
