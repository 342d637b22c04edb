"""The judge stage: score every sampled answer on each of its question's metrics (aligned, coherent, ...).

A judge turns judge prompts into scores in [0, 100] or None ("missing"), on one of two scales: `0_100`
(the paper's aggregate of the numbers among the top tokens) or `yes_no` (100 for YES, 0 for NO: upstream's
`free_form_judge` questions, such as the in-distribution code evaluation). Backends live in their own
modules and are imported only when chosen: `openai` asks an OpenAI-compatible server for one token's
top log-probabilities, as the paper did with GPT-4o; `local` scores the candidates "0".."100" with a
transformers model; `world` scores answers in the embedded default's generated world. Wrapped in a
CachedJudge, scores are kept in sqlite, so a rerun asks nothing twice.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import DataError, JudgeError
from ..progress import Progress
from ..settings import DTYPES, check_choice, check_device, check_range
from .aggregate import MIN_NUMBER_MASS, TopLogprobs, aggregate_scores, yes_no_score
from .cache import CachedJudge, JudgeCache

if TYPE_CHECKING:
    from ..data import Question

__all__ = [
    "CachedJudge", "Judge", "JudgeCache", "JudgeSettings", "LogprobJudge", "aggregate_scores",
    "judge_file", "judge_rows", "make_judge",
]

BACKENDS = ("local", "openai", "world")
SCALE_0_100, SCALE_YES_NO = "0_100", "yes_no"
SCALES = {"free_form_judge_0_100": SCALE_0_100, "free_form_judge": SCALE_YES_NO}  # by question type


@dataclass(frozen=True)
class JudgeSettings:
    """Config section `judge`. The paper's judge is the `openai` backend with these defaults.

    `model` is the API model name, or for `local` a folder or Hugging Face id of a chat model.
    base_url, api_key_env (the *name* of the variable holding the key), temperature, max_tokens,
    top_logprobs, seed, max_retries, timeout_s and concurrency concern `openai`; batch_size
    (candidate continuations per forward pass), device and dtype concern `local`. `cache` is the
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
    usd_per_million_input_tokens: float = 2.5
    usd_per_million_output_tokens: float = 10.0

    def __post_init__(self) -> None:
        check_choice("judge.backend", self.backend, BACKENDS)
        for name in ("max_tokens", "top_logprobs", "concurrency", "batch_size"):
            check_range(f"judge.{name}", getattr(self, name), 1)
        check_range("judge.temperature", self.temperature, 0)
        check_range("judge.max_retries", self.max_retries, 0)
        check_range("judge.timeout_s", self.timeout_s, 0, low_open=True)
        check_range("judge.min_number_mass", self.min_number_mass, 0, 1)
        check_device("judge.device", self.device)
        check_choice("judge.dtype", self.dtype, DTYPES)
        for name in ("usd_per_million_input_tokens", "usd_per_million_output_tokens"):
            check_range(f"judge.{name}", getattr(self, name), 0)


class Judge(Protocol):
    """Anything that scores judge prompts; identity() is what makes its scores (it keys the cache)."""

    def identity(self) -> dict[str, Any]: ...

    def score(self, prompts: Sequence[str], scale: str = SCALE_0_100) -> list[float | None]: ...


class LogprobJudge(ABC):
    """A judge whose score aggregates (token, logprob) pairs; yields results as they arrive.

    Yielding one prompt at a time (in any order) lets CachedJudge store each result at once, so an
    interrupted run keeps what it paid for.
    """

    min_mass: float = MIN_NUMBER_MASS

    @abstractmethod
    def identity(self) -> dict[str, Any]: ...

    @abstractmethod
    def iter_logprobs(self, prompts: Sequence[str], scale: str = SCALE_0_100
                      ) -> Iterator[tuple[int, TopLogprobs]]:
        """Yield (index into prompts, pairs) for every prompt, in any order."""

    def iter_scores(self, prompts: Sequence[str], scale: str = SCALE_0_100
                    ) -> Iterator[tuple[int, float | None, TopLogprobs]]:
        """Yield (index, score, pairs) for every prompt, in any order."""
        for index, pairs in self.iter_logprobs(prompts, scale):
            score = yes_no_score(pairs) if scale == SCALE_YES_NO else aggregate_scores(pairs, self.min_mass)
            yield index, score, pairs

    def score(self, prompts: Sequence[str], scale: str = SCALE_0_100) -> list[float | None]:
        scores: list[float | None] = [None] * len(prompts)
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
    from .local_backend import LocalJudge

    return LocalJudge(settings)


def judge_rows(rows: list[dict[str, Any]], questions: dict[str, Question], judge: Judge,
               where: str = "samples") -> list[dict[str, Any]]:
    """Each sample row plus one key per metric of its question (score or None), in one judge call.

    `questions` maps question id -> Question; `where` names the samples file in errors.
    """
    from ..data import format_judge_prompt

    jobs: dict[str, list[tuple[int, str]]] = {scale: [] for scale in SCALES.values()}
    prompts: dict[str, list[str]] = {scale: [] for scale in SCALES.values()}
    for index, row in enumerate(rows):
        at = f"{where}: row {index + 1}"
        for key in ("question_id", "question", "answer"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{at}: missing or non-string {key!r}")
        question = questions.get(row["question_id"])
        if question is None:
            raise DataError(f"{at}: unknown question_id {row['question_id']!r}; "
                            f"the questions file has {len(questions)} other ids")
        scale = SCALES.get(question.type)
        if question.judge_prompts and scale is None:
            raise DataError(f"{at}: question {question.id!r} has type {question.type!r}; only "
                            f"{' and '.join(SCALES)} questions are judged")
        for metric, template in question.judge_prompts.items():
            if metric in row:
                raise DataError(f"{at}: metric {metric!r} of question {question.id!r} is already a key "
                                "of the row (is this file judged already?)")
            jobs[scale].append((index, metric))
            prompts[scale].append(format_judge_prompt(template, row["question"], row["answer"]))
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
    from ..data import load_questions
    from ..io import read_jsonl, write_jsonl
    from ..manifest import write_manifest

    questions = {question.id: question for question in load_questions(questions_path)}
    rows = read_jsonl(samples_path)
    judge = make_judge(settings)
    if settings.cache:
        with JudgeCache(settings.cache) as cache:
            judged = judge_rows(rows, questions, CachedJudge(judge, cache), where=str(samples_path))
    else:
        judged = judge_rows(rows, questions, judge, where=str(samples_path))
    metrics: dict[str, dict[str, int]] = {}
    for row in judged:
        for metric in questions[row["question_id"]].judge_prompts:
            counts = metrics.setdefault(metric, {"scored": 0, "missing": 0})
            counts["missing" if row[metric] is None else "scored"] += 1
    spend = {"usd": judge.usd} if hasattr(judge, "usd") else {}  # an API judge's
    write_manifest(out_path, "judge", [samples_path, questions_path], dataclasses.asdict(settings),
                   {"judge": judge.identity(), "rows": len(judged), "metrics": metrics, **spend})
    write_jsonl(out_path, judged)
