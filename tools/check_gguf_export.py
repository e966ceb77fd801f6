#!/usr/bin/env python3
"""References for Loft's GGUF writer, from the `gguf` Python package (llama.cpp's gguf-py).

    /opt/refvenv/bin/python tools/check_gguf_export.py quant
        -> Tests/LoftFormatsTests/Fixtures/gguf_writer/quant_reference.json
           (inputs and gguf.quants.quantize() bytes for Q8_0 and Q4_0; the inputs
           are test-quantize-fns' synthetic data 0.1 + 2*cos(i + offset) plus
           random normals, with all-zero and one-hot blocks)
    /opt/refvenv/bin/python tools/check_gguf_export.py dump FILE.gguf [--out JSON]
        -> every metadata key (type and value) and every tensor (shape, type,
           and sum / sum of squares / first values of gguf's dequantization)
           as the gguf package reads them. With --out, the JSON is written as
           the fixture GGUFExportTests compares against.
"""
import argparse
import json
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGMLQuantizationType, GGUFValueType
from gguf.quants import dequantize, quantize


def quant(out):
    rng = np.random.default_rng(7)
    n = 32 * 128
    syn = (0.1 + 2 * np.cos(np.arange(n, dtype=np.float32) + np.float32(0.0))).astype(np.float32)
    rnd = rng.standard_normal(32 * 16).astype(np.float32) * np.float32(0.05)
    special = np.zeros(64, dtype=np.float32)
    special[32 + 5] = -3.0  # a one-hot block; the block before is all zero
    x = np.concatenate([syn, rnd, special]).astype(np.float32)
    ref = {"input": [float(v) for v in x]}
    for name, t in [("q8_0", GGMLQuantizationType.Q8_0), ("q4_0", GGMLQuantizationType.Q4_0)]:
        q = quantize(x.reshape(1, -1), t)
        ref[name] = bytes(q.tobytes()).hex()
        ref[name + "_dequantized_rms"] = float(np.sqrt(((dequantize(q, t).reshape(-1) - x) ** 2).sum()) / len(x))
    with open(out, "w") as f:
        json.dump(ref, f)
        f.write("\n")
    print("wrote", out)


def value_of(field):
    t = field.types[0]
    if t == GGUFValueType.ARRAY:
        et = field.types[1] if len(field.types) > 1 else None
        if et == GGUFValueType.STRING:
            vals = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        else:
            vals = [field.parts[i].tolist()[0] for i in field.data]
        return {"type": "ARRAY", "element_type": et.name if et is not None else None, "count": len(vals),
                "head": vals[:5], "tail": vals[-3:]}
    if t == GGUFValueType.STRING:
        return {"type": "STRING", "value": bytes(field.parts[field.data[0]]).decode("utf-8")}
    v = field.parts[field.data[0]].tolist()[0]
    return {"type": t.name, "value": v}


def dump(path, out):
    r = GGUFReader(path)
    keys = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        keys[name] = value_of(field)
    tensors = {}
    for t in r.tensors:
        vals = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        tensors[t.name] = {"shape": [int(d) for d in reversed(t.shape.tolist())], "type": t.tensor_type.name,
                           "sum": float(vals.sum()), "sumsq": float((vals ** 2).sum()),
                           "head": [float(v) for v in vals[:4]]}
    doc = {"version": 3, "key_order": list(keys), "keys": keys, "tensors": tensors}
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
        print("wrote", out, f"({len(keys)} keys, {len(tensors)} tensors)")
    else:
        print(text)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quant")
    q.add_argument("--out", default="Tests/LoftFormatsTests/Fixtures/gguf_writer/quant_reference.json")
    d = sub.add_parser("dump")
    d.add_argument("file")
    d.add_argument("--out")
    a = ap.parse_args()
    if a.cmd == "quant":
        quant(a.out)
    else:
        dump(a.file, a.out)


if __name__ == "__main__":
    main()
