"""Sample answers to the evaluation questions from a base model with or without a LoRA adapter.

One interface (`Sampler`), three backends chosen by `sample.backend`: `transformers` (CPU or GPU),
`vllm` (GPU) and `openai` (an OpenAI-compatible server: GPT-4o and its fine-tunes, or `vllm serve`);
each imported only when chosen. Answers are written a chunk of questions at a time (`question_chunks`)
to a partial file, so an interrupted job resumes where it stopped, with the same answers it would have
given without the interruption: each question draws from its own seed, each answer from its own stream.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .. import data
from ..data import Question, load_questions, read_chat_jsonl
from ..errors import ConfigError, DataError
from ..hf import load_tokenizer
from ..io import atomic_write, jsonl_text, read_jsonl, write_json, write_jsonl
from ..manifest import hash_inputs, model_digest, model_hashes, sha256_file, sha256_text, write_manifest
from ..progress import Progress
from ..settings import DTYPES, check_choice, check_device, check_range, to_json
from .conditions import AS_IS, INTERVENTIONS, ConditionSettings, icl_turns, numbers_wrappers, prompts


@dataclass(frozen=True)
class SampleSettings:
    """Sampling parameters (config section `sample`); defaults = the paper's."""

    CONFIG_KEY: ClassVar[str] = "sample"  # where its value checks say they are (settings.from_dict)
    backend: str = "transformers"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 600
    min_tokens: int = 1
    max_model_len: int = 2048
    samples_per_paraphrase: int | None = None
    honour_system_prompt: bool = True
    seed: int = 0
    batch_size: int = 32  # transformers: answers generated together (sorted by prompt length)
    batch_tokens: int | None = None  # transformers: and at most this many padded tokens (None: no cap)
    device: str = "auto"
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    max_lora_rank: int = 32
    chat: bool = True  # false: a base model, asked by raw completion of the question (no chat template)
    families: list[str] | None = None  # ask only these question families (None: every question)
    # backend openai: the server, the key's variable, and how to ask it (see sample/openai_backend.py)
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    max_retries: int = 8
    timeout_s: float = 600.0
    max_n: int = 128  # answers per request (OpenAI allows up to 128; 1 for a server without `n`)
    extra_body: dict[str, Any] | None = None  # server-specific fields, e.g. vLLM's {"min_tokens": 1}
    cache: str | None = None  # sqlite file of the responses (the workflow sets it)
    usd_per_million_input_tokens: float = 2.5  # gpt-4o-2024-08-06's list prices: only price the log's spend
    usd_per_million_output_tokens: float = 10.0

    def __post_init__(self) -> None:
        check_choice("sample.backend", self.backend, ("transformers", "vllm", "openai"))
        check_range("sample.temperature", self.temperature, 0)
        check_range("sample.top_p", self.top_p, 0, 1, low_open=True)
        for name in ("max_tokens", "samples_per_paraphrase", "batch_size", "batch_tokens", "max_lora_rank",
                     "concurrency", "max_n"):
            check_range(f"sample.{name}", getattr(self, name), 1)
        check_range("sample.max_retries", self.max_retries, 0)
        check_range("sample.timeout_s", self.timeout_s, 0, low_open=True)
        check_range("sample.min_tokens", self.min_tokens, 0)
        if self.min_tokens > self.max_tokens:
            raise ConfigError(f"sample.min_tokens: must be <= sample.max_tokens ({self.max_tokens}), "
                              f"got {self.min_tokens}")
        if self.max_model_len <= self.max_tokens:
            raise ConfigError(f"sample.max_model_len: must be > sample.max_tokens ({self.max_tokens}) to "
                              f"leave room for the prompt, got {self.max_model_len}")
        check_device("sample.device", self.device)
        check_choice("sample.dtype", self.dtype, DTYPES)
        check_range("sample.gpu_memory_utilization", self.gpu_memory_utilization, 0, 1, low_open=True)


@dataclass(frozen=True)
class Request:
    """`n` answers to one conversation, drawn from `seed`: answers `first_sample`.. of one paraphrase,
    shown to the judge with the question text `judged`."""

    messages: list[dict[str, str]]
    n: int
    seed: int
    judged: str  # required: a row without its question would be judged off-topic, silently
    paraphrase_index: int = 0
    first_sample: int = 0
    temperature: float = 1.0  # 0: greedy


