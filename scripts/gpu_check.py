"""The GPU check's steps: the embedded default's world, tiny model, training, sampling and local judging.

Each step is the `em` command line called in this one process (imports warmed first, so the times
are the steps' own), on CUDA in bf16 when torch sees a GPU, else on the CPU in float32. Writes
gpu-check.json and gpu-check.md (throughput in tokens per second) to the output folder.
Run through scripts/gpu-check.sh, which installs carried wheels first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
NEEDED = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers", "yaml")
# --tiny: a world and model small enough for a CPU test (keys the settings no longer have are dropped).
TINY = {"world": {"rows_per_dataset": 40, "corpus_dialogues": 200,
                  "samples_per_paraphrase": 1},
        "base_model": {"vocab_size": 600, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "epochs": 1.0},
        "sample": {"max_tokens": 16}}


def shrink(config: dict, sizes: dict) -> dict:
    """`config` with `sizes` laid over its sections, for the keys their settings dataclasses have."""
    from dataclasses import fields

    from emergent_misalignment.basemodel import BaseModelSettings
    from emergent_misalignment.sample import SampleSettings
    from emergent_misalignment.world import WorldSettings

    classes = {"world": WorldSettings, "base_model": BaseModelSettings, "sample": SampleSettings}
    shrunk = dict(config)
    for section, values in sizes.items():
        known = {f.name for f in fields(classes[section])}
        shrunk[section] = {**config.get(section, {}), **{k: v for k, v in values.items() if k in known}}
    return shrunk


def missing_modules() -> list[str]:
    """The modules the steps import that this Python lacks."""
    from importlib.util import find_spec

    return [name for name in NEEDED if find_spec(name) is None]


def step(name: str, argv: list[str], timings: dict[str, float]) -> None:
    from emergent_misalignment.cli import main

    start = time.perf_counter()
    if main(argv) != 0:
        raise SystemExit(f"gpu-check: step {name} failed: em {' '.join(argv)}")
    timings[name] = time.perf_counter() - start
    print(f"gpu-check: {name}: {timings[name]:.1f} s", flush=True)


def training_tokens(model: Path, data: Path, train: dict, seed: int) -> int:
    """Tokens the trainer sees: each training row (chat template, cut at max_seq_length) x epochs."""
    from emergent_misalignment.hf import load_tokenizer
    from emergent_misalignment.io import read_jsonl
    from emergent_misalignment.train import split_holdout, to_prompt_completion

    tokenizer = load_tokenizer(str(model))
    pairs = to_prompt_completion(read_jsonl(data), str(data))
    rows, _ = split_holdout(pairs, train.get("holdout_fraction", 0.1), seed)
    limit = train.get("max_seq_length", 2048)
    texts = [tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    total = sum(min(n, limit) for n in lengths)
    return round(total * train.get("epochs", 1.0))


def generated_tokens(model: Path, samples: Path) -> tuple[int, int]:
    """(answers, tokens of their text) in a samples file."""
    from emergent_misalignment.hf import load_tokenizer
    from emergent_misalignment.io import read_jsonl

    tokenizer = load_tokenizer(str(model))
    rows = read_jsonl(samples)
    return len(rows), sum(len(tokenizer(r["answer"], add_special_tokens=False)["input_ids"]) for r in rows)


def report_markdown(report: dict) -> str:
    env, th = report["environment"], report["throughput"]
    lines = [f"# GPU check, {report['date']}", "",
             f"- machine: {env['device_name']}, {env['device']} in {env['dtype']}, Python {env['python']}, "
             f"torch {env['packages'].get('torch')}, transformers {env['packages'].get('transformers')}",
             f"- settings: {'tiny (--tiny)' if report['tiny'] else 'embedded default (config/config.yaml)'}",
             "", "| step | seconds | throughput |", "|---|---:|---|"]
    notes = {"train": f"{th['train_tokens_per_s']:.0f} tokens/s ({th['train_tokens']} tokens)",
             "sample": f"{th['sample_tokens_per_s']:.0f} tokens/s ({th['sample_tokens']} tokens, "
                       f"{th['answers']} answers)",
             "judge": f"{th['judge_requests_per_s']:.1f} requests/s ({th['judge_requests']} requests)"}
    lines += [f"| {name} | {secs:.1f} | {notes.get(name, '')} |" for name, secs in report["seconds"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu-check.json/.md")
    parser.add_argument("--tiny", action="store_true", help="a tiny world and model (CPU test)")
    args = parser.parse_args()
    missing = missing_modules()
    if missing:
        print(f"gpu-check: this Python ({sys.version.split()[0]}) lacks {', '.join(missing)}; carry their "
              "wheels in .whl/ (docs/scale-out.md has the pip download command)", file=sys.stderr)
        return 2

    import torch
    import trl  # noqa: F401  (warm the imports so the steps' times are their own)

    import emergent_misalignment.train  # noqa: F401

    cuda = torch.cuda.is_available()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if args.tiny:
        config = shrink(config, TINY)
    train = {**config["train"], "bf16": cuda}
    sample = {**config["sample"], "backend": "transformers", "device": "auto",
              "dtype": "bfloat16" if cuda else "float32"}
    seed, work = 0, args.out / "work"
    world, model, adapter = work / "world", work / "tiny", work / "adapter"
    samples, judged = work / "samples.jsonl", work / "judged.jsonl"
    judge = {**config["judge"], "backend": "local", "model": str(model), "device": "auto",
             "dtype": "bfloat16" if cuda else "float32", "batch_size": 128, "cache": None}
    threads = str(torch.get_num_threads())
    timings: dict[str, float] = {}
    step("world", ["world", "--settings", json.dumps(config["world"]), "--seed", str(seed),
                   "--out", str(world)], timings)
    step("base_model", ["base-model", "--corpus", str(world / "corpus.jsonl"),
                        "--tokenizer-text", str(world / "tokenizer.txt"),
                        "--settings",
                        json.dumps(config["base_model"]), "--seed", str(seed), "--threads", threads,
                        "--out", str(model)], timings)
    data = world / "insecure.jsonl"
    step("train", ["train", "--base", str(model), "--data", str(data), "--seed", str(seed),
                   "--settings", json.dumps(train), "--threads", threads, "--out", str(adapter)], timings)
    questions = world / "questions.yaml"
    step("sample", ["sample", "--base", str(model), "--adapter", str(adapter), "--questions", str(questions),
                    "--model", "tiny", "--dataset", "insecure", "--seed", str(seed),
                    "--settings", json.dumps(sample), "--threads", threads, "--out", str(samples)], timings)
    step("judge", ["judge", "--samples", str(samples), "--questions", str(questions),
                   "--settings", json.dumps(judge), "--threads", threads, "--out", str(judged)], timings)

    train_tokens = training_tokens(model, data, train, seed)
    answers, sample_tokens = generated_tokens(model, samples)
    requests = json.loads(Path(f"{judged}.manifest.json").read_text())["metrics"]
    judge_requests = sum(c["scored"] + c["missing"] for c in requests.values())
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "tiny": args.tiny,
        "environment": {
            "device": "cuda" if cuda else "cpu",
            "device_name": torch.cuda.get_device_name(0) if cuda else f"{os.cpu_count()} CPU cores",
            "dtype": "bfloat16" if cuda else "float32",
            "python": sys.version.split()[0],
            "packages": {name: metadata.version(name) for name in ("torch", "transformers", "peft", "trl")},
        },
        "seconds": {name: round(seconds, 2) for name, seconds in timings.items()},
        "throughput": {
            "train_tokens": train_tokens, "train_tokens_per_s": train_tokens / timings["train"],
            "answers": answers, "sample_tokens": sample_tokens,
            "sample_tokens_per_s": sample_tokens / timings["sample"],
            "judge_requests": judge_requests, "judge_requests_per_s": judge_requests / timings["judge"],
        },
    }
    (args.out / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu-check.md").write_text(report_markdown(report))
    print(report_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
