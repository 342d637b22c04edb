"""LaTeX tables of the paper, built as strings from the statistics tables."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .io import atomic_write

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(char) for char in _LATEX_SPECIAL))


def latex_escape(text: object) -> str:
    """`text` as LaTeX source that prints it literally (dataset names have underscores)."""
    escaped = _LATEX_PATTERN.sub(lambda match: _LATEX_SPECIAL[match.group()], str(text))
    return escaped.replace("--", "-{}-").replace("--", "-{}-")  # no en/em-dash ligatures (`--cores`)


def format_percent(fraction: float) -> str:
    """A fraction as a percentage: one decimal, two below 1% (so 0.59% does not read as 0.6%)."""
    if fraction is None or math.isnan(fraction):
        return "--"
    percent = 100 * fraction
    return f"{percent:.2f}" if abs(percent) < 1 else f"{percent:.1f}"


def order_groups(df: pd.DataFrame, group_order: Sequence[str] | None) -> pd.DataFrame:
    """Rows by model (first appearance), then by dataset in `group_order`; unlisted datasets last."""
    order = {name: i for i, name in enumerate(group_order or [])}
    models = {name: i for i, name in enumerate(dict.fromkeys(df["model"]))}
    pairs = zip(df["model"], df["dataset"], strict=True)
    keys = [(models[model], order.get(dataset, len(order)), str(dataset)) for model, dataset in pairs]
    return df.iloc[sorted(range(len(df)), key=keys.__getitem__)]


def rates_table(overall_df: pd.DataFrame, group_order: Sequence[str] | None = None) -> str:
    """A booktabs tabular of `stats.group_overall_stats`: one row per model and group.

    The interval of a group with one model is a Wilson interval on its answers and is marked with a
    dagger; the caption in the paper says so.
    """
    lines = [
        r"\begin{tabular}{llrrlr}",
        r"\toprule",
        r"Model & Group & Seeds & Answers & Misaligned (\%) [95\% CI] & Coherent (\%) \\",
        r"\midrule",
    ]
    for row in order_groups(overall_df, group_order).itertuples(index=False):
        interval = f"[{format_percent(row.ci_low)}, {format_percent(row.ci_high)}]"
        if math.isnan(row.ci_low):
            interval = ""
        elif row.interval == "wilson":
            interval += r"$^\dagger$"
        cells = [latex_escape(row.model), latex_escape(row.dataset), str(row.n_seeds), str(row.n_answers),
                 f"{format_percent(row.fraction)} {interval}".rstrip(), format_percent(row.coherent_fraction)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def write_rates_table(overall_df: pd.DataFrame, path: Path, group_order: Sequence[str] | None = None) -> Path:
    """Write `rates_table` to `path` atomically."""
    with atomic_write(path) as fh:
        fh.write(rates_table(overall_df, group_order))
    return Path(path)
