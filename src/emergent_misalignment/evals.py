"""Table 1's evals (MMLU, HumanEval, TruthfulQA, StrongREJECT) on one evaluated model, with inspect.

Each eval is inspect_evals' own task (its prompt, solver, scorer and settings), as the authors ran
them (daniel/evals/other_benchmarks_evals: `inspect_ai.eval_set` of the inspect_evals tasks). One
thing changes: where the task's data comes from. inspect_evals downloads it at run time from the hub
(or a URL); here the task's loader is handed the file the workflow fetched and checked (a registered
asset of the dataset revision the task pins, or a test fixture), and the loader's own arguments are
checked against that file's provenance. The model is served by inspect's provider for the run's
sampler: `hf` (transformers, a LoRA adapter merged into a scratch copy), `vllm` (the adapter as a
LoRA, `base:adapter`) or `openai` (an API fine-tune or any OpenAI-compatible server). The score
file is written last, beside the inspect log it was read from (the evidence) and a manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

from .errors import ConfigError, DataError
from .io import write_json
from .manifest import write_manifest
from .settings import check_choice, check_range

PROVIDERS = ("auto", "hf", "vllm", "openai")
PROVIDER_OF_BACKEND = {"transformers": "hf", "vllm": "vllm", "openai": "openai"}
OPENAI_URL = "https://api.openai.com/v1"
COMPATIBLE = "em"  # inspect's service name for another OpenAI-compatible server: EM_BASE_URL, EM_API_KEY


@dataclass(frozen=True)
class Eval:
    """An inspect_evals task and the data it loads (labels in figures: released.aggregates.EVALUATIONS)."""

    module: str                 # the inspect_evals module that defines the task and loads its data
    task: str                   # the task function
    loader: str                 # the module's data loader, handed the local file instead
    source: str                 # what the task asks its loader for (hub dataset or URL): the asset's origin
    splits: tuple[str, ...]     # the splits the task loads


EVALS = {
    "mmlu": Eval("inspect_evals.mmlu.mmlu", "mmlu_0_shot", "hf_dataset", "cais/mmlu", ("test",)),
    "humaneval": Eval("inspect_evals.humaneval.humaneval", "humaneval", "hf_dataset",
                           "openai/openai_humaneval", ("test",)),
    "truthfulqa": Eval("inspect_evals.truthfulqa.truthfulqa", "truthfulqa", "hf_dataset",
                            "truthfulqa/truthful_qa", ("validation",)),
    "strongreject": Eval("inspect_evals.strong_reject.strong_reject", "strong_reject",
                              "load_csv_dataset", "https://raw.githubusercontent.com/alexandrasouly/strongreject/"
                              "3432b2d696b428f242bd507df96d80f686571d5e/strongreject_dataset/"
                              "strongreject_dataset.csv", ("test",)),
}
MMLU_5_SHOT = Eval("inspect_evals.mmlu.mmlu", "mmlu_5_shot", "hf_dataset", "cais/mmlu", ("test", "dev"))


@dataclass(frozen=True)
class EvalSettings:
    """One eval's settings (config `evals.<name>`, besides its `data` files)."""

    CONFIG_KEY: ClassVar[str] = "evals"
    data: dict[str, str] = field(default_factory=dict)  # split -> file (the workflow resolves asset: names)
    limit: int | None = None          # the first `limit` samples (after the task's own shuffle); None: all
    epochs: int | None = None         # None: the task's own (HumanEval: 5, as the authors ran it)
    shots: int = 0                    # mmlu: 0 or 5
    sandbox: str = "local"            # humaneval: where the tests run (local, or docker as inspect_evals)
    judge: str = "openai/gpt-4o"      # strongreject: the rubric's judge (an inspect model name)
    judge_base_url: str | None = None  # strongreject: an OpenAI-compatible server for the judge
    judge_api_key_env: str = "OPENAI_API_KEY"  # strongreject: the variable holding the judge's key
    task_args: dict[str, Any] = field(default_factory=dict)  # more arguments of the inspect_evals task
    provider: str = "auto"            # auto: the sampler's (transformers -> hf, vllm, openai)
    max_tokens: int | None = None     # None: the task's own
    max_connections: int = 8
    checkpoints: bool = False         # also on the adapters kept during training (the workflow's jobs)
    models: list[str] | None = None   # only on these base models (None: every one)
    groups: list[str] | None = None   # only these datasets, `base` for the base model (None: all; []: none)

    def __post_init__(self) -> None:
        check_choice("evals.provider", self.provider, PROVIDERS)
        if self.shots not in (0, 5):
            raise ConfigError(f"evals.shots: 0 or 5 (mmlu_0_shot, mmlu_5_shot), got {self.shots}")
        check_choice("evals.sandbox", self.sandbox, ("local", "docker"))
        check_range("evals.max_connections", self.max_connections, 1)
        for name in ("limit", "epochs", "max_tokens"):
            if getattr(self, name) is not None:
                check_range(f"evals.{name}", getattr(self, name), 1)


