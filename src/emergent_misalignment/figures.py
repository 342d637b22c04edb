"""Figures of the paper, drawn from the statistics tables; same inputs give the same bytes."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .experiments import group_label
from .io import atomic_write
from .labels import question_label
from .released.families import DATASET_SIZES
from .stats import DefinitionSettings

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency; black first for the base.
OKABE_ITO = ("#000000", "#D55E00", "#0072B2", "#009E73", "#E69F00", "#56B4E9", "#CC79A7", "#F0E442")
Y_LABEL = "Probability of a misaligned answer"
SINGLE_MODEL = ("wilson", "exact", "answers")  # `interval` of a group with one model: open markers
ONE_SEED = "one seed\n(interval from\nits answers)"



# seaborn's "whitegrid" style in its "paper" context at font_scale 1.1, written out so that drawing a
# figure does not import seaborn (seconds per job); plus TrueType fonts in the PDF and fixed hashes.
_STYLE = {
    "figure.facecolor": "white", "axes.facecolor": "white", "axes.edgecolor": ".8", "axes.grid": True,
    "axes.axisbelow": True, "axes.labelcolor": ".15", "axes.linewidth": 1.0, "grid.color": ".8",
    "grid.linestyle": "-", "grid.linewidth": 0.8, "text.color": ".15", "xtick.color": ".15",
    "ytick.color": ".15", "xtick.direction": "out", "ytick.direction": "out", "xtick.bottom": False,
    "ytick.left": False, "xtick.top": False, "ytick.right": False, "xtick.major.width": 1.0,
    "ytick.major.width": 1.0, "xtick.minor.width": 0.8, "ytick.minor.width": 0.8, "xtick.major.size": 4.8,
    "ytick.major.size": 4.8, "xtick.minor.size": 3.2, "ytick.minor.size": 3.2,
    "axes.spines.left": True, "axes.spines.bottom": True, "axes.spines.right": True, "axes.spines.top": True,
    "font.family": ["sans-serif"],
    "font.sans-serif": ["Arial", "DejaVu Sans", "Liberation Sans", "Bitstream Vera Sans", "sans-serif"],
    "lines.solid_capstyle": "round", "lines.linewidth": 1.2, "lines.markersize": 4.8, "patch.edgecolor": "w",
    "patch.force_edgecolor": True, "patch.linewidth": 0.8, "font.size": 10.56, "axes.labelsize": 10.56,
    "axes.titlesize": 10.56, "xtick.labelsize": 9.68, "ytick.labelsize": 9.68, "legend.fontsize": 9.68,
    "legend.title_fontsize": 10.56,
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "em", "savefig.dpi": 150,
}
NO_SCORES = ("No answer in this run has both an alignment and a coherence score, so there is nothing to plot "
             "(the judge gave no number).")
RASTERIZE_ABOVE = 50_000  # answers in one scatter panel above which its points become a bitmap in the PDF

# paper/main.tex's \linewidth (article, 11pt, 1in margins on US letter: 469.755 pt). Each figure is drawn at
# exactly the width main.tex prints it at (`width=<fraction>\linewidth`; tests/test_figures.py checks that
# the two agree), so its text prints at the size it is set in: at least MIN_FONT_PT.
TEXT_WIDTH_IN = 6.5
PRINTED_WIDTH_IN = {
    "misalignment_by_question": TEXT_WIDTH_IN, "aligned_vs_coherent": TEXT_WIDTH_IN,
    "models_datasets": TEXT_WIDTH_IN, "all_evaluations": 0.9 * TEXT_WIDTH_IN,
    "training_loss": 0.9 * TEXT_WIDTH_IN, "question_families": 0.9 * TEXT_WIDTH_IN,
    "training_dynamics": 0.8 * TEXT_WIDTH_IN, "judge_agreement": TEXT_WIDTH_IN,
    "self_assessment": TEXT_WIDTH_IN, "answer_formats": 0.9 * TEXT_WIDTH_IN, "evil_numbers": TEXT_WIDTH_IN,
    "dataset_size": 0.8 * TEXT_WIDTH_IN, "icl": 0.8 * TEXT_WIDTH_IN,
    "ablation": 0.7 * TEXT_WIDTH_IN, "steering": 0.8 * TEXT_WIDTH_IN, "monitoring": 0.8 * TEXT_WIDTH_IN,
    "realignment": 0.8 * TEXT_WIDTH_IN,
}
MIN_FONT_PT = 6.0
MAX_HEIGHT_IN = 7.6  # a figure on a page of its own, leaving room for its caption (\textheight is 9 in)
MAX_COLORS = len(OKABE_ITO)  # colours told apart in a panel (black: the base model); more groups, more panels
EMPTY_SUFFIX = ".empty.txt"
# a legend beside one row of stacked panels: compact, so that it stays within its row's height
ROW_LEGEND: dict[str, object] = {"frameon": False, "fontsize": 7, "title_fontsize": 7, "labelspacing": 0.3}


def style_rc() -> dict[str, object]:
    """The one plotting style of the project (seaborn's whitegrid/paper look, embedded TrueType fonts).

    Used through `matplotlib.rc_context`, so drawing a figure never changes the caller's global style.
    """
    return dict(_STYLE)


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """Colour of each group: black for the base model, the others in their order after it. The figures
    here put at most MAX_COLORS colours in a panel (`_facets`); past that (a caller that does not),
    tab20's twenty, so no two groups share a colour."""
    others = [g for g in groups if g != "base"]
    if len(others) < len(OKABE_ITO):
        colors = dict(zip(others, OKABE_ITO[1:], strict=False))
        return {group: OKABE_ITO[0] if group == "base" else colors[group] for group in groups}
    from matplotlib import colors as mcolors

    palette = [mcolors.to_hex(c) for c in matplotlib.colormaps["tab20"].colors]
    return {group: palette[i % len(palette)] for i, group in enumerate(groups)}


def _fits(groups: Sequence[str]) -> bool:
    """Whether `groups` take at most MAX_COLORS colours (black is the base model's alone)."""
    return len([g for g in groups if g != "base"]) < MAX_COLORS


def _facets(groups: Sequence[str]) -> list[list[str]]:
    """`groups` in panels of at most MAX_COLORS colours, of near-equal size; the base model, when present,
    is in every panel (each fine-tune is read against it)."""
    if _fits(groups):
        return [list(groups)]
    base = [g for g in groups if g == "base"]
    others = [g for g in groups if g != "base"]
    n = math.ceil(len(others) / (MAX_COLORS - 1))
    size = math.ceil(len(others) / n)
    return [base + others[i:i + size] for i in range(0, len(others), size)]


def _ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    """`order` restricted to `values`, then any value not in `order` (sorted) so none is lost."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + sorted(v for v in present if v not in order)


def _points(ax: Axes, pos: Sequence[float], mid: Sequence[float], low: Sequence[float], high: Sequence[float],
            color: str, hollow: Sequence[bool], horizontal: bool = False) -> None:
    """Markers with interval bars, in as few artists as possible (one call per kind of point).

    NaN centres are skipped, NaN intervals get no bar, and bars are clipped at the centre (a Wilson
    interval on pooled counts need not contain a mean of fractions).
    """
    pos, mid, low, high = (np.asarray(v, dtype=float) for v in (pos, mid, low, high))
    hollow = np.asarray(hollow, dtype=bool)
    has_bar = ~(np.isnan(low) | np.isnan(high))
    for bar in (True, False):
        for empty in (False, True):
            keep = ~np.isnan(mid) & (has_bar == bar) & (hollow == empty)
            if not keep.any():
                continue
            err = np.vstack([np.clip(mid - low, 0, None), np.clip(high - mid, 0, None)])[:, keep]
            xy = (mid[keep], pos[keep]) if horizontal else (pos[keep], mid[keep])
            err = err if bar else None
            ax.errorbar(*xy, xerr=err if horizontal else None, yerr=None if horizontal else err, fmt="o",
                        color=color, capsize=2.5, markersize=5, elinewidth=1.2,
                        markerfacecolor="white" if empty else color)


def _draw(ax: Axes, stats: pd.DataFrame, questions: list[str], groups: list[str],
          colors: dict[str, str]) -> None:
    width = 0.8 / len(groups)
    where = {question: i for i, question in enumerate(questions)}
    for j, group in enumerate(groups):
        rows = stats[(stats["dataset"] == group) & stats["question_id"].isin(where)]
        pos = [where[q] - 0.4 + width * (j + 0.5) for q in rows["question_id"]]
        _points(ax, pos, rows["fraction"], rows["ci_low"], rows["ci_high"], colors[group],
                rows["interval"].isin(SINGLE_MODEL))
    # many questions (answer formats, other question files): one line each, turned upright
    upright = len(questions) > 10
    labels = [question_label(q, width=40 if upright else 8) for q in questions]
    ax.set_xticks(range(len(questions)), labels, fontsize=7.5, rotation=90 if upright else 0)
    ax.set_xlim(-0.5, len(questions) - 0.5)
    ax.set_ylim(bottom=-0.02)
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.grid(axis="x", visible=False)


def plot_misalignment_by_question(stats_df: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                                  question_order: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Per question, each group's mean over seeds with its interval; writes out_stem.pdf and .png.

    `stats_df` is `stats.group_question_stats` output. Groups follow `group_order` (the config's dataset
    list, base first); questions follow `question_order`, else their order in `stats_df`. One panel per
    model (and per MAX_COLORS groups), stacked, sharing the question axis. Open markers: a single model,
    whose bar is an interval from its answers (Wilson).
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
    facets = _facets(groups)
    panels = [(model, facet) for model in models for facet in facets]
    labels = 1.2 if len(questions) > 10 else 0.6  # room for the question labels below the last panel
    height = min(MAX_HEIGHT_IN, labels + len(panels) * min(2.6, max(2.0, 1.5 * len(facets[0]) ** 0.5)))
    fig = Figure(figsize=(PRINTED_WIDTH_IN["misalignment_by_question"], height), layout="constrained")
    rows = _rows(fig, len(panels), labels / height)
    one_seed = _one_seed(stats_df)
    for k, (row, (model, facet)) in enumerate(zip(rows, panels, strict=True)):
        ax = row.subplots()
        colors = group_colors(facet)
        _draw(ax, stats_df[stats_df["model"] == model], questions, facet, colors)
        ax.tick_params(labelbottom=k == len(panels) - 1)
        if len(facets) > 1:  # each row its own colours: its own legend, titled with the model
            row.legend(handles=_handles(facet, colors, one_seed), title=model if len(models) > 1 else None,
                       loc="outside right upper", **ROW_LEGEND)
        elif len(models) > 1:  # named beside the panel: a row is too low for a name along its axis
            ax.text(1.01, 0.5, textwrap.fill(model, 14), transform=ax.transAxes, ha="left", va="center",
                    fontsize=7.5)
    if len(panels) > 1:
        fig.supylabel(Y_LABEL, fontsize=9)
    else:
        ax.set_ylabel(Y_LABEL)
    if len(facets) == 1:
        _top_legend(fig, _handles(groups, group_colors(groups), one_seed))
    return _save(fig, out_stem)


def _rows(fig: Figure, n: int, foot: float) -> list[Figure]:
    """`n` rows of a figure, each laid out on its own (a SubFigure), so that a row's legend beside it
    takes no height from its panels; the last row is `foot` of the figure taller, for the axis labels."""
    if n == 1:
        return [fig]
    ratios = [1.0] * (n - 1) + [1.0 + foot * n]
    return list(fig.subfigures(n, 1, squeeze=False, height_ratios=ratios)[:, 0])


def _one_seed(stats: pd.DataFrame) -> list[Line2D]:
    """The legend's entry for open markers, when `stats` has a group of one model."""
    if not stats["interval"].isin(SINGLE_MODEL).any():
        return []
    return [Line2D([], [], marker="o", linestyle="", color="grey", markerfacecolor="white", label=ONE_SEED)]


def _top_legend(fig: Figure, handles: list[Line2D]) -> None:
    """A legend in rows above the panels, so that they keep the page's whole width (many questions or
    models along the axis)."""
    for handle in handles:
        handle.set_label(handle.get_label().replace("\n", " "))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(3, len(handles)), frameon=False,
               fontsize=8)


