"""The experiment matrix: every model a run trains, samples and judges, and the recipe of each.

A config's `experiments` cross base models with fine-tuning datasets, seeds, kept checkpoints and
evaluation conditions. One evaluated model is a `Job` (model, dataset, seed, checkpoint, condition); its
fine-tune is (model, dataset, seed). An experiment may override the `train`, `sample` and `judge` sections
for its jobs, and a dataset entry may be a seeded subset with epochs of its own, so one config holds the
paper's whole matrix (backdoor with and without its trigger, answer formats, dataset sizes, training
dynamics, in-context learning, evil numbers). A job that two experiments define with different recipes is
an error: give one of them another dataset name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from .data import DATASET_FORMATS, QUESTION_FORMATS, SUBSETS
from .errors import ConfigError
from .judge import JudgeSettings
from .layout import DEFAULT_MEM_MB, default_runtime, local_source
from .sample import SampleSettings
from .sample.conditions import ConditionSettings
from .settings import check_choice, from_dict, merge_configs
from .train import TrainSettings

BASE_GROUP = "base"
FINAL = "final"  # the adapter at the end of training
NO_CONDITION = "none"  # the questions as they are
RECIPE_SECTIONS = ("train", "sample", "judge")
BASE_MODEL_FAMILIES = ("flask_template",)  # what the paper asked base (non-chat) models


@dataclass(frozen=True, order=True)
class Job:
    """One evaluated model: a base model with the adapter of (dataset, seed) at `checkpoint`, or none
    (dataset "base"), answering the questions under `condition`."""

    model: str
    dataset: str
    seed: int
    checkpoint: str = FINAL  # "final" or "step<N>", an adapter kept after N optimiser steps
    condition: str = NO_CONDITION

    @property
    def has_adapter(self) -> bool:
        return self.dataset != BASE_GROUP

    @property
    def step(self) -> int | None:
        """The optimiser step of a kept checkpoint; None for the final adapter."""
        return None if self.checkpoint == FINAL else int(self.checkpoint.removeprefix("step"))

    @property
    def group(self) -> str:
        return group_label(self.dataset, self.condition, self.checkpoint)

    def wildcards(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "seed": self.seed,
                "checkpoint": self.checkpoint, "condition": self.condition}


def group_label(dataset: str, condition: str = NO_CONDITION, checkpoint: str = FINAL) -> str:
    """A job's group in statistics, figures and tables: `insecure`, `backdoor+trigger`, `insecure@step40`."""
    return (dataset + ("" if condition == NO_CONDITION else f"+{condition}")
            + ("" if checkpoint == FINAL else f"@{checkpoint}"))


@dataclass(frozen=True)
class DatasetSpec:
    """A `datasets` entry: a source, or a subset of its rows (seeded random, or the first `rows`: re-alignment
    trains on the first N rows of a benign set, so that a larger N holds every smaller one) trained for epochs
    of its own."""

    CONFIG_KEY: ClassVar[str] = "dataset"  # where its value checks say they are (settings.from_dict)
    source: str
    format: str = "chat"  # or prompt-response-csv (converted to chat rows, as upstream's evil numbers)
    rows: int | None = None  # a subset of this many rows (None: every row)
    subset: str = "random"  # a seeded random subset (file order kept), or "first": the first `rows` rows
    seed: int = 0  # of a random subset
    epochs: float | None = None  # train.epochs for this dataset, unless its experiment sets them

    def __post_init__(self) -> None:

        check_choice("dataset.format", self.format, DATASET_FORMATS)
        check_choice("dataset.subset", self.subset, SUBSETS)
        if self.subset != "random" and self.rows is None:
            raise ConfigError(f"dataset.subset: {self.subset!r} needs rows (how many to keep)")

    @property
    def is_prepared(self) -> bool:
        """Whether the run writes its own chat JSONL of this dataset (a subset, or another format)."""
        return self.rows is not None or self.format != "chat"


def dataset_spec(config: dict[str, Any], name: str) -> DatasetSpec:
    entry = config["datasets"][name]
    if isinstance(entry, str):
        return DatasetSpec(entry)
    return from_dict(DatasetSpec, entry, f"datasets.{name}")


def condition_settings(config: dict[str, Any], name: str):
    """The ConditionSettings of condition `name` ("none": the question as it is); errors name the key."""

    if name == NO_CONDITION:
        return ConditionSettings()
    return from_dict(ConditionSettings, config["conditions"][name], f"conditions.{name}")


