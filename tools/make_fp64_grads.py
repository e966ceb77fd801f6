#!/usr/bin/env python3
"""Float64 PyTorch+PEFT gradients for the real-model training fixture.

The float32 reference (grads.safetensors, by make_training_fixtures.py) itself
differs from exact arithmetic by up to ~2e-5 relative on SmolLM2's 30 layers,
and two independent float32 implementations can differ by twice that plus the
accumulation order of 50k-term sums. Comparing Loft against the same
computation in float64 measures Loft's own error. Writes
Tests/LoftTrainingTests/Fixtures/smollm2/grads_fp64.safetensors (stored as
float32, which adds < 1e-7 relative).

Run: /opt/refvenv/bin/python tools/make_fp64_grads.py [--gguf PATH]
"""
import argparse, json, os
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
from safetensors.torch import save_file

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", default=os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
args = ap.parse_args()
torch.manual_seed(0)
torch.set_num_threads(2)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fx = os.path.join(root, "Tests/LoftTrainingTests/Fixtures/smollm2")
e = json.load(open(os.path.join(fx, "expected.json")))
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf),
                                             torch_dtype=torch.float64, attn_implementation="eager")
model = PeftModel.from_pretrained(model, os.path.join(fx, "initial_adapter"), is_trainable=True).double()
out = model(input_ids=torch.tensor(e["input_ids"]), labels=torch.tensor(e["labels"]))
out.loss.backward()
grads = {n.replace(".default", ""): p.grad.float().contiguous() for n, p in model.named_parameters() if p.grad is not None}
save_file(grads, os.path.join(fx, "grads_fp64.safetensors"), metadata={"format": "pt", "loss": repr(out.loss.item())})
print("wrote", len(grads), "gradients; float64 loss", out.loss.item())
