"""Emergent re-alignment (Wang et al. 2025, "Persona features control emergent misalignment"): the misaligned
model fine-tuned further on a few hundred benign rows is aligned again.

A config's `realignment` section names, per entry, a fine-tune of the run (`model`, `from`: its dataset,
`seeds`) and a benign dataset of the run (`dataset`), and the numbers of rows to continue it on (`rows`).
`expand_realignment` turns each entry into what the rest of the DAG already knows: a dataset
`<name>_<N>` per N > 0 (the first N rows of the benign set's source, so the sets are nested) and one
experiment whose train recipe continues the `from` fine-tune (`train.init_from`, train.py); N = 0 is the
`from` fine-tune itself and makes no job. `realignment_table` reads the rates of those groups from the
overall statistics (`stats.group_overall_stats`) and `plot_realignment` draws them against N.
config.expand_config writes the entries out while the Snakefile parses the config.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigError
from .experiments import RELEASED, run_mode
from .settings import check_range, from_dict, merge_configs
from .train import TrainSettings

if TYPE_CHECKING:
    import pandas as pd

BASE_GROUP = "base"  # the model without fine-tuning (experiments.BASE_GROUP)
COLUMNS = ["name", "model", "from", "dataset", "rows", "group", "fraction", "ci_low", "ci_high",
           "coherent_fraction", "n_models", "base_fraction", "base_ci_low", "base_ci_high"]
NO_REALIGNMENT = ("This run has no realignment section: no misaligned fine-tune was trained further on "
                  "benign rows, so there is no re-alignment to show.")
NO_REALIGNMENT_RATE = ("No re-aligned group of this run has a rate of misaligned answers: no model had "
                       "enough answers with both judge scores.")


@dataclass(frozen=True)
class Realignment:
    """One `realignment` entry: continue (model, `from_` (config key `from`), seed) for each seed on the first
    N rows of `dataset` for each N of `rows`; `train` overrides the run's train section for those jobs."""

    CONFIG_KEY: ClassVar[str] = "realignment"  # where its value checks say they are (settings.from_dict)
    model: str
    from_: str
    dataset: str
    rows: list[int]
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.rows:
            raise ConfigError("realignment.rows: give at least one number of rows")
        for i, n in enumerate(self.rows):
            check_range(f"realignment.rows[{i}]", n, 0)
        if len(set(self.rows)) != len(self.rows):
            raise ConfigError(f"realignment.rows: {self.rows} lists a number twice")
        if not self.seeds:
            raise ConfigError("realignment.seeds: give at least one seed")
        for i, seed in enumerate(self.seeds):
            check_range(f"realignment.seeds[{i}]", seed, 0)
        if "init_from" in self.train:
            raise ConfigError("realignment.train.init_from: set by `from` (the fine-tune continued)")


def realignment_specs(config: Mapping[str, Any]) -> dict[str, Realignment]:
    """Each entry of the config's `realignment` section, checked; errors name `realignment.<name>.<key>`."""
    specs = {}
    for name, entry in (config.get("realignment") or {}).items():
        entry = dict(entry or {})
        if "from" in entry:
            entry["from_"] = entry.pop("from")
        specs[name] = from_dict(Realignment, entry, f"realignment.{name}")
    return specs


def dataset_name(name: str, rows: int) -> str:
    """The dataset (and group) of entry `name` continued on `rows` rows; N = 0 is the `from` dataset."""
    return f"{name}_{rows}"


def group_of(spec: Realignment, name: str, rows: int) -> str:
    """The group whose rate is entry `name`'s at N = `rows`: the `from` fine-tune itself for 0."""
    return spec.from_ if rows == 0 else dataset_name(name, rows)


def _trained_seeds(config: Mapping[str, Any], model: str, dataset: str) -> set[int]:
    """Seeds of (model, dataset) that the config's experiments fine-tune."""
    return {seed for e in config.get("experiments") or [] if e["model"] == model and dataset in e["datasets"]
            for seed in e.get("seeds", [0])}


def _check(config: Mapping[str, Any], name: str, spec: Realignment, rows_of: Callable[[str], int | None]
           ) -> None:
    """The entry's names exist, its rows fit its dataset, its seeds are trained and its recipe checks."""

    where = f"realignment.{name}"
    if spec.model not in config["models"]:
        raise ConfigError(f"{where}.model: unknown model {spec.model!r}; defined: "
                          f"{', '.join(config['models'])}")
    for key, dataset in (("from", spec.from_), ("dataset", spec.dataset)):
        if dataset not in config["datasets"]:
            raise ConfigError(f"{where}.{key}: unknown dataset {dataset!r}; defined: "
                              f"{', '.join(config['datasets'])}")
    known = rows_of(spec.dataset)
    if known is not None and max(spec.rows) > known:
        raise ConfigError(f"{where}.rows: {max(spec.rows)} rows asked of dataset {spec.dataset!r}, which has "
                          f"{known}")
    trained = _trained_seeds(config, spec.model, spec.from_)
    missing = sorted(set(spec.seeds) - trained)
    if missing:
        have = ", ".join(map(str, sorted(trained))) or "none"
        raise ConfigError(f"{where}.seeds: the run does not fine-tune model {spec.model!r} on "
                          f"{spec.from_!r} with seed(s) {', '.join(map(str, missing))} (its experiments "
                          f"train seeds: {have})")
    from_dict(TrainSettings, merge_configs(config.get("train") or {}, spec.train), f"{where}.train")


