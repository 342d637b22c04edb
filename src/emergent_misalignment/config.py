"""Load and check the workflow config: the schema first, then every section's dataclass.

The Snakefile calls `check_config(config)` before it builds the DAG, so a typo stops the run
with the key's name before any job starts; it also expands the sections that stand for several
datasets and experiments (`realignment`), the one place where the DAG and `em plan` get their jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import AssetError, ConfigError
from .settings import from_dict

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
# Keys an older config may still use -> their new names (Table 1's side evaluations are `evals`,
# inspect_evals' word; "benchmark" is kept for the speed scripts of benchmarks/): refused by name before
# the schema's generic "unexpected key".
RENAMED_KEYS = {"benchmarks": "evals"}
RENAMED_RUNTIME_STAGES = {"benchmark": "eval"}


def _sections() -> dict[str, type]:
    """The settings dataclass of each config section (imported here to keep imports light)."""
    from .basemodel import BaseModelSettings
    from .judge import JudgeSettings
    from .sample import SampleSettings
    from .stats import AnalysisSettings
    from .train import TrainSettings
    from .world import WorldSettings

    return {"world": WorldSettings, "base_model": BaseModelSettings, "train": TrainSettings,
            "sample": SampleSettings, "judge": JudgeSettings, "analysis": AnalysisSettings}


def merge_configs(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `override` as Snakemake merges --configfile files (snakemake.utils.update_config).

    Mappings merge key by key, at every depth; any other value (a list too) replaces. As in Snakemake, an
    empty mapping leaves a value that is not a mapping as it was. Neither argument is changed.
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key, {})
        if not isinstance(value, Mapping):
            merged[key] = value
        elif isinstance(old, Mapping) or value:
            merged[key] = merge_configs(old if isinstance(old, Mapping) else {}, value)
    return merged


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Read and merge YAML config files in order as Snakemake does (`merge_configs`), then check."""
    config: dict[str, Any] = {}
    for path in paths:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a mapping of config keys, not a {type(data).__name__}")
        config = merge_configs(config, data)
    return check_config(config)


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
    settings = {name: from_dict(cls, config.get(name), name) for name, cls in _sections().items()}
    sample, lora = settings["sample"], settings["train"].lora
    if sample.backend == "vllm" and sample.max_lora_rank < lora.r and not config.get("released"):
        raise ConfigError(f"sample.max_lora_rank: must be >= train.lora.r ({lora.r}) for vLLM to load the "
                          f"adapters, got {sample.max_lora_rank}")
    from .experiments import check_experiments, expand_config

    config = expand_config(config)
    if config.get("released"):
        _check_released(config)
    _check_evals(config)
    _check_agreement(config)
    check_experiments(config)
    return config


def check_source(key: str, source: str) -> None:
    """A config's data source exists before any job starts: `asset:` in the registry, `hub:` / `url:` pinned
    by a commit, a path on disk; ConfigError naming `key` otherwise."""
    from .assets import load_registry, remote_local_path

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
    from .evals import EvalSettings, eval_of

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
    return from_dict(_sections()[name], config.get(name), name)


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
    from .experiments import eval_jobs, recipes

    needed: dict[str, str] = {}
    for recipe in ([] if config.get("released") else recipes(config).values()):
        train, sample, judge = recipe["train"] or {}, recipe["sample"] or {}, recipe["judge"] or {}
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