@dataclass(frozen=True)
class Asking:
    """How a job asks the questions: its condition, the in-context turns before each question (icl) and,
    per question id, each paraphrase's numbers wrappers (numbers)."""

    condition: ConditionSettings = dataclasses.field(default_factory=ConditionSettings)
    turns: tuple[dict[str, str], ...] = ()
    wrappers: dict[str, list[list[str]]] = dataclasses.field(default_factory=dict)


def answers_per_paraphrase(question: Question, settings: SampleSettings) -> int:
    """`sample.samples_per_paraphrase`, else the question file's own number (one for a greedy question)."""
    return data.answers_per_paraphrase(question, settings.samples_per_paraphrase)


def asking(questions: list[Question], settings: SampleSettings, condition: ConditionSettings,
           examples_path: str | Path | None = None) -> Asking:
    """The Asking of a job: the icl turns from `examples_path`, numbers wrappers drawn in question order."""

    turns = icl_turns(condition, read_chat_jsonl(examples_path)) if examples_path else []
    wrappers: dict[str, list[list[str]]] = {}
    if condition.kind == "numbers":
        paraphrases = [q for q in questions for _ in q.paraphrases]
        counts = [answers_per_paraphrase(q, settings) for q in paraphrases]
        for question, drawn in zip(paraphrases, numbers_wrappers(counts, condition), strict=True):
            wrappers.setdefault(question.id, []).append(drawn)
    return Asking(condition, tuple(turns), wrappers)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" or "length"


class Sampler(Protocol):
    tokenizer: Any  # the model's tokenizer, with its chat template

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        """For each request, its `n` completions in order."""
        ...


def make_sampler(settings: SampleSettings, base_model: str, adapter: str | None,
                 intervene: Callable[[Any], Any] | None = None) -> Sampler:
    """Load the backend named in `settings.backend` (checked to be transformers, vllm or openai);
    `intervene(model)` hooks a residual-stream intervention into the loaded model (transformers only)."""
    if intervene is not None and settings.backend != "transformers":
        raise ConfigError(f"sample.backend: {settings.backend} cannot hook the residual stream (vLLM runs a "
                          "compiled graph, an API model has no activations); ablation and steering jobs "
                          "need sample.backend transformers")
    if settings.backend == "openai":
        from ..api import served_model
        from .openai_backend import OpenAISampler

        return OpenAISampler(settings, served_model(base_model, adapter))
    if settings.backend == "vllm":
        from .vllm_backend import VLLMSampler

        return VLLMSampler(settings, base_model, adapter)
    from .transformers_backend import TransformersSampler

    return TransformersSampler(settings, base_model, adapter, intervene)


def question_seed(seed: int, question_id: str, paraphrase_index: int) -> int:
    """A 63-bit seed for one paraphrase, stable across runs and independent of the others."""
    digest = hashlib.sha256(f"{seed}:{question_id}:{paraphrase_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def requests_for(question: Question, settings: SampleSettings, seed: int, how: Asking = Asking()
                 ) -> list[Request]:
    """The requests of one question: one per paraphrase (one per answer under a numbers condition), with
    the question's system prompt unless switched off, then any in-context turns, then the question."""
    n = answers_per_paraphrase(question, settings)
    temperature = settings.temperature if question.temperature is None else question.temperature
    system = question.system if settings.honour_system_prompt else None
    requests = []
    for index, paraphrase in enumerate(question.paraphrases):
        wrappers = how.wrappers[question.id][index] if how.wrappers else None
        for prompt in prompts(how.condition, paraphrase, n, wrappers):
            messages = ([{"role": "system", "content": system}] if system else []) + [
                *how.turns, {"role": "user", "content": prompt.text}]
            name = question.id if prompt.count == n else f"{question.id}#{prompt.first}"
            requests.append(Request(messages, prompt.count, question_seed(seed, name, index), prompt.judged,
                                    index, prompt.first, temperature))
    return requests


