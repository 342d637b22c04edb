"""Released judged answers: importers into one judged-answer table.

Reviewers without a GPU rebuild the analysis from answers others released. Every format below is read
into the same table as the pipeline's judged JSONL, one row per answer:

    column            type                  meaning
    model             str                   the base model (e.g. Qwen2.5-32B-Instruct)
    dataset           str                   the group: fine-tuning dataset, or "base" (no fine-tuning)
    seed              int                   replicate index of the fine-tune (0 for the base model)
    question_id       str                   evaluation question (e.g. quick_buck_json)
    paraphrase_index  int                   which paraphrase was asked (released files: order in which
                                            each question text of a question_id first appears)
    sample_index      int                   answer number within (question_id, paraphrase_index)
    question          str                   the text asked
    answer            str                   the model's answer
    aligned, coherent float 0..100 or None  judge scores; None = missing (empty cell, CODE, REFUSAL)
    <metric>          float 0..100 or None  other judged metrics of the file (financial, medical)
    source            str                   the file the row came from (released files only)

Formats (detected from the columns, or named): `model-organisms` (response, question, question_id,
aligned, coherent, financial), `clarifying-em` (question, answer, question_id, aligned, coherent, some
with medical; column order varies; empty scores), `official-results` (emergent-misalignment's
results/qwen_25_coder_32b_instruct.csv: model, group, ..., judge_aligned, coherent_binary; 70 answers the
authors hand-picked as examples of misalignment, so its rates describe a selection, not a sample) and
`judged-jsonl` (this pipeline's output). A malformed row (wrong number of fields, no question_id, a score
that is not a number) is left out, counted by reason and reported with its line; a score outside 0..100,
an unknown format or a missing column stop the import with the file and what is wrong.

See docs/judged-answers.md.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError
from ..io import write_jsonl
from ..manifest import write_manifest

if TYPE_CHECKING:  # pandas is imported where it is used: `em import-released` runs without it
    import pandas as pd

TABLE_COLUMNS = ["model", "dataset", "seed", "question_id", "paraphrase_index", "sample_index", "question",
                 "answer", "aligned", "coherent"]
SCORES = ("aligned", "coherent")
EXTRA_METRICS = ("financial", "medical")
MISSING_WORDS = frozenset({"", "nan", "none", "null", "code", "refusal"})
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class Format:
    """A released CSV layout: the columns it must have and what they hold."""

    name: str
    required: tuple[str, ...]
    answer_column: str
    labelled: bool = False      # carries its own model and group columns
    hand_picked: bool = False   # a selection of answers, not a sample
    description: str = ""


FORMATS = {
    "official-results": Format(
        "official-results", ("model", "group", "question", "answer", "aligned", "coherent", "question_id"),
        "answer", labelled=True, hand_picked=True,
        description="emergent-misalignment results CSV: answers hand-picked as examples, not a sample"),
    "model-organisms": Format(
        "model-organisms", ("response", "question", "question_id", "aligned", "coherent"), "response",
        description="Model Organisms response CSV (response, question, question_id, aligned, coherent, "
                    "financial)"),
    "clarifying-em": Format(
        "clarifying-em", ("question", "answer", "question_id", "aligned", "coherent"), "answer",
        description="clarifying-EM response CSV (question, answer, question_id, aligned, coherent"
                    "[, medical])"),
}
JSONL_FORMAT = "judged-jsonl"
FORMAT_NAMES = ("auto", *FORMATS, JSONL_FORMAT)


@dataclass
class ImportSummary:
    """What an import read, kept, and left out (and why); written into the output's manifest."""

    source: str
    format: str
    rows: int = 0
    imported: int = 0
    filtered: int = 0
    missing_scores: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    malformed_examples: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    hand_picked: bool = False

    def lines(self) -> list[str]:
        """The summary for people (printed by `em import-released` and `em stats`)."""
        n_bad = sum(self.malformed.values())
        out = [f"{self.source}: format {self.format}, {self.rows} rows, {self.imported} imported, "
               f"{n_bad} malformed, {self.filtered} left out by question_ids"]
        if self.hand_picked:
            out.append(f"  note: {FORMATS[self.format].description}; its rates are not estimates")
        for reason, count in sorted(self.malformed.items()):
            out.append(f"  malformed: {count} x {reason}")
        out += [f"    {example}" for example in self.malformed_examples]
        missing = ", ".join(f"{name} {count}" for name, count in self.missing_scores.items() if count)
        if missing:
            out.append(f"  missing scores (judge gave no number): {missing}")
        if self.ignored_columns:
            out.append(f"  columns not used: {', '.join(self.ignored_columns)}")
        return out


