#!/usr/bin/env python3
"""Regenerate the pre-quantized bitsandbytes checkpoint fixtures for LoftModelsTests (BnBCheckpointTests).

    /opt/refvenv/bin/python tools/make_bnb_checkpoint_fixtures.py

The tiny Llama (Tests/LoftModelsTests/Fixtures/tiny/llama) is loaded by
transformers with a BitsAndBytesConfig on CPU and written by save_pretrained,
as the `-bnb-4bit` / 8-bit repositories on the Hub are, into
Tests/LoftModelsTests/Fixtures/bnb/<case>/:

  nf4_dq  nf4 + double quant (the unsloth default), non-quantized tensors in bf16
  nf4     nf4, plain f32 absmax, non-quantized tensors in f32
  fp4     fp4 + double quant, non-quantized tensors in f16
  int8    LLM.int8 (weight int8 + SCB), non-quantized tensors in f32

The bf16/f16 tensors are the f32 ones cast after saving (real repositories
hold bf16 embeddings and norms); the reference below is computed after
reloading the directory, so it sees the same values.

reference.safetensors beside each checkpoint holds:
  input_ids      i32 [T]        the token batch
  logits         f32 [T, vocab] the reference logits (f32 compute, eager attention)
  dequant.<name> f32 [out, in]  bitsandbytes' dequantization of two projections
                                (layer 0 k_proj, layer 1 down_proj: rows of 96)
  sum.<name>     f64 [2]        sum and index-weighted sum (weight i % 97 + 1) of
                                every projection's dequantization, a fingerprint

4-bit: the dequantization is bnb's pure-torch one (its "default" backend, the
double-quantized absmax decoded by dequantize_blockwise + offset). bnb 0.50's
native CPU dequantize_4bit kernel mis-indexes blocks when a row is a multiple
of 32 but not of 64 (down_proj here); the script checks that the two agree on
every other projection, and runs transformers' own forward with the native
4-bit matmul replaced by dequantize (default kernel) + an f32 linear, so
`logits` are transformers' quantized model's, less that bug (its fused CPU
gemm_4bit shares it); the script prints how far the native path is.

int8: transformers' Linear8bitLt forward quantizes the activations to int8 as
well (LLM.int8 with outlier columns), which no weight-only frozen base
reproduces; the reference logits are the float model run on the dequantized
weights CB * SCB / 127 (what training on the int8 base computes), and the
script prints how far transformers' own int8 forward is from them.
"""
import os

import torch

torch.set_num_threads(1)

import bitsandbytes.functional as F  # noqa: E402
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(REPO, "Tests", "LoftModelsTests", "Fixtures", "tiny", "llama")
OUT = os.path.join(REPO, "Tests", "LoftModelsTests", "Fixtures", "bnb")
PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
FULL = ["model.layers.0.self_attn.k_proj", "model.layers.1.mlp.down_proj"]
IDS = [3, 141, 59, 26, 53, 58, 97, 93, 238, 46, 2, 64]

CASES = {
    "nf4_dq": (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.float32), torch.bfloat16),
    "nf4": (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
                               bnb_4bit_compute_dtype=torch.float32), torch.float32),
    "fp4": (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32), torch.float16),
    "int8": (BitsAndBytesConfig(load_in_8bit=True), torch.float32),
}


def default_dequantize_4bit(A, quant_state=None, absmax=None, out=None, blocksize=None, quant_type="fp4"):
    """bnb's dequantize_4bit composed with its pure-torch kernel (see the module doc)."""
    s = quant_state
    absmax = s.absmax
    if s.nested:
        absmax = F.dequantize_blockwise(s.absmax, s.state2) + s.offset
    return _dequantize_4bit_compute(A.view(-1), absmax.float(), s.code.to(A.device), s.blocksize, s.shape, s.dtype)


def dequantize_then_linear(A, B, quant_state, out=None, bias=None):
    """bnb.matmul_4bit as its generic path computes it (dequantize, then an f32 linear), with the default kernel."""
    return torch.nn.functional.linear(A, default_dequantize_4bit(B, quant_state).to(A.dtype), bias)


def fingerprint(w):
    flat = w.double().flatten()
    weights = (torch.arange(flat.numel(), dtype=torch.float64) % 97) + 1
    return torch.tensor([flat.sum().item(), (flat * weights).sum().item()], dtype=torch.float64)


