#!/usr/bin/env python3
"""Writes N random PEFT LoRA adapters for the serving benchmark (bench/serve.sh).

    bench/make_bench_adapters.py OUT_DIR [--count 8] [--rank 16] [--seed 0]

Each OUT_DIR/aI is a PEFT adapter directory (adapter_config.json and
adapter_model.safetensors) for SmolLM2-135M's shapes, rank 16 on every linear
projection (q, k, v, o, gate, up, down), alpha 32. The values are random
(A ~ N(0, 1/in), B ~ N(0, 0.02²)): speed does not depend on what an adapter
learned, only on its shapes, and each adapter differs so that a batch of
mixed adapters is really mixed. Needs numpy.
"""
import argparse
import json
import os
import struct

import numpy as np

HIDDEN, INTER, KV, LAYERS = 576, 1536, 192, 30
SHAPES = {  # module: (out, in)
    "self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV, HIDDEN), "self_attn.v_proj": (KV, HIDDEN),
    "self_attn.o_proj": (HIDDEN, HIDDEN), "mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN),
    "mlp.down_proj": (HIDDEN, INTER),
}


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    for a in range(args.count):
        d = os.path.join(args.out, f"a{a}")
        os.makedirs(d, exist_ok=True)
        tensors = {}
        for layer in range(LAYERS):
            for module, (out_f, in_f) in SHAPES.items():
                prefix = f"base_model.model.model.layers.{layer}.{module}"
                tensors[prefix + ".lora_A.weight"] = rng.normal(0, in_f ** -0.5, (args.rank, in_f))
                tensors[prefix + ".lora_B.weight"] = rng.normal(0, 0.02, (out_f, args.rank))
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors)
        config = {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": args.rank, "lora_alpha": 2 * args.rank,
            "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_dora": False, "use_rslora": False,
            "target_modules": sorted(m.split(".")[1] for m in SHAPES),
            "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        }
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        print(d)


if __name__ == "__main__":
    main()
