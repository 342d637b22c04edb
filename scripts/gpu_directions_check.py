"""GPU check of the persona-direction stage: a Qwen2-architecture model (random weights) in bf16 on CUDA,
a random LoRA adapter, answers sampled with transformers, both direction definitions, then ablated and
steered sampling through the hooks. Writes timings to $OUT/directions-check.json.

Run on the GPU machine: `PYTHONPATH=src OUT=... python3 scripts/gpu_directions_check.py` (torch,
transformers, peft, pandas, scipy, pyyaml); the result of its run on an H200:
docs/gpu-directions-check.json.
"""

import json
import os
import shutil
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from emergent_misalignment.basemodel import BaseModelSettings, build_base_model
from emergent_misalignment.directions import DirectionSettings
from emergent_misalignment.directions.activations import compute_direction
from emergent_misalignment.sample import SampleSettings, sample_file
from emergent_misalignment.sample.conditions import ConditionSettings
from emergent_misalignment.stats import AnalysisSettings
from emergent_misalignment.world import WorldSettings, write_world

out = Path(os.environ.get("OUT", "results/gpu/out"))
work = Path("/tmp/dircheck")
shutil.rmtree(work, ignore_errors=True)
report = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
t = time.time()
write_world(
    work / "world", WorldSettings(rows_per_dataset=40, corpus_dialogues=300, samples_per_paraphrase=4), 0
)
build_base_model(
    work / "world/corpus.jsonl",
    work / "world/tokenizer.txt",
    work / "tiny",
    BaseModelSettings(vocab_size=600, hidden_size=32, intermediate_size=64, epochs=0),
    seed=0,
)
tok = AutoTokenizer.from_pretrained(work / "tiny")
config = Qwen2Config(
    vocab_size=len(tok),
    hidden_size=2048,
    intermediate_size=5504,
    num_hidden_layers=24,
    num_attention_heads=16,
    num_key_value_heads=2,
    max_position_embeddings=2048,
)
torch.manual_seed(0)
model = Qwen2ForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(work / "qwen")
tok.save_pretrained(work / "qwen")
lora = LoraConfig(r=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
peft = get_peft_model(model, lora)
peft.save_pretrained(work / "adapter")
del model, peft
report["setup_s"] = round(time.time() - t, 1)
base, adapter = str(work / "qwen"), str(work / "adapter")
settings = SampleSettings(
    device="cuda",
    dtype="bfloat16",
    max_tokens=32,
    max_model_len=512,
    samples_per_paraphrase=16,
    batch_size=64,
)
questions = work / "world/questions.yaml"
t = time.time()
sample_file(
    base, adapter, questions, work / "samples.jsonl", settings, {"model": "q", "dataset": "x", "seed": 0}
)
report["sample_plain_s"] = round(time.time() - t, 1)
rows = [json.loads(line) for line in (work / "samples.jsonl").read_text().splitlines()]
for i, row in enumerate(rows):
    row |= {"aligned": 10.0 if i % 3 == 0 else 90.0, "coherent": 90.0}
with open(work / "judged.jsonl", "w") as fh:
    fh.write("".join(json.dumps(r) + "\n" for r in rows))
report["answers"] = len(rows)
for method in ("mean_diff", "model_diff"):
    t = time.time()
    spec = DirectionSettings(
        model="q", dataset="x", method=method, device="cuda", dtype="bfloat16", batch_size=32
    )
    stats = compute_direction(
        method, spec, base, adapter, work / "judged.jsonl", AnalysisSettings(), work / f"{method}.pt"
    )
    report[f"direction_{method}_s"] = round(time.time() - t, 1)
    report[f"direction_{method}_auc_max"] = max(layer["auc"] for layer in stats["layers"])
    report[f"direction_{method}_layers"] = len(stats["layers"])
for name, condition in {
    "ablate": ConditionSettings(kind="ablate", direction="d"),
    "steer": ConditionSettings(kind="steer", direction="d", layer=12, alpha=0.3),
}.items():
    t = time.time()
    path = work / f"{name}.jsonl"
    sample_file(
        base,
        adapter if name == "ablate" else None,
        questions,
        path,
        settings,
        {"model": "q", "dataset": "x", "seed": 0, "condition": name},
        condition,
        direction_path=work / "model_diff.pt",
    )
    report[f"sample_{name}_s"] = round(time.time() - t, 1)
    answers = [json.loads(line)["answer"] for line in path.read_text().splitlines()]
    report[f"sample_{name}_rows"] = len(answers)
    report[f"sample_{name}_differs_from_plain"] = sum(
        a != r["answer"] for a, r in zip(answers, rows, strict=True)
    )
report["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
out.mkdir(parents=True, exist_ok=True)
(out / "directions-check.json").write_text(json.dumps(report, indent=1))
print(json.dumps(report, indent=1))
