#!/usr/bin/env python3
"""Regenerate the PyTorch+PEFT reference fixtures for LoftTrainingTests.

    /opt/refvenv/bin/python tools/make_training_fixtures.py              # everything
    /opt/refvenv/bin/python tools/make_training_fixtures.py --only tiny  # tiny_llama, tiny_llama_rslora, tiny_qwen3, tiny_gemma3, tiny_gemma2, tiny_phi3, tiny_phi4_mini, tiny_qwen3_moe, tiny_mixtral
    /opt/refvenv/bin/python tools/make_training_fixtures.py --only dora  # tiny_llama_dora, tiny_qwen2_dora
    /opt/refvenv/bin/python tools/make_training_fixtures.py --only modules_to_save  # tiny_llama_tied_full_*
    /opt/refvenv/bin/python tools/make_training_fixtures.py --only smollm2 [--gguf PATH]

For each case: one LoRA training step (loss, per-token losses, every LoRA
gradient) and a short AdamW run with gradient clipping, all in float32 on CPU
with attn_implementation="eager". Everything is seeded; re-running on the same
versions reproduces the files byte for byte. Formats are described in
Tests/LoftTrainingTests/Fixtures/README.md.
"""
import argparse
import importlib.metadata
import json
import math
import os
import shutil
import sys
import tempfile

# PEFT keeps target_modules as a Python set and writes it to adapter_config.json in
# set-iteration order, which depends on string hash randomisation: pin the seed.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
torch.use_deterministic_algorithms(True)

import peft  # noqa: E402
import safetensors  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "Tests", "LoftTrainingTests", "Fixtures")
TINY = os.path.join("Tests", "LoftModelsTests", "Fixtures", "tiny")  # relative to REPO
DEFAULT_GGUF = os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf")

ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

SMOLLM2_TEXT = ("The quick brown fox jumps over the lazy dog while the old farmer watches quietly "
                "from the porch, wondering whether the rain will come before the harvest is "
                "finished and the barn is full of wheat.")


def _ver(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


VERSIONS = {
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "peft": peft.__version__,
    "safetensors": safetensors.__version__,
    "gguf": _ver("gguf"),
    "numpy": np.__version__,
}


def note(path):
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


def f32(x):
    """A float32 value as the shortest decimal that round-trips to the same float32."""
    v = np.float32(x)
    if not math.isfinite(float(v)):
        return None
    return float(np.format_float_positional(v, unique=True, trim="0"))


def f32list(t):
    return [f32(x) for x in t.detach().to(torch.float32).contiguous().view(-1).numpy()]


def _dumps(v, ind=0):
    """Indented objects; lists of scalars on one line; lists of lists one row a line."""
    pad = " " * ind
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {_dumps(x, ind + 1)}' for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list) and v and all(isinstance(x, list) for x in v):
        return "[\n" + ",\n".join(pad + "  " + json.dumps(x) for x in v) + "\n" + pad + "]"
    return json.dumps(v)


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(_dumps(obj))
        f.write("\n")
    json.load(open(path))
    note(path)


def lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def adapter_state(model, tensors_by_param_name):
    """Key a {parameter name: tensor} dict exactly as PEFT's save_pretrained does
    (drops the ".default" adapter name)."""
    sd = get_peft_model_state_dict(model, state_dict=tensors_by_param_name)
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}


def save_st(path, sd):
    save_file(sd, path, metadata={"format": "pt"})
    note(path)


def token_losses(logits, labels):
    """Per-position cross-entropy of the shifted prediction, exactly what
    transformers' ForCausalLMLoss averages: entry i of row b is the loss of
    predicting labels[b, i+1] from logits[b, i]; 0.0 where that label is -100."""
    lg = logits[:, :-1, :].float()
    lb = labels[:, 1:]
    tl = torch.nn.functional.cross_entropy(
        lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=-100, reduction="none")
    return tl.view(lb.shape)


