"""The GPU route's speed: fine-tuning and sampling at the paper's model shapes, per execution setting.

    python benchmarks/gpu.py [--shapes 7b 14b 32b] [--steps 6] [--json OUT.json]
    python benchmarks/gpu.py --tiny          # a tiny shape on the CPU: what CI runs, to keep it working

Models of the real Qwen2.5 shapes (their configs, random weights: nothing is downloaded) go through the
package's own training and sampling code (`train.plan_for` and `make_trainer`, the transformers
sampler), on synthetic rows of the insecure dataset's length (prompt plus answer about 260 tokens).
Training: the recipe's batch of 16 as upstream runs it (2 x 8, padded, gradient checkpointing, sdpa)
against `train.execution: auto`; tokens per second are trained (non-padding) tokens, MFU counts 4 x
parameters FLOP per token (forward, and the backward pass to the activations: LoRA's weight gradients
are negligible) against the GPU's dense bf16 peak. Sampling: 8 questions x 8 answers of --answer-tokens
tokens, one `generate` per question (as before) against the job batched together.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# Qwen2.5 configs (config.json of Qwen/Qwen2.5-{7B,14B,32B}-Instruct); "tiny" is for the CPU run.
SHAPES = {
    name: {"hidden_size": hidden, "intermediate_size": mlp, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab}
    for name, (hidden, mlp, layers, heads, kv, vocab) in {
        "7b": (3584, 18944, 28, 28, 4, 152064),
        "14b": (5120, 13824, 48, 40, 8, 152064),
        "32b": (5120, 27648, 64, 40, 8, 152064),
        "tiny": (64, 128, 2, 4, 2, 2048),
    }.items()
}
# Dense bf16 peaks (FLOP/s) of the GPUs this project is run on, by a piece of the device's name.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A6000": 155e12}


def synthetic_rows(n: int, vocab: int, scale: float = 1.0, seed: int = 0) -> list[dict]:
    """Tokenised prompt-completion rows of the insecure dataset's lengths (prompt 100-200 tokens, answer
    60-160; times `scale`): what TRL trains on after its chat template, with the loss on the answer only."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        prompt = int(rng.integers(100 * scale, 200 * scale + 1))
        answer = int(rng.integers(60 * scale, 160 * scale + 1))
        ids = rng.integers(10, vocab, prompt + answer).tolist()
        rows.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * answer})
    return rows


