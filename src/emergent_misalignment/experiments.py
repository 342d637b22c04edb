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

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .config import merge_configs
from .data import CODE_FAMILY, FACTUAL_FAMILY, MAIN_FAMILY, SELF_REPORT_FAMILY
from .directions import check_directions
from .errors import ConfigError
from .sample.conditions import INTERVENTIONS
from .settings import check_choice, from_dict

BASE_GROUP = "base"
FINAL = "final"  # the adapter at the end of training
NO_CONDITION = "none"  # the questions as they are
RECIPE_SECTIONS = ("train", "sample", "judge")
BASE_MODEL_FAMILIES = ("flask_template",)  # what the paper asked base (non-chat) models
# the family of each of the world's question files (written by the run, so not readable before it)
BUILTIN_FAMILIES = {"builtin:questions": MAIN_FAMILY, "builtin:code_questions": CODE_FAMILY,
                    "builtin:deception_questions": FACTUAL_FAMILY,
                    "builtin:self_report_questions": SELF_REPORT_FAMILY}


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
        from .data import DATASET_FORMATS, SUBSETS

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
    from .sample.conditions import ConditionSettings

    if name == NO_CONDITION:
        return ConditionSettings()
    return from_dict(ConditionSettings, config["conditions"][name], f"conditions.{name}")


def _train_recipe(config: dict[str, Any], experiment: dict[str, Any], dataset: str) -> dict[str, Any]:
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
        from .data import QUESTION_FORMATS

        check_choice("questions.format", self.format, QUESTION_FORMATS)
        if self.rows is not None and self.format != "code-tasks":
            raise ConfigError(f"questions.rows: {self.rows} tasks of {self.source!r}, which is not of format "
                              "code-tasks")


def question_sources(config: dict[str, Any]) -> list[QuestionSource]:
    """Each `questions` entry."""
    return [QuestionSource(e) if isinstance(e, str) else from_dict(QuestionSource, e, f"questions[{i}]")
            for i, e in enumerate(config["questions"])]


def _experiment_jobs(config: dict[str, Any], i: int, experiment: dict[str, Any]
                     ) -> Iterator[tuple[Job, dict[str, Any]]]:
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
            yield Job(model, BASE_GROUP, 0, FINAL, condition), {**sections, "train": None}
    for dataset in experiment["datasets"]:
        train = _train_recipe(config, experiment, dataset)
        kept = sorted(set(train.get("save_steps") or [])) if experiment.get("checkpoints", True) else []
        checkpoints = [FINAL, *(f"step{n}" for n in kept)]
        for seed in experiment.get("seeds", [0]):
            for checkpoint in checkpoints:
                for condition in conditions:
                    yield Job(model, dataset, seed, checkpoint, condition), {**sections, "train": train}


def recipes(config: dict[str, Any]) -> dict[Job, dict[str, Any]]:
    """Every job of a training config and its recipe; a job (or a fine-tune) defined twice must agree."""
    found: dict[Job, dict[str, Any]] = {}
    origin: dict[Job, int] = {}
    trainings: dict[tuple[str, str, int], tuple[int, Any]] = {}
    for i, experiment in enumerate(config["experiments"]):
        for job, recipe in _experiment_jobs(config, i, experiment):
            if job.has_adapter:
                first = trainings.setdefault((job.model, job.dataset, job.seed), (i, recipe["train"]))
                if first[1] != recipe["train"]:
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
    if config.get("released"):
        return sorted({Job(e["model"], e["group"], e.get("seed", 0)) for e in config["released"]})
    return list(recipes(config))


def eval_jobs(config: dict[str, Any]) -> list[tuple[str, Job]]:
    """(eval, job) of each eval of config `evals` on each evaluated model asked as is: the final adapters
    and base models, and the kept checkpoints where the eval sets `checkpoints`; only its `models` and
    `groups` (datasets, `base` for the base model) where it names them."""
    evals = {} if config.get("released") else config.get("evals") or {}
    asked_as_is = [j for j in recipes(config) if j.condition == NO_CONDITION] if evals else []
    out = []
    for name, spec in evals.items():
        spec = spec or {}
        models, groups = spec.get("models"), spec.get("groups")
        out += [(name, j) for j in asked_as_is if (j.checkpoint == FINAL or spec.get("checkpoints"))
                and (models is None or j.model in models) and (groups is None or j.dataset in groups)]
    return out