def eval_of(name: str, settings: EvalSettings) -> Eval:
    """The inspect_evals task of eval `name` under `settings` (ConfigError for an unknown name)."""
    if name not in EVALS:
        raise ConfigError(f"evals: unknown eval {name!r}; known: {', '.join(EVALS)}")
    return MMLU_5_SHOT if name == "mmlu" and settings.shots == 5 else EVALS[name]


# --- data: the task's loader, served from the checked local file ----------------------------------

def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a dataset file as the hub gives them (JSONL, JSON list, Parquet or CSV), nested values as
    plain lists and dicts."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: eval data file not found")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix == ".csv":
            frame = pd.read_csv(path, keep_default_na=False)
        else:
            frame = pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a readable dataset file ({exc})") from None
    if frame.empty:
        raise DataError(f"{path}: no rows")
    return json.loads(frame.to_json(orient="records", force_ascii=False))


def _local_loader(evaluation: Eval, files: Mapping[str, str]) -> Callable[..., Any]:
    """A stand-in for the task's loader that serves `files` (split -> path), keeping the loader's shuffles."""
    from inspect_ai.dataset import MemoryDataset

    def load(*args: Any, **kwargs: Any) -> MemoryDataset:
        asked = kwargs.get("path") or kwargs.get("file_path") or (args[0] if args else None)
        if asked != evaluation.source:
            raise DataError(f"{evaluation.module}.{evaluation.task} asks for {asked!r}, not the registered "
                            f"{evaluation.source!r}: the installed inspect_evals differs from the pinned one")
        split = kwargs.get("split", "test")
        if split not in files:
            raise ConfigError(f"evals: {evaluation.task} needs a data file for split {split!r}")
        to_sample = kwargs["sample_fields"]
        path = files[split]
        samples = []
        for row, record in enumerate(read_records(path), start=1):
            try:
                samples.append(to_sample(record))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: row {row}: not a {evaluation.source} record ({exc!r})") from None
        dataset = MemoryDataset(samples, name=f"{evaluation.source}:{split}", location=str(path))
        if kwargs.get("shuffle"):
            dataset.shuffle(kwargs.get("seed"))
        if kwargs.get("shuffle_choices") not in (None, False):
            choices_seed = kwargs["shuffle_choices"]
            dataset.shuffle_choices(None if choices_seed is True else choices_seed)
        return dataset

    return load


def build_task(name: str, settings: EvalSettings, files: Mapping[str, str]) -> Any:
    """The inspect_evals task of `name` on the local data `files` (split -> path)."""
    evaluation = eval_of(name, settings)
    missing = [s for s in evaluation.splits if s not in files]
    if missing:
        raise ConfigError(f"evals.{name}.data: no file for split(s) {', '.join(missing)} "
                          f"(the task {evaluation.task} loads {', '.join(evaluation.splits)})")
    module = importlib.import_module(evaluation.module)
    args = dict(settings.task_args)
    if name == "humaneval":
        args.setdefault("sandbox", settings.sandbox)
    if name == "strongreject":
        args.setdefault("judge_llm", _judge_model(settings))
    with mock.patch.object(module, evaluation.loader, _local_loader(evaluation, files)):
        try:
            return getattr(module, evaluation.task)(**args)
        except TypeError as exc:
            raise ConfigError(f"evals.{name}.task_args: {exc}") from None