def answer_rows(question: Question, requests: list[Request], completions: list[list[Completion]],
                labels: dict) -> list[dict]:
    """Rows of the samples file (schema in the README) for one question."""
    rows = []
    for request, outs in zip(requests, completions, strict=True):
        system = request.messages[0]["content"] if request.messages[0]["role"] == "system" else None
        for offset, out in enumerate(outs):
            rows.append({
                **labels, "question_id": question.id, "family": question.family,
                "paraphrase_index": request.paraphrase_index, "question": request.judged,
                "sample_index": request.first_sample + offset, "system": system, "answer": out.text,
                "finish_reason": out.finish_reason,
            })
    return rows


def run_key(base_files: dict[str, str], adapter: str | None, questions_path: str | Path,
            settings: SampleSettings, labels: dict, how: Asking = Asking(),
            direction: str | Path | None = None) -> str:
    """sha256 of everything that makes a job's answers: the base model's files (`manifest.model_hashes`)
    and the adapter's, the questions file, the settings, the labels (whose seed seeds sampling) and how
    questions are asked. A retrained adapter, another base model or an edited question file gives another
    key, so their answers are never mixed."""
    what = {"settings": dataclasses.asdict(settings), "labels": labels, "asking": dataclasses.asdict(how),
            "base": sorted(base_files.values()),
            "adapter": sorted(hash_inputs([adapter]).values()) if adapter else None,
            "questions": sha256_file(questions_path),
            **({"direction": sha256_file(direction)} if direction else {})}
    return hashlib.sha256(to_json(what).encode()).hexdigest()


def partial_path(out_path: Path, key: str) -> Path:
    """The resumption file of a job, named by its `run_key`."""
    return out_path.with_name(f".{out_path.name}.partial-{key[:16]}")


CHUNK_BATCHES = 8  # transformers: a chunk of a job holds about this many full batches


def question_chunks(questions: list[Question], settings: SampleSettings) -> list[list[Question]]:
    """The job's questions in the groups that are generated together and written together to the partial
    file: the whole job for vLLM (one call), one question for an API (its requests run concurrently, and
    its cache makes a rerun free), for transformers consecutive questions of about CHUNK_BATCHES full
    batches. The groups depend on the question list only, never on what a resumed job has done, so a
    resumed job batches its answers exactly as an uninterrupted one."""
    if settings.backend == "vllm":
        return [questions] if questions else []
    limit = 1 if settings.backend == "openai" else settings.batch_size * CHUNK_BATCHES
    chunks: list[list[Question]] = []
    size = limit
    for question in questions:
        if size >= limit:
            chunks.append([])
            size = 0
        chunks[-1].append(question)
        size += expected_rows(question, settings)
    return chunks


def expected_rows(question: Question, settings: SampleSettings) -> int:
    """Answers one question gets: paraphrases x samples per paraphrase."""
    return len(question.paraphrases) * answers_per_paraphrase(question, settings)