def recast_floats(path, dtype):
    """Casts the float tensors that bnb left unquantized (embedding, norms, lm_head) to `dtype`."""
    if dtype == torch.float32:
        return
    sd = load_file(path)
    for k, v in sd.items():
        if v.dtype == torch.float32 and not any(p in k for p in (".absmax", "quant_map", "nested_", ".SCB")):
            sd[k] = v.to(dtype)
    save_file(sd, path, metadata={"format": "pt"})


def float_model(dense, d):
    """The tiny Llama in f32 with the dequantized projections `dense` and the
    embedding, norms and lm_head as directory `d` holds them (maybe bf16/f16)."""
    f = AutoModelForCausalLM.from_pretrained(SRC, dtype=torch.float32, attn_implementation="eager")
    params = dict(f.named_parameters())
    with torch.no_grad():
        for name, w in dense.items():
            f.get_submodule(name).weight.copy_(w)
        for k, v in load_file(os.path.join(d, "model.safetensors")).items():
            if k in params and v.dtype.is_floating_point:
                params[k].copy_(v.float())
    return f


def logits_of(model):
    # bnb 0.50 repacks 4-bit weights for its AVX-512 bf16 CPU kernel at the
    # first eval forward, which fails on rows that are not whole 64-blocks;
    # the generic path (dequantize_4bit, then an f32 matmul) is kept.
    for mod in model.modules():
        if hasattr(mod, "support_avx512bf16_for_cpu"):
            mod.support_avx512bf16_for_cpu = False
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].float().contiguous()


def main():
    ids = torch.tensor(IDS, dtype=torch.int32)
    for case, (qconfig, float_dtype) in CASES.items():
        d = os.path.join(OUT, case)
        os.makedirs(d, exist_ok=True)
        m = AutoModelForCausalLM.from_pretrained(SRC, quantization_config=qconfig, device_map="cpu",
                                                 dtype=torch.float32, attn_implementation="eager")
        m.save_pretrained(d)
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(d, extra)):
                os.remove(os.path.join(d, extra))
        recast_floats(os.path.join(d, "model.safetensors"), float_dtype)

        # Reload the written directory: the reference sees exactly the files.
        m = AutoModelForCausalLM.from_pretrained(d, device_map="cpu", dtype=torch.float32, attn_implementation="eager")
        # transformers keeps a pre-quantized checkpoint's bf16/f16 tensors as
        # stored whatever `dtype` says; the reference computes in f32.
        for p in m.parameters():
            if p.dtype in (torch.bfloat16, torch.float16):
                p.data = p.data.float()
        ref = {"input_ids": ids}
        dense = {}
        for i in range(m.config.num_hidden_layers):
            for p in PROJECTIONS:
                name = f"model.layers.{i}.{p}"
                mod = m.get_submodule(name)
                if case == "int8":
                    w = mod.weight
                    cb, scb = w.data, getattr(w, "SCB", None)
                    if scb is None:
                        scb = mod.state.SCB
                    deq = (cb.float() * scb.float().unsqueeze(1)) * (1.0 / 127)
                else:
                    s = mod.weight.quant_state
                    deq = default_dequantize_4bit(mod.weight.data, s).float()
                    if s.shape[-1] % 64 == 0:
                        assert torch.equal(deq, F.dequantize_4bit(mod.weight.data, s).float()), name
                dense[name] = deq
                ref[f"sum.{name}"] = fingerprint(deq)
                if name in FULL:
                    ref[f"dequant.{name}"] = deq.contiguous()

        if case == "int8":
            own = logits_of(m)
            logits = logits_of(float_model(dense, d))
            print(f"{case}: transformers' own LLM.int8 forward is {(own - logits).abs().max().item():.3g} from the "
                  f"dequantized-weight reference (activation quantization)")
        else:
            import bitsandbytes as bnb
            native = bnb.matmul_4bit
            bnb.matmul_4bit = dequantize_then_linear
            try:
                logits = logits_of(m)
            finally:
                bnb.matmul_4bit = native
            buggy = logits_of(m)
            # and the float model on the reference dequantization agrees with transformers' forward
            agree = (logits_of(float_model(dense, d)) - logits).abs().max().item()
            print(f"{case}: transformers (default dequant) vs float model on the dequantized weights {agree:.3g}; "
                  f"with bnb's native CPU kernel {(buggy - logits).abs().max().item():.3g} away")
            assert agree < 1e-5, case
        ref["logits"] = logits
        save_file(ref, os.path.join(d, "reference.safetensors"), metadata={"case": case})  # one key: the header order is fixed
        print(case, "written:", sorted(os.listdir(d)))


if __name__ == "__main__":
    main()