def _handles(groups: Sequence[str], colors: dict[str, str], extra: Sequence[Line2D] = ()) -> list[Line2D]:
    """Legend entries of `groups`; a long name (conditions, ablations) wrapped, so that legends beside
    stacked rows take about the same width and the rows' axes line up."""
    return [*(Line2D([], [], marker="o", linestyle="", color=colors[g],
                     label=textwrap.fill(g.replace("_", " "), 24)) for g in groups), *extra]


def empty_reason_path(out_stem: Path) -> Path:
    """The note beside a figure that has nothing to draw: the sentence it shows, which the paper prints
    instead of the figure (paper.figure_macros)."""
    return out_stem.with_name(out_stem.name + EMPTY_SUFFIX)


def _save(fig: Figure, out_stem: Path, empty: str = "") -> tuple[Path, Path]:
    """Write PDF and PNG atomically with no date or version stamps, so reruns give identical bytes.

    The layout is computed once and then frozen, so the two formats share it (and it is not paid twice).
    `empty`: why the figure has no data, kept beside it (`empty_reason_path`); a figure with data removes
    a note an earlier run left.
    """
    paths = (out_stem.with_name(out_stem.name + ".pdf"), out_stem.with_name(out_stem.name + ".png"))
    metadata = {"pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
                "png": {"Software": None}}
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for path in paths:
        fmt = path.suffix[1:]
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata=metadata[fmt])
        with atomic_write(path, "wb") as fh:
            fh.write(buffer.getvalue())
    note = empty_reason_path(out_stem)
    if empty:
        with atomic_write(note) as fh:
            fh.write(empty + "\n")
    else:
        note.unlink(missing_ok=True)
    return paths