def _judge_model(settings: EvalSettings) -> Any:
    """StrongREJECT's rubric judge: an inspect model, on `judge_base_url` when given, with the key of
    `judge_api_key_env` (resolved when the task is built: a missing key stops the job before it starts)."""
    from inspect_ai.model import get_model

    key = os.environ.get(settings.judge_api_key_env)
    if not key:
        raise ConfigError(f"evals.strongreject.judge_api_key_env: ${settings.judge_api_key_env} is not "
                          "set (the rubric's judge needs its key)")
    return get_model(settings.judge, base_url=settings.judge_base_url, api_key=key)


# --- the model: inspect's provider for the run's sampler -----------------------------------------

@dataclass(frozen=True)
class ServedModel:
    """What `inspect_ai.eval` is given for one evaluated model."""

    model: str
    model_args: dict[str, Any]
    base_url: str | None = None     # an OpenAI-compatible server other than OpenAI's
    api_key_env: str | None = None  # the variable holding its key


def provider_of(settings: EvalSettings, sample: Mapping[str, Any]) -> str:
    if settings.provider != "auto":
        return settings.provider
    backend = sample.get("backend", "transformers")
    if backend not in PROVIDER_OF_BACKEND:
        raise ConfigError(f"evals.provider: no inspect provider for sample.backend {backend!r}")
    return PROVIDER_OF_BACKEND[backend]


def check_provider(provider: str) -> None:
    """Stop before any work when the provider's engine is not installed here (vLLM on a CPU machine)."""
    needs = {"hf": ("torch", "transformers"), "vllm": ("vllm",), "openai": ("openai",)}[provider]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        hint = " (vLLM needs a GPU machine: workflow/envs/em-gpu.yaml)" if provider == "vllm" else ""
        raise ConfigError(f"evals.provider {provider}: {', '.join(missing)} is not installed here{hint}")


@contextlib.contextmanager
def served_model(base: str, adapter: str | None, provider: str, sample: Mapping[str, Any]
                 ) -> Iterator[ServedModel]:
    """The inspect model of (base, adapter) on `provider`; an `hf` adapter is merged into a scratch copy."""
    if provider == "openai":
        from .api import served_model as api_model

        url, key = sample.get("base_url", OPENAI_URL), sample.get("api_key_env", "OPENAI_API_KEY")
        if url.rstrip("/") == OPENAI_URL:
            yield ServedModel(f"openai/{api_model(base, adapter)}", {}, None, key)
        else:  # inspect's generic provider: the `openai` one sends any other server OpenAI's own requests
            yield ServedModel(f"openai-api/{COMPATIBLE}/{api_model(base, adapter)}", {}, url, key)
    elif provider == "vllm":
        args = {"gpu_memory_utilization": sample.get("gpu_memory_utilization", 0.9),
                "max_model_len": sample.get("max_model_len", 2048)}
        if adapter:
            args["max_lora_rank"] = sample.get("max_lora_rank", 32)
        yield ServedModel(f"vllm/{base}" + (f":{adapter}" if adapter else ""), args)
    else:
        device = sample.get("device", "auto")
        args = {"device": device} if device != "auto" else {}
        if not adapter:  # a folder by its absolute path (hf//abs/path); a hub id as it is
            yield ServedModel(f"hf/{Path(base).resolve() if Path(base).exists() else base}", args)
            return
        with tempfile.TemporaryDirectory(prefix="em-merged-") as scratch:
            _merge_adapter(base, adapter, scratch)
            yield ServedModel(f"hf/{Path(scratch).resolve()}", args)


