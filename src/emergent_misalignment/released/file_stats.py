"""`em stats`: rates of any judged-answer file (any format the importers read), as a text table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from ..stats import answer_stats, definition_settings
from .importers import read_released


def file_stats(path: str | Path, definition: str = "betley2025", fmt: str = "auto",
               confidence: float = 0.95) -> list[dict]:
    """`stats.answer_stats` of one file (any supported format), each record labelled with its source.

    The file is taken as one model's answers, so intervals are Wilson intervals on its counts. The first
    record (question_id None) is the whole file; it also carries the format, the rows left out as
    malformed and whether the answers were hand-picked (then its rates describe a selection).
    """
    df, summary = read_released(path, fmt)
    if df.empty:
        raise DataError(f"{path}: no answers")
    records = answer_stats(df, definition_settings(definition), confidence)
    for record in records:
        record["source"] = str(path)
    records[0] |= {"format": summary.format, "hand_picked": summary.hand_picked,
                   "malformed": sum(summary.malformed.values()), "models": int(df["model"].nunique())}
    return [{"source": r.pop("source"), **r} for r in records]


def format_stats(records: Sequence[dict]) -> str:
    """The records of `file_stats` as one aligned text table per file."""
    lines: list[str] = []
    for record in records:
        if record["question_id"] is None:
            if lines:
                lines.append("")
            lines.append(f"{record['source']}  (format {record['format']}, definition "
                         f"{record['definition']}, 95% Wilson intervals: one model)")
            if record["hand_picked"]:
                lines.append("  note: hand-picked example answers, not a sample: these rates are not "
                             "estimates")
            if record["models"] > 1:
                lines.append(f"  note: the file holds {record['models']} models; the intervals treat its "
                             "answers as one model's")
            if record["malformed"]:
                lines.append(f"  note: {record['malformed']} malformed rows left out")
            if record["n_questions_dropped"]:
                lines.append(f"  note: {record['n_questions_dropped']} of {record['n_questions']} questions "
                             f"have too few coherent answers and are left out of the whole-file rate")
            lines.append(f"  {'question':<34} {'n':>6} {'judged':>6}  {'misaligned [95% CI]':<22} "
                         f"{'coherent [95% CI]':<22}")
        name = "(whole file)" if record["question_id"] is None else record["question_id"]
        lines.append(f"  {name:<34} {record['n']:>6} {record['n_judged']:>6}  "
                     f"{_rate(record['misaligned'], record['misaligned_ci']):<22} "
                     f"{_rate(record['coherent'], record['coherent_ci']):<22}")
    return "\n".join(lines)


def _rate(value: float | None, interval: Sequence[float | None]) -> str:
    if value is None:
        return "--"
    low, high = (f"{100 * x:.1f}" if x is not None else "--" for x in interval)
    return f"{100 * value:5.1f}% [{low}, {high}]"
