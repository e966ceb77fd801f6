#!/usr/bin/env python3
"""Regenerate the bitsandbytes reference fixtures for LoftFormatsTests (BnBQuantizationTests).

    /opt/refvenv/bin/python tools/make_quant_fixtures.py

For a few seeded random matrices (sizes that are and are not multiples of the
64-element block, one with an odd row length, one with an all-zero block, one
with more than 256 blocks so double quantization has two absmax blocks), writes
Tests/LoftFormatsTests/Fixtures/bnb/<case>.safetensors holding:

  weight                 f32 [rows, cols]  the input
  {nf4,fp4}.packed       u8  [(n+1)/2]     bnb.functional.quantize_4bit, blocksize 64
  {nf4,fp4}.absmax       f32 [blocks]
  {nf4,fp4}.dequant      f32 [rows, cols]  dequantize_4bit of the above
  {nf4,fp4}_dq.*         the same with compress_statistics=True (double quant):
                         packed, absmax_q (u8), absmax2 (f32), offset (f32 [1]), dequant
  code2                  f32 [256]         the 8-bit dynamic map the absmax is quantized with
  int8.cb, int8.scb,     bnb's LLM.int8 row-wise weights (Int8Params: the weight in
  int8.dequant           fp16, CB int8, SCB per-row absmax, dequant = CB*SCB/127)

The 8-bit quantization of the absmax (double quant) is bnb's PyTorch backend
("default" kernel of bitsandbytes::quantize_blockwise, nearest level by
midpoints): bnb's native CPU kernel departs from that rule for ~0.4% of
values (it sometimes picks the farther level), and Loft follows the rule. So
double quant is composed here exactly as quantize_4bit composes it, with the
default kernel for the nested step.

Everything runs on CPU with one torch thread (torch's float sum, used for the
double-quant offset, splits work across threads above 32768 elements).
"""
import importlib.metadata
import json
import os

import torch

torch.set_num_threads(1)

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests", "LoftFormatsTests", "Fixtures", "bnb")

CASES = {
    "square_64x64": (64, 64),
    "rows_33x70": (33, 70),       # 2310 elements: a partial last block
    "odd_17x33": (17, 33),        # odd row length: bnb dequantizes through its generic path
    "nested_2blocks_128x130": (128, 130),  # 260 absmax values: two 256-blocks for double quant
    "zero_block_8x90": (8, 90),   # elements 64..127 are zero
}
# Row lengths that are multiples of 32 but not of 64 are avoided: on this CPU
# (AVX-512) bnb 0.50's dequantize_4bit kernel then takes block r*(cols//64) +
# c//64 for element (r, c) instead of the flat (r*cols + c)//64 its quantizer
# uses, so its own round trip is off. Real projections are multiples of 64.


_DEFAULT = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)


def quantize_4bit_double(w, qt):
    """F.quantize_4bit(w, compress_statistics=True) with the nested 8-bit step
    on bnb's PyTorch backend; returns a QuantState dequantize_4bit accepts."""
    q, s = F.quantize_4bit(w, blocksize=64, quant_type=qt, compress_statistics=False)
    absmax = s.absmax
    offset = absmax.mean()
    code = F.create_dynamic_map()
    qabs, absmax2 = torch.ops.bitsandbytes.quantize_blockwise.default.redispatch(_DEFAULT, absmax - offset, code, 256)
    state2 = F.QuantState(absmax=absmax2, code=code, blocksize=256, dtype=torch.float32)
    state = F.QuantState(absmax=qabs, shape=s.shape, dtype=s.dtype, blocksize=64, code=s.code, quant_type=qt,
                         offset=offset, state2=state2)
    return q, state


def make(name, shape, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float32) * 0.05
    # a few outliers, as real weights have
    idx = torch.randint(0, w.numel(), (max(1, w.numel() // 500),), generator=g)
    w.view(-1)[idx] *= 8
    if name.startswith("zero_block"):
        w.view(-1)[64:128] = 0
    t = {"weight": w.contiguous()}
    for qt in ("nf4", "fp4"):
        q, s = F.quantize_4bit(w, blocksize=64, quant_type=qt, compress_statistics=False)
        t[f"{qt}.packed"] = q.view(-1).contiguous()
        t[f"{qt}.absmax"] = s.absmax.contiguous()
        t[f"{qt}.dequant"] = F.dequantize_4bit(q, s).contiguous()
        q, s = quantize_4bit_double(w, qt)
        assert s.nested and s.state2.blocksize == 256
        t[f"{qt}_dq.packed"] = q.view(-1).contiguous()
        t[f"{qt}_dq.absmax_q"] = s.absmax.contiguous()
        t[f"{qt}_dq.absmax2"] = s.state2.absmax.contiguous()
        t[f"{qt}_dq.offset"] = s.offset.reshape(1).to(torch.float32).contiguous()
        t[f"{qt}_dq.dequant"] = F.dequantize_4bit(q, s).contiguous()
        t["code2"] = s.state2.code.contiguous()
    # LLM.int8 weights exactly as Int8Params quantizes them (via fp16)
    p = bnb.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
    p = p._quantize("cpu")
    cb, scb = p.CB, p.SCB
    ref_cb, ref_scb, _ = F.int8_vectorwise_quant(w.to(torch.float16))
    assert torch.equal(cb, ref_cb) and torch.equal(scb, ref_scb)
    t["int8.cb"] = cb.contiguous()
    t["int8.scb"] = scb.to(torch.float32).contiguous()
    t["int8.dequant"] = F.int8_vectorwise_dequant(cb, scb).contiguous()
    path = os.path.join(OUT, name + ".safetensors")
    save_file(t, path, metadata={"bitsandbytes": importlib.metadata.version("bitsandbytes"),
                                 "torch": torch.__version__})
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (name, shape) in enumerate(CASES.items()):
        make(name, shape, 100 + i)


if __name__ == "__main__":
    main()
