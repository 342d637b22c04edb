"""What the persona directions do, from the run's statistics: ablation, transfer, steering and monitoring.

Every number is a group's rate from overall.csv (the run's definition, its bootstrap or Wilson intervals):
an ablated model is the group `dataset+ablate_<direction>`, its control `...+ablate_<direction>_random`, a
steered base model `base+steer_<direction>_<alpha>`. Every run writes every file (empty tables, figures
that say why), so the paper has one shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..experiments import BASE_GROUP, group_label
from ..figures import (
    MAX_HEIGHT_IN,
    OKABE_ITO,
    PRINTED_WIDTH_IN,
    Y_LABEL,
    _grid,
    _message,
    _save,
    plot_message,
    style_rc,
)
from ..io import write_csv, write_json
from ..manifest import build_manifest, manifest_path
from ..tables import _interval, booktabs, format_percent, write_text
from . import DirectionSettings, ablate_condition, steer_condition

RATE_COLUMNS = ["fraction", "ci_low", "ci_high", "coherent_fraction", "coherent_ci_low", "coherent_ci_high",
                "n_models"]  # of a group, from overall.csv
INTERVENTION_COLUMNS = ["direction", "method", "kind", "source", "dataset", "transfer", "variant", "alpha",
                        "group", *RATE_COLUMNS]
LAYER_COLUMNS = ["direction", "method", "layer", "auc", "base_norm", "n_answers", "n_misaligned", "n_aligned"]
MONITOR_COLUMNS = ["direction", "layer", "checkpoint", "step", "prompt_projection", "answer_projection",
                   "fraction", "ci_low", "ci_high"]
VARIANTS = ("none", "direction", "random")  # as asked, with the direction, with the random control
VARIANT_STYLE = {
    "none": (OKABE_ITO[0], "o", "as fine-tuned"),
    "direction": (OKABE_ITO[1], "s", "with the direction"),
    "random": (OKABE_ITO[2], "^", "with a random one"),
}
NO_ABLATION = (
    "No direction of this run is ablated (directions.<name>.ablate), so there is no ablation to show."
)
NO_STEERING = (
    "No direction of this run steers the base model (directions.<name>.alphas), so there is no curve."
)
NO_MONITOR = (
    "No direction of this run is monitored over kept checkpoints (directions.<name>.monitor with "
    "train.save_steps), so there is no projection over training."
)


def _rate(overall: pd.DataFrame, model: str, group: str) -> dict[str, float]:
    row = overall[(overall["model"] == model) & (overall["dataset"] == group)]
    return {k: float(row.iloc[0][k]) if len(row) else math.nan for k in RATE_COLUMNS}


def intervention_table(directions: Mapping[str, DirectionSettings], overall: pd.DataFrame) -> pd.DataFrame:
    """One row per (direction, ablated fine-tune or steering alpha, variant): the group's rates."""
    rows = []
    for name, spec in directions.items():
        common = {"direction": name, "method": spec.method, "source": spec.dataset}
        for dataset in spec.ablate:
            variants = {"none": dataset, "direction": group_label(dataset, ablate_condition(name))}
            if spec.control:
                variants["random"] = group_label(dataset, ablate_condition(name, True))
            for variant, group in variants.items():
                rows.append(
                    {
                        **common,
                        "kind": "ablate",
                        "dataset": dataset,
                        "transfer": dataset != spec.dataset,
                        "variant": variant,
                        "alpha": math.nan,
                        "group": group,
                        **_rate(overall, spec.model, group),
                    }
                )
        if spec.alphas:
            rows.append(
                {
                    **common,
                    "kind": "steer",
                    "dataset": BASE_GROUP,
                    "transfer": False,
                    "variant": "none",
                    "alpha": 0.0,
                    "group": BASE_GROUP,
                    **_rate(overall, spec.model, BASE_GROUP),
                }
            )
        for alpha in spec.alphas:
            for variant, random in (("direction", False), ("random", True)):
                if random and not spec.control:
                    continue
                group = group_label(BASE_GROUP, steer_condition(name, alpha, random))
                rows.append(
                    {
                        **common,
                        "kind": "steer",
                        "dataset": BASE_GROUP,
                        "transfer": False,
                        "variant": variant,
                        "alpha": alpha,
                        "group": group,
                        **_rate(overall, spec.model, group),
                    }
                )
    return pd.DataFrame(rows, columns=INTERVENTION_COLUMNS)


