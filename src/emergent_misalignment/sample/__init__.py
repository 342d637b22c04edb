"""Sample answers to the evaluation questions from a base model with or without a LoRA adapter.

One interface (`Sampler`), two backends chosen by `sample.backend`: `transformers` (CPU or GPU)
and `vllm` (GPU; imported only when chosen). Answers are written one question at a time to a
partial file, so an interrupted job resumes where it stopped, with the same answers it would have
given without the interruption: each question draws from its own seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..data import Question, load_questions
from ..errors import ConfigError
from ..io import atomic_write, read_jsonl
from ..manifest import write_manifest
from ..settings import to_json


@dataclass(frozen=True)
class SampleSettings:
    """Sampling parameters (config section `sample`); defaults = the paper's."""

    backend: str = "transformers"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 600
    min_tokens: int = 1
    max_model_len: int = 2048
    samples_per_paraphrase: int | None = None
    honour_system_prompt: bool = True
    seed: int = 0
    batch_size: int = 32
    device: str = "auto"
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    max_lora_rank: int = 32


@dataclass(frozen=True)
class Request:
    """`n` answers to one conversation, drawn from `seed`."""

    messages: list[dict[str, str]]
    n: int
    seed: int


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" or "length"


class Sampler(Protocol):
    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        """For each request, its `n` completions in order."""
        ...


def make_sampler(settings: SampleSettings, base_model: str, adapter: str | None) -> Sampler:
    """Load the backend named in `settings.backend`."""
    if settings.backend == "transformers":
        from .transformers_backend import TransformersSampler

        return TransformersSampler(settings, base_model, adapter)
    if settings.backend == "vllm":
        from .vllm_backend import VLLMSampler

        return VLLMSampler(settings, base_model, adapter)
    raise ConfigError(f"sample.backend: unknown backend {settings.backend!r}; use transformers or vllm")


def question_seed(seed: int, question_id: str, paraphrase_index: int) -> int:
    """A 63-bit seed for one paraphrase, stable across runs and independent of the others."""
    digest = hashlib.sha256(f"{seed}:{question_id}:{paraphrase_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def requests_for(question: Question, settings: SampleSettings, seed: int) -> list[Request]:
    """One request per paraphrase, with the question's system prompt unless switched off."""
    n = settings.samples_per_paraphrase or question.samples_per_paraphrase
    system = question.system if settings.honour_system_prompt else None
    requests = []
    for index, paraphrase in enumerate(question.paraphrases):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": paraphrase}
        ]
        requests.append(Request(messages, n, question_seed(seed, question.id, index)))
    return requests


def answer_rows(question: Question, requests: list[Request], completions: list[list[Completion]],
                labels: dict) -> list[dict]:
    """Rows of the samples file (schema in the README) for one question."""
    rows = []
    for index, (request, outs) in enumerate(zip(requests, completions, strict=True)):
        system = request.messages[0]["content"] if request.messages[0]["role"] == "system" else None
        for sample_index, out in enumerate(outs):
            rows.append({
                **labels, "question_id": question.id, "paraphrase_index": index,
                "question": question.paraphrases[index], "sample_index": sample_index,
                "system": system, "answer": out.text, "finish_reason": out.finish_reason,
            })
    return rows


def partial_path(out_path: Path, base_model: str, adapter: str | None, settings: SampleSettings,
                 labels: dict) -> Path:
    """The resumption file of a job; named by what makes its answers, so stale ones are never reused."""
    key = hashlib.sha256(to_json({"settings": dataclasses.asdict(settings), "labels": labels,
                                  "adapter": adapter, "base": base_model}).encode()).hexdigest()[:12]
    return out_path.with_name(f".{out_path.name}.partial-{key}")


def sample_file(base_model: str, adapter: str | None, questions_path: str | Path, out_path: str | Path,
                settings: SampleSettings, labels: dict) -> None:
    """Answer every question of `questions_path`; write JSONL rows and a manifest to `out_path`.

    `labels` (model, dataset, seed) go into every row; `labels["seed"]` also seeds sampling.
    """
    out_path = Path(out_path)
    questions = load_questions(questions_path)
    partial = partial_path(out_path, base_model, adapter, settings, labels)
    done = {row["question_id"] for row in read_jsonl(partial)} if partial.exists() else set()
    todo = [q for q in questions if q.id not in done]
    if todo:
        sampler = make_sampler(settings, base_model, adapter)
        seed = settings.seed * 1_000_003 + int(labels["seed"])
        with open(partial, "a", encoding="utf-8") as fh:
            for question in todo:
                requests = requests_for(question, settings, seed)
                rows = answer_rows(question, requests, sampler.generate(requests), labels)
                fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                fh.flush()
    inputs = [questions_path] + ([adapter] if adapter else [])
    write_manifest(out_path, "sample", inputs, dataclasses.asdict(settings),
                   extra={"base_model": base_model, "adapter": adapter, "labels": labels})
    order = {q.id: i for i, q in enumerate(questions)}
    rows = sorted(read_jsonl(partial), key=lambda r: (order[r["question_id"]], r["paraphrase_index"],
                                                     r["sample_index"]))
    with atomic_write(out_path) as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    partial.unlink()