def detect_format(columns: Sequence[str], source: str) -> str:
    """The most specific known format whose required columns are all present; DataError otherwise."""
    present = set(columns)
    for name, fmt in FORMATS.items():  # most specific first
        if present.issuperset(fmt.required):
            return name
    known = "; ".join(f"{name}: {', '.join(fmt.required)}" for name, fmt in FORMATS.items())
    raise DataError(f"{source}: unknown judged-answer format: its columns are "
                    f"{', '.join(columns) or '(none)'}; known formats need ({known})")


def _score(text: str | None) -> tuple[float | None, str | None]:
    """(value, None) for a score cell, value None when missing; (None, problem) when not a number."""
    if text is None or text.strip().lower() in MISSING_WORDS:
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"not a number: {text.strip()[:30]!r}"
    return (None, None) if math.isnan(value) else (value, None)


def parse_rows(rows: Iterable[tuple[int, dict[str, str | None]]], columns: Sequence[str], fmt: str,
               source: str, model: str, group: str, seed: int,
               question_ids: Sequence[str] | None = None) -> tuple[list[dict], ImportSummary]:
    """Judged-table rows from a released CSV's (line, record) pairs; pure, so every rule is testable.

    `model`, `group` and `seed` label every row; for `official-results` the file's own model and group
    columns are used when `model`/`group` are empty.
    """
    spec = FORMATS[fmt]
    missing = [c for c in spec.required if c not in columns]
    if missing:
        raise DataError(f"{source}: format {fmt} needs column(s) {', '.join(missing)}; the file has "
                        f"{', '.join(columns)}")
    metrics = [*SCORES, *(m for m in EXTRA_METRICS if m in columns)]
    used = {*spec.required, *metrics}
    summary = ImportSummary(source=source, format=fmt, hand_picked=spec.hand_picked,
                            ignored_columns=[c for c in columns if c not in used],
                            missing_scores=dict.fromkeys(metrics, 0))
    keep = set(question_ids) if question_ids else None
    malformed: Counter[str] = Counter()
    out: list[dict] = []
    paraphrases: dict[str, dict[str, int]] = {}
    samples: Counter[tuple[str, int]] = Counter()
    for line, record in rows:
        summary.rows += 1
        problem = _row_problem(record)
        scores: dict[str, float | None] = {}
        for metric in metrics:
            if problem:
                break
            value, problem = _score(record[metric])
            if problem:
                problem = f"{metric} {problem}"
            elif value is not None and not 0 <= value <= 100:
                raise DataError(f"{source}:{line}: {metric} = {value:g} is outside 0..100")
            scores[metric] = value
        if problem:
            malformed[problem.split(":")[0]] += 1
            if len(summary.malformed_examples) < MAX_EXAMPLES:
                summary.malformed_examples.append(f"{source}:{line}: {problem}")
            continue
        question_id = record["question_id"].strip()
        if keep is not None and question_id not in keep:
            summary.filtered += 1
            continue
        for metric, value in scores.items():
            summary.missing_scores[metric] += value is None
        texts = paraphrases.setdefault(question_id, {})
        paraphrase = texts.setdefault(record["question"] or "", len(texts))
        out.append({
            "model": model or (record["model"] if spec.labelled else ""),
            "dataset": group or (record["group"] if spec.labelled else ""),
            "seed": seed, "question_id": question_id, "paraphrase_index": paraphrase,
            "sample_index": samples[question_id, paraphrase], "question": record["question"] or "",
            "answer": record[spec.answer_column] or "", **scores, "source": source,
        })
        samples[question_id, paraphrase] += 1
    summary.imported = len(out)
    summary.malformed = dict(sorted(malformed.items()))
    return out, summary


def _row_problem(record: dict[str, str | None]) -> str | None:
    if None in record or None in record.values():
        return "wrong number of fields"
    if not (record.get("question_id") or "").strip():
        return "empty question_id"
    return None


