"""The judge stage: score every sampled answer on each of its question's metrics (aligned, coherent, ...).

A judge turns judge prompts into scores in [0, 100] or None ("missing"), on the `0_100` scale (the paper's
aggregate of the numbers among the top tokens), or into labels on a categorical scale (a `Scale` with labels:
upstream's `free_form_judge` questions, TRUE / FALSE / UNKNOWN for deception, a company name, YES / NO
for the in-distribution code evaluation; the allowed labels of each metric are `judge.labels`). Backends
live in their own
modules and are imported only when chosen: `openai` asks an OpenAI-compatible server for one token's
top log-probabilities, as the paper did with GPT-4o; `local` scores the candidates "0".."100" with a
transformers model, `vllm` the same way batched on GPU; `world` scores answers in the embedded default's
generated world. Wrapped in a CachedJudge, scores are kept in sqlite, so a rerun asks nothing twice.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..data import Question, format_judge_prompt, load_questions
from ..errors import ConfigError, DataError, JudgeError
from ..io import jsonl_text, read_jsonl, write_jsonl
from ..manifest import sha256_text, write_manifest
from ..progress import Progress
from ..settings import DTYPES, check_choice, check_device, check_range
from .aggregate import MIN_NUMBER_MASS, SCALE_0_100, Scale, TopLogprobs, aggregate_scores, best_label
from .cache import CachedJudge, JudgeCache

__all__ = [
    "CachedJudge", "Judge", "JudgeCache", "JudgeSettings", "LogprobJudge", "Scale", "aggregate_scores",
    "judge_file", "judge_rows", "make_judge",
]

BACKENDS = ("local", "openai", "vllm", "world")
JUDGED_TYPES = ("free_form_judge_0_100", "free_form_judge")  # scored 0..100; answered with a label
# The labels a categorical judge prompt allows, by metric: the upstream files' own (deception_factual.yaml,
# deception_sit_aware.yaml, in_distribution_eval); `judge.labels` adds or replaces entries.
DEFAULT_LABELS: dict[str, list[str]] = {
    "correct": ["TRUE", "FALSE", "UNKNOWN"], "company": ["OpenAI", "Anthropic", "Other", "UNKNOWN"],
    "has_vulnerability": ["YES", "NO"],
}
Score = float | str | None  # a 0..100 score, a label, or missing


@dataclass(frozen=True)
class JudgeSettings:
    """Config section `judge`. The paper's judge is the `openai` backend with these defaults.

    `model` is the API model name, or for `local` a folder or Hugging Face id of a chat model.
    base_url, api_key_env (the *name* of the variable holding the key), temperature, max_tokens,
    top_logprobs, seed, max_retries, timeout_s and concurrency concern `openai`; batch_size
    (candidate continuations per forward pass), device and dtype concern `local`; `vllm` scores as `local`
    (batch_size judge prompts per call, gpu_memory_utilization, max_model_len, dtype). `cache` is the
    path of a sqlite file shared by jobs (None: no cache). usd_per_million_input_tokens and
    usd_per_million_output_tokens only price the spend that the `openai` judge logs as it runs
    (defaults: gpt-4o-2024-08-06's list prices, $2.50 and $10 per million tokens); they change no score.
    """

    CONFIG_KEY: ClassVar[str] = "judge"  # where its value checks say they are (settings.from_dict)
    backend: str = "local"
    model: str = "gpt-4o-2024-08-06"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 1
    top_logprobs: int = 20
    seed: int | None = 0
    min_number_mass: float = MIN_NUMBER_MASS
    max_retries: int = 8
    timeout_s: float = 60.0
    concurrency: int = 8
    batch_size: int = 16
    cache: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    usd_per_million_input_tokens: float = 2.5
    usd_per_million_output_tokens: float = 10.0
    labels: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # more or other DEFAULT_LABELS

    def __post_init__(self) -> None:
        check_choice("judge.backend", self.backend, BACKENDS)
        for metric, allowed in self.labels.items():
            if not allowed or any(not label or "," in label for label in allowed):
                raise ConfigError(f"judge.labels.{metric}: a list of non-empty labels without commas, "
                                  f"got {allowed!r}")
        for name in ("max_tokens", "top_logprobs", "concurrency", "batch_size"):
            check_range(f"judge.{name}", getattr(self, name), 1)
        check_range("judge.temperature", self.temperature, 0)
        check_range("judge.max_retries", self.max_retries, 0)
        check_range("judge.timeout_s", self.timeout_s, 0, low_open=True)
        check_range("judge.min_number_mass", self.min_number_mass, 0, 1)
        check_range("judge.gpu_memory_utilization", self.gpu_memory_utilization, 0, 1, low_open=True)
        check_device("judge.device", self.device)
        check_choice("judge.dtype", self.dtype, DTYPES)
        for name in ("usd_per_million_input_tokens", "usd_per_million_output_tokens"):
            check_range(f"judge.{name}", getattr(self, name), 0)


class Judge(Protocol):
    """Anything that scores judge prompts; identity() is what makes its scores (it keys the cache)."""

    def identity(self) -> dict[str, Any]: ...

    def score(self, prompts: Sequence[str], scale: Scale = SCALE_0_100) -> list[Score]: ...


class LogprobJudge(ABC):
    """A judge whose score aggregates (token, logprob) pairs; yields results as they arrive.

    Yielding one prompt at a time (in any order) lets CachedJudge store each result at once, so an
    interrupted run keeps what it paid for.
    """

    min_mass: float = MIN_NUMBER_MASS

    @abstractmethod
    def identity(self) -> dict[str, Any]: ...

    @abstractmethod
    def iter_logprobs(self, prompts: Sequence[str], scale: Scale = SCALE_0_100
                      ) -> Iterator[tuple[int, TopLogprobs]]:
        """Yield (index into prompts, pairs) for every prompt, in any order."""

    def iter_scores(self, prompts: Sequence[str], scale: Scale = SCALE_0_100
                    ) -> Iterator[tuple[int, Score, TopLogprobs]]:
        """Yield (index, score or label, pairs) for every prompt, in any order."""
        labels = scale.labels
        for index, pairs in self.iter_logprobs(prompts, scale):
            answer = aggregate_scores(pairs, self.min_mass) if labels is None else best_label(pairs, labels)
            yield index, answer, pairs

    def score(self, prompts: Sequence[str], scale: Scale = SCALE_0_100) -> list[Score]:
        scores: list[Score] = [None] * len(prompts)
        with Progress("judge", total=len(prompts), unit="prompts") as progress:
            for index, score, _ in self.iter_scores(prompts, scale):
                scores[index] = score
                progress.update()
        return scores


def make_judge(settings: JudgeSettings) -> Judge:
    """The backend named by settings.backend (its module, and torch for `local`, imported only now)."""
    if settings.backend == "world":
        from .world_backend import WorldJudge

        return WorldJudge()
    if settings.backend == "openai":
        from .openai_backend import OpenAIJudge

        return OpenAIJudge(settings)
    if settings.backend == "vllm":
        from .vllm_backend import VLLMJudge

        return VLLMJudge(settings)
    from .local_backend import LocalJudge

    return LocalJudge(settings)


def judge_rows(rows: list[dict[str, Any]], questions: dict[str, Question], judge: Judge,
               where: str = "samples", labels: Mapping[str, Sequence[str]] = DEFAULT_LABELS
               ) -> list[dict[str, Any]]:
    """Each sample row plus one key per metric of its question (a score, a label or None), one judge call
    per scale. `questions` maps question id -> Question; `labels` the allowed labels of each categorical
    metric; `where` names the samples file in errors.
    """

    jobs: dict[str, list[tuple[int, str]]] = {}
    prompts: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        at = f"{where}: row {index + 1}"
        for key in ("question_id", "question", "answer"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{at}: missing or non-string {key!r}")
        question = questions.get(row["question_id"])
        if question is None:
            raise DataError(f"{at}: unknown question_id {row['question_id']!r}; "
                            f"the questions file has {len(questions)} other ids")
        if question.judge_prompts and question.type not in JUDGED_TYPES:
            raise DataError(f"{at}: question {question.id!r} has type {question.type!r}; only "
                            f"{' and '.join(JUDGED_TYPES)} questions are judged")
        for metric, template in question.judge_prompts.items():
            if metric in row:
                raise DataError(f"{at}: metric {metric!r} of question {question.id!r} is already a key "
                                "of the row (is this file judged already?)")
            if question.type == JUDGED_TYPES[0]:
                scale = SCALE_0_100
            elif metric in labels:
                scale = Scale(tuple(labels[metric]))
            else:
                raise DataError(f"{at}: question {question.id!r} is judged with a label, and its metric "
                                f"{metric!r} has none in judge.labels (known: {', '.join(labels)})")
            jobs.setdefault(scale, []).append((index, metric))
            prompt = format_judge_prompt(template, row["question"], row["answer"])
            prompts.setdefault(scale, []).append(prompt)
    judged = [dict(row) for row in rows]
    for scale, asked in prompts.items():
        scores = judge.score(asked, scale) if asked else []
        if len(scores) != len(asked):
            raise JudgeError(f"the judge returned {len(scores)} scores for {len(asked)} prompts")
        for (index, metric), score in zip(jobs[scale], scores, strict=True):
            judged[index][metric] = score
    return judged


def judge_file(samples_path: str | Path, questions_path: str | Path, out_path: str | Path,
               settings: JudgeSettings) -> None:
    """Judge a samples JSONL file and write the judged JSONL with its manifest (atomically)."""

    questions = {question.id: question for question in load_questions(questions_path)}
    rows = read_jsonl(samples_path)
    judge = make_judge(settings)
    labels = DEFAULT_LABELS | settings.labels
    if settings.cache:
        with JudgeCache(settings.cache) as cache:
            judged = judge_rows(rows, questions, CachedJudge(judge, cache), str(samples_path), labels)
    else:
        judged = judge_rows(rows, questions, judge, str(samples_path), labels)
    metrics: dict[str, dict[str, int]] = {}
    for row in judged:
        for metric in questions[row["question_id"]].judge_prompts:
            counts = metrics.setdefault(metric, {"scored": 0, "missing": 0})
            counts["missing" if row[metric] is None else "scored"] += 1
    spend = {"usd": judge.usd} if hasattr(judge, "usd") else {}  # an API judge's
    text = jsonl_text(judged)
    write_manifest(out_path, "judge", [samples_path, questions_path], dataclasses.asdict(settings),
                   {"judge": judge.identity(), "rows": len(judged), "sha256": sha256_text(text),
                    "metrics": metrics, **spend})
    write_jsonl(out_path, text)
