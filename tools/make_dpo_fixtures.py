#!/usr/bin/env python3
"""Regenerate the TRL+PEFT reference fixtures for preference training.

    /work/refvenv/bin/python tools/make_dpo_fixtures.py                # everything
    /work/refvenv/bin/python tools/make_dpo_fixtures.py --only tokens  # dpo_en_demo tokenized by TRL
    /work/refvenv/bin/python tools/make_dpo_fixtures.py --only tiny    # every loss on the tiny Llama
    /work/refvenv/bin/python tools/make_dpo_fixtures.py --only smollm2 [--gguf PATH]         # DPO sigmoid
    /work/refvenv/bin/python tools/make_dpo_fixtures.py --only smollm2-losses [--gguf PATH]  # every other loss

Each loss case runs TRL's own trainer code for one batch on a LoRA model in
float32 on the CPU (eager attention, dropout off as TRL's disable_dropout
does) and records the loss, every metric TRL logs, and every LoRA gradient:

- DPOTrainer.compute_loss (sigmoid, hinge, ipo, robust) on a PEFT model built
  by the trainer from `peft_config`, then lora_B overwritten with N(0, 0.02²)
  so A and B both get gradients; the reference is the base (adapter disabled).
- The same with a PeftModel passed in (an SFT adapter, `lora_model_dir`): TRL
  copies it as the frozen "ref" adapter, so the loss is ln 2 and the rewards 0
  at step 0; and a fresh LoRA on the merged SFT model (`base_adapter`).
- ORPOTrainer.get_batch_loss_metrics and CPOTrainer.get_batch_loss_metrics
  (loss_type="simpo"), KTOTrainer.compute_loss (loss_type="kto").

Formats: Tests/LoftTrainingTests/Fixtures/preference/README.md.
"""
import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import sys
import tempfile
import warnings

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")