def trainings(config: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Each fine-tune (model, dataset, seed) of a training config and its train recipe."""
    return {(j.model, j.dataset, j.seed): r["train"] for j, r in recipes(config).items() if j.has_adapter}


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
    """Where an asset: or path source is on this machine before any job runs (fetched, or in the mirror)."""
    kind, _, rest = source.partition(":")
    path = Path(f"data/assets/{rest}") if kind == "asset" else Path(source)
    if kind == "asset" and not path.is_file() and config.get("mirror"):
        path = Path(config["mirror"]) / rest
    return path if path.is_file() else None


def question_families(config: dict[str, Any]) -> set[str] | None:
    """The question families of the run's files, when every file can be read now (else None). Each file
    that can be read is checked as the questions rule will check it (`data.check_self_report`)."""
    from .data import check_self_report, family_of, load_questions

    found: set[str] = set()
    unread = False
    for entry in question_sources(config):
        if entry.format == "code-tasks":
            found.add(CODE_FAMILY)
            continue
        if entry.source in BUILTIN_FAMILIES:  # the world's files, written by the run
            found.add(BUILTIN_FAMILIES[entry.source])
            continue
        path = local_file(config, entry.source)
        if path is None:
            unread = True
            continue
        loaded = [dataclasses.replace(q, family=family_of(q, path)) for q in load_questions(path)]
        check_self_report(loaded, path)
        families = {q.family for q in loaded}
        found |= families if entry.families is None else families & set(entry.families)
    return None if unread else found


def expand_config(config: dict[str, Any]) -> dict[str, Any]:
    """A new config with the sections that stand for several datasets and experiments written out as
    such (`realignment`: realignment.expand_realignment; `directions`: directions.expand, after it, so a
    direction can be ablated in a re-aligned fine-tune), so that everything that reads `datasets`,
    `conditions` and `experiments` sees them. config.check_config calls it, so the Snakefile and `em plan`
    see the same jobs; expanding twice changes nothing. A released run trains nothing: nothing to expand."""
    from .directions import expand as expand_directions
    from .realignment import expand_realignment

    if config.get("released"):
        return config
    return expand_directions(expand_realignment(config, lambda name: known_rows(config, name)))


def check_experiments(config: dict[str, Any]) -> None:
    """Names that name nothing, recipes that do not check, checkpoints past the end of training, fine-tunes
    that continue (train.init_from) one the run does not have."""
    for name in config["datasets"]:
        spec = dataset_spec(config, name)
        if spec.source.partition(":")[0] not in ("asset", "builtin") and not Path(spec.source).is_file():
            raise ConfigError(f"datasets.{name}.source: {spec.source!r} does not exist")
    conditions = {name: condition_settings(config, name) for name in config.get("conditions") or {}}
    directions = config.get("directions") or {}
    for name, condition in conditions.items():
        if condition.kind == "icl" and condition.dataset not in config["datasets"]:
            raise ConfigError(f"conditions.{name}.dataset: unknown dataset {condition.dataset!r}; "
                              f"defined: {', '.join(config['datasets'])}")
        if condition.kind in INTERVENTIONS and condition.direction not in directions:
            raise ConfigError(f"conditions.{name}.direction: unknown direction {condition.direction!r}; "
                              f"defined: {', '.join(directions) or 'none (add a directions section)'}")
    for i, experiment in enumerate(config["experiments"]):
        where = f"experiments[{i}]"
        if experiment["model"] not in config["models"]:
            raise ConfigError(f"{where}.model: unknown model {experiment['model']!r}; "
                              f"defined: {', '.join(config['models'])}")
        for dataset in experiment["datasets"]:
            if dataset not in config["datasets"]:
                raise ConfigError(f"{where}.datasets: unknown dataset {dataset!r}; "
                                  f"defined: {', '.join(config['datasets'])}")
        for condition in experiment.get("conditions") or []:
            if condition != NO_CONDITION and condition not in conditions:
                raise ConfigError(f"{where}.conditions: unknown condition {condition!r}; defined: "
                                  f"{', '.join([NO_CONDITION, *conditions])}")
        _check_recipes(config, where, experiment)
    found = recipes(config)
    _check_init_from(config, {(j.model, j.dataset, j.seed): r["train"] for j, r in found.items()
                              if j.has_adapter})
    _check_families(config, found)
    check_directions(config, found)


def _check_init_from(config: dict[str, Any], fine_tunes: dict[tuple[str, str, int], dict[str, Any]]) -> None:
    """Each fine-tune that continues another (train.init_from) names one of the run's, of the same model and
    seed and on the same backend, and no chain of them comes back to where it started."""
    for i, experiment in enumerate(config["experiments"]):
        where = f"experiments[{i}].train.init_from"
        for dataset in experiment["datasets"]:
            for seed in experiment.get("seeds", [0]):
                train = fine_tunes[(experiment["model"], dataset, seed)]
                if train.get("init_from") is None:
                    continue
                key, seen = (experiment["model"], dataset, seed), set()
                while (init := fine_tunes[key].get("init_from")) is not None:
                    seen.add(key)
                    source = (key[0], init, key[2])
                    if source not in fine_tunes:
                        raise ConfigError(f"{where}: model {key[0]!r}, dataset {key[1]!r}, seed {key[2]} "
                                          f"continues the fine-tune of {init!r} with seed {key[2]}, which "
                                          "the run does not train")
                    if source in seen:
                        raise ConfigError(f"{where}: the fine-tunes of {dataset!r} (model {key[0]!r}, seed "
                                          f"{seed}) continue each other in a cycle through {init!r}")
                    backends = [(fine_tunes[k] or {}).get("backend", "trl") for k in (key, source)]
                    if backends[0] != backends[1]:
                        raise ConfigError(f"{where}: the fine-tune of {key[1]!r} (train.backend "
                                          f"{backends[0]}) cannot continue that of {init!r} (train.backend "
                                          f"{backends[1]})")
                    key = source


def _check_families(config: dict[str, Any], found: dict[Job, dict[str, Any]]) -> None:
    """Every job asked only some question families (`sample.families`; a base model's default) has one of
    them among the run's question files, where those can be read before any job."""
    families = question_families(config)
    if families is None:
        return
    for job, recipe in found.items():
        wanted = recipe["sample"].get("families")
        if not wanted or families & set(wanted):
            continue
        if config["models"][job.model].get("chat") is False:
            raise ConfigError(f"models.{job.model}.chat: a base model is asked the {', '.join(wanted)} "
                              "questions, and no file of `questions` has one (add the authors' final "
                              "first-plot file with families: [flask_template])")
        raise ConfigError(f"sample.families: model {job.model!r} is asked the families {', '.join(wanted)}, "
                          f"and the question files have only {', '.join(sorted(families))}")


def _check_recipes(config: dict[str, Any], where: str, experiment: dict[str, Any]) -> None:
    from .config import _sections
    from .train import TrainSettings, total_steps

    classes = _sections()
    for section in RECIPE_SECTIONS:
        if section in experiment:
            merged = merge_configs(config.get(section) or {}, experiment[section])
            from_dict(classes[section], merged, f"{where}.{section}")
    for dataset in experiment["datasets"]:
        train = _train_recipe(config, experiment, dataset)
        steps = train.get("save_steps") or []
        rows = known_rows(config, dataset) if steps else None
        if rows is not None and max(steps) > (total := total_steps(rows, from_dict(TrainSettings, train,
                                                                                     f"{where}.train"))):
            raise ConfigError(f"{where}.train.save_steps: step {max(steps)} is past the end of training on "
                              f"{dataset!r} ({rows} rows: {total} steps)")
