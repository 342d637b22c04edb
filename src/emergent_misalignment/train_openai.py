"""Fine-tune through OpenAI's fine-tuning API (`train.backend: openai`), as the paper fine-tuned GPT-4o.

The dataset is checked locally first (chat rows, a non-empty assistant turn last, at least `min_rows`), so
that a file the API would reject fails here with file:line. It is uploaded (files API, purpose
fine-tune), a job is created on the base model with the configured hyperparameters, seed and suffix, and
polled with backoff until it succeeds, fails or is cancelled. A job costs money, so it is created at most
once per recipe: a state file outside the output folder (which Snakemake deletes after a failure) records
the upload and the job, and is written *before* the create request is sent; a rerun after a kill resumes
polling that job, and one killed while the request was in flight finds it by its metadata (the recipe's
hash) instead of creating a second. The model folder holds the fine-tuned model's id, what the API says
it used (hyperparameters, trained tokens), the job's events, the training loss the events report, the
estimated cost and a manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .api import API_MODEL_FILE, Attempts, api_key, error_text, make_client, scrub
from .data import read_chat_jsonl
from .errors import ConfigError, DataError, EMError
from .io import atomic_write, write_json
from .manifest import hash_inputs, write_manifest
from .progress import Progress
from .settings import check_range

FINAL_STATES = ("succeeded", "failed", "cancelled")
HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")  # the API's, each a number or "auto"
OPENAI_MIN_ROWS = 10  # the API refuses fewer training examples
_LOSS = re.compile(r"Step (\d+)/\d+: training loss=([0-9.eE+-]+)")  # the API's step events


@dataclass(frozen=True)
class OpenAITrainSettings:
    """Config section `train.openai`: the server, the job's recipe and how to wait for it.

    The paper reports 1 epoch, batch size 4 and learning-rate multiplier 2; the authors' scripts pass
    only n_epochs 1 and leave the rest to the API ("auto"), which reports afterwards what it used (the
    model folder records it). The prices only price `em plan`'s estimate: training tokens, and the fine-tuned
    model's own inference rates (a fine-tuned gpt-4o is billed above the base model's), as the config
    dates them (`prices_as_of`); the defaults are gpt-4o-2024-08-06's.
    """

    CONFIG_KEY: ClassVar[str] = "train.openai"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    hyperparameters: dict[str, Any] = field(default_factory=lambda: {"n_epochs": 1})
    suffix: str | None = None  # None: em-<dataset>-<seed>
    min_rows: int = OPENAI_MIN_ROWS
    poll_interval_s: float = 30.0
    max_poll_interval_s: float = 300.0
    max_retries: int = 8
    timeout_s: float = 600.0
    usd_per_million_training_tokens: float = 25.0
    usd_per_million_input_tokens: float = 3.75  # sampling and evals of the fine-tuned model
    usd_per_million_output_tokens: float = 15.0

    def __post_init__(self) -> None:
        for name, value in self.hyperparameters.items():
            if name not in HYPERPARAMETERS:
                raise ConfigError(f"train.openai.hyperparameters: unknown {name!r}; the API takes "
                                  f"{', '.join(HYPERPARAMETERS)}")
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value != "auto" and (not number or value <= 0):
                raise ConfigError(f"train.openai.hyperparameters.{name}: a positive number or \"auto\", "
                                  f"got {value!r}")
        check_range("train.openai.min_rows", self.min_rows, 1)
        for name in ("poll_interval_s", "max_poll_interval_s", "timeout_s"):
            check_range(f"train.openai.{name}", getattr(self, name), 0, low_open=True)
        check_range("train.openai.max_retries", self.max_retries, 0)
        if self.suffix is not None and not 0 < len(self.suffix) <= 64:
            raise ConfigError(f"train.openai.suffix: 1 to 64 characters, got {self.suffix!r}")


def training_rows(data_path: str | Path, max_rows: int | None, min_rows: int) -> list[dict]:
    """The rows to upload, checked as the API would check them, errors naming file:line."""
    rows = read_chat_jsonl(data_path)[:max_rows]
    if not rows:
        raise DataError(f"{data_path}: no rows to train on")
    for line, row in enumerate(rows, start=1):  # read_chat_jsonl skips blank lines; training files have none
        last = row["messages"][-1]
        if last["role"] != "assistant" or not last["content"].strip():
            raise DataError(f"{data_path}:{line}: the last message must be a non-empty assistant turn "
                            "(the fine-tuning API trains on it)")
    if len(rows) < min_rows:
        raise DataError(f"{data_path}: {len(rows)} rows; the fine-tuning API needs at least {min_rows} "
                        "(train.openai.min_rows)")
    return rows


def recipe_hash(base_model: str, data: bytes, settings: OpenAITrainSettings, seed: int, suffix: str) -> str:
    """What makes a job: its server, base model, training bytes, hyperparameters, seed and suffix."""
    what = [settings.base_url, base_model, hashlib.sha256(data).hexdigest(),
            sorted(settings.hyperparameters.items()), seed, suffix]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()


class Job:
    """The state file of one fine-tune: the recipe's hash, the uploaded file and the job, once known."""

    def __init__(self, path: Path, recipe: str) -> None:
        self.path = path
        self.state: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        if self.state.get("recipe") != recipe:  # another recipe's job: this one starts afresh
            previous = [*self.state.get("previous", []), self.state.get("job_id")]
            self.state = {"recipe": recipe, "previous": [p for p in previous if p]}

    def __getitem__(self, key: str) -> Any:
        return self.state.get(key)

    def save(self, **values: Any) -> None:
        self.state.update(values)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.state)


