#!/usr/bin/env python3
"""Regenerate the reference fixtures for LoftModelsTests.

    /opt/refvenv/bin/python tools/make_model_fixtures.py            # everything
    /opt/refvenv/bin/python tools/make_model_fixtures.py --only tiny
    /opt/refvenv/bin/python tools/make_model_fixtures.py --only smollm2 [--gguf PATH]

References are transformers (PyTorch, CPU, float32, attn_implementation="eager").
Everything is seeded; re-running on the same versions reproduces the files
byte for byte (see Tests/LoftModelsTests/Fixtures/README.md).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "Tests", "LoftModelsTests", "Fixtures")
DEFAULT_GGUF = os.path.expanduser("~/.cache/loft/models/SmolLM2-135M-Instruct.Q4_1.gguf")

VERSIONS = {"transformers": transformers.__version__, "torch": torch.__version__}

WRITTEN = []


def note(path):
    if os.path.islink(path):
        print(f"wrote {os.path.relpath(path, REPO)} -> {os.readlink(path)} (symlink)")
        return
    WRITTEN.append(path)
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


def f32list(t):
    """Flatten a tensor to a list of Python floats whose repr is the shortest
    decimal string that round-trips to the same float32."""
    a = t.detach().to(torch.float32).contiguous().view(-1).numpy()
    return [float(np.format_float_positional(x, unique=True, trim="0")) if math.isfinite(x) else None for x in a]


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    note(path)


def write_f32(path, t):
    a = t.detach().to(torch.float32).contiguous().view(-1).numpy().astype("<f4")
    with open(path, "wb") as f:
        f.write(a.tobytes())
    note(path)


# ---------------------------------------------------------------------------
# 1. Tiny random-weight models
# ---------------------------------------------------------------------------

BASE = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    max_position_embeddings=128,
    hidden_act="silu",
    tie_word_embeddings=False,
    # no special tokens: generation must produce all new tokens
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)

SEQ_LEN = 20
PACK_LENS = (7, 13)


def rope(theta, **scaling):
    d = {"rope_type": "default", "rope_theta": float(theta)}
    d.update(scaling)
    return d


# name -> (config class, model class, overrides, weight seed, description)
TINY = {
    "llama": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope(10000.0)), 1,
              "plain Llama, GQA 4 heads / 2 kv heads, head_dim 16"),
    "llama_rope_llama3": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope(
        10000.0, rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=32)), 1,
        "same weights as llama; llama3 rope scaling (factor 8, low 1, high 4, original_max_position_embeddings 32)"),
    "llama_rope_linear": (LlamaConfig, LlamaForCausalLM, dict(rope_parameters=rope(
        10000.0, rope_type="linear", factor=2.0)), 1,
        "same weights as llama; linear rope scaling factor 2 (positions / 2)"),
    "llama_rope_dynamic": (LlamaConfig, LlamaForCausalLM, dict(max_position_embeddings=16, rope_parameters=rope(
        10000.0, rope_type="dynamic", factor=2.0)), 1,
        "same weights as llama; dynamic NTK factor 2, max_position_embeddings 16 < 20-token sequence"),
    "llama_tied": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True, rms_norm_eps=1e-6,
                                                        rope_parameters=rope(10000.0)), 2,
                   "Llama with tie_word_embeddings=true (no lm_head.weight in the file), rms_norm_eps 1e-6"),
    "mistral": (MistralConfig, MistralForCausalLM, dict(sliding_window=8, head_dim=16,
                                                        rope_parameters=rope(10000.0)), 1,
                "Mistral, sliding_window 8 (< 20-token sequence); same weights as llama, so positions 0-7 match llama exactly"),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=True, use_sliding_window=False,
                                                  rope_parameters=rope(1000000.0)), 5,
              "Qwen2: q/k/v bias, tied embeddings, rope_theta 1e6"),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, dict(head_dim=32, tie_word_embeddings=True, attention_bias=False,
                                                  use_sliding_window=False, rope_parameters=rope(1000000.0)), 6,
              "Qwen3: q_norm/k_norm, head_dim 32 != hidden/heads (16), tied embeddings, rope_theta 1e6"),
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM, dict(
        num_hidden_layers=3, head_dim=32, tie_word_embeddings=True, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24, sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0}}), 7,
        "Gemma 3 text: (1+w) norms, four per layer, q/k norms, embeddings x sqrt(64), GeGLU (tanh gelu), "
        "query_pre_attn_scalar 24 != head_dim 32, layers sliding(8)/full/sliding, local rope 1e4 unscaled, "
        "global rope 1e6 with linear factor 2, tied embeddings"),
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, dict(
        num_hidden_layers=3, head_dim=32, tie_word_embeddings=True, rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24, sliding_window=8,
        attn_logit_softcapping=2.0, final_logit_softcapping=5.0,
        rope_parameters=rope(10000.0)), 8,
        "Gemma 2: (1+w) norms, four per layer, no q/k norms, embeddings x sqrt(64), GeGLU, query_pre_attn_scalar 24, "
        "layers sliding(8)/full/sliding (the default pattern), attention scores soft-capped at 2 and logits at 5 "
        "(small, so that the caps matter for random weights), tied embeddings"),
    "phi3": (Phi3Config, Phi3ForCausalLM, dict(
        max_position_embeddings=64, original_max_position_embeddings=14, sliding_window=None,
        rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=1.0,
                             short_factor=[1.0, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0],
                             long_factor=[1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 16.0])), 9,
        "Phi-3: fused qkv_proj [q|k|v] and gate_up_proj [gate|up], LongRoPE with original_max_position_embeddings 14 "
        "(the 20-token sequence takes the long factors, the packed 7/13-token ones and the greedy prompt the short), "
        "max_position_embeddings 64 so cos/sin are scaled by sqrt(1 + ln(64/14)/ln(14))"),
    "phi4_mini": (Phi3Config, Phi3ForCausalLM, dict(
        max_position_embeddings=64, original_max_position_embeddings=14, sliding_window=None, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, partial_rotary_factor=0.75,
                             short_factor=[1.0, 1.2, 1.5, 2.0, 3.0, 4.0],
                             long_factor=[1.0, 2.0, 3.0, 6.0, 10.0, 16.0])), 10,
        "Phi-4-mini's shape of Phi-3: partial_rotary_factor 0.75 (RoPE turns 12 of each head's 16 dimensions), "
        "tied embeddings, LongRoPE as phi3 with 6 factors"),
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM, dict(
        head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=False,
        mlp_only_layers=[1], use_sliding_window=False, rope_parameters=rope(1000000.0)), 11,
        "Qwen3-MoE: q/k norms; layer 0 sparse (4 experts of 32, top-2, probabilities not renormalised), "
        "layer 1 dense (mlp_only_layers [1], intermediate 96)"),
    "mixtral": (MixtralConfig, MixtralForCausalLM, dict(
        num_local_experts=4, num_experts_per_tok=2, intermediate_size=32, rope_parameters=rope(10000.0)), 12,
        "Mixtral: every layer sparse, 4 experts of 32, top-2 renormalised"),
}


def scale_weights(model, seed):
    """Default init, then make every weight larger so logits are far from flat."""
    g = torch.Generator().manual_seed(1000 + seed)
    seen = set()
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied params appear once
            if id(p) in seen:
                continue
            seen.add(id(p))
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name and isinstance(model, (Gemma2ForCausalLM, Gemma3ForCausalLM)):  # applied as (1 + w)
                p.copy_(0.1 * noise)
            elif "norm" in name:  # input_layernorm, post_attention_layernorm, norm, q_norm, k_norm
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def add_legacy_rope_keys(path):
    """transformers 5.x writes only `rope_parameters`; published checkpoints (and
    transformers 4.x) use `rope_theta` + `rope_scaling`. Write both so a loader can
    be tested on either spelling (the model is reloaded from this file before
    the references are computed, so transformers accepts it as is). Gemma 3's
    rope_parameters are per layer type; its legacy keys are rope_theta and
    rope_scaling for global layers and rope_local_base_freq for sliding ones."""
    with open(path) as f:
        cfg = json.load(f)
    if "full_attention" in cfg["rope_parameters"]:
        full = dict(cfg["rope_parameters"]["full_attention"])
        cfg["rope_theta"] = full.pop("rope_theta")
        cfg["rope_scaling"] = None if full.get("rope_type") == "default" else full
        cfg["rope_local_base_freq"] = cfg["rope_parameters"]["sliding_attention"]["rope_theta"]
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        return
    rp = dict(cfg["rope_parameters"])
    cfg["rope_theta"] = rp.pop("rope_theta")
    cfg["rope_scaling"] = None if rp.get("rope_type") == "default" else rp
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def link_if_same_as_llama(d):
    """Models that reuse llama's weights get a relative symlink instead of a copy."""
    src = os.path.join(FIX, "tiny", "llama", "model.safetensors")
    dst = os.path.join(d, "model.safetensors")
    if os.path.abspath(src) == os.path.abspath(dst) or not os.path.exists(src):
        return
    with open(src, "rb") as a, open(dst, "rb") as b:
        same = a.read() == b.read()
    if same:
        os.remove(dst)
        os.symlink("../llama/model.safetensors", dst)