def run_case(name, model, input_ids, labels, r, alpha, targets, use_rslora, lr, steps, base_desc,
             base_name_for_config, use_dora=False, modules_to_save=None):
    out = os.path.join(FIX, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)

    model.train()
    for p in model.parameters():
        p.requires_grad_(False)

    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, bias="none",
                     task_type="CAUSAL_LM", use_rslora=use_rslora, use_dora=use_dora,
                     modules_to_save=modules_to_save)
    torch.manual_seed(0)  # PEFT's kaiming-uniform init of lora_A draws from the global RNG
    pm = get_peft_model(model, cfg)
    pm.peft_config["default"].base_model_name_or_path = base_name_for_config

    # Overwrite every lora_B (PEFT initialises it to zeros) with N(0, 0.02^2),
    # in named_parameters() order, from a dedicated generator.
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.02)

    params = lora_params(pm)
    # DoRA adds lora_magnitude_vector.default.weight [out], initialised by PEFT to
    # the row norms of W (B was zero then; the random B above makes ‖W + s·B·A‖ differ).
    # modules_to_save wraps each listed module with its own trainable copy
    # (…embed_tokens.modules_to_save.default.weight); with tied embeddings PEFT's
    # default (ensure_weight_tying=False) copies each separately, untying them.
    trainable = ((".lora_A.", ".lora_B.") + ((".lora_magnitude_vector.",) if use_dora else ())
                 + ((".modules_to_save.",) if modules_to_save else ()))
    assert params and all(any(t in n for t in trainable) for n, _ in params), [n for n, _ in params]

    # scale PEFT uses in the forward pass
    scalings = sorted({float(m.scaling["default"]) for m in pm.modules() if hasattr(m, "scaling")
                       and isinstance(m.scaling, dict) and "default" in m.scaling})

    # initial adapter, exactly as PEFT writes it (minus its generated model-card README.md)
    ad = os.path.join(out, "initial_adapter")
    with tempfile.TemporaryDirectory() as td:
        pm.save_pretrained(td)
        os.makedirs(ad)
        for fn in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copyfile(os.path.join(td, fn), os.path.join(ad, fn))
            note(os.path.join(ad, fn))

    # --- one step: loss, token losses, gradients
    pm.zero_grad(set_to_none=True)
    res = pm(input_ids=input_ids, labels=labels)
    loss = res.loss
    lossv = float(loss.detach())
    tl = token_losses(res.logits.detach(), labels)
    n_items = int((labels[:, 1:] != -100).sum())
    check = float(tl.sum() / n_items)
    assert abs(check - lossv) <= 1e-5 * max(1.0, abs(lossv)), (check, lossv)
    loss.backward()
    grads = adapter_state(pm, {n: p.grad for n, p in params})
    assert len(grads) == len(params)
    save_st(os.path.join(out, "grads.safetensors"), grads)
    loss0 = lossv

    # --- short AdamW run from the same initial adapter (the weights have not moved yet)
    pm.zero_grad(set_to_none=True)
    plist = [p for _, p in params]
    opt = torch.optim.AdamW(plist, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    losses, norms = [], []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        l = pm(input_ids=input_ids, labels=labels).loss
        losses.append(f32(l.item()))
        l.backward()
        gn = torch.nn.utils.clip_grad_norm_(plist, 1.0)
        norms.append(f32(gn.item()))
        opt.step()
    with torch.no_grad():
        final_loss = f32(pm(input_ids=input_ids, labels=labels).loss.item())
    assert losses[0] == f32(loss0), (losses[0], loss0)
    save_st(os.path.join(out, "final_adapter.safetensors"), adapter_state(pm, {n: p for n, p in params}))

    exp = {
        "base": base_desc,
        "r": r,
        "lora_alpha": alpha,
        "use_rslora": use_rslora,
        "use_dora": use_dora,
        "modules_to_save": modules_to_save,
        "scaling": scalings[0] if len(scalings) == 1 else scalings,
        "targets": targets,
        "lora_B_init": "N(0, 0.02^2), torch.Generator().manual_seed(1234), in named_parameters() order",
        "input_ids": input_ids.tolist(),
        "labels": labels.tolist(),
        "num_label_tokens": n_items,
        "loss": f32(loss0),
        "token_losses": [f32list(row) for row in tl],
        "steps": {
            "optimizer": "torch.optim.AdamW",
            "lr": lr,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "weight_decay": 0.01,
            "max_grad_norm": 1.0,
            "num_steps": steps,
            "losses": losses,
            "grad_norms": norms,
            "final_loss": final_loss,
        },
        "versions": VERSIONS,
    }
    write_json(os.path.join(out, "expected.json"), exp)
    print(f"  {name}: scaling={exp['scaling']} loss={exp['loss']} "
          f"losses {losses[0]} -> {losses[-1]} (final {final_loss}); {len(grads)} LoRA tensors")


def tiny_batch(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 256, (2, 16), generator=g, dtype=torch.long)
    labels = ids.clone()
    labels[:, :5] = -100
    for b in range(2):
        # two more ignored positions per sequence, drawn from 5..15
        pos = torch.randperm(11, generator=g)[:2] + 5
        labels[b, pos] = -100
    return ids, labels


def load_tiny(arch):
    path = os.path.join(TINY, arch)
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    return m, path


def make_tiny(only=None):
    ids, labels = tiny_batch(42)
    if only:
        if "phi3" in only:
            make_phi3(ids, labels)
        if "phi4_mini" in only:
            make_phi4_mini(ids, labels)
        for arch in ("qwen3_moe", "mixtral"):
            if arch in only:
                make_moe(arch, ids, labels)
        return

    m, path = load_tiny("llama")
    run_case("tiny_llama", m, ids, labels, 4, 8, ALL_TARGETS, False, 5e-3, 20, path, path)

    m, path = load_tiny("llama")
    run_case("tiny_llama_rslora", m, ids, labels, 4, 8, ["q_proj", "v_proj"], True, 5e-3, 20, path, path)

    m, path = load_tiny("qwen3")
    run_case("tiny_qwen3", m, ids, labels, 4, 8, ALL_TARGETS, False, 5e-3, 20, path, path)

    m, path = load_tiny("gemma3")
    run_case("tiny_gemma3", m, ids, labels, 4, 8, ALL_TARGETS, False, 5e-3, 20, path, path)

    m, path = load_tiny("gemma2")
    run_case("tiny_gemma2", m, ids, labels, 4, 8, ALL_TARGETS, False, 5e-3, 20, path, path)

    make_phi3(ids, labels)
    make_phi4_mini(ids, labels)
    make_moe("qwen3_moe", ids, labels)
    make_moe("mixtral", ids, labels)


def make_phi3(ids, labels):
    # PEFT's module names for Phi-3: one adapter on each fused projection.
    m, path = load_tiny("phi3")
    run_case("tiny_phi3", m, ids, labels, 4, 8, ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], False, 5e-3, 20,
             path, path)