import peft  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402
from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "Tests", "LoftTrainingTests", "Fixtures", "preference")
TINY = os.path.join("Tests", "LoftModelsTests", "Fixtures", "tiny", "llama")
DATA = os.path.join(REPO, "..", "shared", "fixtures", "datasets")
DEFAULT_GGUF = os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf")
ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _ver(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


VERSIONS = {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "datasets": _ver("datasets")}


def note(path):
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


def f64(x):
    return float(x)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    note(path)


def tiny_tokenizer():
    """A word-level tokenizer over the tiny model's 256 ids ("t0".."t253", <pad>=254, <eos>=255)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {f"t{i}": i for i in range(254)}
    vocab["<pad>"] = 254
    vocab["<eos>"] = 255
    tk = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")


def dummy_pairs():
    return Dataset.from_list([{"prompt": "t1 t2", "chosen": " t3", "rejected": " t4"}] * 2)


def common_args(cls, **kw):
    d = tempfile.mkdtemp()
    base = dict(output_dir=d, report_to="none", bf16=False, fp16=False, use_cpu=True, per_device_train_batch_size=2,
                gradient_checkpointing=False, logging_steps=1, save_strategy="no")
    base.update(kw)
    return cls(**base)


def randomize_b(model, seed=1234):
    """lora_B of the trained ("default") adapter ← N(0, 0.02²), in named_parameters() order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B.default." in n:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.02)


def trained_params(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def save_case(out, model, loss, metrics, extra):
    """The adapter before the step (PEFT layout), the gradients of the step, and expected.json."""
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    params = trained_params(model)
    grads = get_peft_model_state_dict(model, state_dict={n: p.grad for n, p in params}, adapter_name="default")
    grads = {k: v.detach().float().contiguous().clone() for k, v in grads.items()}
    assert len(grads) == len(params), (len(grads), len(params))
    save_file(grads, os.path.join(out, "grads.safetensors"), metadata={"format": "pt"})
    note(os.path.join(out, "grads.safetensors"))
    exp = {"loss": f64(loss), "metrics": {k: f64(v) for k, v in metrics.items()}, "versions": VERSIONS}
    exp.update(extra)
    write_json(os.path.join(out, "expected.json"), exp)
    print(f"  {os.path.basename(out)}: loss={float(loss):.6f} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "/" in k))


def save_adapter(model, out, name="initial_adapter"):
    ad = os.path.join(out, name)
    with tempfile.TemporaryDirectory() as td:
        model.save_pretrained(td, selected_adapters=["default"])
        os.makedirs(ad, exist_ok=True)
        for fn in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copyfile(os.path.join(td, fn), os.path.join(ad, fn))


def tiny_batch(seed):
    """Two pairs of random token ids (prompt lengths 5 and 7; completions of different lengths)."""
    g = torch.Generator().manual_seed(seed)
    def ids(n):
        return torch.randint(0, 254, (n,), generator=g).tolist()
    return [{"prompt_ids": ids(5), "chosen_ids": ids(6), "rejected_ids": ids(4)},
            {"prompt_ids": ids(7), "chosen_ids": ids(3), "rejected_ids": ids(8)}]


def trl_metrics(trainer):
    return {k: v[-1] for k, v in trainer._metrics["train"].items()
            if k.startswith("rewards/") or k.startswith("logps/") or k in ("kl",)}


def load_tiny():
    return AutoModelForCausalLM.from_pretrained(os.path.join(REPO, TINY), dtype=torch.float32, attn_implementation="eager")


def dpo_case(name, loss_type, beta=0.1, label_smoothing=0.0, model=None, peft_config=None, base_desc=TINY, batch=None,
             tokenizer=None, randomize=True, save_initial=True, dtype=torch.float32):
    lora = peft_config or LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=ALL_TARGETS, bias="none",
                                     task_type="CAUSAL_LM")
    torch.manual_seed(0)
    args = common_args(DPOConfig, beta=beta, loss_type=[loss_type], label_smoothing=label_smoothing, max_length=None)
    is_peft = isinstance(model, PeftModel)
    trainer = DPOTrainer(model=model if model is not None else load_tiny(), args=args, train_dataset=dummy_pairs(),
                         processing_class=tokenizer or tiny_tokenizer(), peft_config=None if is_peft else lora)
    pm = trainer.model
    if randomize and not is_peft:
        randomize_b(pm)
    if dtype != torch.float32:
        pm.to(dtype)
    out = os.path.join(FIX, name)
    batch = batch or tiny_batch(42)
    collate = DataCollatorForPreference(pad_token_id=0)
    inputs = collate(batch)
    if save_initial:
        os.makedirs(out, exist_ok=True)
    pm.train()
    pm.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(pm, inputs)
    loss.backward()
    metrics = trl_metrics(trainer)
    extra = {"case": "dpo", "loss_type": loss_type, "beta": beta, "label_smoothing": label_smoothing, "base": base_desc,
             "reference": "starting_adapter" if is_peft else "adapter_disabled",
             "examples": [{"prompt": b["prompt_ids"], "chosen": b["chosen_ids"], "rejected": b["rejected_ids"]} for b in batch]}
    ad_tmp = tempfile.mkdtemp()
    save_adapter(pm, ad_tmp)
    save_case(out, pm, loss.item(), metrics, extra)
    shutil.move(os.path.join(ad_tmp, "initial_adapter"), os.path.join(out, "initial_adapter"))
    return trainer


def make_tiny():
    for lt, ls in [("sigmoid", 0.0), ("hinge", 0.0), ("ipo", 0.0), ("robust", 0.1)]:
        dpo_case(f"tiny_dpo_{lt}", lt, beta=0.1 if lt != "hinge" else 0.5, label_smoothing=ls)
    # Zero-initialised B (PEFT's default): policy = reference, loss ln 2.
    dpo_case("tiny_dpo_zero_init", "sigmoid", randomize=False)
    # Continuing from an SFT adapter: a PeftModel passed in becomes TRL's frozen "ref" adapter.
    base = load_tiny()
    torch.manual_seed(0)
    sft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=ALL_TARGETS, bias="none",
                                          task_type="CAUSAL_LM"))
    randomize_b(sft, seed=99)
    td = tempfile.mkdtemp()
    sft.save_pretrained(td)
    again = PeftModel.from_pretrained(load_tiny(), td, is_trainable=True)
    dpo_case("tiny_dpo_from_sft", "sigmoid", model=again)
    # base_adapter: a new DPO LoRA over the frozen SFT adapter = TRL on the merged SFT model with a fresh
    # peft_config (reference: the merged model, i.e. the DPO adapter disabled). Non-zero and zero-init B.
    for name, randomize in [("tiny_dpo_over_sft", True), ("tiny_dpo_over_sft_zero_init", False)]:
        merged = PeftModel.from_pretrained(load_tiny(), td).merge_and_unload()
        dpo_case(name, "sigmoid", model=merged, randomize=randomize)
        out = os.path.join(FIX, name, "sft_adapter")
        os.makedirs(out, exist_ok=True)
        for fn in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copyfile(os.path.join(td, fn), os.path.join(out, fn))
    make_orpo_simpo()
    make_kto()


