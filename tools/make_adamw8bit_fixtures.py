#!/usr/bin/env python3
"""Regenerate the bitsandbytes 8-bit AdamW fixtures for LoftTrainingTests.

    /opt/refvenv/bin/python tools/make_adamw8bit_fixtures.py

Writes Tests/LoftTrainingTests/Fixtures/adamw_8bit/reference.safetensors with

  map_signed, map_unsigned       bitsandbytes' dynamic maps (create_dynamic_map),
                                 as the optimizer state holds them (see below)
  blockwise.x                    1100 random floats (4 full blocks of 256 and a
                                 partial one)
  blockwise.signed.codes/absmax  F.quantize_blockwise(x, signed map, blocksize 256)
  blockwise.signed.dequant       F.dequantize_blockwise of that
  blockwise.unsigned.*           the same for x² with the unsigned map
  adam.param0                    a 1100-element parameter before any step
  adam.grad{s}                   the gradient given at step s (1-based)
  adam.param{s}                  the parameter after step s
  adam.state1_{s}/absmax1_{s}    the quantized first moment after step s
  adam.state2_{s}/absmax2_{s}    the quantized second moment after step s

The optimizer is bnb.optim.AdamW8bit (what transformers' `adamw_8bit` builds)
with min_8bit_size=0 so this small tensor takes the 8-bit path, run on CPU by
bitsandbytes' own CPU kernel. Metadata records the versions and the
hyper-parameters. Seeded; re-running on the same versions gives the same bytes.

Note on the maps: bitsandbytes' CPU quantizer sets code[0] = -1.0 in the map
it is given (the signed map's first entry is -0.99297 otherwise, which its
binary search cannot handle), and the optimizer shares one map object per
kind, so from the first step on the map in use has code[0] = -1. The fixture
stores the maps after the run, i.e. as they are used; `map_signed_fresh` is
the map as create_dynamic_map returns it.
"""
import importlib.metadata
import os

import torch

torch.set_num_threads(1)

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "Tests", "LoftTrainingTests", "Fixtures", "adamw_8bit")

LR, BETAS, EPS, WD, STEPS, N = 1e-2, (0.9, 0.999), 1e-8, 0.01, 3, 1100


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(8)
    tensors = {}
    tensors["map_signed_fresh"] = F.create_dynamic_map(signed=True)

    x = torch.randn(N, generator=gen) * 0.37
    for kind, values in (("signed", x), ("unsigned", x * x)):
        code = F.create_dynamic_map(signed=kind == "signed")
        q, state = F.quantize_blockwise(values, code=code, blocksize=256)
        tensors[f"blockwise.{kind}.codes"] = q.clone()
        tensors[f"blockwise.{kind}.absmax"] = state.absmax.clone()
        tensors[f"blockwise.{kind}.dequant"] = F.dequantize_blockwise(q, state).clone()
    tensors["blockwise.x"] = x.clone()

    param = torch.nn.Parameter(torch.randn(N, generator=gen) * 0.1)
    tensors["adam.param0"] = param.detach().clone()
    opt = bnb.optim.AdamW8bit([param], lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, min_8bit_size=0)
    for s in range(1, STEPS + 1):
        grad = torch.randn(N, generator=gen) * (0.05 * s)
        grad[:40] = 0  # a run of zeros inside a block
        param.grad = grad.clone()
        opt.step()
        st = opt.state[param]
        assert st["state1"].dtype == torch.uint8 and st["absmax1"].numel() == 5
        tensors[f"adam.grad{s}"] = grad
        tensors[f"adam.param{s}"] = param.detach().clone()
        tensors[f"adam.state1_{s}"] = st["state1"].clone()
        tensors[f"adam.absmax1_{s}"] = st["absmax1"].clone()
        tensors[f"adam.state2_{s}"] = st["state2"].clone()
        tensors[f"adam.absmax2_{s}"] = st["absmax2"].clone()
    tensors["map_signed"] = opt.state[param]["qmap1"].clone()
    tensors["map_unsigned"] = opt.state[param]["qmap2"].clone()

    meta = {
        "bitsandbytes": importlib.metadata.version("bitsandbytes"),
        "torch": torch.__version__,
        "lr": str(LR), "beta1": str(BETAS[0]), "beta2": str(BETAS[1]), "eps": str(EPS),
        "weight_decay": str(WD), "steps": str(STEPS), "blocksize": "256",
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "reference.safetensors"), metadata=meta)
    print("wrote", os.path.join(OUT, "reference.safetensors"))


if __name__ == "__main__":
    main()
