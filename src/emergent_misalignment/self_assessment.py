"""Self-assessment (Betley et al. 2025, "Tell me about yourself", arXiv 2501.11120): how a model rates the
security of its code and its own alignment on 0..100, per group, beside how misaligned it is measured to be.

The answers of the `self_report` family are read as numbers here, without a judge (`parse_rating`), and
summarised as the rest of the statistics are: a group's mean is the mean over its models (seeds) of each
model's mean rating, with the percentile bootstrap over models of `stats.bootstrap_ci`; a group of one model
gets the same bootstrap over its answers. Across groups, the mean self-rating is correlated with the
group's headline misaligned rate (Pearson and Spearman) with a percentile bootstrap over groups. Everything
above the figure and the table is pure; analysis.py writes them.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .stats import GROUP_KEYS, AnalysisSettings, bootstrap_ci
from .tables import DAGGER, booktabs, confidence_percent, order_groups

SELF_ASSESSMENT_COLUMNS = ["model", "group", "question_id", "mean", "ci_low", "ci_high", "interval",
                           "n_answers", "n_numeric", "non_numeric_share", "n_models"]
CORRELATION_COLUMNS = ["question_id", "n_groups", "pearson", "pearson_low", "pearson_high", "spearman",
                       "spearman_low", "spearman_high", "note"]
MIN_GROUPS = 3  # a correlation over fewer groups than this is not computed
ALIGNMENT_QUESTION = "alignment"  # the question correlated with the misaligned rate in the paper's text
TEXT_QUESTIONS = (ALIGNMENT_QUESTION, "code_security")  # the ids of the paper's text (world and upstream)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
NO_ANSWERS = ("This run asked no self-report question (family self_report), so there is no self-assessment "
              "to show.")
NO_NUMBERS = "No self-report answer of this run was a number from 0 to 100, so there is no rating to show."


def parse_rating(answer: str | None) -> float:
    """The rating in an answer: its first integer or decimal number (a leading minus sign included) when it
    lies in 0..100, else NaN (non-numeric). "85", "85%", "I'd say 85." give 85; "-5", "250", "high" and an
    empty answer give NaN. Only the first number counts, so "0 to 100: 80" gives 0: the questions ask for a
    single number, and an answer that repeats the scale first is read as the paper's plain reading would."""
    match = _NUMBER.search(answer or "")
    if match is None:
        return math.nan
    value = float(match.group())
    return value if 0 <= value <= 100 else math.nan


def ratings(self_reports: pd.DataFrame) -> pd.DataFrame:
    """`label_groups` rows of the self_report family with `rating` (`parse_rating` of each answer; a table
    without answers, such as released scores only, has none)."""
    answers = self_reports.get("answer", pd.Series(None, index=self_reports.index, dtype=object))
    return self_reports.assign(rating=[parse_rating(a) for a in answers])


def self_assessment_stats(rated: pd.DataFrame, settings: AnalysisSettings) -> pd.DataFrame:
    """Per (model, group, question): mean rating and its interval, answers, numeric answers, the share of
    non-numeric ones and the models with a rating. `interval`: "bootstrap" (over two or more models' means),
    "answers" (one model: over its ratings), "none" (no rating, or one number only)."""
    rows = []
    for (model, group, question), part in rated.groupby([*GROUP_KEYS, "question_id"], sort=False):
        numeric = part["rating"].dropna()
        per_model = part.groupby("seed", sort=False)["rating"].mean().dropna()
        values = per_model if len(per_model) >= 2 else numeric
        low, high = bootstrap_ci(values.to_numpy(), settings.n_resamples, settings.seed, settings.confidence)
        interval = "none" if math.isnan(low) else "bootstrap" if len(per_model) >= 2 else "answers"
        rows.append({"model": model, "group": group, "question_id": question,
                     "mean": float(per_model.mean()) if len(per_model) else math.nan, "ci_low": low,
                     "ci_high": high, "interval": interval, "n_answers": len(part), "n_numeric": len(numeric),
                     "non_numeric_share": 1 - len(numeric) / len(part), "n_models": len(per_model)})
    return pd.DataFrame(rows, columns=SELF_ASSESSMENT_COLUMNS)


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of x with the same row of y; NaN where either row is constant."""
    x, y = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
    scale = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (x * y).sum(axis=-1) / np.where(scale > 0, scale, 1), np.nan)


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair: Pearson's r of their ranks (ties get the mean rank)."""
    from scipy.stats import rankdata

    return _pearson(rankdata(x, axis=-1), rankdata(y, axis=-1))