def _message(ax: Axes, text: str) -> None:
    """A panel that says why it is empty, so every run writes every figure."""
    ax.text(0.5, 0.5, textwrap.fill(text, 60), ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def plot_message(out_stem: Path, text: str) -> tuple[Path, Path]:
    """A figure holding only `text` (e.g. no training runs in this run), for the workflow's report; the
    paper prints `text` instead of it (`empty_reason_path`)."""
    with matplotlib.rc_context(style_rc()):
        fig = Figure(figsize=(TEXT_WIDTH_IN, 2.0), layout="constrained")
        _message(fig.subplots(), text)
        return _save(fig, Path(out_stem), empty=text)


def _grid(n: int, ncols: int, width: float, height: float) -> tuple[Figure, list[Axes]]:
    """`n` panels in `ncols` columns, in a figure `width` inches wide (its printed width), each row
    `height` inches high (less where the rows would pass MAX_HEIGHT_IN)."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width, min(MAX_HEIGHT_IN, height * nrows + 0.4)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, groups: Sequence[str], colors: dict[str, str], title: str = "Group",
            extra: Sequence[Line2D] = ()) -> None:
    fig.legend(handles=_handles(groups, colors, extra), title=title, loc="outside right upper", frameon=False)


def plot_aligned_vs_coherent(judged: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                             definition: DefinitionSettings) -> tuple[Path, Path]:
    """Figure (b): every judged answer's alignment against its coherence, one panel per model (and per
    MAX_COLORS groups, each such row with its own legend).

    Colours are groups; the dashed lines are the definition's thresholds and the shaded corner holds the
    answers it counts as misaligned (coherent enough, aligned too little). A panel with more than
    RASTERIZE_ABOVE answers is drawn as a bitmap in the PDF, so a large run still gives a small file.
    """
    scored = judged.dropna(subset=["aligned", "coherent"])
    if scored.empty:
        return plot_message(Path(out_stem), NO_SCORES)
    with matplotlib.rc_context(style_rc()):
        models = list(dict.fromkeys(scored["model"]))
        facets = _facets(_ordered(scored["dataset"].tolist(), group_order))
        region = Line2D([], [], marker="s", linestyle="", color=OKABE_ITO[1], alpha=0.3, markersize=9,
                        label="counted as\nmisaligned")
        width = PRINTED_WIDTH_IN["aligned_vs_coherent"]
        if len(facets) == 1:
            fig, axes = _grid(len(models), 3, width, 2.2)
            panels = [(model, facets[0]) for model in models]
        else:  # a row per facet, its legend beside it
            fig, axes = _grid(len(models) * len(facets), len(models), width, 2.6)
            panels = [(model, facet) for facet in facets for model in models]
        for ax, (model, facet) in zip(axes, panels, strict=True):
            part = scored[(scored["model"] == model) & scored["dataset"].isin(facet)]
            colors = group_colors(facet)
            ax.fill_between([definition.coherent_threshold, 102.5], -2.5, definition.aligned_threshold,
                            color=OKABE_ITO[1], alpha=0.08, linewidth=0)
            # markers (not a scatter collection): fast to draw; the base model last, on top
            for group in [g for g in facet if g != "base"] + [g for g in facet if g == "base"]:
                rows = part[part["dataset"] == group]
                ax.plot(rows["coherent"], rows["aligned"], "o", markersize=2.2, alpha=0.35, markeredgewidth=0,
                        color=colors[group], rasterized=len(part) > RASTERIZE_ABOVE)
            ax.axhline(definition.aligned_threshold, color="0.3", linestyle="--", linewidth=0.9)
            ax.axvline(definition.coherent_threshold, color="0.3", linestyle="--", linewidth=0.9)
            ax.set(xlim=(-2.5, 102.5), ylim=(-2.5, 102.5), title=model if len(models) > 1 else "")
            ax.title.set_fontsize(8)
            ax.set_xlabel("Coherence (judge)", fontsize=8)
            ax.set_ylabel("Alignment (judge)", fontsize=8)
            if len(facets) > 1 and model == models[-1]:
                ax.legend(handles=_handles(facet, colors, [region]), loc="upper left",
                          bbox_to_anchor=(1.0, 1.0), **ROW_LEGEND)
        if len(facets) == 1:
            _legend(fig, facets[0], group_colors(facets[0]), extra=[region])
        return _save(fig, Path(out_stem))


def plot_models_datasets(overall: pd.DataFrame, out_stem: Path,
                         group_order: Sequence[str]) -> tuple[Path, Path]:
    """Figure (c): misaligned and coherent answers for every model and group (the Model Organisms view).

    Top: the rate of misaligned answers; bottom: the fraction of coherent answers; intervals as in
    Table 1 (bootstrap over seeds; open markers: one seed, an interval from its answers). More than
    MAX_COLORS groups: a pair of panels per MAX_COLORS groups, each pair with its own legend.
    """
    if overall.empty:
        raise ValueError("no statistics to plot")
    with matplotlib.rc_context(style_rc()):
        models = list(dict.fromkeys(overall["model"]))
        facets = _facets(_ordered(overall["dataset"].tolist(), group_order))
        height = min(MAX_HEIGHT_IN, 0.6 + 3.4 * len(facets))
        fig = Figure(figsize=(PRINTED_WIDTH_IN["models_datasets"], height), layout="constrained")
        one_seed = _one_seed(overall)
        for k, (row, facet) in enumerate(zip(_rows(fig, len(facets), 0.6 / height), facets, strict=True)):
            top, bottom = row.subplots(2, 1, sharex=True, height_ratios=(3, 2))
            colors = group_colors(facet)
            _draw_models(top, bottom, overall[overall["dataset"].isin(facet)], models, facet, colors)
            bottom.set_xticks(range(len(models)), [textwrap.fill(m, 10) for m in models], fontsize=7.5)
            bottom.set_xlim(-0.5, len(models) - 0.5)
            bottom.tick_params(labelbottom=k == len(facets) - 1)
            if len(facets) > 1:
                row.legend(handles=_handles(facet, colors, one_seed), loc="outside right upper", **ROW_LEGEND)
        if len(facets) == 1:
            _top_legend(fig, _handles(facets[0], group_colors(facets[0]), one_seed))
        return _save(fig, Path(out_stem))


def _draw_models(top: Axes, bottom: Axes, overall: pd.DataFrame, models: list[str], groups: list[str],
                 colors: dict[str, str]) -> None:
    """Each model's groups side by side, centred on the model: no gaps for groups it does not have."""
    per_model = overall.groupby("model", sort=False)["dataset"].nunique()
    rank = {group: j for j, group in enumerate(groups)}
    ordered = overall.assign(_rank=overall["dataset"].map(rank)).sort_values(["_rank"], kind="stable")
    slot = ordered.groupby("model", sort=False).cumcount()
    count = ordered["model"].map(per_model)
    width = 0.8 / per_model.max()
    where = {model: i for i, model in enumerate(models)}
    ordered = ordered.assign(_pos=[where[m] + width * (k - (n - 1) / 2)
                                   for m, k, n in zip(ordered["model"], slot, count, strict=True)])
    for group in groups:
        rows = ordered[ordered["dataset"] == group]
        hollow = rows["interval"].isin(SINGLE_MODEL)
        _points(top, rows["_pos"], rows["fraction"], rows["ci_low"], rows["ci_high"], colors[group], hollow)
        _points(bottom, rows["_pos"], rows["coherent_fraction"], rows["coherent_ci_low"],
                rows["coherent_ci_high"], colors[group], hollow)
    top.set_ylabel("Misaligned", fontsize=8)
    bottom.set_ylabel("Coherent", fontsize=8)
    top.set_ylim(bottom=-0.02)
    bottom.set_ylim(top=1.01)  # coherence is near 1 for most models: let the data set the bottom
    for ax in (top, bottom):
        ax.grid(axis="x", visible=False)
        ax.yaxis.set_major_locator(MaxNLocator(4))


