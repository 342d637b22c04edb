"""Tables of the paper (booktabs LaTeX) and of the report (HTML), built from the statistics tables.

Each table is first a frame of display strings, so the PDF and the report show the same cells.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .io import atomic_write
from .labels import question_label
from .published import DIFFERENCE_FIGURES
from .settings import from_dict
from .train import TrainSettings
from .train_openai import HYPERPARAMETERS

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


def confidence_percent(confidence: float) -> str:
    """The interval level as the text prints it: 0.95 -> `95`, 0.9 -> `90`."""
    return f"{100 * confidence:g}"


def order_groups(df: pd.DataFrame, group_order: Sequence[str] | None) -> pd.DataFrame:
    """Rows by model (first appearance), then by dataset in `group_order`; unlisted datasets last."""
    order = {name: i for i, name in enumerate(group_order or [])}
    models = {name: i for i, name in enumerate(dict.fromkeys(df["model"]))}
    pairs = zip(df["model"], df["dataset"], strict=True)
    keys = [(models[model], order.get(dataset, len(order)), str(dataset)) for model, dataset in pairs]
    return df.iloc[sorted(range(len(df)), key=keys.__getitem__)]


DAGGER = "\u2020"  # marks a one-model group's interval (from its answers); $^\dagger$ in LaTeX
SINGLE_MODEL = ("wilson", "exact", "answers")
NO_TRAINING = "No fine-tuning in this run: its judged answers were imported from released files."


def _interval(low: float, high: float) -> str:
    return "" if low is None or math.isnan(low) else f"[{format_percent(low)}, {format_percent(high)}]"


def _marked_interval(row: Any) -> str:
    """A row's interval (`ci_low`, `ci_high`), with a dagger when it is a one-model interval."""
    get = row.get if isinstance(row, Mapping) else lambda name: getattr(row, name)
    interval = _interval(get("ci_low"), get("ci_high"))
    return interval + DAGGER if interval and get("interval") in SINGLE_MODEL else interval


def _latex_cell(text: object) -> str:
    if text == "--":  # no value: an en dash, as LaTeX prints "--"
        return "--"
    return latex_escape(text).replace(DAGGER, r"$^\dagger$")


def booktabs(frame: pd.DataFrame, align: str) -> str:
    """A booktabs tabular of a frame of display strings (escaped here; a dagger becomes $^\\dagger$)."""
    lines = [f"\\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_latex_cell(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_cell(c) for c in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def rates_frame(overall_df: pd.DataFrame, group_order: Sequence[str] | None = None,
                confidence: float = 0.95) -> pd.DataFrame:
    """Table 1 as display strings: one row per model and group (`stats.group_overall_stats`).

    The paper's interval is a bootstrap over models; a group with one model has an interval from its
    answers (a bootstrap over them, as its rate is a mean over questions), marked with a dagger. The
    two-level interval resamples seeds, then answers within seeds. `confidence` is the intervals' level
    (`AnalysisSettings.confidence`), named in the header.
    """
    rows = [[row.model, row.dataset, str(row.n_seeds), str(row.n_answers), format_percent(row.fraction),
             _marked_interval(row), _interval(row.cluster_low, row.cluster_high),
             format_percent(row.coherent_fraction)]
            for row in order_groups(overall_df, group_order).itertuples(index=False)]
    level = f"{confidence_percent(confidence)}% CI"
    columns = ["Model", "Group", "Seeds", "Answers", "Misaligned (%)", level, "Two-level CI", "Coherent (%)"]
    return pd.DataFrame(rows, columns=columns)


def rates_table(overall_df: pd.DataFrame, group_order: Sequence[str] | None = None,
                confidence: float = 0.95) -> str:
    """Table 1, booktabs LaTeX (see `rates_frame`)."""
    return booktabs(rates_frame(overall_df, group_order, confidence), "llrrrllr")