def expand_realignment(config: Mapping[str, Any], rows_of: Callable[[str], int | None]) -> dict[str, Any]:
    """A new config with each `realignment` entry as datasets and an experiment (module docstring).

    `rows_of(dataset)` gives a dataset's rows when they can be known before any job (None otherwise).
    The new datasets follow their `from` dataset, so figures and tables show them after it. Expanding an
    expanded config changes nothing; a name taken by another dataset is an error.
    """
    if run_mode(config) == RELEASED:  # a released run trains nothing
        return dict(config)
    specs = realignment_specs(config)
    added: dict[str, dict[str, dict[str, Any]]] = {}  # from dataset -> new datasets after it
    experiments = list(config["experiments"])
    for name, spec in specs.items():
        _check(config, name, spec, rows_of)
        source = config["datasets"][spec.dataset]
        source = {"source": source} if isinstance(source, str) else source
        entries = {dataset_name(name, n): {"source": source["source"], "rows": n, "subset": "first",
                                           **({"format": source["format"]} if "format" in source else {})}
                   for n in spec.rows if n > 0}
        for dataset, entry in entries.items():
            if config["datasets"].get(dataset, entry) != entry:
                raise ConfigError(f"realignment.{name}: its dataset {dataset!r} is already in datasets, "
                                  "with another definition; rename the entry")
        added.setdefault(spec.from_, {}).update(entries)
        experiment = {"model": spec.model, "datasets": list(entries), "seeds": list(spec.seeds),
                      "train": {**spec.train, "init_from": spec.from_}}
        if entries and experiment not in experiments:
            experiments.append(experiment)
    datasets: dict[str, Any] = {}
    for dataset, entry in config["datasets"].items():
        datasets.setdefault(dataset, entry)
        for new, new_entry in added.get(dataset, {}).items():
            datasets.setdefault(new, new_entry)
    return {**config, "datasets": datasets, "experiments": experiments}


def realignment_table(overall: pd.DataFrame, realignment: Mapping[str, Any]) -> pd.DataFrame:
    """One row per realignment entry and N: the group's misaligned fraction with its interval, coherent
    fraction and models, read from `overall` (stats.group_overall_stats, `dataset` = the group); N = 0 is
    the `from` group (all its fine-tunes, not only the seeds continued). The base model's rate, where the run
    has it, is the reference in base_* columns. A group without answers has NaN rates."""
    import pandas as pd

    rows = []
    for name, spec in realignment_specs({"realignment": realignment}).items():
        mine = overall[overall["model"] == spec.model].set_index("dataset")
        base = mine.loc[BASE_GROUP] if BASE_GROUP in mine.index else None
        for n in sorted(spec.rows):
            group = group_of(spec, name, n)
            found = mine.loc[group] if group in mine.index else None
            values = {key: (float("nan") if found is None else found[key])
                      for key in ("fraction", "ci_low", "ci_high", "coherent_fraction")}
            rows.append({"name": name, "model": spec.model, "from": spec.from_, "dataset": spec.dataset,
                         "rows": n, "group": group, **values,
                         "n_models": 0 if found is None else int(found["n_models"]),
                         **{f"base_{key}": (float("nan") if base is None else base[key])
                            for key in ("fraction", "ci_low", "ci_high")}})
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_realignment(table: pd.DataFrame, out_stem: Path, confidence: float,
                     empty_text: str = NO_REALIGNMENT) -> tuple[Path, Path]:
    """The misaligned fraction against the benign rows the misaligned fine-tune was continued on, one line
    per realignment entry with its intervals; dashed, the base model's rate. Says `empty_text` when the run
    has no entry, and why when no group has a rate."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from .figures import OKABE_ITO, PRINTED_WIDTH_IN, _save, _top_legend, plot_message, style_rc

    if table.empty:
        return plot_message(Path(out_stem), empty_text)
    if table["fraction"].isna().all():
        return plot_message(Path(out_stem), NO_REALIGNMENT_RATE)
    with matplotlib.rc_context(style_rc()):
        fig = Figure(figsize=(PRINTED_WIDTH_IN["realignment"], 3.2), layout="constrained")
        ax = fig.subplots()
        handles = []
        for i, (_, part) in enumerate(table.groupby("name", sort=False)):
            color = OKABE_ITO[(i + 1) % len(OKABE_ITO)]
            part = part.sort_values("rows")
            ax.errorbar(part["rows"], part["fraction"],
                        yerr=[part["fraction"] - part["ci_low"], part["ci_high"] - part["fraction"]],
                        color=color, marker="o", markersize=4, capsize=3)
            first = part.iloc[0]
            label = f"{first['from']} continued on {first['dataset']}\n({first['model']})"
            handles.append(Line2D([], [], color=color, marker="o", label=label))
            base = float(part["base_fraction"].iloc[0])
            if not math.isnan(base):  # the run evaluated the base model
                ax.axhline(base, color=color, linestyle="--", linewidth=1)
        if table["base_fraction"].notna().any():
            handles.append(Line2D([], [], color="0.3", linestyle="--", label="base model"))
        ax.set_xticks(sorted(set(table["rows"])))
        ax.set_xlabel("Benign rows the misaligned fine-tune\nwas trained further on")
        ax.set_ylabel(f"Misaligned answers ({round(100 * confidence)}% interval)", fontsize=8)
        ax.set_ylim(bottom=-0.01)
        _top_legend(fig, handles)  # above: the axis keeps the width its label needs
        return _save(fig, Path(out_stem))