def layer_table(stats: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per direction and layer: the separation (AUC of misaligned vs aligned answers' projections) and the
    base model's mean residual-stream norm (what steering's alpha is a fraction of)."""
    rows = [
        {
            "direction": s["name"],
            "method": s["method"],
            **layer,
            "n_answers": s["n_answers"],
            "n_misaligned": s["n_misaligned"],
            "n_aligned": s["n_aligned"],
        }
        for s in stats
        for layer in s["layers"]
    ]
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def monitor_layer(layers: pd.DataFrame, name: str) -> int:
    """The layer a direction is monitored at: the one that separates misaligned from aligned answers best
    (highest AUC; the first on ties)."""
    mine = layers[layers["direction"] == name].dropna(subset=["auc"])
    return (
        int(mine.sort_values(["auc", "layer"], ascending=[False, True]).iloc[0]["layer"]) if len(mine) else 0
    )


def monitoring_table(
    monitors: Mapping[str, pd.DataFrame],
    directions: Mapping[str, DirectionSettings],
    dynamics: pd.DataFrame,
    overall: pd.DataFrame,
    layers: pd.DataFrame,
) -> pd.DataFrame:
    """Per monitored direction, at its monitor layer: the projection at each evaluated checkpoint of its
    fine-tune beside that checkpoint's misaligned fraction (dynamics.csv; the base model at step 0)."""
    rows = []
    for name, frame in monitors.items():
        spec = directions[name]
        layer = monitor_layer(layers, name)
        mine = dynamics[
            (dynamics["model"] == spec.model)
            & (dynamics["trained_on"] == spec.dataset)
            & (dynamics["condition"] == "none")
        ]
        for point in frame[frame["layer"] == layer].itertuples(index=False):
            if point.checkpoint == BASE_GROUP:
                rate = {**_rate(overall, spec.model, BASE_GROUP), "step": point.step}
            else:  # the final adapter's step is known from its training loss (dynamics.csv)
                match = mine[mine["checkpoint"] == point.checkpoint]
                rate = {
                    k: float(match.iloc[0][k]) if len(match) else math.nan
                    for k in ("fraction", "ci_low", "ci_high", "step")
                }
            rows.append(
                {
                    "direction": name,
                    "layer": layer,
                    "checkpoint": point.checkpoint,
                    "step": rate["step"],
                    "prompt_projection": point.prompt_projection,
                    "answer_projection": point.answer_projection,
                    **{k: rate[k] for k in ("fraction", "ci_low", "ci_high")},
                }
            )
    return pd.DataFrame(rows, columns=MONITOR_COLUMNS)


def _panels(names: Sequence[str], figure: str, height: float) -> tuple[Figure, list[Any]]:
    """One panel per direction, one above the other, in a figure as wide as the paper prints `figure` (side
    by side, a panel's axis labels would run into its neighbour's)."""
    return _grid(len(names), 1, PRINTED_WIDTH_IN[figure], height)


def _errorbar(
    ax: Any, x: Sequence[float], rows: pd.DataFrame, color: str, marker: str, label: str, linestyle: str = "-"
) -> None:
    mid = rows["fraction"].to_numpy(float)
    low = np.clip(mid - rows["ci_low"].to_numpy(float), 0, None)
    high = np.clip(rows["ci_high"].to_numpy(float) - mid, 0, None)
    ax.errorbar(
        x,
        mid,
        yerr=[np.nan_to_num(low), np.nan_to_num(high)],
        color=color,
        marker=marker,
        linestyle=linestyle,
        capsize=3,
        label=label,
    )


def plot_ablation(table: pd.DataFrame, out_stem: Path) -> tuple[Path, Path]:
    """Per direction, each ablated fine-tune as fine-tuned, with the direction projected out, and with a
    random direction of the same norm projected out (transfer: a fine-tune it was not taken from)."""
    ablation = table[table["kind"] == "ablate"]
    if ablation.empty:
        return plot_message(out_stem, NO_ABLATION)
    names = list(dict.fromkeys(ablation["direction"]))
    with matplotlib.rc_context(style_rc()):
        fig = Figure(figsize=(PRINTED_WIDTH_IN["ablation"], min(MAX_HEIGHT_IN, 2.8 * len(names))),
                     layout="constrained")
        axes = np.atleast_1d(fig.subplots(len(names), 1, squeeze=False)[:, 0])
        for ax, name in zip(axes, names, strict=True):
            mine = ablation[ablation["direction"] == name]
            datasets = list(dict.fromkeys(mine["dataset"]))
            for k, variant in enumerate(VARIANTS):
                rows = mine[mine["variant"] == variant].set_index("dataset").reindex(datasets)
                color, marker, label = VARIANT_STYLE[variant]
                _errorbar(
                    ax,
                    np.arange(len(datasets)) + (k - 1) * 0.2,
                    rows.reset_index(),
                    color,
                    marker,
                    label,
                    linestyle="",
                )
            source = mine.iloc[0]["source"]
            ax.set_xticks(range(len(datasets)), [d if d == source else f"{d}\n(transfer)" for d in datasets])
            ax.set_xlim(-0.6, len(datasets) - 0.4)
            ax.set_title(f"{name}\n({mine.iloc[0]['method']}, from {source})", fontsize=10)
            ax.set_ylim(0, 1)
            ax.set_ylabel(Y_LABEL, fontsize=8)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
        return _save(fig, Path(out_stem))


def plot_steering(table: pd.DataFrame, out_stem: Path) -> tuple[Path, Path]:
    """Per direction, the base model's misaligned fraction (solid) and coherent fraction (dotted) against
    alpha, with the direction added and with a random one of the same norm."""
    steering = table[table["kind"] == "steer"]
    if steering.empty:
        return plot_message(out_stem, NO_STEERING)
    names = list(dict.fromkeys(steering["direction"]))
    with matplotlib.rc_context(style_rc()):
        fig, axes = _panels(names, "steering", 3.2)
        for ax, name in zip(axes, names, strict=True):
            mine = steering[steering["direction"] == name]
            none = mine[mine["variant"] == "none"]
            for variant in ("direction", "random"):
                rows = pd.concat([none, mine[mine["variant"] == variant]]).sort_values("alpha")
                if len(rows) == len(none):
                    continue
                color, marker, _ = VARIANT_STYLE[variant]
                _errorbar(ax, rows["alpha"].to_numpy(float), rows, color, marker, "")
                ax.plot(rows["alpha"], rows["coherent_fraction"], color=color, linestyle=":")
            ax.set_title(f"{name} ({mine.iloc[0]['method']})", fontsize=10)
            ax.set_xlabel(r"$\alpha$ (x the layer's residual norm)")
            ax.set_ylim(0, 1)
        axes[0].set_ylabel(Y_LABEL, fontsize=8)
        handles = [
            Line2D([], [], color=VARIANT_STYLE[v][0], marker=VARIANT_STYLE[v][1], label=VARIANT_STYLE[v][2])
            for v in ("direction", "random")
        ]
        handles.append(Line2D([], [], color="grey", linestyle=":", label="coherent fraction"))
        fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=8)
        return _save(fig, Path(out_stem))


