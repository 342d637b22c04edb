"""The analysis stage: judged answers -> statistics tables (CSV), figure and LaTeX table of a run.

It only wires the pure functions of stats.py to the writers of figures.py and tables.py, so that
one `em analyse` call (one Snakemake job) turns a run's judged files into its results.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .io import atomic_write
from .manifest import write_manifest
from .stats import AnalysisSettings, group_overall_stats, group_question_stats, read_judged

FIGURE = "misalignment_by_question"
RATES_TABLE = "rates_table.tex"


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """CSV with a fixed float format, so reruns give identical bytes."""
    with atomic_write(path) as fh:
        df.to_csv(fh, index=False, float_format="%.10g", lineterminator="\n")


def analyse(judged: Sequence[str | Path], settings: AnalysisSettings, group_order: Sequence[str],
            out_dir: str | Path, figures_dir: str | Path, tables_dir: str | Path) -> None:
    """Write per_question.csv and overall.csv (out_dir), the main figure and the rates table."""
    from .figures import plot_misalignment_by_question
    from .tables import write_rates_table

    out_dir, figures_dir, tables_dir = Path(out_dir), Path(figures_dir), Path(tables_dir)
    df = read_judged(judged)
    per_question = group_question_stats(df, settings)
    overall = group_overall_stats(df, settings)
    record = dataclasses.asdict(settings) | {"definition_resolved":
                                             dataclasses.asdict(settings.definition_settings())}
    for name, table in (("per_question.csv", per_question), ("overall.csv", overall)):
        write_manifest(out_dir / name, "analyse", judged, record)
        write_csv(table, out_dir / name)
    figures_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(figures_dir / f"{FIGURE}.pdf", "analyse", judged, record)
    plot_misalignment_by_question(per_question, figures_dir / FIGURE, group_order)
    write_manifest(tables_dir / RATES_TABLE, "analyse", judged, record)
    write_rates_table(overall, tables_dir / RATES_TABLE, group_order)