def resume_rows(partial: Path, questions: list[Question], settings: SampleSettings) -> list[dict]:
    """The complete questions of an interrupted job's partial file, rewritten without the rest.

    A job killed while writing leaves a cut last line, or some of one question's rows: both are dropped,
    and that question is sampled again (from its own seed, so with the same answers).
    """
    rows, cut = [], False
    with open(partial, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                cut = True  # the interruption cut this line
                break
            rows.append(json.loads(line))
    wanted = {q.id: expected_rows(q, settings) for q in questions}
    counts = Counter(row["question_id"] for row in rows)
    kept = [row for row in rows if counts[row["question_id"]] == wanted.get(row["question_id"])]
    if cut or len(kept) != len(rows):
        with atomic_write(partial) as fh:
            fh.write(jsonl_text(kept))
    return kept


def check_row_counts(rows: list[dict], questions: list[Question], settings: SampleSettings,
                     where: str) -> None:
    """Every question has exactly paraphrases x samples rows: a short file is an error, never a result."""
    counts = Counter(row["question_id"] for row in rows)
    for question in questions:
        if counts[question.id] != expected_rows(question, settings):
            raise DataError(f"{where}: question {question.id!r} has {counts[question.id]} answers, expected "
                            f"{expected_rows(question, settings)} (paraphrases x samples per paraphrase)")


def prompt_text(tokenizer, messages: list[dict[str, str]], chat: bool = True) -> str:
    """What the model is given: the chat template's rendering, or for a base model (`chat` false) the
    messages' text alone, to be continued (the paper asked base models with a template to complete)."""
    if chat:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n\n".join(m["content"] for m in messages)


def asked_questions(questions: list[Question], settings: SampleSettings, where: str) -> list[Question]:
    """The questions of `settings.families` (all when None); none left is an error that names the key."""
    if settings.families is None:
        return questions
    kept = [q for q in questions if q.family in settings.families]
    if not kept:
        raise ConfigError(f"sample.families: {where} has no question of the families "
                          f"{', '.join(settings.families)} (it has: "
                          f"{', '.join(sorted({str(q.family) for q in questions}))})")
    return kept


def prompt_lengths(tokenizer, questions: list[Question], settings: SampleSettings, how: Asking = Asking()
                   ) -> dict[str, int]:
    """The longest prompt of each question in tokens, as the model sees it (chat template, system prompt,
    the condition's turns and wrappers)."""
    lengths = {}
    for question in questions:
        requests = requests_for(question, settings, 0, how)
        prompts = [prompt_text(tokenizer, r.messages, settings.chat) for r in requests]
        ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        lengths[question.id] = max(map(len, ids))
    return lengths


def check_prompt_lengths(lengths: dict[str, int], settings: SampleSettings, where: str) -> None:
    """Each prompt plus `max_tokens` answer tokens must fit in `max_model_len`; one error names them all."""
    limit = settings.max_model_len - settings.max_tokens
    long = {qid: n for qid, n in lengths.items() if n > limit}
    if long:
        listed = ", ".join(f"{qid!r} ({n} tokens)" for qid, n in list(long.items())[:5])
        more = f" and {len(long) - 5} more" if len(long) > 5 else ""
        raise ConfigError(f"{where}: {len(long)} question prompt(s) longer than sample.max_model_len "
                          f"({settings.max_model_len}) - sample.max_tokens ({settings.max_tokens}) = {limit} "
                          f"tokens: {listed}{more}. Raise sample.max_model_len (up to the model's context) "
                          "or lower sample.max_tokens")


def check_prompts(base_model: str, questions_path: str | Path, out_path: str | Path,
                  settings: SampleSettings, condition: ConditionSettings = AS_IS,
                  examples_path: str | Path | None = None) -> None:
    """Before any sampling: every question fits the model's context; writes each question's prompt length.
    A model behind an API has no local tokenizer: its server checks, and the file records none."""
    questions = asked_questions(load_questions(questions_path), settings, str(questions_path))
    if settings.backend == "openai":
        write_manifest(out_path, "check-prompts", [questions_path], dataclasses.asdict(settings),
                       extra={"base_model": base_model, "base_model_files": api_model_record(base_model)})
        write_json(out_path, {"max_model_len": None, "max_tokens": settings.max_tokens, "prompt_tokens": {},
                              "checked_by": settings.base_url})
        return
    from transformers import AutoConfig


    context = getattr(AutoConfig.from_pretrained(base_model), "max_position_embeddings", None)
    if context is not None and settings.max_model_len > context:
        raise ConfigError(f"sample.max_model_len ({settings.max_model_len}) is longer than the context of "
                          f"model {base_model!r} ({context} positions)")
    lengths = prompt_lengths(load_tokenizer(base_model), questions, settings,
                             asking(questions, settings, condition, examples_path))
    check_prompt_lengths(lengths, settings, f"{questions_path} with model {base_model!r}")
    write_manifest(out_path, "check-prompts", [questions_path], dataclasses.asdict(settings),
                   extra={"base_model": base_model, "base_model_files": model_hashes(base_model)})
    write_json(out_path, {"max_model_len": settings.max_model_len, "max_tokens": settings.max_tokens,
                          "prompt_tokens": lengths})


def api_model_record(model: str) -> dict[str, str]:
    """What identifies a model served by an API in manifests and run keys: its name (no files to hash)."""
    return {model: "served by an API"}


def sample_file(base_model: str, adapter: str | None, questions_path: str | Path, out_path: str | Path,
                settings: SampleSettings, labels: dict, condition: ConditionSettings = AS_IS,
                examples_path: str | Path | None = None, direction_path: str | Path | None = None) -> None:
    """Answer every question of `questions_path` under `condition`; write JSONL rows and a manifest.

    `labels` (model, dataset, seed, checkpoint, condition) go into every row; `labels["seed"]` also seeds
    sampling. `examples_path`: the dataset an icl condition draws its examples from; `direction_path`: the
    direction file an ablate or steer condition uses.
    """
    out_path = Path(out_path)
    questions = asked_questions(load_questions(questions_path), settings, str(questions_path))
    how = asking(questions, settings, condition, examples_path)
    base_files = api_model_record(base_model) if settings.backend == "openai" else model_hashes(base_model)
    intervene = _intervention(condition, direction_path, base_files, labels)
    key = run_key(base_files, adapter, questions_path, settings, labels, how, direction_path)
    partial = partial_path(out_path, key)
    for stale in out_path.parent.glob(f".{out_path.name}.partial-*"):
        if stale != partial:
            stale.unlink()  # made by another adapter, model, question file or settings
    resumed = resume_rows(partial, questions, settings) if partial.exists() else []
    done = {row["question_id"] for row in resumed}
    todo = [q for q in questions if q.id not in done]
    spend = None
    if todo:
        sampler = make_sampler(settings, base_model, adapter, intervene)
        if sampler.tokenizer is not None:  # a server checks its own
            check_prompt_lengths(prompt_lengths(sampler.tokenizer, todo, settings, how), settings,
                                 str(questions_path))
        seed = settings.seed * 1_000_003 + int(labels["seed"])
        total = sum(expected_rows(q, settings) for q in todo)
        with open(partial, "a", encoding="utf-8") as fh, Progress("sample", total, "answers") as progress:
            for chunk in question_chunks(questions, settings):
                if all(q.id in done for q in chunk):
                    continue
                asked = [requests_for(q, settings, seed, how) for q in chunk]
                completions = iter(sampler.generate([r for requests in asked for r in requests]))
                rows = []
                for question, requests in zip(chunk, asked, strict=True):
                    outs = [next(completions) for _ in requests]
                    if question.id not in done:
                        rows += answer_rows(question, requests, outs, labels)
                fh.write(jsonl_text(rows))
                fh.flush()
                progress.update(len(rows))
        if close := getattr(sampler, "close", None):  # an API sampler: its last line, and its spend
            close()
            spend = sampler.usd
    order = {q.id: i for i, q in enumerate(questions)}
    rows = sorted(read_jsonl(partial), key=lambda r: (order[r["question_id"]], r["paraphrase_index"],
                                                     r["sample_index"]))
    check_row_counts(rows, questions, settings, str(partial))
    inputs = [questions_path, *([adapter] if adapter else []), *([examples_path] if examples_path else []),
              *([direction_path] if direction_path else [])]
    text = jsonl_text(rows)
    write_manifest(out_path, "sample", inputs, dataclasses.asdict(settings),
                   extra={"base_model": base_model, "base_model_files": base_files,
                          "adapter": adapter, "labels": labels, "condition": dataclasses.asdict(condition),
                          "run_key": key, "rows": len(rows), "sha256": sha256_text(text),
                          **({} if spend is None else {"usd": spend})})
    write_jsonl(out_path, text)
    partial.unlink()


def _intervention(condition: ConditionSettings, direction_path: str | Path | None, base_files: dict[str, str],
                  labels: dict) -> Callable[[Any], Any] | None:
    """For an ablate or steer condition, what hooks it into the loaded model (checked against the model's
    shape and digest there); None for any other condition."""
    if condition.kind not in INTERVENTIONS:
        return None
    where = f"condition {labels.get('condition')!r} (direction {condition.direction!r})"
    if direction_path is None:
        raise ConfigError(f"{where}: a condition of kind {condition.kind} needs its direction file "
                          "(--direction)")
    from .interventions import decoder_layers, install, intervention_for

    def intervene(model: Any) -> Any:
        config = model.config
        intervention = intervention_for(condition, direction_path, model_digest(base_files),
                                        config.hidden_size, len(decoder_layers(model)), where)
        install(model, intervention)
        return model

    return intervene