def fresh(cls_model, cfg, seed):
    torch.manual_seed(seed)
    m = cls_model(cfg)
    scale_weights(m, seed)
    m.eval()
    return m


def logits_of(model, ids, position_ids=None):
    with torch.no_grad():
        kw = {}
        if position_ids is not None:
            kw["position_ids"] = torch.tensor([position_ids])
        out = model(input_ids=torch.tensor([ids]), use_cache=False, **kw)
    return out.logits[0]  # [seq, vocab]


def greedy(model, prompt, n):
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False,
            max_new_tokens=n,
            min_new_tokens=n,
            eos_token_id=None,
            pad_token_id=0,
            num_beams=1,
            use_cache=True,
        )
    new = out[0, len(prompt):].tolist()
    assert len(new) == n, new
    return new


def greedy_nocache(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(logits_of(model, ids)[-1].argmax()))
    return ids[len(prompt):]


def make_tiny(only=None):
    g = torch.Generator().manual_seed(1234)
    input_ids = torch.randint(0, 256, (SEQ_LEN,), generator=g).tolist()
    pack_a = torch.randint(0, 256, (PACK_LENS[0],), generator=g).tolist()
    pack_b = torch.randint(0, 256, (PACK_LENS[1],), generator=g).tolist()
    prompt = torch.randint(0, 256, (5,), generator=g).tolist()

    results = {}
    for name, (ccls, mcls, over, seed, desc) in TINY.items():
        if only and name not in only:
            continue
        kw = dict(BASE)
        kw.update(over)
        cfg = ccls(**kw)
        cfg._attn_implementation = "eager"
        model = fresh(mcls, cfg, seed)
        model.config._attn_implementation = "eager"
        d = os.path.join(FIX, "tiny", name)
        os.makedirs(d, exist_ok=True)
        model.generation_config.eos_token_id = None
        model.generation_config.bos_token_id = None
        model.generation_config.pad_token_id = None
        for fn in ("config.json", "generation_config.json", "model.safetensors"):
            if os.path.lexists(os.path.join(d, fn)):
                os.remove(os.path.join(d, fn))
        model.save_pretrained(d, safe_serialization=True)
        add_legacy_rope_keys(os.path.join(d, "config.json"))
        link_if_same_as_llama(d)
        for fn in sorted(os.listdir(d)):
            if fn != "expected.json":
                note(os.path.join(d, fn))
        ref_logits = logits_of(model, input_ids)

        # reload from disk to make sure the files are what we measured
        model = mcls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        model.eval()

        full = logits_of(model, input_ids)
        assert torch.equal(full, ref_logits), f"{name}: reloaded model differs from the in-memory one"
        la = logits_of(model, pack_a)
        lb = logits_of(model, pack_b)
        packed_logits = torch.cat([la, lb], 0)
        packed_pos = list(range(PACK_LENS[0])) + list(range(PACK_LENS[1]))
        new_ids = greedy(model, prompt, 10)
        nc = greedy_nocache(model, prompt, 10)
        assert nc == new_ids, (name, nc, new_ids)

        exp = {
            "description": desc,
            "input_ids": input_ids,
            "logits_shape": [SEQ_LEN, 256],
            "logits": f32list(full),
            "dtype": "float32",
            "attn_implementation": "eager",
            "transformers": VERSIONS["transformers"],
            "torch": VERSIONS["torch"],
            "packed": {
                "input_ids": pack_a + pack_b,
                "position_ids": packed_pos,
                "sequence_lengths": list(PACK_LENS),
                "logits_shape": [sum(PACK_LENS), 256],
                "logits": f32list(packed_logits),
            },
            "greedy": {"prompt_ids": prompt, "new_ids": new_ids},
        }
        write_json(os.path.join(d, "expected.json"), exp)
        results[name] = (model, full)

    for name in ("qwen3_moe", "mixtral"):
        if name in results:
            # the routing matters: every expert is chosen by some token, and sending
            # every token to all experts moves the logits
            moe = results[name][0]
            cfg = moe.config
            ids_t = torch.tensor([input_ids])
            with torch.no_grad():
                out = moe(input_ids=ids_t, output_router_logits=True, use_cache=False)
            logits = out.router_logits[0] if isinstance(out.router_logits, tuple) else out.router_logits
            chosen = torch.topk(torch.softmax(logits.float(), -1), cfg.num_experts_per_tok, -1).indices.unique().numel()
            ne = cfg.num_experts if name == "qwen3_moe" else cfg.num_local_experts
            print(f"  check: {name} layer 0 routes to {chosen} of {ne} experts")
            assert chosen == ne
    if "phi4_mini" in results:
        # partial rotary: turning every dimension instead moves the logits
        whole = Phi3ForCausalLM.from_pretrained(os.path.join(FIX, "tiny", "phi4_mini"), dtype=torch.float32,
                                                attn_implementation="eager")
        whole.config.rope_parameters = dict(whole.config.rope_parameters, partial_rotary_factor=1.0,
                                            short_factor=[1.0] * 8, long_factor=[1.0] * 8)
        whole.model.rotary_emb = type(whole.model.rotary_emb)(whole.config)
        d = (logits_of(whole, input_ids) - results["phi4_mini"][1]).abs().max().item()
        print(f"  check: phi4_mini with whole-head rotary: logits move by {d:.3g}")
        assert d > 1e-2
    if "phi3" in results:
        # LongRoPE: the short factors below the original length, the long ones past it
        phi = results["phi3"][0]
        d_short = (logits_of(phi, input_ids[:14]) - results["phi3"][1][:14]).abs().max().item()
        print(f"  check: phi3 14-token run (short factors) vs the 20-token run's first 14 (long): {d_short:.3g}")
        assert d_short > 1e-2
    if only:
        return
    # sanity checks on the semantics the fixtures are meant to exercise
    base = results["llama"][1]
    for v in ("llama_rope_llama3", "llama_rope_linear", "llama_rope_dynamic"):
        diff = (results[v][1] - base).abs().max().item()
        print(f"  check: max|{v} - llama| logits = {diff:.4g}")
        assert diff > 1e-2, v
    # dynamic: positions < 16 with a short sequence equal plain llama (no scaling),
    # a 20-token sequence rescales every position (inv_freq depends on the whole sequence length)
    dyn = results["llama_rope_dynamic"][0]
    short = logits_of(dyn, input_ids[:16])
    d_short = (short - base[:16]).abs().max().item()
    d_long_prefix = (results["llama_rope_dynamic"][1][:16] - base[:16]).abs().max().item()
    print(f"  check: dynamic 16-token run vs llama: {d_short:.3g}; dynamic 20-token run, first 16 positions vs llama: {d_long_prefix:.3g}")
    assert d_short < 1e-5 and d_long_prefix > 1e-3
    # dynamic == plain rope with base' = base * (factor*L/max_pos - (factor-1)) ** (dim/(dim-2)), L = 20
    theta2 = 10000.0 * (2.0 * SEQ_LEN / 16 - 1.0) ** (16 / 14)
    kw = dict(BASE)
    kw.update(rope_parameters=rope(theta2))
    eq = fresh(LlamaForCausalLM, LlamaConfig(**kw, attn_implementation="eager"), 1)
    d_eq = (logits_of(eq, input_ids) - results["llama_rope_dynamic"][1]).abs().max().item()
    print(f"  check: dynamic(20 tokens) vs plain rope_theta={theta2:.6g}: {d_eq:.3g}")
    assert d_eq < 1e-4
    # mistral sliding window: positions < 8 unaffected, later ones differ from full causal attention
    mis = results["mistral"][0]
    mis.config.sliding_window = None
    nowin = logits_of(mis, input_ids)
    mis.config.sliding_window = 8
    w = results["mistral"][1]
    d_early = (nowin[:8] - w[:8]).abs().max().item()
    d_late = (nowin[8:] - w[8:]).abs().max().item()
    print(f"  check: mistral window=8 vs none: positions 0-7 {d_early:.3g}, positions 8-19 {d_late:.3g}")
    assert d_early < 1e-5 and d_late > 1e-2
    # explicit mask check: key j is visible to query i iff i - 8 < j <= i
    from transformers.masking_utils import sliding_window_causal_mask_function
    f = sliding_window_causal_mask_function(8)
    T = torch.tensor
    ok = all(bool(f(T(0), T(0), T(i), T(j))) == (i - 8 < j <= i) for i in range(SEQ_LEN) for j in range(SEQ_LEN))
    print(f"  check: sliding mask is 'i-8 < j <= i' (8 keys incl. self): {ok}")
    assert ok
    # gemma3: the sliding layers' window matters (a model without it differs after position 7)
    gem = results["gemma3"][0]
    gem.config.layer_types = ["full_attention"] * 3
    gfull = logits_of(Gemma3ForCausalLM.from_pretrained(os.path.join(FIX, "tiny", "gemma3"), dtype=torch.float32,
                                                        attn_implementation="eager",
                                                        layer_types=["full_attention"] * 3), input_ids)
    g = results["gemma3"][1]
    d_early = (gfull[:8] - g[:8]).abs().max().item()
    d_late = (gfull[8:] - g[8:]).abs().max().item()
    print(f"  check: gemma3 with every layer full: positions 0-7 differ by {d_early:.3g} (local rope), 8-19 by {d_late:.3g}")
    assert d_late > 1e-2
    # gemma2: both soft-caps change the logits
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        uncapped = Gemma2ForCausalLM.from_pretrained(os.path.join(FIX, "tiny", "gemma2"), dtype=torch.float32,
                                                     attn_implementation="eager", **{key: None})
        d = (logits_of(uncapped, input_ids) - results["gemma2"][1]).abs().max().item()
        print(f"  check: gemma2 without {key}: logits move by {d:.3g}")
        assert d > 1e-2