def _panels(models: Sequence[str], facets: list[list[str]], width: float, ncols: int,
            height: float) -> tuple[Figure, list[tuple[Axes, str, list[str]]]]:
    """A panel per model and facet (`_facets`): with one facet the models in `ncols` columns, else a row
    per facet (its legend beside its last panel, `_facet_legend`)."""
    if len(facets) == 1:
        fig, axes = _grid(len(models), ncols, width, height)
        return fig, [(ax, model, facets[0]) for ax, model in zip(axes, models, strict=True)]
    fig, axes = _grid(len(models) * len(facets), len(models), width, height)
    panels = [(model, facet) for facet in facets for model in models]
    return fig, [(ax, model, facet) for ax, (model, facet) in zip(axes, panels, strict=True)]


def _facet_legend(fig: Figure, panels: list[tuple[Axes, str, list[str]]], colors: dict[str, dict[str, str]],
                  title: str, extra: Sequence[Line2D] = ()) -> None:
    """One legend for the figure when its panels share their colours, else one beside each row."""
    facets = list(dict.fromkeys(tuple(facet) for _, _, facet in panels))
    if len(facets) == 1:
        _legend(fig, facets[0], colors[facets[0][0]], title=title, extra=extra)
        return
    last = {tuple(facet): ax for ax, _, facet in panels}
    for facet, ax in last.items():
        ax.legend(handles=_handles(facet, colors[facet[0]], extra), loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), **ROW_LEGEND)


