#!/usr/bin/env python3
"""Regenerate the QLoRA exactness fixture for LoftTrainingTests (tiny_llama_qlora_nf4).

    /opt/refvenv/bin/python tools/make_qlora_fixture.py

The tiny Llama with every projection weight replaced by bitsandbytes'
dequantize_4bit(quantize_4bit(W, nf4, blocksize 64, double quant)) in float32,
then one PEFT LoRA step and a short AdamW run exactly as
tools/make_training_fixtures.py does for tiny_llama (same batch, same init).

bnb 0.50's CPU dequantize_4bit kernel mis-indexes blocks when a row is a
multiple of 32 but not of 64 (down_proj here has rows of 96), so the
dequantization is bnb's own pure-torch implementation (its "default"
backend), checked equal to dequantize_4bit wherever the kernel is right; the
double quantization is composed as in tools/make_quant_fixtures.py.
"""
import os
import sys

os.environ.setdefault("PYTHONHASHSEED", "0")
if os.environ["PYTHONHASHSEED"] != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import make_training_fixtures as mtf  # noqa: E402
import make_quant_fixtures as mqf  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute  # noqa: E402
from bitsandbytes.backends.utils import _get_4bit_code  # noqa: E402

torch.set_num_threads(1)  # torch's sum (the double-quant offset) is single-threaded below 32768 values anyway


def nf4_round_trip(w):
    q, s = mqf.quantize_4bit_double(w, "nf4")
    absmax = F.dequantize_blockwise(s.absmax, s.state2) + s.offset
    out = _dequantize_4bit_compute(q.view(-1), absmax.float(), _get_4bit_code("nf4", q.device), s.blocksize,
                                   s.shape, torch.float32)
    if w.shape[-1] % 64 == 0:
        assert torch.equal(out, F.dequantize_4bit(q, s)), "bnb's two dequantizers disagree"
    return out


def main():
    os.chdir(mtf.REPO)
    ids, labels = mtf.tiny_batch(42)
    m, path = mtf.load_tiny("llama")
    with torch.no_grad():
        for name, mod in m.named_modules():
            if name.split(".")[-1] in mtf.ALL_TARGETS:
                mod.weight.copy_(nf4_round_trip(mod.weight.detach().float().contiguous()))
    mtf.run_case("tiny_llama_qlora_nf4", m, ids, labels, 4, 8, mtf.ALL_TARGETS, False, 5e-3, 20, path, path)


if __name__ == "__main__":
    main()