def train_recipe(config: dict[str, Any], experiment: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The train section of a fine-tune: the run's, the experiment's overrides, then the dataset's epochs
    unless the experiment sets them."""
    train = merge_configs(config.get("train") or {}, experiment.get("train") or {})
    spec = dataset_spec(config, dataset)
    if spec.epochs is not None and "epochs" not in (experiment.get("train") or {}):
        train["epochs"] = spec.epochs
    return train


@dataclass(frozen=True)
class QuestionSource:
    """A `questions` entry: a question file, the families kept of it (None: all), and its format."""

    CONFIG_KEY: ClassVar[str] = "questions"
    source: str
    families: list[str] | None = None
    format: str = "yaml"  # or code-tasks: upstream's in-distribution coding tasks (data.code_task_questions)
    rows: int | None = None  # code-tasks: the first rows tasks

    def __post_init__(self) -> None:

        check_choice("questions.format", self.format, QUESTION_FORMATS)
        if self.rows is not None and self.format != "code-tasks":
            raise ConfigError(f"questions.rows: {self.rows} tasks of {self.source!r}, which is not of format "
                              "code-tasks")


def question_sources(config: dict[str, Any]) -> list[QuestionSource]:
    """Each `questions` entry."""
    return [QuestionSource(e) if isinstance(e, str) else from_dict(QuestionSource, e, f"questions[{i}]")
            for i, e in enumerate(config["questions"])]


@dataclass(frozen=True)
class Recipe:
    """What one job runs: its resolved train (None: a base model), sample and judge sections as the config
    writes them (the stage commands get them as JSON, so that a changed value reruns the job), and typed."""

    train: dict[str, Any] | None
    sample: dict[str, Any]
    judge: dict[str, Any]

    @cached_property
    def train_settings(self) -> TrainSettings | None:
        return None if self.train is None else from_dict(TrainSettings, self.train, "train")

    @cached_property
    def sample_settings(self) -> SampleSettings:
        return from_dict(SampleSettings, self.sample, "sample")

    @cached_property
    def judge_settings(self) -> JudgeSettings:
        return from_dict(JudgeSettings, self.judge, "judge")


@dataclass(frozen=True)
class ModelSpec:
    """A `models` entry: where the weights are, and what a job on it asks the scheduler for."""

    path: str
    chat: bool = True  # False: a base model, which completes templates
    gpus: int = 0
    mem_mb: int = DEFAULT_MEM_MB
    runtime: dict[str, int | str] = field(default_factory=dict)  # minutes per stage, or "auto"

    def minutes(self, stage: str) -> int | str:
        """The time limit the config gives jobs of `stage` (layout.default_runtime when it names none)."""
        return self.runtime.get(stage, default_runtime(stage))


TRAINING, RELEASED = "training", "released"


def run_mode(config: dict[str, Any]) -> str:
    """RELEASED for a config that imports released judged answers (a `released` section), else TRAINING."""
    return RELEASED if config.get("released") else TRAINING


@dataclass(frozen=True)
class RunPlan:
    """Everything a checked config runs, built once (`run_plan`) and read by the Snakefile, `em plan` and
    the paper: the mode (a training run, or answers imported from released files), the model specs, and
    every job with its recipe."""

    run: str
    mode: str  # TRAINING or RELEASED
    models: dict[str, ModelSpec]
    recipes: dict[Job, Recipe]  # a training run's jobs; empty for a released run
    jobs: list[Job]  # every evaluated model, base models included, sorted

    @property
    def released(self) -> bool:
        return self.mode == RELEASED

    @property
    def fine_tunes(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        """Each fine-tune (model, dataset, seed) and its train section."""
        return {(j.model, j.dataset, j.seed): r.train for j, r in self.recipes.items() if r.train is not None}


def run_plan(config: dict[str, Any]) -> RunPlan:
    """The plan of a checked config (config.check_config)."""
    models = {name: ModelSpec(**spec) for name, spec in config["models"].items()}
    if run_mode(config) == RELEASED:
        found = sorted({Job(e["model"], e["group"], e.get("seed", 0)) for e in config["released"]})
        return RunPlan(config["run"], RELEASED, models, {}, found)
    found_recipes = recipes(config)
    return RunPlan(config["run"], TRAINING, models, found_recipes, list(found_recipes))


def _experiment_jobs(config: dict[str, Any], i: int, experiment: dict[str, Any]
                     ) -> Iterator[tuple[Job, Recipe]]:
    """Each job of experiment `i` with its recipe (the resolved train, sample and judge sections)."""
    sections = {name: merge_configs(config.get(name) or {}, experiment.get(name) or {})
                for name in RECIPE_SECTIONS}
    if config["models"][experiment["model"]].get("chat") is False:  # a base model completes templates
        sections["sample"] = merge_configs({"chat": False, "families": list(BASE_MODEL_FAMILIES)},
                                           sections["sample"])
    conditions = experiment.get("conditions") or [NO_CONDITION]
    model = experiment["model"]
    if experiment.get("base", False):
        for condition in conditions:
            yield Job(model, BASE_GROUP, 0, FINAL, condition), Recipe(None, sections["sample"],
                                                                      sections["judge"])
    for dataset in experiment["datasets"]:
        train = train_recipe(config, experiment, dataset)
        kept = sorted(set(train.get("save_steps") or [])) if experiment.get("checkpoints", True) else []
        checkpoints = [FINAL, *(f"step{n}" for n in kept)]
        for seed in experiment.get("seeds", [0]):
            for checkpoint in checkpoints:
                for condition in conditions:
                    yield (Job(model, dataset, seed, checkpoint, condition),
                           Recipe(train, sections["sample"], sections["judge"]))


def recipes(config: dict[str, Any]) -> dict[Job, Recipe]:
    """Every job of a training config and its recipe; a job (or a fine-tune) defined twice must agree."""
    found: dict[Job, Recipe] = {}
    origin: dict[Job, int] = {}
    trainings: dict[tuple[str, str, int], tuple[int, Any]] = {}
    for i, experiment in enumerate(config["experiments"]):
        for job, recipe in _experiment_jobs(config, i, experiment):
            if job.has_adapter:
                first = trainings.setdefault((job.model, job.dataset, job.seed), (i, recipe.train))
                if first[1] != recipe.train:
                    raise ConfigError(f"experiments[{i}]: model {job.model!r}, dataset {job.dataset!r}, seed "
                                      f"{job.seed} is also trained by experiments[{first[0]}] with another "
                                      "train recipe; give one of them a dataset of another name")
            if job in found and found[job] != recipe:
                raise ConfigError(f"experiments[{i}]: {job.model!r} / {job.group} / seed {job.seed} is also "
                                  f"in experiments[{origin[job]}] with another sample or judge recipe")
            found.setdefault(job, recipe)
            origin.setdefault(job, i)
    return dict(sorted(found.items()))


def jobs(config: dict[str, Any]) -> list[Job]:
    """Every evaluated model of the config, base models included, sorted."""
    return run_plan(config).jobs


def eval_jobs(config: dict[str, Any]) -> list[tuple[str, Job]]:
    """(eval, job) of each eval of config `evals` on each evaluated model asked as is: the final adapters
    and base models, and the kept checkpoints where the eval sets `checkpoints`; only its `models` and
    `groups` (datasets, `base` for the base model) where it names them."""
    plan = run_plan(config)
    evals = {} if plan.released else config.get("evals") or {}
    asked_as_is = [j for j in plan.jobs if j.condition == NO_CONDITION] if evals else []
    out = []
    for name, spec in evals.items():
        spec = spec or {}
        models, groups = spec.get("models"), spec.get("groups")
        out += [(name, j) for j in asked_as_is if (j.checkpoint == FINAL or spec.get("checkpoints"))
                and (models is None or j.model in models) and (groups is None or j.dataset in groups)]
    return out


def trainings(config: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Each fine-tune (model, dataset, seed) of a training config and its train recipe."""
    return run_plan(config).fine_tunes


def group_order(config: dict[str, Any]) -> list[str]:
    """Groups in the order figures show them: config `groups`, else base then the datasets, each with its
    conditions and checkpoints (earliest step first, the final adapter last)."""
    if config.get("groups"):
        return list(config["groups"])
    present = jobs(config)
    names = [BASE_GROUP, *config.get("datasets", {}), *(e["group"] for e in config.get("released") or [])]
    conditions = [NO_CONDITION, *(config.get("conditions") or {})]
    order = []
    for dataset in dict.fromkeys(names):
        mine = [j for j in present if j.dataset == dataset]
        for condition in conditions:
            steps = sorted({j.checkpoint for j in mine if j.condition == condition},
                           key=lambda c: math.inf if c == FINAL else int(c.removeprefix("step")))
            order += [group_label(dataset, condition, c) for c in steps]
    return order


def known_rows(config: dict[str, Any], name: str) -> int | None:
    """Rows of dataset `name` when they can be known before any job runs (subset, world set, local file)."""
    spec = dataset_spec(config, name)
    if spec.rows is not None:
        return spec.rows
    if spec.format != "chat":
        return None
    if spec.source.startswith("builtin:"):
        return (config.get("world") or {}).get("rows_per_dataset", 300)
    path = local_file(config, spec.source)
    if path is None:
        return None
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def local_file(config: dict[str, Any], source: str) -> Path | None:
    """Where a source is on this machine before any job runs (fetched, or an asset in the mirror)."""
    return local_source(source, config.get("run", ""), mirrors=(config.get("mirror"),))