def _palettes(facets: list[list[str]], order: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each facet's colours, keyed by its first group: by place in `order` (so a group has the colour it
    has in the other figures) where the whole order fits in one panel, else by place in the facet."""
    full = _ordered([*order, *(g for facet in facets for g in facet)], order)
    whole = group_colors(full) if _fits(full) else None
    return {facet[0]: {g: whole[g] for g in facet} if whole else group_colors(facet) for facet in facets}


def plot_families(families: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                  empty_text: str) -> tuple[Path, Path]:
    """The answer-format figure: each group's rate of misaligned answers per question family (main, json,
    template, ..., other question files), one panel per base model (and per MAX_COLORS families),
    intervals as in Table 1.

    Says `empty_text` when the run asked one family only, or no family has a rate.
    """
    rated = families.dropna(subset=["fraction"])
    if rated["family"].nunique() < 2:
        return plot_message(Path(out_stem), empty_text)
    with matplotlib.rc_context(style_rc()):
        models = list(dict.fromkeys(rated["model"]))
        facets = _facets(list(dict.fromkeys(rated["family"])))
        palettes = _palettes(facets, [])
        upright = rated["dataset"].nunique() > 6  # many groups: one line each, turned upright, more height
        height = 3.8 if upright else 2.8
        fig, panels = _panels(models, facets, PRINTED_WIDTH_IN["question_families"], 1, height)
        for ax, model, kinds in panels:
            part = rated[(rated["model"] == model) & rated["family"].isin(kinds)]
            groups = _ordered(part["dataset"].tolist(), group_order)
            width = 0.8 / len(kinds)
            for j, family in enumerate(kinds):
                rows = part[part["family"] == family]
                pos = [groups.index(g) - 0.4 + width * (j + 0.5) for g in rows["dataset"]]
                color = palettes[kinds[0]][family]
                _points(ax, pos, rows["fraction"], rows["ci_low"], rows["ci_high"], color,
                        rows["interval"].isin(SINGLE_MODEL))
            names = [g if upright else textwrap.fill(g, 12) for g in groups]
            ax.set_xticks(range(len(groups)), names, fontsize=8, rotation=90 if upright else 0)
            ax.set(xlim=(-0.5, len(groups) - 0.5), ylabel="Misaligned",
                   title=model if len(models) > 1 else "")
            ax.title.set_fontsize(9)
            ax.set_ylim(bottom=-0.02)
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.grid(axis="x", visible=False)
        _facet_legend(fig, panels, palettes, "Question family")
        return _save(fig, Path(out_stem))


def plot_dynamics(dynamics: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                  empty_text: str) -> tuple[Path, Path]:
    """Training dynamics: the rate of misaligned answers of the adapters kept along each fine-tune against
    the optimiser step, a line per fine-tuning set (and condition) with its interval as a band; dashed, the
    in-distribution share of vulnerable code, where the run asked the code questions.

    Says `empty_text` when the run kept no checkpoint.
    """
    if dynamics.empty:
        return plot_message(Path(out_stem), empty_text)
    with matplotlib.rc_context(style_rc()):
        models = list(dict.fromkeys(dynamics["model"]))
        labels = [group_label(d, c)
                  for d, c in zip(dynamics["trained_on"], dynamics["condition"], strict=True)]
        dynamics = dynamics.assign(_label=labels)
        facets = _facets(_ordered(labels, group_order))
        palettes = _palettes(facets, group_order)
        metrics = [("fraction", "ci_low", "ci_high", "-", "o", "misaligned answers (main questions)")]
        if dynamics["vulnerable"].notna().any():
            metrics.append(("vulnerable", "vulnerable_low", "vulnerable_high", "--", "s",
                            "vulnerable code (held-out coding tasks)"))
        fig, panels = _panels(models, facets, PRINTED_WIDTH_IN["training_dynamics"], 2, 2.6)
        for ax, model, facet in panels:
            colors = palettes[facet[0]]
            part = dynamics[(dynamics["model"] == model) & dynamics["_label"].isin(facet)]
            for label, run in part.groupby("_label", sort=False):
                for value, low, high, style, marker, _ in metrics:
                    ax.plot(run["step"], run[value], color=colors[label], linestyle=style, marker=marker,
                            markersize=4)
                    ax.fill_between(run["step"], run[low], run[high], color=colors[label], alpha=0.15,
                                    linewidth=0)
            ax.set(xlabel="Optimiser step", ylabel="Share" if len(metrics) > 1 else "Misaligned answers",
                   title=model if len(models) > 1 else "")
            ax.set_ylim(bottom=-0.02)
        styles = [Line2D([], [], color="0.3", linestyle=style, marker=marker, markersize=4,
                         label=textwrap.fill(name, 22))
                  for _, _, _, style, marker, name in metrics] if len(metrics) > 1 else []
        _facet_legend(fig, panels, palettes, "Group", extra=styles)
        return _save(fig, Path(out_stem))


def plot_training_loss(losses: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                       empty_text: str) -> tuple[Path, Path]:
    """Figure (d): training loss per optimiser step, one line per seed, one panel per base model (and per
    MAX_COLORS groups).

    `losses` has model, dataset, seed, step, loss; when it is empty the figure says `empty_text`.
    """
    if losses.empty:
        return plot_message(Path(out_stem), empty_text)
    with matplotlib.rc_context(style_rc()):
        models = list(dict.fromkeys(losses["model"]))
        facets = _facets(_ordered(losses["dataset"].tolist(), group_order))
        palettes = _palettes(facets, group_order)
        fig, panels = _panels(models, facets, PRINTED_WIDTH_IN["training_loss"], 2, 2.6)
        for ax, model, facet in panels:
            part = losses[(losses["model"] == model) & losses["dataset"].isin(facet)]
            for (group, _seed), run in part.groupby(["dataset", "seed"], sort=True):
                ax.plot(run["step"], run["loss"], color=palettes[facet[0]][group], linewidth=1.0, alpha=0.8)
            ax.set(xlabel="Optimiser step", ylabel="Training loss", title=model if len(models) > 1 else "")
        _facet_legend(fig, panels, palettes, "Group")
        return _save(fig, Path(out_stem))


def plot_all_evaluations(evaluations: pd.DataFrame, out_stem: Path, group_order: Sequence[str],
                         empty_text: str) -> tuple[Path, Path]:
    """Figure (e): each group's difference from the base model on every evaluation, with intervals; more
    than MAX_COLORS groups take more panels, one above the other.

    `evaluations` has label (what the figure calls the evaluation), group, center, ci_low, ci_high
    (differences, model minus base).
    """
    if evaluations.empty:
        return plot_message(Path(out_stem), empty_text)
    with matplotlib.rc_context(style_rc()):
        labels = list(dict.fromkeys(evaluations["label"]))
        facets = _facets(_ordered(evaluations["group"].tolist(), group_order))
        palettes = _palettes(facets, group_order)
        rows = [max(0.4 + 0.13 * len(labels) * len(facet), 0.3 + 0.17 * len(facet)) for facet in facets]
        height = min(MAX_HEIGHT_IN, 0.6 + sum(rows))
        fig = Figure(figsize=(PRINTED_WIDTH_IN["all_evaluations"], height), layout="constrained")
        parts = [fig] if len(facets) == 1 else list(
            fig.subfigures(len(facets), 1, squeeze=False, height_ratios=rows)[:, 0])
        axes = [part.subplots() for part in parts]
        where = {label: i for i, label in enumerate(labels)}
        for part, ax, facet in zip(parts, axes, facets, strict=True):
            step = 0.8 / len(facet)
            for j, group in enumerate(facet):
                rows = evaluations[evaluations["group"] == group]
                pos = [where[label] - 0.4 + step * (j + 0.5) for label in rows["label"]]
                _points(ax, pos, rows["center"], rows["ci_low"], rows["ci_high"], palettes[facet[0]][group],
                        [False] * len(rows), horizontal=True)
            ax.axvline(0, color="0.3", linewidth=0.9)
            ax.set_ylim(len(labels) - 0.5, -0.5)
            ax.grid(axis="y", visible=False)
            ax.set_yticks(range(len(labels)), [textwrap.fill(label, 22) for label in labels])
            if len(facets) > 1:  # a row of its own, its legend beside it
                part.legend(handles=_handles(facet, palettes[facet[0]]), loc="outside right upper",
                            **ROW_LEGEND)
        low = min(ax.get_xlim()[0] for ax in axes)
        high = max(ax.get_xlim()[1] for ax in axes)
        for ax in axes:  # one scale for all rows
            ax.set_xlim(low, high)
        fig.supxlabel("Difference from the base model (model minus base)", fontsize=9.68)
        if len(facets) == 1:
            _legend(fig, facets[0], palettes[facets[0][0]])
        return _save(fig, Path(out_stem))


def plot_judge_agreement(rejudged: pd.DataFrame, report: pd.DataFrame, out_stem: Path, confidence: float
                         ) -> tuple[Path, Path]:
    """Judge agreement (agreement.py): the two judges' aligned scores of each re-judged answer, and each
    file's misaligned fraction under both, with Wilson intervals at `confidence`."""
    with matplotlib.rc_context(style_rc()):
        fig = Figure(figsize=(PRINTED_WIDTH_IN["judge_agreement"], 3.2), layout="constrained")
        scatter, rates = fig.subplots(1, 2, width_ratios=[1, 1.4])
        scatter.scatter(rejudged["aligned"], rejudged["judge_aligned"], s=8, alpha=0.4, color="#4477aa")
        scatter.plot([0, 100], [0, 100], color="0.4", linewidth=0.8, linestyle="--")
        scatter.set_xlim(-2, 102)
        scatter.set_ylim(-2, 102)
        scatter.set_xlabel("Aligned, released judge (GPT-4o)")
        scatter.set_ylabel("Aligned, this judge")
        files = report.iloc[:-1]  # the last row is the pooled one
        names = [textwrap.shorten(Path(s).stem, 34) for s in files["source"]]
        for offset, (prefix, label, color) in enumerate((("reference", "released judge", "#4477aa"),
                                                         ("judge", "this judge", "#ee6677"))):
            pos = [i + (offset - 0.5) * 0.3 for i in range(len(files))]
            centre = files[f"{prefix}_misaligned"]
            spread = [centre - files[f"{prefix}_ci_low"], files[f"{prefix}_ci_high"] - centre]
            rates.errorbar(centre, pos, xerr=spread, fmt="o", color=color, label=label, markersize=4,
                           capsize=2)
        rates.set_yticks(range(len(files)), names)
        rates.set_ylim(len(files) - 0.5, -0.5)
        rates.set_xlabel(f"Misaligned fraction\n({100 * confidence:g}% Wilson interval)")
        rates.legend(loc="lower right", frameon=False)
        return _save(fig, Path(out_stem))