def tiny_lora():
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=ALL_TARGETS, bias="none", task_type="CAUSAL_LM")


def start_step(trainer):
    """The trainer's PEFT model with random lora_B, in train mode with no gradients, and its adapter saved."""
    pm = trainer.model
    randomize_b(pm)
    pm.train()
    pm.zero_grad(set_to_none=True)
    ad_tmp = tempfile.mkdtemp()
    save_adapter(pm, ad_tmp)
    return pm, ad_tmp


def pair_batch_tensors(batch, pad=0):
    """The old-style (ORPO/CPO) batch: chosen/rejected input ids with prompt-masked labels, right-padded."""
    out = {}
    for side in ("chosen", "rejected"):
        seqs = [b["prompt_ids"] + b[f"{side}_ids"] for b in batch]
        labs = [[-100] * len(b["prompt_ids"]) + b[f"{side}_ids"] for b in batch]
        L = max(len(s) for s in seqs)
        out[f"{side}_input_ids"] = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
        out[f"{side}_attention_mask"] = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
        out[f"{side}_labels"] = torch.tensor([l + [-100] * (L - len(l)) for l in labs])
    return out


def make_orpo_simpo():
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    batch = tiny_batch(42)
    for name, cls, cfg_cls, kw in [
        ("tiny_orpo", ORPOTrainer, ORPOConfig, dict(beta=0.1)),
        ("tiny_simpo", CPOTrainer, CPOConfig, dict(beta=2.0, loss_type="simpo", simpo_gamma=0.5, cpo_alpha=0.0)),
        ("tiny_cpo_simpo", CPOTrainer, CPOConfig, dict(beta=2.0, loss_type="simpo", simpo_gamma=0.5, cpo_alpha=0.3)),
    ]:
        torch.manual_seed(0)
        args = common_args(cfg_cls, **kw)
        trainer = cls(model=load_tiny(), args=args, train_dataset=dummy_pairs(), processing_class=tiny_tokenizer(), peft_config=tiny_lora())
        pm, ad_tmp = start_step(trainer)
        loss, metrics = trainer.get_batch_loss_metrics(pm, pair_batch_tensors(batch, pad=254))
        loss.backward()
        m = {k: v for k, v in metrics.items() if k.startswith(("rewards/", "logps/")) or k in ("nll_loss", "log_odds_ratio", "log_odds_chosen")}
        out = os.path.join(FIX, name)
        save_case(out, pm, loss.item(), m, {"case": name.replace("tiny_", ""), "config": kw, "base": TINY, "reference": "none",
                                            "examples": [{"prompt": b["prompt_ids"], "chosen": b["chosen_ids"], "rejected": b["rejected_ids"]} for b in batch]})
        shutil.move(os.path.join(ad_tmp, "initial_adapter"), os.path.join(out, "initial_adapter"))


