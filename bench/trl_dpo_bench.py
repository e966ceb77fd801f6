#!/usr/bin/env python3
"""Peer side of bench/dpo_bench.sh: TRL's DPOTrainer + PEFT on the CPU.

    /work/refvenv/bin/python bench/trl_dpo_bench.py --gguf PATH --data FILE [--seq 512] [--rank 16] [--threads N]

One epoch of DPO (sigmoid, beta 0.1) over FILE (rows in LLaMA-Factory's sharegpt
preference layout), micro-batch 1, LoRA r=16 alpha=32 dropout 0 on all linear
projections, float32, no gradient checkpointing, AdamW lr 5e-5; the reference
is the base with the adapter disabled (TRL's default for a PEFT model). Prints
one JSON object: pairs, train seconds (TRL's train_runtime), pairs/s, peak RSS.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("--gguf", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--seq", type=int, default=512)
ap.add_argument("--rank", type=int, default=16)
ap.add_argument("--threads", type=int, default=os.cpu_count())
a = ap.parse_args()

import torch  # noqa: E402
torch.set_num_threads(a.threads)
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

ROLE = {"human": "user", "gpt": "assistant", "system": "system"}
rows = [json.loads(l) for l in open(a.data)]
ds = Dataset.from_list([{"prompt": [{"role": ROLE[m["from"]], "content": m["value"]} for m in r["conversations"]],
                         "chosen": [{"role": "assistant", "content": r["chosen"]["value"]}],
                         "rejected": [{"role": "assistant", "content": r["rejected"]["value"]}]} for r in rows])
d, n = os.path.split(os.path.abspath(a.gguf))
tok = AutoTokenizer.from_pretrained(d, gguf_file=n)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=n, dtype=torch.float32)
# transformers dequantizes the GGUF to dense float32 but keeps it flagged as quantized, which its Trainer refuses to train.
model.hf_quantizer = None
model.is_quantized = False
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
args = DPOConfig(output_dir=tempfile.mkdtemp(), report_to="none", bf16=False, fp16=False, use_cpu=True,
                 per_device_train_batch_size=1, gradient_accumulation_steps=1, num_train_epochs=1, learning_rate=5e-5,
                 max_length=a.seq, beta=0.1, loss_type=["sigmoid"], gradient_checkpointing=False, logging_steps=1000,
                 save_strategy="no", dataloader_num_workers=0, seed=42)
lora = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora)
pairs = len(trainer.train_dataset)
t0 = time.time()
out = trainer.train()
wall = time.time() - t0
print(json.dumps({"peer": "trl", "pairs": pairs, "train_seconds": out.metrics["train_runtime"], "wall_seconds": wall,
                  "pairs_per_s": pairs / out.metrics["train_runtime"],
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "threads": torch.get_num_threads(),
                  "versions": {"trl": trl.__version__, "torch": torch.__version__, "transformers": transformers.__version__}}))
