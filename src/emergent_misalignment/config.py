"""Load and check the workflow config: the schema first, then every section's dataclass, then the
experiment matrix (names that name nothing, recipes, checkpoints, question families, directions).

The top of the package: it knows every stage's settings. The Snakefile calls `check_config(config)` before
it builds the DAG, so a typo stops the run with the key's name before any job starts; it also expands the
sections that stand for several datasets and experiments (`realignment`, `directions`), the one place where
the DAG and `em plan` get their jobs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .assets import load_registry, remote_local_path
from .basemodel import BaseModelSettings
from .data import (
    CODE_FAMILY,
    FACTUAL_FAMILY,
    MAIN_FAMILY,
    SELF_REPORT_FAMILY,
    check_self_report,
    family_of,
    load_questions,
)
from .directions import check_directions
from .directions import expand as expand_directions
from .errors import AssetError, ConfigError
from .evals import EvalSettings, eval_of
from .experiments import (
    NO_CONDITION,
    RECIPE_SECTIONS,
    RELEASED,
    Job,
    condition_settings,
    dataset_spec,
    eval_jobs,
    known_rows,
    local_file,
    question_sources,
    recipes,
    run_mode,
    train_recipe,
)
from .io import read_yaml
from .judge import JudgeSettings
from .realignment import expand_realignment
from .sample import SampleSettings
from .sample.conditions import INTERVENTIONS
from .settings import from_dict, merge_configs
from .stats import AnalysisSettings
from .train import TrainSettings, total_steps
from .world import WorldSettings

# the family of each of the world's question files (written by the run, so not readable before it)
BUILTIN_FAMILIES = {"builtin:questions": MAIN_FAMILY, "builtin:code_questions": CODE_FAMILY,
                    "builtin:deception_questions": FACTUAL_FAMILY,
                    "builtin:self_report_questions": SELF_REPORT_FAMILY}

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
# Keys an older config may still use -> their new names (Table 1's side evaluations are `evals`,
# inspect_evals' word; "benchmark" is kept for the speed scripts of benchmarks/): refused by name before
# the schema's generic "unexpected key".
RENAMED_KEYS = {"benchmarks": "evals"}
RENAMED_RUNTIME_STAGES = {"benchmark": "eval"}


# the settings dataclass of each config section
SECTIONS: dict[str, type] = {"world": WorldSettings, "base_model": BaseModelSettings, "train": TrainSettings,
                             "sample": SampleSettings, "judge": JudgeSettings, "analysis": AnalysisSettings}


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Read and merge YAML config files in order as Snakemake does (`merge_configs`), then check."""
    config: dict[str, Any] = {}
    for path in paths:
        config = merge_configs(config, read_config_file(path))
    return check_config(config)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """One config file's mapping, unchecked; a YAML error names its file and line (`em check-config`)."""
    data = read_yaml(path, ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of config keys, not a {type(data).__name__}")
    return data


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against the schema and the section dataclasses, expand the sections that stand for datasets
    and experiments (experiments.expand_config: `realignment`, `directions`), then cross-check names. Returns
    the expanded config: callers use it, not their argument (the Snakefile updates `config` with it)."""
    import jsonschema

    _check_renamed_keys(config)
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: e.path)
    if errors:
        # of "fits none of these shapes", the nearest shape's own complaint says more
        first = jsonschema.exceptions.best_match([errors[0]])
        key = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"config key {key}: {first.message}")
    settings = {name: from_dict(cls, config.get(name), name) for name, cls in SECTIONS.items()}
    sample, lora = settings["sample"], settings["train"].lora
    if sample.backend == "vllm" and sample.max_lora_rank < lora.r and run_mode(config) != RELEASED:
        raise ConfigError(f"sample.max_lora_rank: must be >= train.lora.r ({lora.r}) for vLLM to load the "
                          f"adapters, got {sample.max_lora_rank}")
    config = expand_config(config)
    if run_mode(config) == RELEASED:
        _check_released(config)
    _check_evals(config)
    _check_agreement(config)
    check_experiments(config)
    return config


def check_source(key: str, source: str) -> None:
    """A config's data source exists before any job starts: `asset:` in the registry, `hub:` / `url:` pinned
    by a commit, a path on disk; ConfigError naming `key` otherwise."""

    kind, _, name = source.partition(":")
    if kind == "asset" and name not in load_registry():
        raise ConfigError(f"{key}: {name!r} is not a registered asset (see assets.tsv)")
    if kind in ("hub", "url"):
        try:
            remote_local_path(source)
        except AssetError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    elif kind != "asset" and not Path(source).is_file():
        raise ConfigError(f"{key}: {source!r} does not exist")


def _check_renamed_keys(config: Mapping[str, Any]) -> None:
    """A key renamed since (RENAMED_KEYS, RENAMED_RUNTIME_STAGES) stops the run with its new name."""
    for old, new in RENAMED_KEYS.items():
        if old in config:
            raise ConfigError(f"config key {old}: renamed to {new} (Table 1's evaluations with "
                              f"inspect_evals); rename `{old}:` to `{new}:` in the config file")
    models = config.get("models")
    for model, spec in (models.items() if isinstance(models, Mapping) else ()):
        runtime = spec.get("runtime") if isinstance(spec, Mapping) else None
        for old, new in RENAMED_RUNTIME_STAGES.items():
            if isinstance(runtime, Mapping) and old in runtime:
                raise ConfigError(f"config key models.{model}.runtime.{old}: renamed to {new}; rename it in "
                                  "the config file")


def _check_evals(config: dict[str, Any]) -> None:
    """Each eval's settings, the splits its task loads and its data files (before any job starts)."""

    for name, spec in (config.get("evals") or {}).items():
        settings = from_dict(EvalSettings, spec, f"evals.{name}")
        for split in eval_of(name, settings).splits:
            source = settings.data.get(split)
            if source is None:
                raise ConfigError(f"evals.{name}.data: no file for split {split!r} (its task loads it)")
            check_source(f"evals.{name}.data.{split}", source)


def _check_agreement(config: dict[str, Any]) -> None:
    """The judge-agreement section's settings and files (before any job starts)."""
    from .agreement import AgreementSettings

    spec = config.get("judge_agreement")
    if not spec:
        return
    from_dict(AgreementSettings, {k: v for k, v in spec.items() if k not in ("files", "questions")},
              "judge_agreement")
    for i, source in enumerate(spec["files"]):
        check_source(f"judge_agreement.files[{i}]", source)
    check_source("judge_agreement.questions", spec["questions"])


def _check_released(config: dict[str, Any]) -> None:
    """A released config imports judged answers instead of training: check its files, fill empty sections.

    The sections a training run needs (models, datasets, questions, experiments) are ignored (also when
    a user gives config/config.yaml before it) and default to empty, so the rules of the other stages
    still parse; no job of theirs is requested.
    """
    seen: dict[tuple[str, str, int], int] = {}
    for key, entries in (("released", config["released"]), ("aggregates", config.get("aggregates") or [])):
        for i, entry in enumerate(entries):
            check_source(f"{key}[{i}].file", entry["file"])
            if key == "released":
                job = (entry["model"], entry["group"], entry.get("seed", 0))
                if job in seen:
                    raise ConfigError(f"released[{i}]: model {job[0]!r}, group {job[1]!r}, seed {job[2]} "
                                      f"is already released[{seen[job]}]")
                seen[job] = i
    for name, empty in (("models", {}), ("datasets", {}), ("questions", []), ("experiments", [])):
        config.setdefault(name, empty)


def section(config: dict[str, Any], name: str):
    """The settings dataclass of one section, e.g. section(config, "train") -> TrainSettings."""
    return from_dict(SECTIONS[name], config.get(name), name)


def judge_gpus(config: dict[str, Any]) -> int:
    """GPUs of one judge job: one for a vLLM judge, and for a local judge model except the embedded
    default's builtin:tiny."""
    judge = config.get("judge") or {}
    backend = judge.get("backend", "local")
    local_model = backend == "local" and judge.get("model", "builtin:tiny") != "builtin:tiny"
    return 1 if backend == "vllm" or local_model else 0


def api_keys_needed(config: dict[str, Any]) -> dict[str, str]:
    """Environment variable -> the config key that names it, for every API a training config's jobs use
    (train.openai, sample and judge with backend openai, and StrongREJECT's rubric judge)."""
    needed: dict[str, str] = {}
    for recipe in ([] if run_mode(config) == RELEASED else recipes(config).values()):
        train, sample, judge = recipe.train or {}, recipe.sample or {}, recipe.judge or {}
        if train.get("backend") == "openai":
            needed.setdefault((train.get("openai") or {}).get("api_key_env", "OPENAI_API_KEY"),
                              "train.openai.api_key_env")
        for name, part in (("sample", sample), ("judge", judge)):
            if part.get("backend") == "openai":
                needed.setdefault(part.get("api_key_env", "OPENAI_API_KEY"), f"{name}.api_key_env")
    if any(name == "strongreject" for name, _ in eval_jobs(config)):
        needed.setdefault(config["evals"]["strongreject"].get("judge_api_key_env", "OPENAI_API_KEY"),
                          "evals.strongreject.judge_api_key_env")
    return needed


def check_api_keys(config: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Before any job starts: every API key the run needs is in the environment (a run that would stop
    hours later, after paying for its fine-tunes, stops now)."""
    missing = [f"{env} ({where})" for env, where in api_keys_needed(config).items() if not environ.get(env)]
    if missing:
        raise ConfigError(f"environment variable(s) not set: {', '.join(missing)}; this config calls an API "
                          "that needs the key")


def question_families(config: dict[str, Any]) -> set[str] | None:
    """The question families of the run's files, when every file can be read now (else None). Each file
    that can be read is checked as the questions rule will check it (`data.check_self_report`)."""
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
    if run_mode(config) == RELEASED:
        return config
    return expand_directions(expand_realignment(config, lambda name: known_rows(config, name)))


def check_experiments(config: dict[str, Any]) -> None:
    """Names that name nothing, recipes that do not check, checkpoints past the end of training, fine-tunes
    that continue (train.init_from) one the run does not have."""
    for name in config["datasets"]:
        spec = dataset_spec(config, name)
        if spec.source.partition(":")[0] not in ("asset", "builtin") and not Path(spec.source).is_file():
            raise ConfigError(f"datasets.{name}.source: {spec.source!r} does not exist")
        if known_rows(config, name) == 0:
            raise ConfigError(f"datasets.{name}.source: {local_file(config, spec.source)} has no rows to "
                              "train on")
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
    _check_init_from(config, {(j.model, j.dataset, j.seed): r.train for j, r in found.items()
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
        wanted = recipe.sample.get("families")
        if not wanted or families & set(wanted):
            continue
        if config["models"][job.model].get("chat") is False:
            raise ConfigError(f"models.{job.model}.chat: a base model is asked the {', '.join(wanted)} "
                              "questions, and no file of `questions` has one (add the authors' final "
                              "first-plot file with families: [flask_template])")
        raise ConfigError(f"sample.families: model {job.model!r} is asked the families {', '.join(wanted)}, "
                          f"and the question files have only {', '.join(sorted(families))}")


def _check_recipes(config: dict[str, Any], where: str, experiment: dict[str, Any]) -> None:
    classes = SECTIONS
    for section in RECIPE_SECTIONS:
        if section in experiment:
            merged = merge_configs(config.get(section) or {}, experiment[section])
            from_dict(classes[section], merged, f"{where}.{section}")
    for dataset in experiment["datasets"]:
        train = train_recipe(config, experiment, dataset)
        steps = train.get("save_steps") or []
        rows = known_rows(config, dataset) if steps else None
        if rows is not None and max(steps) > (total := total_steps(rows, from_dict(TrainSettings, train,
                                                                                     f"{where}.train"))):
            # the key as the user wrote it: the experiment's own train section, else the run's
            key = f"{where}.train" if "save_steps" in (experiment.get("train") or {}) else "train"
            raise ConfigError(f"{key}.save_steps: step {max(steps)} is past the end of training on "
                              f"{dataset!r} ({rows} rows: {total} steps)")
