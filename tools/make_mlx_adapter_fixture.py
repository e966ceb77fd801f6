#!/usr/bin/env python3
"""An adapter saved by mlx-lm, and mlx-lm's logits with it, for AdapterInteropTests.

Needs mlx and mlx-lm (CPU build on Linux: `pip install "mlx[cpu]" mlx-lm` in a
separate venv). On the tiny Llama fixture (Tests/LoftModelsTests/Fixtures/tiny/llama):

  1. mlx-lm loads the model, freezes it and converts the last `num_layers`
     blocks' q/v/down projections to LoRA (tuner.utils.linear_to_lora_layers,
     as `mlx_lm.lora` does); lora_b, zero at initialisation, gets random values
     so the adapter changes the output.
  2. The trainable parameters are saved as `mlx_lm.lora` saves them
     (adapters.safetensors from tree_flatten(model.trainable_parameters()),
     adapter_config.json with fine_tune_type, num_layers, lora_parameters).
  3. A fresh model with tuner.utils.load_adapters (mlx-lm's own loader) gives the
     reference logits for a fixed id sequence, written to expected.json.

Run: /tmp/mlxvenv/bin/python tools/make_mlx_adapter_fixture.py
"""
import json
import pathlib

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.tuner.utils import linear_to_lora_layers, load_adapters
from mlx_lm.utils import load_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASE = ROOT / "Tests/LoftModelsTests/Fixtures/tiny/llama"
OUT = ROOT / "Tests/LoftModelsTests/Fixtures/mlx_adapter"
IDS = [1, 17, 42, 99, 5, 63, 120, 7]
LORA = {"rank": 4, "scale": 3.0, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]}
NUM_LAYERS = 1  # only the last block: the loader must map layer indices, not assume all


def main():
    mx.random.seed(7)
    model, _ = load_model(BASE)
    model.freeze()
    linear_to_lora_layers(model, NUM_LAYERS, LORA)
    rng = np.random.default_rng(7)
    params = dict(tree_flatten(model.trainable_parameters()))
    for k, v in params.items():
        if k.endswith("lora_b"):
            params[k] = mx.array(rng.normal(0, 0.05, v.shape).astype(np.float32))
    model.load_weights(list(params.items()), strict=False)
    OUT.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(OUT / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    config = {"fine_tune_type": "lora", "num_layers": NUM_LAYERS, "lora_parameters": LORA,
              "model": "tiny/llama", "train": True, "batch_size": 1, "iters": 0, "learning_rate": 1e-5,
              "adapter_path": "mlx_adapter", "seed": 7}
    (OUT / "adapter_config.json").write_text(json.dumps(config, indent=4) + "\n")

    fresh, _ = load_model(BASE)
    load_adapters(fresh, str(OUT))
    logits = fresh(mx.array([IDS]))[0].astype(mx.float32)
    base, _ = load_model(BASE)
    base_logits = base(mx.array([IDS]))[0].astype(mx.float32)
    diff = float(mx.abs(logits - base_logits).max())
    print("keys:", sorted(dict(tree_flatten(fresh.trainable_parameters())).keys())[:3], "...")
    print(f"max |adapter - base| logit difference {diff:.3e}")
    (OUT / "expected.json").write_text(json.dumps({
        "ids": IDS, "logits": [float(x) for x in np.array(logits).ravel()],
        "base_logit_difference": diff,
        "source": "mlx-lm tuner.utils.load_adapters on tiny/llama, float32"}) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