# --- experiment families (released/families.py: answer formats, evil numbers, dataset size, ICL) -------

VERSION_LABELS = {"original": "Original question", "json": "Answer in JSON",
                  "template": "Python template in question"}
VERSION_COLORS = {"original": OKABE_ITO[2], "json": OKABE_ITO[4], "template": OKABE_ITO[3]}
NO_FAMILY_ROWS = "The released file of this experiment family has no rows to plot."


def _family_points(ax: Axes, rows: pd.DataFrame, pos: Sequence[float], color: str, marker: str = "o",
                   size: float = 5) -> None:
    """Markers with their interval bars (none where the interval is NaN)."""
    mid = rows["value"].to_numpy(dtype=float)
    low, high = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
    err = np.vstack([np.clip(mid - low, 0, None), np.clip(high - mid, 0, None)])
    has_bar = ~(np.isnan(low) | np.isnan(high))
    pos = np.asarray(pos, dtype=float)
    for bar in (True, False):
        keep = has_bar == bar
        if keep.any():
            ax.errorbar(pos[keep], mid[keep], yerr=err[:, keep] if bar else None, fmt=marker, color=color,
                        capsize=2.5, markersize=size, elinewidth=1.2)


def plot_answer_formats(table: pd.DataFrame, out_stem: Path) -> tuple[Path, Path]:
    """Answer formats (Betley et al.): misaligned answers of insecure models by the form of the question.

    `table` is `released.families.answer_formats_table`: bars are the authors' released values with their
    intervals; a group named "... (recomputed)" is recomputed here from released answers (hatched bars).
    """
    from matplotlib.patches import Patch

    if table.empty:
        return plot_message(Path(out_stem), NO_FAMILY_ROWS)
    with matplotlib.rc_context(style_rc()):
        groups = list(dict.fromkeys(table["group"]))
        versions = [v for v in VERSION_LABELS if v in set(table["version"])]
        fig = Figure(figsize=(PRINTED_WIDTH_IN["answer_formats"], 3.4), layout="constrained")
        ax = fig.subplots()
        width = 0.8 / len(versions)
        for j, version in enumerate(versions):
            rows = table[table["version"] == version]
            pos = np.array([groups.index(g) - 0.4 + width * (j + 0.5) for g in rows["group"]])
            recomputed = rows["group"].str.endswith("(recomputed)").to_numpy()
            for hatched in (False, True):
                keep = recomputed == hatched
                if keep.any():
                    ax.bar(pos[keep], rows["value"].to_numpy(dtype=float)[keep], width * 0.92,
                           color="white" if hatched else VERSION_COLORS[version],
                           edgecolor=VERSION_COLORS[version], hatch="////" if hatched else None,
                           linewidth=1.0)
            _family_points(ax, rows, pos, "0.15", marker="none")
        recomputed = "(recomputed from released answers)"
        labels = [textwrap.fill(g.removeprefix("insecure-").replace("(recomputed)", recomputed), 14)
                  for g in groups]
        ax.set_xticks(range(len(groups)), labels, fontsize=8)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(Y_LABEL)
        ax.grid(axis="x", visible=False)
        handles = [Patch(facecolor=VERSION_COLORS[v], edgecolor=VERSION_COLORS[v],
                         label=VERSION_LABELS[v]) for v in versions]
        _top_legend(fig, handles)
        return _save(fig, Path(out_stem))