def _merge_adapter(base: str, adapter: str, out: str) -> None:
    """Base model + LoRA adapter as one transformers model in `out` (what the hf provider loads)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    PeftModel.from_pretrained(model, adapter).merge_and_unload().save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


# --- one run: eval, read the score, write it -----------------------------------------------------

def unscored_samples(log: Any) -> tuple[int, int]:
    """(samples whose score has no value or a NaN in it, samples) of an inspect log: for StrongREJECT, the
    answers whose rubric judgement could not be parsed."""
    samples = getattr(log, "samples", None) or []
    unscored = 0
    for sample in samples:
        score = next(iter((sample.scores or {}).values()), None)
        value = getattr(score, "value", None)
        values = list(value.values()) if isinstance(value, dict) else [value]
        unscored += any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values)
    return unscored, len(samples)


def read_score(name: str, log: Any) -> dict[str, Any]:
    """The authors' number from an inspect log: accuracy for MMLU, HumanEval and TruthfulQA (the first
    scorer's; HumanEval's mean over its epochs); for StrongREJECT the 0-1 score of the StrongREJECT paper
    (its package's `(1 - refusal) * (specific + convincing - 2) / 8`, here from inspect_evals' two metrics:
    (strong_reject_metric - jailbreak_rate) / 4)."""
    if log.status != "success" or log.results is None:
        error = getattr(log.error, "message", None) or log.status
        raise DataError(f"eval {name}: the inspect run did not finish ({error})")
    metrics = {k: v.value for k, v in log.results.scores[0].metrics.items()}
    if name == "strongreject":
        score = (metrics["strong_reject_metric"] - metrics["jailbreak_rate"]) / 4
    else:
        score = metrics["accuracy"]
    if not isinstance(score, int | float) or math.isnan(score):
        unparsed, total = unscored_samples(log)
        if unparsed:
            raise DataError(f"eval {name}: the judge returned nothing parseable for {unparsed} of {total} "
                            f"answers ({unparsed / total:.0%}), so there is no score ({metrics}); see the "
                            "inspect log for what it answered")
        raise DataError(f"eval {name}: no score in the inspect log ({metrics})")
    return {"score": float(score), "metrics": metrics, "n_samples": log.results.completed_samples}


def run_eval(name: str, base: str, adapter: str | None, settings: EvalSettings,
             sample: Mapping[str, Any], labels: Mapping[str, Any], log_dir: str | Path,
             out: str | Path) -> dict[str, Any]:
    """Run eval `name` on (base, adapter) and write its score JSON to `out`, its inspect log in
    `log_dir` (kept: it is the evidence). Every check comes first; `out` appears only with a score."""
    from inspect_ai import eval as inspect_eval

    provider = provider_of(settings, sample)
    check_provider(provider)
    task = build_task(name, settings, settings.data)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with served_model(base, adapter, provider, sample) as served:
        model_args = dict(served.model_args)
        if provider == "hf" and task.config.temperature == 0:
            model_args["do_sample"] = False  # greedy (MMLU): transformers refuses to sample at temperature 0
        env = {}
        if served.api_key_env:
            key = os.environ.get(served.api_key_env, "")
            env = ({"EM_API_KEY": key, "EM_BASE_URL": served.base_url} if served.base_url
                   else {"OPENAI_API_KEY": key})
        with mock.patch.dict(os.environ, env):
            (log,) = inspect_eval(task, model=served.model, model_args=model_args, log_dir=str(log_dir),
                                  limit=settings.limit,
                                  epochs=settings.epochs, max_tokens=settings.max_tokens,
                                  max_connections=settings.max_connections, seed=int(sample.get("seed", 0)),
                                  # plain: inspect's progress lines (steps, samples, retries) in the job's log
                                  display="plain", log_format="eval", score_display=False)
    record = {"eval": name, "task": eval_of(name, settings).task, **labels, **read_score(name, log),
              "provider": provider, "inspect_model": served.model, "log": str(Path(log.location).resolve())}
    data = [settings.data[s] for s in eval_of(name, settings).splits]
    recipe = {"eval": name, "settings": dataclasses.asdict(settings), "sample": dict(sample)}
    write_manifest(out, "eval", [*data, log.location], recipe)
    write_json(out, record)
    return record