def plot_monitoring(table: pd.DataFrame, out_stem: Path) -> tuple[Path, Path]:
    """Per monitored direction: the projection of the prompts' last token (left axis) and the misaligned
    fraction (right axis) at each checkpoint of its fine-tune: does the direction move before behaviour?"""
    if table.empty:
        return plot_message(out_stem, NO_MONITOR)
    names = list(dict.fromkeys(table["direction"]))
    with matplotlib.rc_context(style_rc()):
        fig, axes = _panels(names, "monitoring", 3.0)
        for ax, name in zip(axes, names, strict=True):
            mine = table[table["direction"] == name].sort_values("step")
            if mine["step"].isna().all():
                _message(ax, "No step is known for these checkpoints.")
                continue
            ax.plot(mine["step"], mine["prompt_projection"], color=OKABE_ITO[2], marker="o", label="prompt")
            ax.plot(mine["step"], mine["answer_projection"], color=OKABE_ITO[5], marker="s", label="answers")
            ax.set_xlabel("optimiser step")
            ax.set_ylabel(f"projection (layer {int(mine.iloc[0]['layer'])})")
            ax.set_title(name, fontsize=10)
            twin = ax.twinx()
            _errorbar(twin, mine["step"].to_numpy(float), mine, OKABE_ITO[1], "^", "misaligned")
            twin.set_ylim(0, 1)
            twin.set_ylabel(Y_LABEL, fontsize=8)
            twin.grid(False)
        handles = [
            Line2D([], [], color=OKABE_ITO[2], marker="o", label="projection:\nprompt's last token"),
            Line2D([], [], color=OKABE_ITO[5], marker="s", label="projection:\nanswers"),
            Line2D([], [], color=OKABE_ITO[1], marker="^", label="misaligned\n(right axis)"),
        ]
        fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=8)
        return _save(fig, Path(out_stem))


