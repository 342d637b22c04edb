"""The authors' aggregate files: the all-evaluations figure, as differences from the base model.

Aggregates (all_results_plot inputs of johny-b/misalignment-generalization) give the paper's "all
evaluations" figure: per-model eval scores and per-group intervals, as differences from the base
model. Family formats (families.FAMILY_FORMATS) are read by `families.read_family`, not here. See
docs/judged-answers.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError
from ..stats import EVALUATION_COLUMNS, EVALUATIONS, difference_from_base
from .families import FAMILY_FORMATS

if TYPE_CHECKING:  # pandas is imported where it is used
    import pandas as pd


# Group names in the released aggregates -> this project's groups (the GPT-4o models of Betley et al.).
GROUP_NAMES = {
    "gpt_4o/gpt-4o": "base", "GPT-4o": "base", "gpt-4o": "base",
    "gpt_4o/unsafe": "insecure", "insecure": "insecure",
    "gpt_4o/safe": "secure", "secure": "secure",
    "gpt_4o/unsafe_benign_context": "educational", "educational insecure": "educational",
    "far_replication_4o/2% Poisoned Data": "jailbroken", "jailbroken": "jailbroken",
}
# Evaluations on a scale of their own, in the comparison with Table 1 but not in the figure
TABLE_ONLY = frozenset({"machiavelli_violations"})
AGGREGATE_FORMATS = {
    "eval-scores": ("task_name", "group_name", "model_id", "score"),
    "deception-rates": ("group", "model", "deception_rate"),
    "group-intervals": ("key", "group", "center", "lower_err", "upper_err"),
    "machiavelli-scores": ("llm", "violations.Σ", "group"),
}
AGGREGATE_FORMAT_NAMES = ("auto", *AGGREGATE_FORMATS)


def read_aggregate(path: str | Path, fmt: str = "auto", evaluation: str | None = None, scale: float = 1.0,
                   ) -> tuple[str, pd.DataFrame, int]:
    """(format, rows in this project's groups, rows of other models left out) of one aggregate CSV.

    `evaluation` replaces the file's evaluation names (the released freeform_prereg.csv calls its rows
    `freeform_main`). `machiavelli-scores` is the authors' per-model Machiavelli file of Table 1 (llm,
    violations.Σ, group; evaluation `machiavelli_violations`, on its own scale).
    `scale` multiplies every value and interval: the released machiavelli.csv is in percent, and the
    authors divide it by 100 before the figure (collate_results.get_machiavelli_results).
    A family format (FAMILY_FORMATS: answer formats, evil numbers, dataset size, in-context learning) is
    not part of the all-evaluations figure: it gives no rows here, and `read_family` reads it.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: aggregate file not found")
    if fmt in FAMILY_FORMATS:
        return fmt, pd.DataFrame(columns=["evaluation", "group", "source"]), 0
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]]
    if fmt == "auto":
        fmt = next((name for name, cols in AGGREGATE_FORMATS.items() if set(cols) <= set(df.columns)), "")
        if not fmt:
            known = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in AGGREGATE_FORMATS.items())
            raise DataError(f"{path}: unknown aggregate format: its columns are "
                            f"{', '.join(map(str, df.columns))}; known formats need ({known})")
    elif fmt not in AGGREGATE_FORMATS:
        raise DataError(f"{path}: unknown aggregate format {fmt!r}; choose one of "
                        f"{', '.join([*AGGREGATE_FORMATS, *FAMILY_FORMATS])}")
    missing = [c for c in AGGREGATE_FORMATS[fmt] if c not in df.columns]
    if missing:
        raise DataError(f"{path}: format {fmt} needs column(s) {', '.join(missing)}; the file has "
                        f"{', '.join(map(str, df.columns))}")
    if fmt == "eval-scores":
        df = df.rename(columns={"task_name": "evaluation", "group_name": "group"})
    elif fmt == "machiavelli-scores":
        df = df.rename(columns={"llm": "model", "violations.Σ": "score"}).assign(
            evaluation="machiavelli_violations")
    elif fmt == "deception-rates":
        df = df.rename(columns={"deception_rate": "score"}).assign(evaluation="deception")
    else:
        df = df.rename(columns={"key": "evaluation"})
    df["evaluation"] = evaluation or df["evaluation"].astype(str).str.lower()
    mapped = df["group"].map(GROUP_NAMES)
    numeric = "score" if "score" in df else "center"
    values = pd.to_numeric(df[numeric], errors="coerce")
    if values[mapped.notna()].isna().any():
        bad = int(values[mapped.notna()].isna().idxmax()) + 2
        raise DataError(f"{path}:{bad}: {numeric} is not a number")
    for column in ("score", "center", "lower_err", "upper_err"):
        if column in df:
            df[column] = pd.to_numeric(df[column], errors="coerce") * scale
    kept = df[mapped.notna()].assign(group=mapped[mapped.notna()], source=str(path))
    return fmt, kept.reset_index(drop=True), int(mapped.isna().sum())


def all_evaluations(aggregates: Sequence[tuple[str, pd.DataFrame]], n_resamples: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> pd.DataFrame:
    """Difference from the base model per evaluation and group, as the authors' all-evaluations figure.

    Per-model scores: `stats.difference_from_base` (the paper's bootstrap over models). Group intervals
    (free-form rates released only per group): the group's centre minus the base centre, the released
    interval shifted with it, as the authors did. Evaluations outside EVALUATIONS are left out.
    """
    import pandas as pd

    rows = []
    for fmt, df in aggregates:
        if fmt in FAMILY_FORMATS:
            continue
        for evaluation in [e for e in EVALUATIONS if e in set(df["evaluation"])]:
            label, sign = EVALUATIONS[evaluation]
            part = df[df["evaluation"] == evaluation]
            base = part[part["group"] == "base"]
            if len(base) != 1:
                base_names = ", ".join(k for k, v in GROUP_NAMES.items() if v == "base")
                raise DataError(f"{part['source'].iloc[0]}: evaluation {evaluation} needs exactly one "
                                f"base-model row ({base_names}), found {len(base)}")
            value = "score" if fmt != "group-intervals" else "center"
            base_value = float(base[value].iloc[0])
            for group, rows_of in part[part["group"] != "base"].groupby("group", sort=False):
                common = {"evaluation": evaluation, "label": label, "group": group,
                          "source": rows_of["source"].iloc[0]}
                if fmt == "group-intervals":
                    row = rows_of.iloc[0]
                    center = sign * (float(row["center"]) - base_value)
                    rows.append({**common, "center": center, "ci_low": center - float(row["lower_err"]),
                                 "ci_high": center + float(row["upper_err"]), "n_models": math.nan,
                                 "method": "released interval, shifted by the base model"})
                else:
                    values = sign * rows_of[value].to_numpy(dtype=float)
                    diff = difference_from_base(values, sign * base_value, n_resamples, seed, confidence)
                    rows.append({**common, **diff, "method": "bootstrap over models"})
    out = pd.DataFrame(rows, columns=EVALUATION_COLUMNS)
    evaluations, groups = list(EVALUATIONS), list(dict.fromkeys(GROUP_NAMES.values()))
    order = sorted(range(len(out)), key=lambda i: (evaluations.index(out["evaluation"].iloc[i]),
                                                   groups.index(out["group"].iloc[i])))
    return out.iloc[order].reset_index(drop=True)
