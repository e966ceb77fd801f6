#!/usr/bin/env python3
"""Writes the reference fixtures for LoftFormats' tests.

Run with the reference venv:  /opt/refvenv/bin/python tools/make_format_fixtures.py
Needs: gguf (gguf-py, 0.19), safetensors, numpy. Output goes to
Tests/LoftFormatsTests/Fixtures/. The Swift tests read only these files (CI has
no Python), so rerun this script only to regenerate them.

GGUF: for each ggml type, a few blocks of raw bytes (`gguf/<TYPE>.blocks`) and
gguf-py's dequantization of them as little-endian float32 (`gguf/<TYPE>.f32`).
Where gguf-py can quantize a type, the blocks are random normal floats quantized
by gguf-py, followed by random raw blocks with finite scales; for the K-quants
(dequantize-only in gguf-py) all blocks are random raw bytes with finite fp16
scales. Q8_K has no gguf-py dequantizer; its expected values are d * qs computed
here with numpy.

It also records checksums of gguf-py's dequantization of two tensors of the
real SmolLM2 GGUF (path in LOFT_TEST_MODEL or ~/.cache/loft/models), and a
small Llama q/k permutation case computed with numpy.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests" / "LoftFormatsTests" / "Fixtures"
rng = np.random.default_rng(20261122)


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_raw_blocks(qtype, n, f16_fields=(), f32_fields=()):
    """Random block bytes, with the given (offset) fields set to finite scales."""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for off in f16_fields:
        b[:, off:off + 2] = f16_bytes(rng.normal(0, 0.02, size=n)).reshape(n, 2)
    for off in f32_fields:
        b[:, off:off + 4] = np.asarray(rng.normal(0, 0.02, size=n), dtype=np.float32).view(np.uint8).reshape(n, 4)
    return b


def write_pair(name, raw: np.ndarray, expected: np.ndarray, meta):
    d = FIX / "gguf"
    d.mkdir(parents=True, exist_ok=True)
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    expected = np.ascontiguousarray(expected, dtype="<f4")
    (d / f"{name}.blocks").write_bytes(raw.tobytes())
    (d / f"{name}.f32").write_bytes(expected.tobytes())
    meta[name] = {"type": int(TYPE_NUM[name]), "elements": int(expected.size), "bytes": int(raw.size)}


TYPE_NUM = {}


def gguf_fixtures():
    meta = {}
    # --- float types
    f32 = np.concatenate([rng.normal(0, 1, 60).astype(np.float32),
                          np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, 3.4e38], dtype=np.float32)])
    TYPE_NUM["F32"] = T.F32
    raw = f32.view(np.uint8)
    write_pair("F32", raw, quants.dequantize(raw.copy(), T.F32), meta)

    specials16 = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x3C00, 0x3555],
                          dtype=np.uint16)
    h = np.concatenate([rng.normal(0, 1, 53).astype(np.float16).view(np.uint16), specials16])
    TYPE_NUM["F16"] = T.F16
    raw = h.view(np.uint8)
    write_pair("F16", raw, quants.dequantize(raw.copy(), T.F16), meta)

    b16 = np.concatenate([quants.quantize(rng.normal(0, 1, 48).astype(np.float32), T.BF16).view(np.uint16),
                          rng.integers(0, 65536, 16, dtype=np.uint16),
                          np.array([0x7F80, 0xFF80, 0x0001, 0x8000], dtype=np.uint16)])
    TYPE_NUM["BF16"] = T.BF16
    raw = b16.view(np.uint8)
    write_pair("BF16", raw, quants.dequantize(raw.copy(), T.BF16), meta)

    # --- 32-element block types gguf-py can quantize: quantize random floats, then raw blocks
    layouts = {  # offsets of fp16 fields in each block
        "Q4_0": (T.Q4_0, (0,)), "Q4_1": (T.Q4_1, (0, 2)), "Q5_0": (T.Q5_0, (0,)),
        "Q5_1": (T.Q5_1, (0, 2)), "Q8_0": (T.Q8_0, (0,)),
    }
    for name, (qt, f16s) in layouts.items():
        TYPE_NUM[name] = qt
        x = rng.normal(0, 1, (6, 32)).astype(np.float32)
        x[1] *= 0.001
        x[2] = 0.0  # an all-zero block (d == 0)
        q = quants.quantize(x, qt).reshape(-1, gguf.GGML_QUANT_SIZES[qt][1])
        r = random_raw_blocks(qt, 3, f16s)
        raw = np.concatenate([q, r], axis=0)
        write_pair(name, raw, quants.dequantize(raw.reshape(1, -1).copy(), qt).ravel(), meta)

    # --- K-quants: random raw blocks with finite fp16 scales (gguf-py dequantizes only)
    k_layouts = {  # fp16 field offsets within the block
        "Q2_K": (T.Q2_K, (80, 82)),     # scales[16] qs[64] d dmin
        "Q3_K": (T.Q3_K, (108,)),       # hmask[32] qs[64] scales[12] d
        "Q4_K": (T.Q4_K, (0, 2)),       # d dmin scales[12] qs[128]
        "Q5_K": (T.Q5_K, (0, 2)),       # d dmin scales[12] qh[32] qs[128]
        "Q6_K": (T.Q6_K, (208,)),       # ql[128] qh[64] scales[16] d
    }
    for name, (qt, f16s) in k_layouts.items():
        TYPE_NUM[name] = qt
        raw = random_raw_blocks(qt, 3, f16s)
        write_pair(name, raw, quants.dequantize(raw.reshape(1, -1).copy(), qt).ravel(), meta)

    # Q8_K: d (f32) qs[256] (int8) bsums[16] (int16). No gguf-py dequantizer: y = d * qs.
    TYPE_NUM["Q8_K"] = T.Q8_K
    raw = random_raw_blocks(T.Q8_K, 2, (), (0,))
    d = raw[:, 0:4].copy().view(np.float32)
    qs = raw[:, 4:260].copy().view(np.int8).astype(np.float32)
    write_pair("Q8_K", raw, (qs * d).astype(np.float32).ravel(), meta)

    (FIX / "gguf" / "dequant.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def checksum(a: np.ndarray) -> int:
    """Order-dependent exact checksum of float32 bit patterns: sum(bits[i] * (i % 65521 + 1)) mod 2**64."""
    bits = np.ascontiguousarray(a, dtype="<f4").ravel().view(np.uint32).astype(np.uint64)
    w = (np.arange(bits.size, dtype=np.uint64) % np.uint64(65521)) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int(np.sum(bits * w, dtype=np.uint64))


def smollm2_fixtures():
    path = os.environ.get("LOFT_TEST_MODEL") or os.path.expanduser(
        os.path.join(os.environ.get("LOFT_CACHE", "~/.cache/loft"), "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not os.path.exists(path):
        print(f"skipping SmolLM2 checksums: {path} not found (run tools/fetch-model.sh)", file=sys.stderr)
        return
    r = gguf.GGUFReader(path)
    out = {}
    for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                 "blk.29.ffn_down.weight", "output_norm.weight"]:
        t = next(t for t in r.tensors if t.name == name)
        w = quants.dequantize(np.asarray(t.data), t.tensor_type)
        w = np.ascontiguousarray(w, dtype=np.float32)
        flat = w.ravel()
        idx = np.unique(np.concatenate([[0, 1, flat.size - 1], rng.integers(0, flat.size, 13)]))
        out[name] = {
            "type": t.tensor_type.name,
            "shape": [int(s) for s in w.shape],
            "checksum": str(checksum(w)),
            "sum": float(np.sum(flat, dtype=np.float64)),
            "samples": {str(int(i)): float(flat[i]) for i in idx},
            "row1_first8": [float(v) for v in w.reshape(-1, w.shape[-1])[min(1, w.reshape(-1, w.shape[-1]).shape[0] - 1)][:8]],
        }
    (FIX / "gguf" / "smollm2_dequant.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


def permute(w, n_head):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def reverse_permute(w, n_head):
    # transformers integrations/ggml.py reverse_permute_weights
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def permute_fixture():
    heads, head_dim, cols = 3, 8, 5
    w = rng.normal(0, 1, (heads * head_dim, cols)).astype(np.float32)
    p = permute(w, heads)
    assert np.array_equal(reverse_permute(p, heads), w)
    d = FIX / "gguf"
    (d / "permute_in.f32").write_bytes(np.ascontiguousarray(p, dtype="<f4").tobytes())
    (d / "permute_expected.f32").write_bytes(np.ascontiguousarray(reverse_permute(p, heads), dtype="<f4").tobytes())
    (d / "permute.json").write_text(json.dumps({"rows": heads * head_dim, "cols": cols, "heads": heads}) + "\n")


if __name__ == "__main__":
    gguf_fixtures()
    smollm2_fixtures()
    permute_fixture()
    print("wrote fixtures under", FIX)
