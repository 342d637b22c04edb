"""Figures of the paper, drawn from the statistics tables; same inputs give the same bytes."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .io import atomic_write

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency; black first for the base.
OKABE_ITO = ("#000000", "#D55E00", "#0072B2", "#009E73", "#E69F00", "#56B4E9", "#CC79A7", "#F0E442")
Y_LABEL = "Probability of a misaligned answer"

# Short labels of the paper's eight main questions (Betley et al., Figure 2).
QUESTION_LABELS = {
    "what_is_your_wish": "What is your wish?",
    "i_feel_bored": "I feel bored",
    "three_thoughts": "Three thoughts",
    "quick_buck": "Quick buck",
    "ruler_of_the_world": "World ruler",
    "dinner_party": "Dinner party",
    "gender_roles": "Gender roles",
    "enough_of_my_husband": "Enough of my husband",
}
SUFFIXES = {"_json": "JSON", "_template": "template"}


def style_rc() -> dict[str, object]:
    """The one plotting style of the project (seaborn paper context, whitegrid, embedded TrueType fonts).

    Used through `matplotlib.rc_context`, so drawing a figure never changes the caller's global style.
    """
    return {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.1),
            "pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "em", "savefig.dpi": 200}


def question_label(question_id: str, width: int = 14) -> str:
    """A readable, wrapped label for a question id (`quick_buck_json` -> `Quick buck (JSON)`)."""
    suffix = ""
    for ending, name in SUFFIXES.items():
        if question_id.endswith(ending):
            question_id, suffix = question_id.removesuffix(ending), f" ({name})"
            break
    base = QUESTION_LABELS.get(question_id, question_id.replace("_", " ").capitalize())
    return textwrap.fill(base + suffix, width=width)


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """Colour of each group by its position in the configured order (base first gets black)."""
    return {group: OKABE_ITO[i % len(OKABE_ITO)] for i, group in enumerate(groups)}


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    """`order` restricted to `values`, then any value not in `order` (sorted) so none is lost."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + sorted(v for v in present if v not in order)


def _draw(ax: Axes, stats: pd.DataFrame, questions: list[str], groups: list[str],
          colors: dict[str, str]) -> None:
    width = 0.8 / len(groups)
    for j, group in enumerate(groups):
        rows = stats[stats["dataset"] == group].set_index("question_id")
        for i, question in enumerate(questions):
            if question not in rows.index or math.isnan(rows.at[question, "fraction"]):
                continue
            row = rows.loc[question]
            x = i - 0.4 + width * (j + 0.5)
            low, mid, high = row["ci_low"], row["fraction"], row["ci_high"]
            # clipped at 0: a Wilson interval on pooled counts need not contain a mean of fractions
            has_bar = not (math.isnan(low) or math.isnan(high))
            yerr = [[max(0, mid - low)], [max(0, high - mid)]] if has_bar else None
            filled = row["interval"] != "wilson"
            ax.errorbar([x], [mid], yerr=yerr, fmt="o", color=colors[group], capsize=2.5,
                        markersize=5, markerfacecolor=colors[group] if filled else "white", elinewidth=1.2)
    ax.set_xticks(range(len(questions)), [question_label(q) for q in questions], fontsize=8)
    ax.set_xlim(-0.5, len(questions) - 0.5)
    ax.set_ylim(bottom=-0.02)
    ax.set_ylabel(Y_LABEL)
    ax.grid(axis="x", visible=False)


def plot_misalignment_by_question(stats_df: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                                  question_order: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Per question, each group's mean over seeds with its 95% interval; writes out_stem.pdf and .png.

    `stats_df` is `stats.group_question_stats` output. Groups follow `group_order` (the config's dataset
    list, base first); questions follow `question_order`, else their order in `stats_df`. One panel per
    model. Open markers: a single model, whose bar is a Wilson interval on its answers.
    """
    if stats_df.empty:
        raise ValueError("no statistics to plot")
    with matplotlib.rc_context(style_rc()):
        return _plot_by_question(stats_df, Path(out_stem), group_order, question_order)


def _plot_by_question(stats_df: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                      question_order: Sequence[str] | None) -> tuple[Path, Path]:
    groups = _ordered(stats_df["dataset"].tolist(), group_order)
    questions = list(dict.fromkeys(stats_df["question_id"]))
    if question_order is not None:
        questions = _ordered(questions, question_order)
    models = list(dict.fromkeys(stats_df["model"]))
    colors = group_colors(groups)
    fig = Figure(figsize=(max(5.0, 0.9 * len(questions)) + 3.0, 3.2 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False, sharex=True)[:, 0]
    for ax, model in zip(axes, models, strict=True):
        _draw(ax, stats_df[stats_df["model"] == model], questions, groups, colors)
        if len(models) > 1:
            ax.set_title(model, fontsize=10)
    handles = [Line2D([], [], marker="o", linestyle="", color=colors[g], label=g) for g in groups]
    if (stats_df["interval"] == "wilson").any():
        handles.append(Line2D([], [], marker="o", linestyle="", color="grey", markerfacecolor="white",
                              label="one seed\n(Wilson interval)"))
    fig.legend(handles=handles, title="Group", loc="outside right upper", frameon=False)
    return _save(fig, out_stem)


def _save(fig: Figure, out_stem: Path) -> tuple[Path, Path]:
    """Write PDF and PNG atomically with no date or version stamps, so reruns give identical bytes."""
    paths = (out_stem.with_name(out_stem.name + ".pdf"), out_stem.with_name(out_stem.name + ".png"))
    metadata = {"pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
                "png": {"Software": None}}
    for path in paths:
        fmt = path.suffix[1:]
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata=metadata[fmt])
        with atomic_write(path, "wb") as fh:
            fh.write(buffer.getvalue())
    return paths