# ---------------------------------------------------------------------------
# 2. SmolLM2-135M-Instruct Q4_1 GGUF through transformers' GGUF loader
# ---------------------------------------------------------------------------

PARAGRAPH = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined movable metal type, oil-based ink and a wooden screw press into a practical system. "
    "Before his invention, books were copied by hand, which made them rare and expensive. Within a few "
    "decades, printing shops had spread to more than two hundred cities across Europe, and millions of "
    "volumes were produced. Cheaper books helped spread literacy, new scientific ideas and religious "
    "debates, and they changed the way knowledge was shared for centuries to come."
)


def make_smollm2(gguf_path):
    d = os.path.join(FIX, "smollm2")
    os.makedirs(d, exist_ok=True)
    gdir, gname = os.path.split(os.path.abspath(gguf_path))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = AutoModelForCausalLM.from_pretrained(
        gdir, gguf_file=gname, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    vocab = model.config.vocab_size

    chat = [
        {"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
        {"role": "user", "content": "Who are you?"},
    ]
    chat_text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    texts = ["The capital of France is", "def fibonacci(n):", chat_text, PARAGRAPH]
    kinds = ["plain", "plain", "chat_template(add_generation_prompt=True)", "plain"]

    bos = tok.bos_token_id
    prompts = []
    for i, (text, kind) in enumerate(zip(texts, kinds)):
        ids = tok(text)["input_ids"]  # default add_special_tokens=True
        ids_nospecial = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), use_cache=False,
                        output_hidden_states=(i == 0))
        logits = out.logits[0]
        last = logits[-1]
        top = torch.topk(last, 10)
        fn = f"logits_{i}.f32"
        write_f32(os.path.join(d, fn), last)
        p = {
            "text": text,
            "kind": kind,
            "input_ids": ids,
            "num_tokens": len(ids),
            "bos_added": bool(bos is not None and len(ids) > 0 and ids[0] == bos and ids != ids_nospecial),
            "same_as_add_special_tokens_false": ids == ids_nospecial,
            "top10_ids": top.indices.tolist(),
            "top10_logits": f32list(top.values),
            "last_logits_file": fn,
        }
        if i == 0:
            p["argmax_ids_all_positions"] = logits.argmax(-1).tolist()
            fn2 = "logits_0_pos2.f32"
            write_f32(os.path.join(d, fn2), logits[2])
            p["pos2_logits_file"] = fn2
            hs = out.hidden_states
            p["hidden_after_layer0_last"] = f32list(hs[1][0, -1])
            p["final_normed_hidden_last"] = f32list(hs[-1][0, -1])
            p["hidden_states_note"] = ("hidden_after_layer0_last = hidden_states[1][0,-1] (residual stream after "
                                       "decoder layer 0); final_normed_hidden_last = hidden_states[-1][0,-1], which in "
                                       "transformers 5.x is the output of the final RMSNorm (input to lm_head)")
            # verify that claim rather than trusting it
            with torch.no_grad():
                re = model.lm_head(hs[-1][0, -1])
            assert torch.allclose(re, last, atol=1e-4), "hidden_states[-1] is not the normed state"
            p["embedding_of_first_token_first8"] = f32list(hs[0][0, 0, :8])
        prompts.append(p)

    def gen(ids, n):
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=n, num_beams=1, pad_token_id=tok.pad_token_id
                                 if tok.pad_token_id is not None else 0)
        return out[0, len(ids):].tolist()

    g0 = gen(prompts[0]["input_ids"], 12)
    g2 = gen(prompts[2]["input_ids"], 24)

    sd = model.state_dict()

    def wcheck(key):
        w = sd[key]
        return {"name": key, "shape": list(w.shape), "sum": float(w.double().sum().item()),
                "row0_first8": f32list(w[0, :8]), "row1_first8": f32list(w[1, :8])}

    # the same tensors as stored in the GGUF, dequantized with the gguf package,
    # in GGUF row order (q/k before transformers' un-permutation)
    from gguf import GGUFReader
    from gguf.quants import dequantize
    rd = GGUFReader(gguf_path)
    raw = {}
    for t in rd.tensors:
        if t.name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "output_norm.weight"):
            a = dequantize(t.data, t.tensor_type).astype(np.float32)
            a = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
            raw[t.name] = {"ggml_type": t.tensor_type.name, "gguf_shape": [int(x) for x in t.shape],
                           "rows_x_cols": [int(a.shape[0]), int(a.shape[1])],
                           "sum": float(a.astype(np.float64).sum()),
                           "rows0_3_first8": [f32list(torch.from_numpy(a[r, :8].copy())) for r in range(min(4, a.shape[0]))]}
    # check the documented un-permutation: HF row h*hd + j*(hd/2) + i == GGUF row h*hd + 2*i + j
    hd = model.config.hidden_size // model.config.num_attention_heads
    qraw = dequantize(next(t for t in rd.tensors if t.name == "blk.0.attn_q.weight").data,
                      next(t for t in rd.tensors if t.name == "blk.0.attn_q.weight").tensor_type).astype(np.float32)
    perm = [h * hd + 2 * i + j for h in range(model.config.num_attention_heads) for j in range(2) for i in range(hd // 2)]
    assert np.array_equal(qraw[perm], sd["model.layers.0.self_attn.q_proj.weight"].numpy()), "un-permutation formula"

    qn = "model.layers.0.self_attn.q_proj.weight"
    kn = "model.layers.0.self_attn.k_proj.weight"
    exp = {
        "model_file": os.path.basename(gguf_path),
        "model_file_size": os.path.getsize(gguf_path),
        "dtype": "float32",
        "attn_implementation": "eager",
        "transformers": VERSIONS["transformers"],
        "torch": VERSIONS["torch"],
        "vocab_size": vocab,
        "bos_token_id": bos,
        "eos_token_id": tok.eos_token_id,
        "tokenizer_adds_bos": bool(prompts[0]["bos_added"]),
        "config": {k: getattr(model.config, k, None) for k in (
            "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings")},
        "rope_parameters": dict(model.config.rope_parameters),
        "prompts": prompts,
        "greedy": {
            "prompt0": {"prompt_ids": prompts[0]["input_ids"], "new_ids": g0,
                        "text": tok.decode(g0, skip_special_tokens=False)},
            "chat": {"prompt_ids": prompts[2]["input_ids"], "new_ids": g2,
                     "text": tok.decode(g2, skip_special_tokens=False),
                     "text_skip_special": tok.decode(g2, skip_special_tokens=True)},
        },
        "weights": {
            "embed_tokens": wcheck("model.embed_tokens.weight"),
            "q_proj_layer0": wcheck(qn),
            "k_proj_layer0": wcheck(kn),
            "norm": {"name": "model.norm.weight", "first8": f32list(sd["model.norm.weight"][:8])},
            "gguf_raw": raw,
            "unpermute_rule": ("HF q_proj/k_proj row h*hd + j*(hd/2) + i == GGUF attn_q/attn_k row h*hd + 2*i + j "
                               "(hd = head_dim = 64; h over heads (q: 9) or kv heads (k: 3); i < hd/2; j in {0,1})"),
            "lm_head_tied": bool(sd["lm_head.weight"].data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
                                 or torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])),
        },
    }
    write_json(os.path.join(d, "expected.json"), exp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["tiny", "smollm2"])
    ap.add_argument("--models", nargs="*", help="tiny models to (re)make (default: all, with the cross-model checks)")
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    a = ap.parse_args()
    print(f"transformers {VERSIONS['transformers']}, torch {VERSIONS['torch']}, threads {torch.get_num_threads()}")
    if a.only in (None, "tiny"):
        make_tiny(a.models)
    if a.only in (None, "smollm2"):
        if not os.path.exists(a.gguf):
            sys.exit(f"missing {a.gguf}: run tools/fetch-model.sh")
        make_smollm2(a.gguf)
    total = sum(os.path.getsize(p) for p in WRITTEN)
    print(f"{len(WRITTEN)} files, {total} bytes")


if __name__ == "__main__":
    main()