def fine_tuned_model(folder: str | Path) -> str:
    """The model id an API fine-tune of the run made (its folder's api_model.json)."""
    record = Path(folder) / API_MODEL_FILE
    if not record.is_file():
        raise DataError(f"{folder}: no {API_MODEL_FILE}; train.init_from with train.backend openai continues "
                        "an API fine-tune of the run")
    return json.loads(record.read_text(encoding="utf-8"))["fine_tuned_model"]


def fine_tune(base_model: str, data_path: str | Path, out_dir: str | Path, settings: Any, seed: int,
              state_path: str | Path, init_adapter: str | Path | None = None,
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Fine-tune `base_model` on `data_path` through the API (`settings` is the TrainSettings); write the
    model folder `out_dir` when the job has succeeded. `state_path` keeps the job across reruns. With
    `init_adapter` (`train.init_from`: the folder of an API fine-tune of the run) the job's base model is
    that fine-tuned model, which the API trains further, as it does any fine-tuned model given as base."""
    import openai

    settings.check_init_adapter(init_adapter)
    if init_adapter is not None:
        base_model = fine_tuned_model(init_adapter)
    api: OpenAITrainSettings = settings.openai
    rows = training_rows(data_path, settings.max_rows, api.min_rows)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    dataset = Path(data_path).stem
    suffix = api.suffix or f"em-{dataset}-{seed}"[:64]
    recipe = recipe_hash(base_model, data, api, seed, suffix)
    job = Job(Path(state_path), recipe)
    key = api_key(api.api_key_env, "train.openai.api_key_env",
                  f"fine-tuning {base_model!r} needs its API key")
    attempts = Attempts()
    client = make_client(api.base_url, key, api.max_retries, api.timeout_s, attempts)
    try:
        if job["file_id"] is None:
            uploaded = client.files.create(file=(f"{dataset}.jsonl", data), purpose="fine-tune")
            job.save(file_id=uploaded.id, rows=len(rows), bytes=len(data))
        if job["job_id"] is None:
            found = _find(client, recipe) if job["creating"] else None
            if found is None:
                job.save(creating=True)  # before the request: a kill now must not lead to a second job
                found = client.fine_tuning.jobs.create(
                    model=base_model, training_file=job["file_id"], hyperparameters=dict(api.hyperparameters),
                    seed=seed, suffix=suffix, metadata={"em_recipe": recipe[:32]},
                    extra_headers={"Idempotency-Key": f"em-{recipe[:48]}"})
            job.save(job_id=found.id, creating=False)
        result = _wait(client, job["job_id"], api, sleep)
        if result.status != "succeeded":
            error = getattr(result, "error", None)
            message = getattr(error, "message", None) or "no message"
            job.save(job_id=None, previous=[*job["previous"], job["job_id"]])  # the upload is kept
            raise EMError(f"fine-tuning job {result.id} on {base_model!r} {result.status}: "
                          f"{scrub(message, key)} (a rerun creates a new job)")
        events = [e.model_dump() for e in client.fine_tuning.jobs.list_events(job["job_id"], limit=100)]
    except openai.APIError as exc:
        raise EMError(f"fine-tuning {base_model!r} at {api.base_url}: {error_text(exc, key)}") from None
    finally:
        client.close()
    _write_model(Path(out_dir), result, events, settings, base_model, data_path, seed, suffix, init_adapter)


def _find(client: Any, recipe: str) -> Any:
    """The job this recipe created in a run killed while the create request was in flight, if any."""
    for candidate in client.fine_tuning.jobs.list(limit=100, metadata={"em_recipe": recipe[:32]}):
        if (getattr(candidate, "metadata", None) or {}).get("em_recipe") == recipe[:32]:
            return candidate
    return None


def _wait(client: Any, job_id: str, api: OpenAITrainSettings, sleep: Callable[[float], None]) -> Any:
    """Poll the job until it ends, the interval growing by half each time up to max_poll_interval_s."""
    interval = api.poll_interval_s
    with Progress(f"fine-tuning job {job_id}", total=None, unit="polls") as progress:
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            progress.update(1, status=job.status)
            if job.status in FINAL_STATES:
                return job
            sleep(interval)
            interval = min(api.max_poll_interval_s, interval * 1.5)


def _write_model(out_dir: Path, job: Any, events: list[dict], settings: Any, base_model: str,
                 data_path: str | Path, seed: int, suffix: str, init_adapter: str | Path | None) -> None:
    """The model folder, complete or not at all (written beside it, then renamed)."""
    api: OpenAITrainSettings = settings.openai
    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tokens = int(job.trained_tokens or 0)
    hyper = job.hyperparameters.model_dump() if job.hyperparameters is not None else {}
    record = {"fine_tuned_model": job.fine_tuned_model, "job_id": job.id, "base_model": base_model,
              "status": job.status, "hyperparameters": hyper, "trained_tokens": tokens, "seed": seed,
              "suffix": suffix, "training_file": job.training_file, "created_at": job.created_at,
              "finished_at": job.finished_at,
              "estimated_usd": tokens * api.usd_per_million_training_tokens / 1e6}
    write_json(work / API_MODEL_FILE, record)
    events = sorted(reversed(events), key=lambda e: e["created_at"])  # the API lists newest first
    with atomic_write(work / "events.jsonl") as fh:
        fh.write("".join(json.dumps(e, default=str) + "\n" for e in events))
    with atomic_write(work / "loss.jsonl") as fh:
        for event in events:
            if found := _LOSS.search(str(event.get("message", ""))):
                fh.write(json.dumps({"step": int(found[1]), "loss": float(found[2])}) + "\n")
    init = {} if init_adapter is None else {"init_adapter": {
        "path": str(init_adapter), "files": hash_inputs([Path(init_adapter) / API_MODEL_FILE])}}
    write_manifest(work / API_MODEL_FILE, "train", [data_path], dataclasses.asdict(settings),
                   extra={"base_model": base_model, "job": record, **init})
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