def make_kto():
    g = torch.Generator().manual_seed(7)
    def ids(n):
        return torch.randint(0, 254, (n,), generator=g).tolist()
    rows = [{"prompt_ids": ids(5), "completion_ids": ids(6), "label": True},
            {"prompt_ids": ids(4), "completion_ids": ids(3), "label": False},
            {"prompt_ids": ids(6), "completion_ids": ids(5), "label": True},
            {"prompt_ids": ids(3), "completion_ids": ids(7), "label": False}]
    for r, prev in zip(rows, rows[-1:] + rows[:-1]):
        r["KL_completion_ids"] = prev["completion_ids"]
    torch.manual_seed(0)
    args = common_args(KTOConfig, beta=0.1, desirable_weight=1.0, undesirable_weight=1.5, per_device_train_batch_size=4,
                       max_length=None)
    ds = Dataset.from_list([{"prompt": "t1 t2", "completion": " t3", "label": True}, {"prompt": "t1", "completion": " t4", "label": False}] * 2)
    trainer = KTOTrainer(model=load_tiny(), args=args, train_dataset=ds, processing_class=tiny_tokenizer(), peft_config=tiny_lora())
    pm, ad_tmp = start_step(trainer)
    inputs = DataCollatorForUnpairedPreference(pad_token_id=0)(rows)
    loss = trainer.compute_loss(pm, inputs)
    loss.backward()
    m = trl_metrics(trainer)
    out = os.path.join(FIX, "tiny_kto")
    save_case(out, pm, loss.item(), m, {"case": "kto", "config": {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.5},
                                        "base": TINY, "reference": "adapter_disabled",
                                        "examples": [{"prompt": r["prompt_ids"], "chosen": r["completion_ids"], "rejected": [], "label": r["label"]} for r in rows]})
    shutil.move(os.path.join(ad_tmp, "initial_adapter"), os.path.join(out, "initial_adapter"))


# --- dpo_en_demo tokenized by TRL -------------------------------------------------------------------------------

ROLE = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def to_trl(row):
    """LLaMA-Factory's sharegpt preference row as TRL's conversational preference example."""
    prompt = [{"role": ROLE[m["from"]], "content": m["value"]} for m in row["conversations"]]
    return {"prompt": prompt,
            "chosen": [{"role": "assistant", "content": row["chosen"]["value"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]["value"]}]}


def ids_hash(ids):
    return hashlib.sha256(",".join(str(i) for i in ids).encode()).hexdigest()


def smollm2_tokenizer(gguf):
    """transformers' GGUF tokenizer, with SmolLM2's own pre-tokenizer put back: its tokenizer.json (and
    llama.cpp's `smollm` pre-type) splits digits one by one before the byte-level GPT-2 regex, which
    transformers' GGUF conversion drops (":\n\n1." is then "\n", "\n" instead of SmolLM2's "\n\n")."""
    from tokenizers import pre_tokenizers
    d, n = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=n)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return tok