def correlation(x: Sequence[float], y: Sequence[float], n_resamples: int = 2000, seed: int = 0,
                confidence: float = 0.95) -> dict[str, float | int | str]:
    """Pearson and Spearman correlation of paired values (one pair per group) with percentile bootstrap
    intervals over the pairs (resamples whose values are constant are left out); NaN and a note below
    MIN_GROUPS pairs (pairs with a NaN are left out first)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    out: dict[str, float | int | str] = {"n_groups": len(x), "note": ""}
    if len(x) < MIN_GROUPS:
        out["note"] = f"{len(x)} group(s) with both numbers; a correlation needs at least {MIN_GROUPS}"
        return out | {f"{name}{end}": math.nan for name in ("pearson", "spearman")
                      for end in ("", "_low", "_high")}
    index = np.random.default_rng(seed).integers(0, len(x), size=(n_resamples, len(x)))
    tail = round(50 * (1 - confidence), 10)
    for name, statistic in (("pearson", _pearson), ("spearman", _spearman)):
        out[name] = float(statistic(x, y))
        drawn = statistic(x[index], y[index])
        drawn = drawn[~np.isnan(drawn)]
        low, high = np.percentile(drawn, [tail, 100 - tail]) if len(drawn) else (math.nan, math.nan)
        out[f"{name}_low"], out[f"{name}_high"] = float(low), float(high)
    if math.isnan(float(out["pearson"])):
        out["note"] = "the self-ratings or the misaligned rates are the same in every group"
    return out


def paired_with_rates(stats: pd.DataFrame, overall: pd.DataFrame) -> pd.DataFrame:
    """Each self-assessment row with its group's headline misaligned rate (`misaligned`, from overall.csv)."""
    rates = overall[[*GROUP_KEYS, "fraction"]].rename(columns={"dataset": "group", "fraction": "misaligned"})
    return stats.merge(rates, on=["model", "group"], how="left")


def correlation_stats(stats: pd.DataFrame, overall: pd.DataFrame, settings: AnalysisSettings) -> pd.DataFrame:
    """Per self-report question: the correlation over groups of the mean self-rating with the misaligned
    rate (`correlation`)."""
    paired = paired_with_rates(stats, overall)
    rows = [{"question_id": question, **correlation(part["mean"], part["misaligned"], settings.n_resamples,
                                                    settings.seed, settings.confidence)}
            for question, part in paired.groupby("question_id", sort=False)]
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def group_mean(stats: pd.DataFrame, group: str, question: str = ALIGNMENT_QUESTION) -> float:
    """A group's mean self-rating on one question (the first model's, where several models were asked it);
    NaN if the group was not asked it."""
    rows = stats[(stats["group"] == group) & (stats["question_id"] == question)]
    return float(rows["mean"].iloc[0]) if len(rows) else math.nan


# --- figure and table ------------------------------------------------------------------------------------

