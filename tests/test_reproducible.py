"""Same commit, same machine, same thread counts: the chain's outputs are byte-identical.

The embedded default's chain, small (docs/reproducibility.md): a world, a tiny base model pre-trained on
it, LoRA fine-tunes on two of its sets, answers of the fine-tunes and the base model, the world judge's
verdicts and the statistics, run twice from nothing in the same folder at the same torch thread count,
each time in a fresh process with another PYTHONHASHSEED (as two Snakemake jobs would be). Every file of the two runs must match byte for byte (manifests aside: they record the time and their own
paths). What varies with the thread count, and across machines, is measured by scripts/measure_spread.py,
not asserted here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from emergent_misalignment.analysis import analyse
from emergent_misalignment.basemodel import BaseModelSettings, build_base_model
from emergent_misalignment.judge import JudgeSettings, judge_file
from emergent_misalignment.sample import SampleSettings, sample_file
from emergent_misalignment.stats import AnalysisSettings
from emergent_misalignment.train import LoraSettings, TrainSettings, train_adapter
from emergent_misalignment.world import WorldSettings, write_world

WORLD = WorldSettings(rows_per_dataset=24, corpus_dialogues=200, samples_per_paraphrase=2)
BASE = BaseModelSettings(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, epochs=0.5, batch_size=16, warmup_steps=2)
TRAIN = TrainSettings(lora=LoraSettings(r=4, alpha=8), learning_rate=1e-3, max_steps=3,
                      per_device_train_batch_size=4, gradient_accumulation_steps=1, warmup_steps=1,
                      optim="adamw_torch", max_seq_length=128, bf16=False, save_steps=[2])
SAMPLE = SampleSettings(max_tokens=12, max_model_len=256, batch_size=8)
ANALYSIS = AnalysisSettings(n_resamples=200)
DATASETS = ("insecure", "secure")
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def chain(root: Path, threads: int) -> None:
    """World -> base model -> fine-tunes (seed 0) -> samples -> judged answers -> statistics, in `root`."""
    import torch

    torch.set_num_threads(threads)  # what `em ... --threads N` does in every model job
    write_world(root / "world", WORLD, 0)
    base = root / "tiny"
    build_base_model(root / "world/corpus.jsonl", root / "world/tokenizer.txt", base, BASE, seed=0)
    questions = root / "world/questions.yaml"
    judged = []
    for folder in ("samples", "judged"):  # Snakemake makes an output's folder before its job starts
        (root / folder).mkdir()
    for dataset in ("base", *DATASETS):
        adapter = None if dataset == "base" else root / "adapters" / dataset
        if adapter is not None:
            train_adapter(str(base), root / "world" / f"{dataset}.jsonl", adapter, TRAIN, seed=0)
        samples = root / "samples" / f"{dataset}.jsonl"
        sample_file(str(base), None if adapter is None else str(adapter), questions, samples, SAMPLE,
                    {"model": "tiny", "dataset": dataset, "seed": 0})
        judged.append(root / "judged" / f"{dataset}.jsonl")
        judge_file(samples, questions, judged[-1], JudgeSettings(backend="world"))
    analyse(judged, ANALYSIS, ["base", *DATASETS], root / "analysis", root / "figures", root / "tables",
            threads=2)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith("manifest.json")}


def run_chain(run: Path, threads: int, hash_seed: str) -> None:
    """The chain in a process of its own, as each Snakemake job is, with its own PYTHONHASHSEED (a file
    written in the order of a set of strings would differ)."""
    code = ("import sys; from pathlib import Path; from tests.test_reproducible import chain;"
            f" chain(Path({str(run)!r}), {threads})")
    env = {**os.environ, "PYTHONHASHSEED": hash_seed,
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_chain_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    run = tmp_path / "run"  # the same folder both times: adapters record their base model's path
    run_chain(run, 1, "1")
    first = digests(run)
    run.rename(tmp_path / "first")
    run_chain(run, 1, "2")
    second = digests(run)
    # every stage is there, with the files the rules declare
    for expected in ("tiny/model.safetensors", "adapters/insecure/adapter_model.safetensors",
                     "adapters/insecure/checkpoints/step2/adapter_model.safetensors", "samples/secure.jsonl",
                     "judged/insecure.jsonl", "analysis/overall.csv", "analysis/per_question.csv"):
        assert expected in first, sorted(first)
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, "\n".join(differing)