def make_tokens(gguf):
    tok = smollm2_tokenizer(gguf)
    rows = json.load(open(os.path.join(DATA, "dpo_en_demo.json")))
    ds = Dataset.from_list([to_trl(r) for r in rows])
    args = common_args(DPOConfig, max_length=None)
    fake = type("T", (), {"_tokenizer": tok})()
    out = DPOTrainer._prepare_dataset(fake, ds, tok, args, "train")
    assert len(out) == len(rows)
    recs = []
    for i, ex in enumerate(out):
        rec = {"row": i + 1}
        for k in ("prompt_ids", "chosen_ids", "rejected_ids"):
            rec[k.replace("_ids", "_len")] = len(ex[k])
            rec[k.replace("_ids", "_sha256")] = ids_hash(ex[k])
        if i < 3:
            rec.update({k: ex[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")})
        recs.append(rec)
    # max_length 512: TRL drops rows whose prompt fills it and cuts the rest (keep_start) in the collator.
    kept = [i + 1 for i, ex in enumerate(out) if len(ex["prompt_ids"]) < 512]
    cut = [i + 1 for i, ex in enumerate(out) if len(ex["prompt_ids"]) < 512
           and len(ex["prompt_ids"]) + max(len(ex["chosen_ids"]), len(ex["rejected_ids"])) > 512]
    data_fix = os.path.join(REPO, "Tests", "LoftDataTests", "Fixtures")
    write_json(os.path.join(data_fix, "dpo_en_demo_tokens.json"),
               {"source": "dpo_en_demo.json (LLaMA-Factory 0.9.5), each row as TRL's conversational preference example "
                          "(sharegpt roles human→user, gpt→assistant); DPOTrainer._prepare_dataset with SmolLM2-135M-Instruct's "
                          "GGUF tokenizer via transformers, SmolLM2's Digits pre-tokenizer restored (see smollm2_tokenizer)", "gguf": os.path.basename(gguf), "hash": "sha256 of the comma-joined decimal ids",
                "rows": recs, "max_length_512": {"kept_rows": len(kept), "truncated_rows": cut}, "versions": VERSIONS})


def smollm2_batch(tok):
    """The first two dpo_en_demo rows as TRL tokenizes them, cut to 64-token prompts and 48-token completions."""
    rows = json.load(open(os.path.join(DATA, "dpo_en_demo.json")))
    ds = Dataset.from_list([to_trl(r) for r in rows[:2]])
    fake = type("T", (), {"_tokenizer": tok})()
    out = DPOTrainer._prepare_dataset(fake, ds, tok, common_args(DPOConfig, max_length=None), "train")
    return [{"prompt_ids": ex["prompt_ids"][-64:], "chosen_ids": ex["chosen_ids"][:48], "rejected_ids": ex["rejected_ids"][:48]} for ex in out]


def smollm2_model(gguf, dtype):
    d, n = os.path.split(os.path.abspath(gguf))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=n, dtype=dtype, attn_implementation="eager")
    # transformers dequantizes the GGUF to dense tensors but keeps it flagged as quantized, which the
    # trainers refuse to train; the weights are plain tensors, so drop the flag.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def make_smollm2(gguf):
    """DPO sigmoid on the real model: two rows of dpo_en_demo cut to 64-token prompts and 48-token completions.

    TRL's float32 step gives the loss and metrics; the gradients are checked against a float64 run of the
    same step (tools/make_fp64_grads.py's patches lift transformers' float32 islands; the DPO loss in
    float64), because two float32 implementations of 30 layers differ by more than either differs from exact
    arithmetic (see PEFTExactnessTests)."""
    tok = smollm2_tokenizer(gguf)
    batch = smollm2_batch(tok)
    d, n = os.path.split(os.path.abspath(gguf))
    model = smollm2_model(gguf, torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"], bias="none", task_type="CAUSAL_LM")
    name = "smollm2_dpo_sigmoid"
    dpo_case(name, "sigmoid", beta=0.1, model=model, peft_config=lora, batch=batch, tokenizer=tok,
             base_desc={"gguf": n, "loader": "transformers from_pretrained(dir, gguf_file=name, dtype=float32)"})

    sys.path.insert(0, os.path.join(REPO, "tools"))
    import make_fp64_grads
    make_fp64_grads.patch_float64()
    fx = os.path.join(FIX, name)
    m64 = AutoModelForCausalLM.from_pretrained(d, gguf_file=n, dtype=torch.float64, attn_implementation="eager")
    pm = PeftModel.from_pretrained(m64, os.path.join(fx, "initial_adapter"), is_trainable=True).double()
    seqs = [b["prompt_ids"] + b[k] for k in ("chosen_ids", "rejected_ids") for b in batch]
    def logps(m):
        total = []
        for b, ids in zip(batch + batch, seqs):
            logits = m(input_ids=torch.tensor([ids])).logits[0, :-1]
            lp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
            total.append(lp[len(b["prompt_ids"]) - 1:].sum())
        return torch.stack(total)
    with torch.no_grad(), pm.disable_adapter():
        ref = logps(pm)
    pol = logps(pm)
    p = len(batch)
    delta = (pol[:p] - ref[:p]) - (pol[p:] - ref[p:])
    loss = -torch.nn.functional.logsigmoid(0.1 * delta).mean()
    loss.backward()
    grads = get_peft_model_state_dict(pm, state_dict={k: v.grad for k, v in pm.named_parameters() if v.grad is not None})
    grads = {k: v.float().contiguous() for k, v in grads.items()}
    save_file(grads, os.path.join(fx, "grads_fp64.safetensors"), metadata={"format": "pt", "loss": repr(loss.item())})
    note(os.path.join(fx, "grads_fp64.safetensors"))
    from safetensors.torch import load_file
    g32 = load_file(os.path.join(fx, "grads.safetensors"))
    worst = max(((g32[k] - g).abs().max() / g.abs().max()).item() for k, g in grads.items())
    print(f"  float64 loss {loss.item():.8f}; TRL float32 gradients vs float64: max relative error {worst:.2e}")


def make_smollm2_losses(gguf):
    """Every other loss on the real model, on the same two dpo_en_demo rows as smollm2_dpo_sigmoid.

    Loss and metrics: TRL's own float32 step. Gradients: the same TRL code run again in float64 (the model
    and adapter cast to float64, transformers' float32 islands lifted by make_fp64_grads.patch_float64),
    from the saved starting adapter: exact arithmetic's gradients through TRL's own loss code, rather than a
    second float32 implementation of 30 layers (see PEFTExactnessTests)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import make_fp64_grads
    tok = smollm2_tokenizer(gguf)
    batch = smollm2_batch(tok)
    examples = [{"prompt": b["prompt_ids"], "chosen": b["chosen_ids"], "rejected": b["rejected_ids"]} for b in batch]
    # KTO: each pair as a desirable and an undesirable row; KL completions shifted by one row, as TRL does.
    kto_rows = []
    for b in batch:
        kto_rows.append({"prompt_ids": b["prompt_ids"], "completion_ids": b["chosen_ids"], "label": True})
        kto_rows.append({"prompt_ids": b["prompt_ids"], "completion_ids": b["rejected_ids"], "label": False})
    for r, prev in zip(kto_rows, kto_rows[-1:] + kto_rows[:-1]):
        r["KL_completion_ids"] = prev["completion_ids"]
    kto_ds = Dataset.from_list([{"prompt": "a", "completion": " b", "label": True}, {"prompt": "a", "completion": " c", "label": False}] * 2)
    n = os.path.basename(gguf)
    base_desc = {"gguf": n, "loader": "transformers from_pretrained(dir, gguf_file=name, dtype=float32)"}
    lora = lambda: LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"], bias="none", task_type="CAUSAL_LM")

    def dpo(loss_type, beta, ls):
        def make(model):
            args = common_args(DPOConfig, beta=beta, loss_type=[loss_type], label_smoothing=ls, max_length=None)
            return DPOTrainer(model=model, args=args, train_dataset=dummy_pairs(), processing_class=tok, peft_config=lora())
        def step(trainer, pm):
            return trainer.compute_loss(pm, DataCollatorForPreference(pad_token_id=0)(batch)), trl_metrics(trainer)
        return make, step, {"case": "dpo", "loss_type": loss_type, "beta": beta, "label_smoothing": ls,
                            "reference": "adapter_disabled", "examples": examples}

    def paired(case, cls, cfg_cls, kw):
        def make(model):
            return cls(model=model, args=common_args(cfg_cls, **kw), train_dataset=dummy_pairs(), processing_class=tok, peft_config=lora())
        def step(trainer, pm):
            loss, metrics = trainer.get_batch_loss_metrics(pm, pair_batch_tensors(batch, pad=0))
            return loss, {k: v for k, v in metrics.items()
                          if k.startswith(("rewards/", "logps/")) or k in ("nll_loss", "log_odds_ratio", "log_odds_chosen")}
        return make, step, {"case": case, "config": kw, "reference": "none", "examples": examples}

    def kto():
        kw = dict(beta=0.1, desirable_weight=1.0, undesirable_weight=1.5, per_device_train_batch_size=4, max_length=None)
        def make(model):
            return KTOTrainer(model=model, args=common_args(KTOConfig, **kw), train_dataset=kto_ds, processing_class=tok, peft_config=lora())
        def step(trainer, pm):
            return trainer.compute_loss(pm, DataCollatorForUnpairedPreference(pad_token_id=0)(kto_rows)), trl_metrics(trainer)
        return make, step, {"case": "kto", "config": {"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.5},
                            "reference": "adapter_disabled",
                            "examples": [{"prompt": r["prompt_ids"], "chosen": r["completion_ids"], "rejected": [], "label": r["label"]} for r in kto_rows]}

    cases = [("smollm2_dpo_hinge", dpo("hinge", 0.5, 0.0)), ("smollm2_dpo_ipo", dpo("ipo", 0.1, 0.0)),
             ("smollm2_dpo_robust", dpo("robust", 0.1, 0.1)),
             ("smollm2_orpo", paired("orpo", ORPOTrainer, ORPOConfig, dict(beta=0.1))),
             ("smollm2_simpo", paired("simpo", CPOTrainer, CPOConfig, dict(beta=2.0, loss_type="simpo", simpo_gamma=0.5, cpo_alpha=0.0))),
             ("smollm2_cpo_simpo", paired("cpo_simpo", CPOTrainer, CPOConfig, dict(beta=2.0, loss_type="simpo", simpo_gamma=0.5, cpo_alpha=0.3))),
             ("smollm2_kto", kto())]
    for name, (make, step, extra) in cases:
        torch.manual_seed(0)
        trainer = make(smollm2_model(gguf, torch.float32))
        pm, ad_tmp = start_step(trainer)
        loss, metrics = step(trainer, pm)
        loss.backward()
        fx = os.path.join(FIX, name)
        save_case(fx, pm, loss.item(), metrics, dict(extra, base=base_desc))
        shutil.move(os.path.join(ad_tmp, "initial_adapter"), os.path.join(fx, "initial_adapter"))
        del trainer, pm
        # The same step in float64 from the saved adapter.
        make_fp64_grads.patch_float64()
        torch.manual_seed(0)
        t64 = make(smollm2_model(gguf, torch.float64))
        pm64 = t64.model
        state = load_file(os.path.join(fx, "initial_adapter", "adapter_model.safetensors"))
        set_peft_model_state_dict(pm64, {k: v.double() for k, v in state.items()})
        pm64.double()
        pm64.train()
        pm64.zero_grad(set_to_none=True)
        loss64, _ = step(t64, pm64)
        loss64.backward()
        params = trained_params(pm64)
        g64 = get_peft_model_state_dict(pm64, state_dict={k: p.grad for k, p in params}, adapter_name="default")
        g64 = {k: v.detach().float().contiguous().clone() for k, v in g64.items()}
        save_file(g64, os.path.join(fx, "grads_fp64.safetensors"), metadata={"format": "pt", "loss": repr(loss64.item())})
        note(os.path.join(fx, "grads_fp64.safetensors"))
        g32 = load_file(os.path.join(fx, "grads.safetensors"))
        worst = max(((g32[k] - g).abs().max() / g.abs().max()).item() for k, g in g64.items())
        print(f"  float64 loss {loss64.item():.8f} (float32 {loss.item():.8f}); float32 gradients vs float64: max relative error {worst:.2e}")
        del t64, pm64
        share_initial_adapter(fx)


def share_initial_adapter(fx):
    """Every SmolLM2 case starts from the same adapter (seeded A, B from randomize_b): keep one copy, in
    smollm2_dpo_sigmoid, and name it in expected.json. The float32 gradients are only the printed check."""
    shared = os.path.join(FIX, "smollm2_dpo_sigmoid", "initial_adapter")
    mine = os.path.join(fx, "initial_adapter")
    for fn in ("adapter_model.safetensors", "adapter_config.json"):
        with open(os.path.join(shared, fn), "rb") as a, open(os.path.join(mine, fn), "rb") as b:
            assert a.read() == b.read(), f"{fx}: its starting adapter differs from smollm2_dpo_sigmoid's"
    shutil.rmtree(mine)
    os.remove(os.path.join(fx, "grads.safetensors"))
    path = os.path.join(fx, "expected.json")
    e = json.load(open(path))
    e["initial_adapter"] = "../smollm2_dpo_sigmoid/initial_adapter"
    write_json(path, e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["tokens", "tiny", "smollm2", "smollm2-losses"])
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    a = ap.parse_args()
    os.chdir(REPO)
    if a.only in (None, "tiny"):
        make_tiny()
    if a.only in (None, "tokens"):
        make_tokens(a.gguf)
    if a.only in (None, "smollm2"):
        make_smollm2(a.gguf)
    if a.only in (None, "smollm2-losses"):
        make_smollm2_losses(a.gguf)


if __name__ == "__main__":
    main()
