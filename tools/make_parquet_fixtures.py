#!/usr/bin/env python3
"""Writes the Parquet fixtures of Tests/LoftDataTests/Fixtures/parquet with pyarrow
(PyPI), the reference writer: the files Hugging Face datasets and pandas produce.

    python tools/make_parquet_fixtures.py          (needs pyarrow: pip install pyarrow)

Each fixture has a JSONL twin holding the same rows (written by json), which the
tests read with Loft's JSONL reader and compare with what the Parquet reader gives.

- alpaca_<codec>.parquet: the alpaca rows in every compression (none, snappy, gzip, zstd)
- alpaca_plain.parquet: no dictionary (PLAIN values); alpaca_v2.parquet: data pages v2;
  alpaca_groups.parquet: one row per row group and tiny pages
- types.parquet / types.jsonl: ints, doubles, booleans, nulls at every level, lists of
  lists, structs of lists, an empty list, a null list, a map, binary, dates are left out
- conversations.parquet: messages as list<struct<role, content>> (snappy, dictionary-
  encoded, as `datasets` writes them) with its twin conversations.jsonl
- shared_<name>.parquet: the first 40 rows of each dataset in ../shared/fixtures/datasets
  (their twins are those files themselves)
"""
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "Tests/LoftDataTests/Fixtures/parquet")
SHARED = os.path.join(ROOT, "..", "shared", "fixtures", "datasets")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/fixtures/datasets"
os.makedirs(OUT, exist_ok=True)


def rows_of(path, limit=None):
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            rows = [json.loads(line) for line in f if line.strip()]
        else:
            rows = json.load(f)
    return rows[:limit] if limit else rows


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write(name, table, **kw):
    pq.write_table(table, os.path.join(OUT, name), **kw)


# 1. Alpaca rows, every compression and encoding.
alpaca = rows_of(os.path.join(ROOT, "Tests/LoftDataTests/Fixtures/formats/alpaca.jsonl"))
t = pa.Table.from_pylist(alpaca)
for codec in ["none", "snappy", "gzip", "zstd"]:
    write(f"alpaca_{codec}.parquet", t, compression=codec)
write("alpaca_plain.parquet", t, use_dictionary=False, compression="snappy")
write("alpaca_v2.parquet", t, data_page_version="2.0", compression="zstd")
write("alpaca_groups.parquet", t, row_group_size=1, data_page_size=16, compression="snappy")

# 2. Types, nulls and nesting; the twin is what pyarrow itself reads back.
types_rows = [
    {"i": 1, "f": 0.5, "b": True, "s": "a", "bin": b"raw", "ll": [[1, 2], [3]], "st": {"x": 1, "ys": ["p", "q"]},
     "lst": [{"k": "a", "v": 1}, {"k": "b", "v": None}], "m": [("one", 1)]},
    {"i": None, "f": None, "b": None, "s": None, "bin": None, "ll": None, "st": None, "lst": None, "m": None},
    {"i": -7, "f": -2.25, "b": False, "s": "", "bin": b"", "ll": [[], [4, None]], "st": {"x": None, "ys": []},
     "lst": [], "m": []},
    {"i": 2**40, "f": 1e300, "b": True, "s": "Übersetze 🐈", "bin": b"\x00\x01", "ll": [None, [5]], "st": {"x": 3, "ys": None},
     "lst": [None, {"k": None, "v": 2}], "m": [("two", 2), ("three", None)]},
]
schema = pa.schema([
    ("i", pa.int64()), ("f", pa.float64()), ("b", pa.bool_()), ("s", pa.string()), ("bin", pa.binary()),
    ("ll", pa.list_(pa.list_(pa.int32()))),
    ("st", pa.struct([("x", pa.int32()), ("ys", pa.list_(pa.string()))])),
    ("lst", pa.list_(pa.struct([("k", pa.string()), ("v", pa.int64())]))),
    ("m", pa.map_(pa.string(), pa.int64())),
])
tt = pa.Table.from_pylist(types_rows, schema=schema)
write("types.parquet", tt, compression="snappy")
write("types_v2_plain.parquet", tt, compression="gzip", data_page_version="2.0", use_dictionary=False)


def jsonable(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


back = pq.read_table(os.path.join(OUT, "types.parquet")).to_pylist()
for r in back:
    # pyarrow reads a map back as a list of (key, value) tuples: Loft gives an object.
    r["m"] = None if r["m"] is None else {k: x for k, x in r["m"]}
write_jsonl(os.path.join(OUT, "types.jsonl"), [jsonable(r) for r in back])

# 3. Conversations as `datasets` stores them: snappy, dictionary-encoded.
conversations = [
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris."}]},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                  {"role": "user", "content": "Times 3?"}, {"role": "assistant", "content": "12"}]},
    {"messages": [{"role": "user", "content": "Say “hi” in German."}, {"role": "assistant", "content": "Hallo! 👋"}]},
] * 5
write("conversations.parquet", pa.Table.from_pylist(conversations), compression="snappy", use_dictionary=True,
      row_group_size=4)
write_jsonl(os.path.join(OUT, "conversations.jsonl"), conversations)

# 4. The shared real datasets (first 40 rows of each).
for name in ["identity.json", "alpaca_en_demo.json", "v1_sft_demo.jsonl", "glaive_toolcall_en_demo.json",
             "dpo_en_demo.json", "v1_dpo_demo.jsonl", "kto_en_demo.json", "c4_demo.jsonl"]:
    rows = rows_of(os.path.join(SHARED, name), 40)
    stem = name.rsplit(".", 1)[0]
    write(f"shared_{stem}.parquet", pa.Table.from_pylist(rows), compression="snappy", row_group_size=16)

for f in sorted(os.listdir(OUT)):
    print(f"{os.path.getsize(os.path.join(OUT, f)):8d}  {f}", file=sys.stderr)