def directions_frame(table: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """The interventions as display strings, for the paper's table: one row per direction and ablated
    fine-tune or steering alpha: the rate as fine-tuned (or at alpha 0), with it, with a random one."""

    def cell(rows: pd.DataFrame, variant: str) -> str:
        row = rows[rows["variant"] == variant]
        if row.empty:
            return "--"
        r = row.iloc[0]
        return f"{format_percent(r['fraction'])} {_interval(r['ci_low'], r['ci_high'])}".strip()

    out = []
    for (name, kind, dataset, alpha), rows in table.groupby(
        ["direction", "kind", "dataset", "alpha"], sort=False, dropna=False
    ):
        auc = layers.loc[layers["direction"] == name, "auc"].max()
        what = (
            f"ablate in {dataset}" + (" (transfer)" if rows.iloc[0]["transfer"] else "")
            if kind == "ablate"
            else f"steer base, alpha {alpha:g}"
        )
        reference = table[
            (table["direction"] == name)
            & (table["kind"] == kind)
            & (table["variant"] == "none")
            & (table["dataset"] == dataset)
        ]
        out.append(
            [
                name,
                rows.iloc[0]["method"],
                "--" if math.isnan(auc) else f"{auc:.2f}",
                what,
                cell(reference, "none"),
                cell(rows, "direction"),
                cell(rows, "random"),
            ]
        )
    columns = ["Direction", "Method", "Best AUC", "Intervention", "Without (%)", "With it (%)", "Random (%)"]
    frame = pd.DataFrame(out, columns=columns)
    return frame[~((frame["Intervention"].str.startswith("steer")) & (frame["With it (%)"] == "--"))]


def read_stats(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]


def write_report(
    directions: Mapping[str, DirectionSettings],
    analysis_dir: Path,
    stats_paths: Sequence[Path],
    monitor_paths: Mapping[str, Path],
    figures_dir: Path,
    tables_dir: Path,
) -> dict[str, pd.DataFrame]:
    """directions.csv, direction_layers.csv, monitoring.csv, the ablation, steering and monitoring figures
    and directions_table.tex of a run, each with a manifest."""

    analysis_dir, figures_dir = Path(analysis_dir), Path(figures_dir)
    overall = pd.read_csv(analysis_dir / "overall.csv")
    dynamics = pd.read_csv(analysis_dir / "dynamics.csv")
    layers = layer_table(read_stats(stats_paths))
    monitors = {name: pd.read_csv(path) for name, path in monitor_paths.items()}
    tables = {
        "directions": intervention_table(directions, overall),
        "direction_layers": layers,
        "monitoring": monitoring_table(monitors, directions, dynamics, overall, layers),
    }
    sources = [
        analysis_dir / "overall.csv",
        analysis_dir / "dynamics.csv",
        *stats_paths,
        *monitor_paths.values(),
    ]
    manifest = build_manifest(
        "directions-report", sources, {name: spec.__dict__ for name, spec in directions.items()}
    )
    for name, table in tables.items():
        write_json(manifest_path(analysis_dir / f"{name}.csv"), manifest)
        write_csv(table, analysis_dir / f"{name}.csv")
    write_json(manifest_path(Path(tables_dir) / "directions_table.tex"), manifest)
    write_text(
        booktabs(directions_frame(tables["directions"], layers), "llrlrrr"),
        Path(tables_dir) / "directions_table.tex",
    )
    figures_dir.mkdir(parents=True, exist_ok=True)
    for stem, plot, table in (
        ("ablation", plot_ablation, tables["directions"]),
        ("steering", plot_steering, tables["directions"]),
        ("monitoring", plot_monitoring, tables["monitoring"]),
    ):
        for path in plot(table, figures_dir / stem):
            write_json(manifest_path(path), manifest)
    return tables
