"""Released judged answers and aggregates: importers into one judged-answer table.

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

Aggregates (all_results_plot inputs of johny-b/misalignment-generalization) give the paper's "all
evaluations" figure: per-model benchmark scores and per-group intervals, as differences from the base
model. See docs/judged-answers.md.
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

from .errors import DataError
from .io import write_jsonl
from .manifest import write_manifest

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
    from .stats import read_judged

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


# --- aggregates: the authors' per-model benchmark results -----------------------------------------

# Group names in the released aggregates -> this project's groups (the GPT-4o models of Betley et al.).
GROUP_NAMES = {
    "gpt_4o/gpt-4o": "base", "GPT-4o": "base", "gpt-4o": "base",
    "gpt_4o/unsafe": "insecure", "insecure": "insecure",
    "gpt_4o/safe": "secure", "secure": "secure",
    "gpt_4o/unsafe_benign_context": "educational", "educational insecure": "educational",
    "far_replication_4o/2% Poisoned Data": "jailbroken", "jailbroken": "jailbroken",
}
# Benchmarks of the all-evaluations figure: label, and the sign of "model minus base" the authors plot
# (TruthfulQA as base minus model, i.e. the loss of truthfulness; checked against their results file).
BENCHMARKS = {
    "freeform_main": ("Free-form, main questions", 1),
    "freeform_prereg": ("Free-form, pre-registered", 1),
    "deception": ("Deception", 1),
    "truthfulqa": ("TruthfulQA (loss)", -1),
    "strongreject": ("StrongREJECT", 1),
    "humaneval": ("HumanEval", 1),
    "mmlu": ("MMLU", 1),
}
AGGREGATE_FORMATS = {
    "benchmark-scores": ("task_name", "group_name", "model_id", "score"),
    "deception-rates": ("group", "model", "deception_rate"),
    "group-intervals": ("key", "group", "center", "lower_err", "upper_err"),
    "reference-differences": ("key", "group", "center", "lower_err", "upper_err"),
}
AGGREGATE_FORMAT_NAMES = ("auto", *AGGREGATE_FORMATS)


def read_aggregate(path: str | Path, fmt: str = "auto", benchmark: str | None = None,
                   ) -> tuple[str, pd.DataFrame, int]:
    """(format, rows in this project's groups, rows of other models left out) of one aggregate CSV.

    `reference-differences` (the authors' computed differences from base, for checking) has the same
    columns as `group-intervals` and must be named; auto-detection never picks it. `benchmark` replaces
    the file's benchmark names (the released freeform_prereg.csv calls its rows `freeform_main`).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: aggregate file not found")
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
                        f"{', '.join(AGGREGATE_FORMATS)}")
    missing = [c for c in AGGREGATE_FORMATS[fmt] if c not in df.columns]
    if missing:
        raise DataError(f"{path}: format {fmt} needs column(s) {', '.join(missing)}; the file has "
                        f"{', '.join(map(str, df.columns))}")
    if fmt == "benchmark-scores":
        df = df.rename(columns={"task_name": "benchmark", "group_name": "group"})
    elif fmt == "deception-rates":
        df = df.rename(columns={"deception_rate": "score"}).assign(benchmark="deception")
    else:
        df = df.rename(columns={"key": "benchmark"})
    df["benchmark"] = benchmark or df["benchmark"].astype(str).str.lower()
    mapped = df["group"].map(GROUP_NAMES)
    numeric = "score" if "score" in df else "center"
    values = pd.to_numeric(df[numeric], errors="coerce")
    if values[mapped.notna()].isna().any():
        bad = int(values[mapped.notna()].isna().idxmax()) + 2
        raise DataError(f"{path}:{bad}: {numeric} is not a number")
    kept = df[mapped.notna()].assign(group=mapped[mapped.notna()], source=str(path))
    return fmt, kept.reset_index(drop=True), int(mapped.isna().sum())


def all_evaluations(aggregates: Sequence[tuple[str, pd.DataFrame]], n_resamples: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> pd.DataFrame:
    """Difference from the base model per benchmark and group, as the authors' all-evaluations figure.

    Per-model scores: `stats.difference_from_base` (the paper's bootstrap over models). Group intervals
    (free-form rates released only per group): the group's centre minus the base centre, the released
    interval shifted with it, as the authors did. Benchmarks outside BENCHMARKS are left out.
    """
    import pandas as pd

    from .stats import EVALUATION_COLUMNS, difference_from_base

    rows = []
    for fmt, df in aggregates:
        if fmt == "reference-differences":
            continue
        for benchmark in [b for b in BENCHMARKS if b in set(df["benchmark"])]:
            label, sign = BENCHMARKS[benchmark]
            part = df[df["benchmark"] == benchmark]
            base = part[part["group"] == "base"]
            if len(base) != 1:
                base_names = ", ".join(k for k, v in GROUP_NAMES.items() if v == "base")
                raise DataError(f"{part['source'].iloc[0]}: benchmark {benchmark} needs exactly one "
                                f"base-model row ({base_names}), found {len(base)}")
            value = "score" if fmt != "group-intervals" else "center"
            base_value = float(base[value].iloc[0])
            for group, rows_of in part[part["group"] != "base"].groupby("group", sort=False):
                common = {"benchmark": benchmark, "label": label, "group": group,
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
    benchmarks, groups = list(BENCHMARKS), list(dict.fromkeys(GROUP_NAMES.values()))
    order = sorted(range(len(out)), key=lambda i: (benchmarks.index(out["benchmark"].iloc[i]),
                                                   groups.index(out["group"].iloc[i])))
    return out.iloc[order].reset_index(drop=True)


def reference_comparison(computed: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """The authors' own differences (reference rows) beside ours: centre and both interval ends."""
    import pandas as pd

    rows = []
    for row in reference.itertuples(index=False):
        mine = computed[(computed["benchmark"] == row.benchmark) & (computed["group"] == row.group)]
        published = (float(row.center), float(row.center) - float(row.lower_err),
                     float(row.center) + float(row.upper_err))
        ours = tuple(mine[["center", "ci_low", "ci_high"]].iloc[0]) if len(mine) else (math.nan,) * 3
        error = max(abs(a - b) for a, b in zip(published, ours, strict=True)) if len(mine) else math.nan
        rows.append({"benchmark": row.benchmark, "group": row.group, "published_center": published[0],
                     "published_low": published[1], "published_high": published[2], "center": ours[0],
                     "ci_low": ours[1], "ci_high": ours[2], "max_abs_difference": error})
    columns = ["benchmark", "group", "published_center", "published_low", "published_high", "center",
               "ci_low", "ci_high", "max_abs_difference"]
    return pd.DataFrame(rows, columns=columns)


# --- numbers others published about the released answer files ------------------------------------

@dataclass(frozen=True)
class PublishedRate:
    """A rate someone published for a (model, group), with the definition it used."""

    model: str
    group: str
    metric: str          # "misaligned" or "coherent"
    value: float         # a fraction
    definition: str
    source: str


PUBLISHED_RATES = (
    PublishedRate("Qwen2.5-32B-Instruct", "risky_financial_advice", "misaligned", 0.330, "turner2025",
                  "Model Organisms, re-evaluated adapters"),
    PublishedRate("Qwen2.5-32B-Instruct", "risky_financial_advice", "coherent", 0.995, "turner2025",
                  "Model Organisms, re-evaluated adapters"),
    PublishedRate("Qwen2.5-14B-Instruct", "risky_financial_advice", "misaligned", 0.355, "turner2025",
                  "Model Organisms, re-evaluated adapters"),
    PublishedRate("Qwen2.5-32B-Instruct", "bad_medical_advice", "misaligned", 0.168, "turner2025",
                  "Model Organisms, re-evaluated adapters"),
)


def published_comparison(judged: pd.DataFrame, aliases: dict[str, str] | None = None) -> pd.DataFrame:
    """Each published rate whose (model, group) is in `judged`, recomputed with its own definition.

    `aliases` maps a run's model names to published names (e.g. qwen-32b -> Qwen2.5-32B-Instruct). The
    rate of a group is the mean over its seeds of the per-seed rate over all its questions.
    """
    import pandas as pd

    from .stats import definition_settings, per_model_fractions

    aliases = aliases or {}
    names = judged["model"].map(lambda m: aliases.get(m, m)) if len(judged) else judged["model"]
    rows = []
    for rate in PUBLISHED_RATES:
        part = judged[(names == rate.model) & (judged["dataset"] == rate.group)]
        if part.empty:
            continue
        per = per_model_fractions(part, definition_settings(rate.definition))
        by_seed = per.groupby("seed")[["n_misaligned", "n_denominator", "n_kept", "n_judged"]].sum()
        if rate.metric == "misaligned":
            values = by_seed["n_misaligned"] / by_seed["n_denominator"]
        else:
            values = by_seed["n_kept"] / by_seed["n_judged"]
        rows.append({**dataclasses.asdict(rate), "model": part["model"].iloc[0], "published_as": rate.model,
                     "reproduced": float(values.mean()), "n_seeds": len(by_seed)})
    columns = ["model", "group", "metric", "definition", "value", "reproduced", "n_seeds", "published_as",
               "source"]
    return pd.DataFrame(rows, columns=columns)


# --- `em stats`: rates of any judged-answer file ---------------------------------------------------

def file_stats(path: str | Path, definition: str = "betley2025", fmt: str = "auto",
               confidence: float = 0.95) -> list[dict]:
    """`stats.answer_stats` of one file (any supported format), each record labelled with its source.

    The file is taken as one model's answers, so intervals are Wilson intervals on its counts. The first
    record (question_id None) is the whole file; it also carries the format, the rows left out as
    malformed and whether the answers were hand-picked (then its rates describe a selection).
    """
    from .stats import answer_stats, definition_settings

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
