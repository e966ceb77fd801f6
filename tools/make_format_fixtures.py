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

    specials16 = np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x3C00, 0x3555,
                           0x7E00, 0x7C01, 0xFE01, 0x7FFF, 0x83FF],
                          dtype=np.uint16)
    h = np.concatenate([rng.normal(0, 1, 49).astype(np.float16).view(np.uint16), specials16])
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


def transformers_qk_fixture():
    """transformers' own GGUF loader (dequantize + reverse_permute of q/k) on the
    real SmolLM2 file: checksums of the Hugging Face-order q_proj / k_proj."""
    path = os.environ.get("LOFT_TEST_MODEL") or os.path.expanduser(
        os.path.join(os.environ.get("LOFT_CACHE", "~/.cache/loft"), "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not os.path.exists(path):
        return
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    config = LlamaConfig(**load_gguf_checkpoint(path)["config"])
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    out = {"num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads}
    for layer in (0, 29):
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k")):
            w = tensors[f"model.layers.{layer}.self_attn.{hf}.weight"].float().numpy()
            out[f"blk.{layer}.{gg}.weight"] = {"shape": list(w.shape), "checksum": str(checksum(w)),
                                                "row1_first8": [float(v) for v in w[1, :8]]}
    (FIX / "gguf" / "smollm2_transformers_qk.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


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


def small_gguf_fixture():
    """A tiny GGUF written by gguf-py's GGUFWriter: a few tensors of different
    types (for whole-file dequantization and the truncation / fuzz tests), with
    gguf-py's dequantization of each as float32 bit patterns."""
    path = FIX / "gguf" / "small.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_string("general.name", "loft-fixture")
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "<s>"])
    w.add_float32("llama.rope.freq_base", 10000.0)
    specs = {
        "f32.weight": (T.F32, (3, 8)),
        "f16.weight": (T.F16, (2, 8)),
        "q8_0.weight": (T.Q8_0, (3, 64)),
        "q4_1.weight": (T.Q4_1, (2, 32)),
        "q4_k.weight": (T.Q4_K, (2, 256)),
        "q6_k.weight": (T.Q6_K, (1, 256)),
    }
    k_f16 = {T.Q4_K: (0, 2), T.Q6_K: (208,)}
    for name, (qt, shape) in specs.items():
        x = rng.normal(0, 1, shape).astype(np.float32)
        if qt == T.F32:
            w.add_tensor(name, x)
        elif qt == T.F16:
            w.add_tensor(name, x.astype(np.float16))
        elif qt in k_f16:
            nb = shape[0] * shape[1] // 256
            raw = random_raw_blocks(qt, nb, k_f16[qt]).reshape(shape[0], -1)
            w.add_tensor(name, raw, raw_dtype=qt)
        else:
            w.add_tensor(name, quants.quantize(x, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        v = np.ascontiguousarray(quants.dequantize(np.asarray(t.data), t.tensor_type), dtype=np.float32)
        out[t.name] = {"type": t.tensor_type.name, "shape": [int(s) for s in v.shape],
                       "f32_bits": [int(b) for b in v.ravel().view(np.uint32)]}
    (FIX / "gguf" / "small.json").write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")


# ---------------------------------------------------------------- safetensors

def st_fixtures():
    import torch
    from safetensors.torch import save_file
    from safetensors.numpy import save as np_save
    d = FIX / "safetensors"
    d.mkdir(parents=True, exist_ok=True)

    g = torch.Generator().manual_seed(7)
    f = lambda *s: torch.randn(*s, generator=g)
    tensors = {
        "f64": f(2, 3).double(),
        "f32": torch.cat([f(5), torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-45])]),
        "f16": torch.cat([f(6), torch.tensor([65504.0, 6e-8, float("inf"), float("nan")])]).half(),
        "bf16": torch.cat([f(6), torch.tensor([3e38, 1e-39, -float("inf"), float("nan")])]).bfloat16(),
        "i64": torch.tensor([[0, -1], [2**63 - 1, -2**63], [123456789012, -5]], dtype=torch.int64),
        "i32": torch.tensor([0, -1, 2**31 - 1, -2**31, 16777217], dtype=torch.int32),
        "i16": torch.tensor([0, -1, 32767, -32768], dtype=torch.int16),
        "i8": torch.tensor([[0, -1, 127], [-128, 5, 6]], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 128, 255], dtype=torch.uint8),
        "u16": torch.tensor([0, 1, 65535], dtype=torch.uint16),
        "u32": torch.tensor([0, 1, 2**32 - 1], dtype=torch.uint32),
        "u64": torch.tensor([0, 1, 2**63 + 5], dtype=torch.uint64),
        "bool": torch.tensor([[True, False], [False, True]]),
        "f8_e4m3": torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn),
        "f8_e5m2": torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e5m2),
        "f8_e8m0": torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e8m0fnu),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    save_file(tensors, str(d / "all_dtypes.safetensors"), metadata={"format": "pt", "made_by": "tools/make_format_fixtures.py"})
    # The same without metadata: python's metadata key order is a hash order, so
    # this is the file a byte-for-byte comparison of the tensor order can use.
    save_file(tensors, str(d / "all_dtypes_nometa.safetensors"))
    expected = {}
    for name, t in tensors.items():
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        e = {"shape": list(t.shape), "hex": raw.hex()}
        # float32 value of every element, as the bit pattern (uint32), via torch's own conversion
        if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
            vals = [int(v) for v in t.flatten().tolist()]
            e["f32_bits"] = [int(v) for v in np.array(vals, dtype=np.float64).astype(np.float32).view(np.uint32)]
        else:
            e["f32_bits"] = [int(v) for v in t.float().flatten().numpy().view(np.uint32)]
        expected[name] = e
    from safetensors import safe_open
    with safe_open(str(d / "all_dtypes.safetensors"), "pt") as sf:
        for name in tensors:
            expected[name]["dtype"] = sf.get_slice(name).get_dtype()
        meta = sf.metadata()
    (d / "all_dtypes.json").write_text(json.dumps({"metadata": meta, "tensors": expected}, indent=1, sort_keys=True) + "\n")

    # Writer cases: tensors the Swift test can rebuild from the same formulas.
    # writer_case: value(i) = (i - 3) * 0.25 for floats, i - 3 for ints, i % 3 == 0 for bool.
    def vals(n):
        return np.arange(n, dtype=np.float64) - 3
    case = {
        "w.f32": (vals(6) * 0.25).astype(np.float32).reshape(2, 3),
        "b.f16": (vals(5) * 0.25).astype(np.float16),
        "a.i64": vals(4).astype(np.int64).reshape(2, 2),
        "c.i8": vals(3).astype(np.int8),
        "d.u8": (vals(7) + 3).astype(np.uint8),
        "e.bool": (np.arange(5) % 3 == 0),
        "f.f64": (vals(2) * 0.25).astype(np.float64),
        "g.i32": vals(3).astype(np.int32).reshape(1, 3, 1),
        "h.i16": vals(2).astype(np.int16),
        "scalar.f32": np.array(1.5, dtype=np.float32),
        "zero.f32": np.zeros((0,), dtype=np.float32),
        "Z\"quote\\é": np.array([7.0], dtype=np.float32),
    }
    (d / "writer_case.safetensors").write_bytes(np_save(case, metadata={"format": "pt"}))
    (d / "writer_case_nometa.safetensors").write_bytes(np_save(case))
    (d / "writer_case_emptymeta.safetensors").write_bytes(np_save(case, metadata={}))

    # A 2-shard checkpoint with its index, as transformers writes it.
    s = d / "sharded"
    s.mkdir(exist_ok=True)
    shard1 = {"model.embed.weight": f(4, 3), "model.layers.0.w": f(3, 3).half()}
    shard2 = {"model.layers.1.w": f(3, 3).bfloat16(), "lm_head.weight": f(4, 3)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file(shard1, str(s / names[0]), metadata={"format": "pt"})
    save_file(shard2, str(s / names[1]), metadata={"format": "pt"})
    total = sum(t.numel() * t.element_size() for t in {**shard1, **shard2}.values())
    weight_map = {k: names[0] for k in shard1} | {k: names[1] for k in shard2}
    (s / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")
    (d / "sharded.json").write_text(json.dumps({k: {"shape": list(t.shape), "f32_bits": [int(v) for v in t.float().flatten().numpy().view(np.uint32)]}
                                               for k, t in {**shard1, **shard2}.items()}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    gguf_fixtures()
    smollm2_fixtures()
    permute_fixture()
    small_gguf_fixture()
    st_fixtures()
    transformers_qk_fixture()
    print("wrote fixtures under", FIX)
