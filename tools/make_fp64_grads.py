#!/usr/bin/env python3
"""Float64 PyTorch+PEFT gradients for the real-model training fixture.

Two float32 implementations of SmolLM2's 30 layers differ from each other by
more than each differs from exact arithmetic, so Loft's real-model gradients
are checked against this float64 run, which measures Loft's own error.

transformers keeps four computations in float32 even in a float64 model:
RMSNorm (`hidden_states.to(torch.float32)`), the eager attention softmax
(`dtype=torch.float32`), the rotary cos/sin, and the causal-LM loss
(`logits.float()`). Each rounds to float32 and, through the backward's
cancellations, leaves the "float64" gradients ~1e-5 relative from exact;
a float32 implementation that makes the same roundings (PyTorch's own) then
looks closer to it than one that rounds elsewhere. They are patched here to
run in float64, so this file holds the gradients of exact arithmetic (up to
float64 rounding) on the same weights, inverse frequencies and inputs.

Writes Tests/LoftTrainingTests/Fixtures/smollm2/grads_fp64.safetensors
(stored as float32, which adds < 1e-7 relative) and prints how far PyTorch's
own float32 gradients (grads.safetensors) are from it.

Run: /opt/refvenv/bin/python tools/make_fp64_grads.py [--gguf PATH]
"""
import argparse, json, os
import torch
import torch.nn.functional as F
import transformers.models.llama.modeling_llama as llama
from transformers import AutoModelForCausalLM
from peft import PeftModel
from safetensors.torch import save_file, load_file


def rms_norm_in_input_dtype(self, x):
    variance = x.pow(2).mean(-1, keepdim=True)
    return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))


@torch.no_grad()
def rotary_in_input_dtype(self, x, position_ids):
    # The inverse frequencies stay the float32 values the model holds (they are
    # part of the model); the angles and their cos/sin are exact.
    freqs = position_ids[..., None].to(x.dtype) * self.inv_freq.to(device=x.device, dtype=x.dtype)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def eager_attention_in_input_dtype(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key = llama.repeat_kv(key, module.num_key_value_groups)
    value = llama.repeat_kv(value, module.num_key_value_groups)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def patch_float64():
    """Run transformers' float32 islands (RMSNorm, rotary, eager softmax) in the input's dtype.
    Also used by tools/make_dpo_fixtures.py for its float64 reference gradients."""
    llama.LlamaRMSNorm.forward = rms_norm_in_input_dtype
    llama.LlamaRotaryEmbedding.forward = rotary_in_input_dtype
    llama.eager_attention_forward = eager_attention_in_input_dtype


def main():
    patch_float64()
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
    logits = model(input_ids=torch.tensor(e["input_ids"])).logits
    # The loss in float64: next-token targets, mean over trained tokens.
    labels = torch.tensor(e["labels"])
    targets = F.pad(labels, (0, 1), value=-100)[..., 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    grads = {n.replace(".default", ""): p.grad.float().contiguous() for n, p in model.named_parameters() if p.grad is not None}
    save_file(grads, os.path.join(fx, "grads_fp64.safetensors"), metadata={"format": "pt", "loss": repr(loss.item())})
    print("wrote", len(grads), "gradients; float64 loss", repr(loss.item()), "; float32 loss", e["loss"])

    fp32 = load_file(os.path.join(fx, "grads.safetensors"))
    worst = max(((fp32[k] - g).abs().max() / g.abs().max()).item() for k, g in grads.items())
    print(f"PyTorch float32 gradients vs float64: max relative error {worst:.2e}")


if __name__ == "__main__":
    main()