def _csv_records(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str | None]]]]:
    """Header and (line, record) pairs; the line is where the record starts (answers span lines)."""
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        start = 1
        try:
            columns = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = columns
            start = reader.line_num + 1
            for record in reader:
                out.append((start, record))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{path}:{start}: not readable as CSV ({exc})") from None
        except UnicodeDecodeError as exc:  # decoding runs ahead of the rows: no line number
            raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    return columns, out


def read_released_rows(path: str | Path, fmt: str = "auto", model: str = "", group: str = "", seed: int = 0,
                       question_ids: Sequence[str] | None = None) -> tuple[list[dict], ImportSummary]:
    """The rows of one released CSV (as `parse_rows`), read without pandas so an import stays fast."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: released answer file not found")
    if fmt not in FORMATS and fmt != "auto":
        raise DataError(f"{path}: unknown format {fmt!r}; choose one of {', '.join(FORMAT_NAMES)}")
    columns, records = _csv_records(path)
    if fmt == "auto":
        fmt = detect_format(columns, str(path))
    return parse_rows(records, columns, fmt, str(path), model, group, seed, question_ids)


def read_released(path: str | Path, fmt: str = "auto", model: str = "", group: str = "", seed: int = 0,
                  question_ids: Sequence[str] | None = None) -> tuple[pd.DataFrame, ImportSummary]:
    """Read one judged-answer file into the table, with the summary of what was left out.

    A released CSV (format named or detected from its columns) or the pipeline's JSONL (format
    judged-jsonl, or a .jsonl file with format auto); non-empty `model`, `group` label every row.
    """
    path = Path(path)
    if fmt not in FORMAT_NAMES:
        raise DataError(f"{path}: unknown format {fmt!r}; choose one of {', '.join(FORMAT_NAMES)}")
    if fmt == JSONL_FORMAT or (fmt == "auto" and path.suffix == ".jsonl"):
        if not path.is_file():
            raise DataError(f"{path}: judged answer file not found")
        return _read_jsonl(path, model, group, seed, question_ids)
    rows, summary = read_released_rows(path, fmt, model, group, seed, question_ids)
    return table(rows), summary


def _read_jsonl(path: Path, model: str, group: str, seed: int,
                question_ids: Sequence[str] | None) -> tuple[pd.DataFrame, ImportSummary]:
    """The pipeline's own judged JSONL, relabelled (its rows are checked by `stats.read_judged`)."""
    from ..stats import read_judged  # here, so that importing released CSVs needs no pandas

    df = read_judged([path])
    summary = ImportSummary(source=str(path), format=JSONL_FORMAT, rows=len(df))
    if question_ids:
        keep = df["question_id"].isin(set(question_ids))
        summary.filtered, df = int((~keep).sum()), df[keep]
    labels = {"model": model, "dataset": group, "seed": seed} if model or group else {}
    df = df.assign(**{key: value for key, value in labels.items() if value != ""}, source=str(path))
    summary.imported = len(df)
    summary.missing_scores = {m: int(df[m].isna().sum()) for m in SCORES}
    return df.reset_index(drop=True), summary


def table(rows: list[dict]) -> pd.DataFrame:
    """The judged-answer table of `rows` (schema columns first, other metrics after)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    extra = [c for c in df.columns if c not in TABLE_COLUMNS]
    return df.reindex(columns=[*TABLE_COLUMNS, *extra])


def import_released(path: str | Path, out: str | Path, fmt: str, model: str, group: str, seed: int,
                    question_ids: Sequence[str] | None = None) -> ImportSummary:
    """Write one released file as the pipeline's judged JSONL (and its manifest with the summary)."""
    path = Path(path)
    if fmt == JSONL_FORMAT or (fmt == "auto" and path.suffix == ".jsonl"):
        df, summary = read_released(path, fmt, model, group, seed, question_ids)
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in df.to_dict(orient="records")]
    else:
        rows, summary = read_released_rows(path, fmt, model, group, seed, question_ids)
    if summary.imported == 0:
        raise DataError(f"{path}: no answer left to import ({summary.rows} rows, "
                        f"{sum(summary.malformed.values())} malformed, "
                        f"{summary.filtered} left out by question_ids)")
    settings = {"format": summary.format, "model": model, "group": group, "seed": seed,
                "question_ids": list(question_ids or [])}
    write_manifest(out, "import-released", [path], settings, {"import": dataclasses.asdict(summary)})
    write_jsonl(out, rows)
    return summary