def make_phi4_mini(ids, labels):
    # partial rotary (12 of 16 dimensions turn), tied embeddings
    m, path = load_tiny("phi4_mini")
    run_case("tiny_phi4_mini", m, ids, labels, 4, 8, ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], False, 5e-3, 20,
             path, path)


def make_moe(arch, ids, labels):
    # LoRA on the attention; the router and the experts stay frozen. (PEFT 0.21
    # turns gate_proj/up_proj/down_proj targets on transformers 5's Qwen3-MoE
    # into target_parameters on the 3-D expert tensors, which Loft does not
    # train yet, and then leaves the dense layers' MLPs unadapted.)
    m, path = load_tiny(arch)
    run_case(f"tiny_{arch}", m, ids, labels, 4, 8, ["q_proj", "k_proj", "v_proj", "o_proj"], False, 5e-3, 20, path, path)


def make_dora():
    ids, labels = tiny_batch(42)

    m, path = load_tiny("llama")
    run_case("tiny_llama_dora", m, ids, labels, 4, 8, ALL_TARGETS, False, 5e-3, 20, path, path, use_dora=True)

    # Qwen2's q/k/v carry a bias, which DoRA's result must not scale.
    m, path = load_tiny("qwen2")
    run_case("tiny_qwen2_dora", m, ids, labels, 4, 8, ["q_proj", "k_proj", "v_proj", "down_proj"], False, 5e-3, 20,
             path, path, use_dora=True)


def make_modules_to_save():
    ids, labels = tiny_batch(42)
    # Tied embeddings, as SmolLM2: both listed, so two independent copies train.
    m, path = load_tiny("llama_tied")
    assert m.lm_head.weight is m.model.embed_tokens.weight
    run_case("tiny_llama_tied_full_head_embed", m, ids, labels, 4, 8, ["q_proj", "v_proj"], False, 5e-3, 10, path, path,
             modules_to_save=["embed_tokens", "lm_head"])
    # Only lm_head: the embedding stays on the original (tied) weights.
    m, path = load_tiny("llama_tied")
    run_case("tiny_llama_tied_full_head", m, ids, labels, 4, 8, ["q_proj", "v_proj"], False, 5e-3, 10, path, path,
             modules_to_save=["lm_head"])


def make_smollm2(gguf_path):
    gdir, gname = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    m = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32,
                                             attn_implementation="eager")
    ids = torch.tensor([tok(SMOLLM2_TEXT)["input_ids"]], dtype=torch.long)
    labels = ids.clone()
    labels[:, :5] = -100
    base = {"gguf": gname, "gguf_size": os.path.getsize(gguf_path),
            "loader": "transformers AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=float32) "
                      "(dequantized to f32; q/k weights un-permuted to HF layout by transformers)",
            "text": SMOLLM2_TEXT}
    run_case("smollm2", m, ids, labels, 2, 4, ["q_proj", "v_proj", "down_proj"], False, 1e-3, 20, base, gname)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["tiny", "dora", "modules_to_save", "smollm2"])
    ap.add_argument("--models", nargs="*", help="with --only tiny: just these (phi3, phi4_mini, qwen3_moe, mixtral)")
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    a = ap.parse_args()
    os.chdir(REPO)
    os.makedirs(FIX, exist_ok=True)
    if a.only in (None, "tiny"):
        make_tiny(a.models)
    if a.only in (None, "dora"):
        make_dora()
    if a.only in (None, "modules_to_save"):
        make_modules_to_save()
    if a.only in (None, "smollm2"):
        if not os.path.exists(a.gguf):
            sys.exit(f"missing {a.gguf}: run tools/fetch-model.sh")
        make_smollm2(a.gguf)


if __name__ == "__main__":
    main()