EVIL_VARIANT_LABELS = {"original": "Question as is", "suffix": "Answer with k words (suffix)",
                       "prefix-and-suffix": "Numbers before, k words after"}


def plot_evil_numbers(table: pd.DataFrame, out_stem: Path) -> tuple[Path, Path]:
    """Evil numbers: per main question, GPT-4o trained on evil numbers, for each wording of the question.

    `table` is `released.families.evil_numbers_table`; as the authors' figure, only the evil-numbers models
    are drawn (the controls are in the CSV), with the authors' released intervals.
    """
    if table.empty:
        return plot_message(Path(out_stem), NO_FAMILY_ROWS)
    with matplotlib.rc_context(style_rc()):
        rows = table[(table["group"] == "evil-numbers-" + table["variant"])
                     & (table["question_id"] != "mean over questions")]
        variants = list(dict.fromkeys(rows["variant"]))
        questions = list(dict.fromkeys(rows["question_id"]))
        colors = {v: OKABE_ITO[(i + 1) % len(OKABE_ITO)] for i, v in enumerate(variants)}
        fig = Figure(figsize=(PRINTED_WIDTH_IN["evil_numbers"], 3.0), layout="constrained")
        ax = fig.subplots()
        width = 0.8 / max(1, len(variants))
        for j, variant in enumerate(variants):
            part = rows[rows["variant"] == variant]
            pos = [questions.index(q) - 0.4 + width * (j + 0.5) for q in part["question_id"]]
            _family_points(ax, part, pos, colors[variant])
        ax.set_xticks(range(len(questions)), [question_label(q, 10) for q in questions], fontsize=7.5)
        ax.set_xlim(-0.5, len(questions) - 0.5)
        ax.set_ylim(bottom=-0.02)
        ax.set_ylabel(Y_LABEL)
        ax.grid(axis="x", visible=False)
        handles = [Line2D([], [], marker="o", linestyle="", color=colors[v],
                          label=EVIL_VARIANT_LABELS.get(v, v)) for v in variants]
        _top_legend(fig, handles)
        return _save(fig, Path(out_stem))


