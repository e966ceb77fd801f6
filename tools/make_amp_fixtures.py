#!/usr/bin/env python3
"""Reference LoRA gradients of the tiny Llama under torch.autocast on the CPU,
for LoftTrainingTests' mixed-precision checks (bf16 and fp16 compute).

    /opt/refvenv/bin/python tools/make_amp_fixtures.py

Reads the tiny_llama fixture that tools/make_training_fixtures.py wrote (base
model, initial adapter, batch) and writes, next to it,
grads_autocast_bf16.safetensors and grads_autocast_fp16.safetensors: one
forward and backward of that batch with
`torch.autocast("cpu", dtype=torch.bfloat16 | torch.float16)`, attention
"eager", LoRA weights and their gradients float32 (PEFT keeps them so; autocast
casts them to the low precision inside each matmul). Autocast's matmuls also
round their *outputs* to bf16/fp16 where Loft keeps f32 outputs, so the two
agree within the low precision's tolerance, not exactly.
"""
import json
import os

import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
torch.use_deterministic_algorithms(True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = os.path.join(REPO, "Tests", "LoftTrainingTests", "Fixtures", "tiny_llama")


def grads_under_autocast(dtype):
    expected = json.load(open(os.path.join(CASE, "expected.json")))
    base = AutoModelForCausalLM.from_pretrained(os.path.join(REPO, expected["base"]), dtype=torch.float32,
                                                attn_implementation="eager")
    model = PeftModel.from_pretrained(base, os.path.join(CASE, "initial_adapter"), is_trainable=True)
    model.train()
    ids = torch.tensor(expected["input_ids"])
    labels = torch.tensor(expected["labels"])
    with torch.autocast("cpu", dtype=dtype):
        loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    params = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert params and all(g is not None and g.dtype == torch.float32 for g in params.values())
    sd = get_peft_model_state_dict(model, state_dict=params)
    return {k: v.detach().float().contiguous().clone() for k, v in sd.items()}, float(loss)


def main():
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        grads, loss = grads_under_autocast(dtype)
        path = os.path.join(CASE, f"grads_autocast_{name}.safetensors")
        save_file(grads, path, metadata={"format": "pt", "loss": repr(loss), "torch": torch.__version__})
        print(f"wrote {os.path.relpath(path, REPO)} (loss {loss:.6f})")


if __name__ == "__main__":
    main()