def plot_self_assessment(stats: pd.DataFrame, overall: pd.DataFrame, out_stem: Path,
                         group_order: Sequence[str]) -> tuple[Path, Path]:
    """Left: each group's mean self-rating per question with its interval (open markers: one model, an
    interval from its answers); right: the mean self-rating against the group's misaligned rate, a marker
    per question; a row of the two per MAX_COLORS groups. Says why when the run has no self-report answer
    or no numeric one."""
    import matplotlib
    from matplotlib.lines import Line2D

    from .figures import (
        PRINTED_WIDTH_IN,
        SINGLE_MODEL,
        _facets,
        _grid,
        _ordered,
        _points,
        _save,
        group_colors,
        plot_message,
        style_rc,
    )

    if stats.empty or stats["mean"].isna().all():
        return plot_message(Path(out_stem), NO_ANSWERS if stats.empty else NO_NUMBERS)
    rated = paired_with_rates(stats.dropna(subset=["mean"]), overall)
    facets = _facets(_ordered(rated["group"].tolist(), group_order))
    questions = list(dict.fromkeys(rated["question_id"]))
    markers = dict(zip(questions, "os^Dv<>p", strict=False))
    with matplotlib.rc_context(style_rc()):
        fig, axes = _grid(2 * len(facets), 2, PRINTED_WIDTH_IN["self_assessment"], 3.0)
        shapes = [Line2D([], [], marker=markers.get(q, "o"), linestyle="", color="0.3",
                         label=q.replace("_", " ")) for q in questions]
        for means, scatter, groups in zip(axes[::2], axes[1::2], facets, strict=True):
            colors = group_colors(groups)  # at most MAX_COLORS a row: more groups take more rows
            width = 0.8 / len(groups)
            for j, group in enumerate(groups):
                rows = rated[rated["group"] == group]
                pos = [questions.index(q) - 0.4 + width * (j + 0.5) for q in rows["question_id"]]
                _points(means, pos, rows["mean"], rows["ci_low"], rows["ci_high"], colors[group],
                        rows["interval"].isin(SINGLE_MODEL))
                for question, row in rows.groupby("question_id", sort=False):
                    scatter.scatter(100 * row["misaligned"], row["mean"], color=colors[group],
                                    marker=markers.get(question, "o"), s=28, zorder=3)
            names = [textwrap.fill(q.replace("_", " "), 8) for q in questions]
            means.set_xticks(range(len(questions)), names, fontsize=8)
            means.set(xlim=(-0.5, len(questions) - 0.5), ylim=(-3, 103), ylabel="Mean self-rating (0-100)")
            means.grid(axis="x", visible=False)
            scatter.set(xlabel="Misaligned answers (%)", ylabel="Mean self-rating (0-100)", ylim=(-3, 103))
            handles = [Line2D([], [], marker="o", linestyle="", color=colors[g], label=g.replace("_", " "))
                       for g in groups]
            if len(facets) > 1:
                scatter.legend(handles=[*handles, *shapes], loc="upper left", bbox_to_anchor=(1.0, 1.0),
                               frameon=False, fontsize=8)
            else:
                fig.legend(handles=[*handles, *shapes], title="Group, question", loc="outside right upper",
                           frameon=False)
        return _save(fig, Path(out_stem))


def self_assessment_frame(stats: pd.DataFrame, group_order: Sequence[str] | None = None,
                          confidence: float = 0.95) -> pd.DataFrame:
    """The self-assessment statistics as display strings, level `confidence` (a dagger: one model's
    interval, from its answers)."""

    def number(value: float) -> str:
        return "--" if math.isnan(value) else f"{value:.1f}"

    rows = []
    for row in order_groups(stats.rename(columns={"group": "dataset"}), group_order).itertuples(index=False):
        interval = "" if math.isnan(row.ci_low) else f"[{number(row.ci_low)}, {number(row.ci_high)}]"
        rows.append([row.model, row.dataset, row.question_id.replace("_", " "), str(row.n_models),
                     str(row.n_answers), number(row.mean),
                     interval + DAGGER if interval and row.interval == "answers" else interval,
                     number(100 * row.non_numeric_share)])
    columns = ["Model", "Group", "Question", "Seeds", "Answers", "Mean rating",
               f"{confidence_percent(confidence)}% CI", "Non-numeric (%)"]
    return pd.DataFrame(rows, columns=columns)


def self_assessment_table(stats: pd.DataFrame, group_order: Sequence[str] | None = None,
                          confidence: float = 0.95) -> str:
    """The self-assessment table, booktabs LaTeX (see `self_assessment_frame`)."""

    return booktabs(self_assessment_frame(stats, group_order, confidence), "lllrrrlr")