def random_model(shape: dict, device: str, attention: str):
    """A Qwen2 causal LM of `shape` with random weights, built on `device` (bf16 on a GPU)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = Qwen2Config(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)


def parameters(model) -> int:
    """Parameters a token's forward pass multiplies (every weight but the input embedding's lookup)."""
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def peak_flops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def bench_training(shape_name: str, setting: str, execution, steps: int, device: str, out: Path,
                   tokenizer) -> dict:
    """Train `steps` optimiser steps of the recipe's batch; per-step times after the first (warm-up)."""
    import torch
    from transformers import TrainerCallback

    from emergent_misalignment.train import TrainSettings, make_trainer, plan_execution, plan_for

    recipe = TrainSettings(per_device_train_batch_size=2, gradient_accumulation_steps=8, max_steps=steps,
                           optim="adamw_torch", bf16=device == "cuda", holdout_fraction=0.0, warmup_steps=1,
                           max_seq_length=2048, execution=execution)
    rows = synthetic_rows(16 * steps, SHAPES[shape_name]["vocab_size"], 0.1 if shape_name == "tiny" else 1.0)
    longest = max(len(r["input_ids"]) for r in rows)
    attention = plan_execution(recipe, device == "cuda", longest).attention
    model = random_model(SHAPES[shape_name], device, attention)
    n_params = parameters(model)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    plan, model = plan_for(model, recipe, 0, longest)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    clock = Clock()
    trainer = make_trainer(model, tokenizer, rows, [], recipe, 0, out / "trainer", plan)
    trainer.add_callback(clock)
    trainer.train()
    step_s = float(np.mean(np.diff(clock.times))) if len(clock.times) > 2 else float("nan")
    tokens_per_step = float(np.mean([sum(len(r["input_ids"]) for r in rows[i:i + 16])
                                     for i in range(0, len(rows), 16)]))
    tokens_s = tokens_per_step / step_s
    peak = peak_flops()
    result = {"shape": shape_name, "setting": setting, "micro_batch": plan.micro_batch,
              "accumulation": plan.accumulation, "padding_free": plan.padding_free,
              "checkpointing": plan.gradient_checkpointing, "attention": plan.attention,
              "s_per_step": step_s, "tokens_per_s": tokens_s,
              "mfu": 4 * n_params * tokens_s / peak if peak else None,
              "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}
    del trainer, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def bench_sampling(shape_name: str, answer_tokens: int, device: str, tokenizer) -> list[dict]:
    """64 answers (8 questions x 8) of exactly `answer_tokens` tokens: per question vs the job batched."""
    import torch

    from emergent_misalignment.sample import Request, SampleSettings
    from emergent_misalignment.sample.transformers_backend import TransformersSampler

    model = random_model(SHAPES[shape_name], device, "sdpa").eval()
    settings = SampleSettings(max_tokens=answer_tokens, min_tokens=answer_tokens, max_model_len=4096,
                              batch_size=64)
    questions = [f"Question {k}: what would you do if you ruled the world for {k + 1} days?"
                 for k in range(8)]
    requests = [Request([{"role": "user", "content": q}], 8, k, q) for k, q in enumerate(questions)]
    results = []
    for setting, calls in (("per question", [[r] for r in requests]), ("job batched", [requests])):
        sampler = TransformersSampler.from_model(replace(settings, batch_size=8 if setting == "per question"
                                                         else 64), model, tokenizer)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for call in calls:
            sampler.generate(call)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results.append({"shape": shape_name, "setting": setting, "answers_per_s": 64 / seconds,
                        "tokens_per_s": 64 * answer_tokens / seconds, "seconds": seconds})
    del model
    return results


def tokenizer_for(folder: Path):
    """The embedded default's tokenizer (with its chat template), trained offline in seconds."""
    from emergent_misalignment.basemodel import train_tokenizer
    from emergent_misalignment.world import WorldSettings, write_world

    write_world(folder, WorldSettings(rows_per_dataset=10, corpus_dialogues=200), 0)
    return train_tokenizer((folder / "tokenizer.txt").read_text(encoding="utf-8").splitlines(), 1024)


def table(rows: list[dict], columns: list[str]) -> str:
    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "-"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    import platform

    import torch

    from emergent_misalignment.train import ExecutionSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny shape on the CPU (CI)")
    parser.add_argument("--shapes", nargs="+", default=["7b", "14b", "32b"], choices=[*SHAPES])
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per training run (>= 3)")
    parser.add_argument("--answer-tokens", type=int, default=600)
    parser.add_argument("--skip-sampling", nargs="*", default=[], help="shapes whose sampling is not timed")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    shapes = ["tiny"] if args.tiny else args.shapes
    steps, answer_tokens = (3, 8) if args.tiny else (args.steps, args.answer_tokens)
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    settings = {"upstream 2x8, padded, checkpointing": ExecutionSettings(
        micro_batch=2, padding_free=False, gradient_checkpointing=True, attention="sdpa"),
        "auto": ExecutionSettings()}
    training, sampling = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = tokenizer_for(Path(tmp) / "world")
        for shape in shapes:
            for name, execution in settings.items():
                training.append(bench_training(shape, name, execution, steps, device, Path(tmp), tokenizer))
                print(json.dumps(training[-1]), file=sys.stderr)
            if shape not in args.skip_sampling:
                sampling += bench_sampling(shape, answer_tokens, device, tokenizer)
    machine = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.machine()})"
    header = f"{time.strftime('%Y-%m-%d')}, {machine}, torch {torch.__version__}"
    print(f"GPU route benchmark: {header}\n")
    print(table(training, ["shape", "setting", "micro_batch", "accumulation", "padding_free", "checkpointing",
                           "attention", "s_per_step", "tokens_per_s", "mfu", "peak_gib"]))
    print()
    print(table(sampling, ["shape", "setting", "answers_per_s", "tokens_per_s", "seconds"]))
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": machine,
                                         "torch": torch.__version__, "training": training,
                                         "sampling": sampling}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