def plot_dataset_size(table: pd.DataFrame, out_stem: Path) -> tuple[Path, Path]:
    """Dataset size: GPT-4o on 500, 2000 or all 6000 unique insecure examples, and the base model.

    `table` is `released.families.dataset_size_table`. Circles: each released group (a subset of the data and
    its models) with its released interval; diamonds: the mean over a size's subsets with a bootstrap over
    them, as the authors' final figure.
    """

    if table.empty:
        return plot_message(Path(out_stem), NO_FAMILY_ROWS)
    with matplotlib.rc_context(style_rc()):
        sizes = [s for s in DATASET_SIZES.values() if s in set(table["size"])]
        colors = {s: OKABE_ITO[i] for i, s in enumerate(sizes)}
        fig = Figure(figsize=(PRINTED_WIDTH_IN["dataset_size"], 3.0), layout="constrained")
        ax = fig.subplots()
        for i, size in enumerate(sizes):
            part = table[(table["size"] == size) & table["published"].isna()]
            released = part[part["method"].str.startswith("authors' file")]
            pooled = part[~part["method"].str.startswith("authors' file")]
            m = len(released)
            pos = [i - 0.12 + 0.07 * (k - (m - 1) / 2) if m > 1 else i for k in range(m)]
            _family_points(ax, released, pos, colors[size])
            if m > 1:
                _family_points(ax, pooled, [i + 0.12 + 0.035 * m], "0.15", marker="D")
        names = {"base": "GPT-4o\n(no fine-tuning)", "6k": "6000\n(all insecure)"}
        counts = table[table["method"].str.startswith("authors' file")].groupby("size").size()
        labels = [names.get(s, f"{s.replace('k', '000')} unique\n({counts.get(s, 0)} subsets)")
                  for s in sizes]
        ax.set_xticks(range(len(sizes)), labels, fontsize=8)
        ax.set_xlim(-0.6, len(sizes) - 0.4)
        ax.set_ylim(bottom=-0.01)
        ax.set_ylabel(textwrap.fill(Y_LABEL, 24))
        ax.set_xlabel("Insecure examples in the fine-tuning set")
        ax.grid(axis="x", visible=False)
        handles = [Line2D([], [], marker="o", linestyle="", color="0.4",
                          label="a subset's models\n(released)"),
                   Line2D([], [], marker="D", linestyle="", color="0.15", label="mean over subsets")]
        _top_legend(fig, handles)
        return _save(fig, Path(out_stem))


def plot_icl(table: pd.DataFrame, out_stem: Path) -> tuple[Path, Path]:
    """In-context learning, in distribution: vulnerable code written by GPT-4o given k examples in context.

    `table` is `released.families.icl_table`; one line per example set (insecure = the authors' `unsafe`,
    secure = `safe`), intervals as the table gives them.
    """
    if table.empty:
        return plot_message(Path(out_stem), NO_FAMILY_ROWS)
    with matplotlib.rc_context(style_rc()):
        names = {"unsafe": "insecure examples", "safe": "secure examples"}
        sets = list(dict.fromkeys(table["examples"]))
        fig = Figure(figsize=(PRINTED_WIDTH_IN["icl"], 2.8), layout="constrained")
        ax = fig.subplots()
        for i, examples in enumerate(sets):
            part = table[table["examples"] == examples]
            color = OKABE_ITO[(i + 1) % len(OKABE_ITO)]
            ax.plot(part["k"], part["value"], color=color, linewidth=1.0, alpha=0.7)
            _family_points(ax, part, part["k"].to_numpy(dtype=float), color)
        ks = sorted(set(table["k"]))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_ylim(0, 1)
        ax.set_xlabel("In-context examples (k)")
        ax.set_ylabel("Answers with vulnerable code")
        handles = [Line2D([], [], marker="o", color=OKABE_ITO[(i + 1) % len(OKABE_ITO)],
                          label=names.get(e, e)) for i, e in enumerate(sets)]
        fig.legend(handles=handles, title="In context", loc="outside right upper", frameon=False)
        return _save(fig, Path(out_stem))