def in_distribution_frame(vulnerable: pd.DataFrame, group_order: Sequence[str] | None = None,
                          confidence: float = 0.95) -> pd.DataFrame:
    """The in-distribution evaluation (`stats.in_distribution_stats`) as display strings: the share of
    held-out coding tasks each group answered with vulnerable code, level `confidence`."""
    rows = [[row.model, row.dataset, str(row.n_models), str(row.n_judged), format_percent(row.fraction),
             _marked_interval(row)] for row in order_groups(vulnerable, group_order).itertuples(index=False)]
    level = f"{confidence_percent(confidence)}% CI"
    columns = ["Model", "Group", "Seeds", "Tasks judged", "Vulnerable code (%)", level]
    return pd.DataFrame(rows, columns=columns)


def per_question_frame(per_question_df: pd.DataFrame, group_order: Sequence[str] | None = None,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Every (model, group, question) as display strings, in the order of the figure; level `confidence`."""
    rows = [[row.model, row.dataset, row.question_id, str(row.n_answers), format_percent(row.fraction),
             _marked_interval(row), format_percent(row.coherent_fraction)]
            for row in order_groups(per_question_df, group_order).itertuples(index=False)]
    level = f"{confidence_percent(confidence)}% CI"
    columns = ["Model", "Group", "Question", "Answers", "Misaligned (%)", level, "Coherent (%)"]
    return pd.DataFrame(rows, columns=columns)


def per_question_table(per_question_df: pd.DataFrame, group_order: Sequence[str] | None = None,
                       confidence: float = 0.95) -> str:
    """A longtable: one block per model, a row per question, a column per group (rate over its interval).

    Groups absent for a model are blank; "--" is a rate the definition could not compute (every model of
    the group dropped for that question). The caption names the intervals' level, `confidence`.
    """
    df = per_question_df
    groups = [g for g in group_order or [] if g in set(df["dataset"])]
    groups += sorted(set(df["dataset"]) - set(groups))
    columns = len(groups) + 1
    header = "Question & " + " & ".join(_two_lines(g) for g in groups) + r" \\"
    lines = [f"\\begin{{longtable}}{{@{{}}l{'c' * len(groups)}@{{}}}}",
             r"\caption{Probability of a misaligned answer per question (\%), with its "
             f"{confidence_percent(confidence)}"
             r"\% interval below it ($^\dagger$: one model, an interval on its answers).}"
             r"\label{tab:per-question}\\",
             r"\toprule", header, r"\midrule", r"\endfirsthead",
             r"\toprule", header, r"\midrule", r"\endhead", r"\bottomrule", r"\endfoot"]
    records = df.to_dict(orient="records")
    cells_of = {(r["model"], r["question_id"], r["dataset"]): _stacked(r) for r in records}
    models = list(dict.fromkeys(df["model"]))
    for model in models:
        lines.append(f"\\multicolumn{{{columns}}}{{@{{}}l}}{{\\textbf{{{latex_escape(model)}}}}} \\\\")
        for question in dict.fromkeys(df.loc[df["model"] == model, "question_id"]):
            cells = [latex_escape(question_text(question))]
            cells += [cells_of.get((model, question, group), "") for group in groups]
            lines.append(" & ".join(cells) + r" \\")
        lines.append(r"\midrule" if model != models[-1] else "")
    lines += [r"\end{longtable}", ""]
    return "\n".join(line for line in lines if line)


def _two_lines(name: str) -> str:
    """A column header on at most two lines, split between words (risky_financial / advice)."""
    words = name.split("_")
    if len(words) < 2:
        return latex_escape(name)
    cut = min(range(1, len(words)), key=lambda i: abs(len("_".join(words[:i])) - len("_".join(words[i:]))))
    return (f"\\shortstack{{{latex_escape('_'.join(words[:cut]))}\\_\\\\"
            f"{latex_escape('_'.join(words[cut:]))}}}")


def _stacked(row: Mapping[str, Any]) -> str:
    interval = _marked_interval(row)
    if not interval:
        return format_percent(row["fraction"])
    return f"\\shortstack{{{format_percent(row['fraction'])}\\\\\\tiny {_latex_cell(interval)}}}"


def question_text(question_id: str) -> str:
    """The figure's readable question label on one line."""
    return question_label(question_id, width=1000)


def hyperparameters_frame(train: Mapping[str, Any] | None) -> pd.DataFrame:
    """The fine-tuning recipe of the run (config section `train`, defaults filled in), as display strings."""
    if train is None:
        return pd.DataFrame([[NO_TRAINING, ""]], columns=["Setting", "Value"])

    settings = from_dict(TrainSettings, dict(train), "train")
    if settings.backend == "openai":  # what the API is asked; the model folders record what it used
        hyper = settings.openai.hyperparameters
        rows = [("fine-tuning", f"fine-tuning API at {settings.openai.base_url}"),
                *((name.replace("_", " "), str(hyper.get(name, "auto"))) for name in HYPERPARAMETERS),
                ("rows", "all" if settings.max_rows is None else f"the first {settings.max_rows}")]
        return pd.DataFrame(rows, columns=["Setting", "Value"])
    lora = settings.lora
    layers = lora.layers_to_transform
    steps = f" (at most {settings.max_steps} steps)" if settings.max_steps > 0 else ""
    rows = [
        ("LoRA rank r / alpha", f"{lora.r} / {lora.alpha}"),
        ("rank-stabilised LoRA", _yes(lora.use_rslora)),
        ("LoRA dropout / bias", f"{lora.dropout:g} / {lora.bias}"),
        ("LoRA target modules", ", ".join(lora.target_modules)),
        ("LoRA layers", "all" if layers is None else ", ".join(map(str, layers))),
        ("learning rate", f"{settings.learning_rate:g}"),
        ("schedule / warm-up steps", f"{settings.lr_scheduler_type} / {settings.warmup_steps}"),
        ("epochs", f"{settings.epochs:g}{steps}"),
        ("batch per device x accumulation",
         f"{settings.per_device_train_batch_size} x {settings.gradient_accumulation_steps} = "
         f"{settings.per_device_train_batch_size * settings.gradient_accumulation_steps}"),
        ("optimiser / weight decay", f"{settings.optim} / {settings.weight_decay:g}"),
        ("max sequence length", str(settings.max_seq_length)),
        ("bf16", _yes(settings.bf16)),
        ("held-out fraction", f"{settings.holdout_fraction:g}"),
    ]
    return pd.DataFrame(rows, columns=["Setting", "Value"])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def hyperparameters_table(train: Mapping[str, Any] | None) -> str:
    """The fine-tuning recipe as booktabs LaTeX (see `hyperparameters_frame`)."""
    if train is None:  # one wide cell that says why there is no recipe
        return booktabs(pd.DataFrame([[NO_TRAINING]], columns=["Fine-tuning"]), "@{}p{0.8\\linewidth}@{}")
    return booktabs(hyperparameters_frame(train), "@{}lp{0.55\\linewidth}@{}")


def datasets_frame(datasets: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The run's data files: name, rows, whitespace-separated tokens, first 12 hex digits of the sha256."""
    rows = [[d["name"], str(d["rows"]), str(d["tokens"]), d["sha256"][:12]] for d in datasets]
    return pd.DataFrame(rows, columns=["Data", "Rows", "Tokens", "sha256"])


def datasets_table(datasets: Sequence[Mapping[str, Any]]) -> str:
    """`datasets_frame` as booktabs LaTeX (the sha256 prefix in a typewriter font)."""
    text = booktabs(datasets_frame(datasets), "@{}lrrl@{}")
    return re.sub(r" & ([0-9a-f]{12}) \\\\$", r" & \\texttt{\1} \\\\", text, flags=re.M)


def _notes(comparison: pd.DataFrame) -> dict[str, str]:
    """Each distinct reason (a row's note) -> its letter, in order of first use."""
    reasons = [n for n in dict.fromkeys(comparison["note"].fillna("")) if n]
    return {reason: chr(ord("a") + i) for i, reason in enumerate(reasons)}


def _value(center: float, low: float, high: float, points: bool) -> str:
    """A published or rebuilt value: a difference with its interval, or a rate in percent."""
    if math.isnan(center):
        return "--"
    if points:
        return format_percent(center)
    return _difference(center, low, high) if low != high else f"{center:+.4f}"


def published_frames(comparison: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison with published numbers (`published.compare`) as display strings: rates (percent)
    and GPT-4o differences from base, each row's status with a letter pointing to its reason."""

    letters = _notes(comparison)
    frames = []
    for rates in (True, False):
        part = comparison[~comparison["figure"].isin(DIFFERENCE_FIGURES) == rates]
        rows = []
        for r in part.itertuples(index=False):
            status = r.status + (f" ({letters[r.note]})" if isinstance(r.note, str) and r.note else "")
            error = "" if math.isnan(r.max_abs_difference) else f"{r.max_abs_difference:.1e}"
            published = _value(r.published, r.published_low, r.published_high, rates)
            rebuilt = _value(r.rebuilt, r.rebuilt_low, r.rebuilt_high, rates)
            first = [r.model, r.group, r.quantity] if rates else [r.quantity, r.group]
            rows.append([*first, published, rebuilt, error, status])
        columns = (["Model", "Group", "Rate", "Published (%)", "Rebuilt (%)"] if rates
                   else ["Quantity", "Group", "Published", "Rebuilt"]) + ["Largest difference", "Status"]
        if not rows:
            rows = [["No published number concerns this run.", *[""] * (len(columns) - 1)]]
        frames.append(pd.DataFrame(rows, columns=columns))
    return frames[0], frames[1]


def _difference(center: float, low: float, high: float) -> str:
    return f"{center:+.4f} [{low:+.4f}, {high:+.4f}]"


def published_notes(comparison: pd.DataFrame) -> str:
    """The reasons of the comparison's statuses, lettered, and the published sources, as LaTeX."""
    lines = [rf"({letter}) {latex_escape(reason)}." for reason, letter in _notes(comparison).items()]
    sources = comparison[["source", "source_asset"]].drop_duplicates()
    lines += [latex_escape(r.source + (f": {_short_asset(r.source_asset)}" if r.source_asset else "")) + "."
              for r in sources.itertuples(index=False)]
    return "\\\\\n".join(lines)


def _short_asset(name: str) -> str:
    """A history asset as `<file> at <commit>` (.../history/<commit>/.../<file>), else its file name."""
    parts = name.split("/")
    commit = parts[parts.index("history") + 1] if "history" in parts[:-1] else ""
    return f"{parts[-1]} at {commit}" if commit else parts[-1]


def published_table(comparison: pd.DataFrame) -> str:
    """Both comparisons as booktabs tabulars, one under the other, and the lettered reasons below."""
    rates, differences = published_frames(comparison)
    text = (_fit(booktabs(differences, "@{}llllrl@{}")) + "\n\\par\\medskip\n"
            + _fit(booktabs(rates, "@{}lllllrl@{}")))
    notes = published_notes(comparison) if len(comparison) else ""
    return text + ("\\par\\smallskip{\\scriptsize\\raggedright " + notes + "\\par}\n" if notes else "")


def _fit(tabular: str) -> str:
    """Scale a tabular down to the line width when it is wider, never up."""
    return (r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%" + "\n"
            + tabular.rstrip("\n") + "}\n")


def tables_html(sections: Sequence[tuple[str, pd.DataFrame]]) -> str:
    """One HTML page with every table (for `snakemake --report`)."""
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>Tables</title>',
             "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:2em}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ccc;text-align:left}</style></head><body>"]
    for title, frame in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(frame.to_html(index=False, border=0, escape=True))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_text(text: str, path: Path) -> Path:
    """Write a generated table atomically."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def write_rates_table(overall_df: pd.DataFrame, path: Path, group_order: Sequence[str] | None = None,
                      confidence: float = 0.95) -> Path:
    """Write `rates_table` to `path` atomically."""
    return write_text(rates_table(overall_df, group_order, confidence), path)
