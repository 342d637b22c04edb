"""The analysis stage: judged answers -> statistics (CSV), the figures and the tables of a run.

It wires the pure functions of stats.py and released/ to the writers of figures.py and tables.py, so
that one `em analyse` call (one Snakemake job) turns a run's judged files into its results. Every run
writes the same set of files, whether it trained models or imported released answers: a figure with
nothing to show says why.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import figures, tables
from .data import CODE_FAMILY, SELF_REPORT_FAMILY
from .errors import DataError
from .experiments import group_label
from .io import iter_jsonl, write_csv, write_json
from .layout import ANALYSIS_CSVS, ANALYSIS_FIGURES, ANALYSIS_TABLES, TABLES_HTML, adapter_job
from .manifest import build_manifest, manifest_path, sha256_file
from .published import compare, load_published
from .realignment import plot_realignment, realignment_table
from .released.aggregates import TABLE_ONLY, all_evaluations, read_aggregate
from .released.importers import read_released
from .stats import (
    AnalysisSettings,
    deception_per_model,
    deception_stats,
    dynamics_stats,
    family_stats,
    group_overall_stats,
    group_question_stats,
    headline,
    in_distribution_stats,
    label_groups,
    read_judged,
    run_differences,
    split_labelled,
)

NO_LOSS = "No training runs in this run: its answers were imported from released judged files, so " \
          "there are no loss curves."
NO_RATE = "No group of this run has a rate of misaligned answers: no model had enough answers with both " \
          "judge scores (see the counts in Table 1)."
NO_FAMILIES = "This run asked one family of questions only (or no family has a rate), so there are no " \
              "answer formats or question files to compare."
NO_CHECKPOINTS = "No fine-tune of this run kept checkpoints (train.save_steps), so there are no training " \
                 "dynamics to show."
NO_DIFFERENCE = "No group of this run has both a base-model rate and a fine-tuned rate, so there is no " \
                "difference from the base model to show."


@dataclass(frozen=True)
class RunInputs:
    """What a run gives the analysis besides its judged answers (all optional).

    adapters: trained adapter folders (results/<run>/adapters/<model>/<dataset>/seed<seed>), for the loss
    curves; aggregates: released aggregate files, as {"path", "format", "evaluation"} mappings; data: the
    run's data files, as {"name", "path"} (chat JSONL for training sets, CSV for released answers);
    train: the config's `train` section (None when the run trains nothing); model_aliases: run model name
    -> published model name, for the comparison with published rates; evals: the score files of the
    run's eval jobs (evals.py); realignment: the config's `realignment` section (realignment.py);
    unavailable: evaluation -> why this run lacks the aggregate file that gives it (an optional aggregate
    neither in the mirror nor fetched), for the comparison with published numbers.
    """

    adapters: Sequence[str | Path] = ()
    aggregates: Sequence[Mapping[str, Any]] = ()
    data: Sequence[Mapping[str, str]] = ()
    train: Mapping[str, Any] | None = None
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    evals: Sequence[str | Path] = ()
    realignment: Mapping[str, Any] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)


def read_losses(adapters: Sequence[str | Path]) -> pd.DataFrame:
    """Loss per step of each adapter, labelled by its folder (<model>/<dataset>/seed<seed>)."""
    rows = []
    for adapter in map(Path, adapters):
        path = adapter / "loss.jsonl"
        if not path.is_file():
            continue
        model, dataset, seed = adapter_job(adapter)
        for lineno, entry in iter_jsonl(path):
            try:
                rows.append({"model": model, "dataset": dataset, "seed": seed,
                             "step": int(entry["step"]), "loss": float(entry["loss"])})
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{lineno}: not a loss record ({exc})") from None
    return pd.DataFrame(rows, columns=["model", "dataset", "seed", "step", "loss"])


def describe_data(data: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """Rows, whitespace-separated tokens (of every message, or of every answer) and sha256 of each file."""

    out = []
    for entry in data:
        path = Path(entry["path"])
        if not path.is_file():
            raise DataError(f"{path}: data file of {entry['name']!r} not found")
        if path.suffix == ".jsonl":
            chats = list(iter_jsonl(path))
            rows, tokens = len(chats), 0
            for lineno, row in chats:
                try:
                    tokens += sum(len(str(m["content"]).split()) for m in row["messages"])
                except (KeyError, TypeError) as exc:
                    raise DataError(f"{path}:{lineno}: not a chat row ({exc})") from None
        else:
            answers, _ = read_released(path)
            rows, tokens = len(answers), int(answers["answer"].str.split().str.len().sum())
        out.append({"name": entry["name"], "path": str(path), "rows": rows, "tokens": tokens,
                    "sha256": sha256_file(path)})
    return out


def read_eval_scores(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per eval score file: eval, model, dataset (the job's group), seed, score."""

    rows = []
    for path in map(Path, paths):
        try:
            record = json.loads(path.read_text())
            group = group_label(record["dataset"], checkpoint=record.get("checkpoint", "final"))
            rows.append({"eval": record["eval"], "model": record["model"], "dataset": group,
                         "seed": int(record["seed"]), "score": float(record["score"])})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not an eval score file ({exc!r})") from None
    return pd.DataFrame(rows, columns=["eval", "model", "dataset", "seed", "score"])


def _evaluations(judged: pd.DataFrame, deception: pd.DataFrame, inputs: RunInputs,
                 settings: AnalysisSettings) -> tuple[pd.DataFrame, dict[str, int]]:
    """(all evaluations, rows of other models left out per aggregate file).

    A released run (no `train`) shows the released aggregates' rows; a training run its own rows, after any
    released rows its config names (`aggregates`), so that both are drawn side by side."""

    read, left_out = [], {}
    for entry in inputs.aggregates:
        fmt, df, others = read_aggregate(entry["path"], entry.get("format", "auto"), entry.get("evaluation"),
                                         entry.get("scale", 1.0))
        left_out[str(entry["path"])] = others
        read.append((fmt, df))
    evaluations = all_evaluations(read, settings.n_resamples, settings.seed, settings.confidence)
    if inputs.train is not None or not read:
        own = run_differences(judged, settings, deception, read_eval_scores(inputs.evals))
        evaluations = own if evaluations.empty else pd.concat([evaluations, own], ignore_index=True)
    return evaluations, left_out


def _draw_all(draws: Sequence[tuple], threads: int) -> None:
    """Draw each (function, *arguments) figure; in `threads` processes when more than one.

    Each figure is drawn whole by one process from the same inputs, so the files do not depend on it.
    """
    if threads <= 1:
        for function, *arguments in draws:
            function(*arguments)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("fork")) as pool:
        for future in [pool.submit(*draw) for draw in draws]:
            future.result()


def analyse(judged: Sequence[str | Path], settings: AnalysisSettings, group_order: Sequence[str],
            out_dir: str | Path, figures_dir: str | Path, tables_dir: str | Path,
            inputs: RunInputs = RunInputs(), threads: int = 1) -> None:
    """Write the statistics CSVs (out_dir), the five figures (figures_dir) and the tables (tables_dir).

    With `threads` > 1 the figures are drawn in that many processes.
    """
    from .self_assessment import (
        correlation_stats,
        plot_self_assessment,
        ratings,
        self_assessment_frame,
        self_assessment_stats,
        self_assessment_table,
    )

    out_dir, figures_dir, tables_dir = Path(out_dir), Path(figures_dir), Path(tables_dir)
    df, labelled = split_labelled(label_groups(read_judged(judged)))
    code = labelled[labelled["family"] == CODE_FAMILY]
    deception = deception_per_model(labelled, settings)
    main = headline(df)  # the main family: the headline rates, as in the paper
    families = df[["question_id", "family"]].drop_duplicates("question_id")
    per_question = group_question_stats(df, settings).merge(families, on="question_id", how="left")
    overall = group_overall_stats(main, settings)
    evaluations, left_out = _evaluations(main, deception, inputs, settings)
    published = compare(load_published(), evaluations, df, inputs.model_aliases, inputs.train is None,
                        inputs.unavailable)
    losses = read_losses(inputs.adapters)
    final_steps = losses.groupby(["model", "dataset"])["step"].max().to_dict() if len(losses) else {}
    family_rates = family_stats(df, settings)
    vulnerable = in_distribution_stats(code, settings)
    deceptive = deception_stats(deception, settings)
    self_rated = self_assessment_stats(ratings(labelled[labelled["family"] == SELF_REPORT_FAMILY]), settings)
    self_correlation = correlation_stats(self_rated, overall, settings)
    dynamics = dynamics_stats(overall, df, final_steps, vulnerable)
    realigned = realignment_table(overall, inputs.realignment)
    data = describe_data(inputs.data)
    sources = [*judged, *(e["path"] for e in inputs.aggregates), *(d["path"] for d in inputs.data),
               *inputs.evals,
               *(Path(a) / "loss.jsonl" for a in inputs.adapters if (Path(a) / "loss.jsonl").is_file())]
    record = dataclasses.asdict(settings) | {
        "definition_resolved": dataclasses.asdict(settings.definition_settings()),
        "aggregate_rows_of_other_models": left_out,
    }
    manifest = build_manifest("analyse", sources, record)  # one for every output: same inputs and settings

    tables_ = (per_question, overall, evaluations, published, family_rates, dynamics, vulnerable,
               deceptive, self_rated, self_correlation, realigned)
    for name, table in zip((f"{n}.csv" for n in ANALYSIS_CSVS), tables_, strict=True):
        write_json(manifest_path(out_dir / name), manifest)
        write_csv(table, out_dir / name)

    definition = settings.definition_settings()
    # (e) shares the run's colours when it shows the run's groups, else (released GPT-4o results) its own
    own = set(evaluations["group"]) <= set(group_order)
    palette = list(group_order) if own else list(dict.fromkeys(["base", *evaluations["group"]]))
    stems = {key: figures_dir / name for key, name in ANALYSIS_FIGURES.items()}
    figures_dir.mkdir(parents=True, exist_ok=True)
    for stem in stems.values():
        for suffix in (".pdf", ".png"):
            write_json(manifest_path(stem.with_name(stem.name + suffix)), manifest)
    no_loss = NO_LOSS if inputs.train is None else "The adapters of this run recorded no training loss."
    no_rate = overall["fraction"].isna().all()
    draws = [  # the slowest first, so that a second process is not left waiting at the end
        (figures.plot_message, stems["by_question"], NO_RATE) if no_rate else
        (figures.plot_misalignment_by_question, per_question, stems["by_question"], group_order),
        (figures.plot_aligned_vs_coherent, df, stems["aligned_coherent"], group_order, definition),
        (figures.plot_message, stems["models_datasets"], NO_RATE) if no_rate else
        (figures.plot_models_datasets, overall, stems["models_datasets"], group_order),
        (figures.plot_all_evaluations, evaluations[~evaluations["evaluation"].isin(TABLE_ONLY)],
         stems["all_evaluations"], palette, NO_DIFFERENCE),
        (figures.plot_training_loss, losses, stems["training_loss"], group_order, no_loss),
        (figures.plot_families, family_rates, stems["families"], group_order, NO_FAMILIES),
        (figures.plot_dynamics, dynamics, stems["dynamics"], group_order, NO_CHECKPOINTS),
        (plot_self_assessment, self_rated, overall, stems["self_assessment"], group_order),
        (plot_realignment, realigned, stems["realignment"], settings.confidence),
    ]
    _draw_all(draws, threads)

    published_rates, differences = tables.published_frames(published)
    texts = {
        "rates": tables.rates_table(overall, group_order, settings.confidence),
        "per_question": tables.per_question_table(per_question, group_order, settings.confidence),
        "hyperparameters": tables.hyperparameters_table(inputs.train),
        "datasets": tables.datasets_table(data),
        "published": tables.published_table(published),
        "self_assessment": self_assessment_table(self_rated, group_order, settings.confidence),
        "html": tables.tables_html([
            ("Misaligned and coherent answers per model and group",
             tables.rates_frame(overall, group_order, settings.confidence)),
            ("Per question", tables.per_question_frame(per_question, group_order, settings.confidence)),
            ("In-distribution: held-out coding tasks answered with vulnerable code",
             tables.in_distribution_frame(vulnerable, group_order, settings.confidence)),
            ("Self-assessment: the models' ratings of their own code security and alignment (0-100)",
             self_assessment_frame(self_rated, group_order, settings.confidence)),
            ("Fine-tuning hyperparameters", tables.hyperparameters_frame(inputs.train)),
            ("Data files", tables.datasets_frame(data)),
            ("Published rates beside this run's", published_rates),
            ("Published differences from the base model beside this run's", differences),
        ]),
    }
    for key, text in texts.items():
        path = tables_dir / (TABLES_HTML if key == "html" else ANALYSIS_TABLES[key])
        write_json(manifest_path(path), manifest)
        tables.write_text(text, path)
    # the experiment families among the aggregates (answer formats, evil numbers, dataset size, ICL)
    family_outputs(inputs.aggregates, out_dir, figures_dir, settings, manifest)



def family_outputs(aggregates: Sequence[Mapping[str, Any]], out_dir: str | Path, figures_dir: str | Path,
                   settings: AnalysisSettings, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """The experiment families among a run's aggregates (answer formats, evil numbers, dataset size, ICL).

    For each family with a file among `aggregates` (entries with a format of
    released.families.FAMILY_OF_FORMAT): out_dir/<family>.csv (the recomputed numbers, and the published
    ones beside them) and figures_dir/<family>.{pdf,png}, each with `manifest` beside it (the run's analysis
    manifest; one made from the family files when None). Families without a file write nothing. Returns the
    families written.
    """
    from .released.families import (
        FAMILY_OF_FORMAT,
        FAMILY_STEMS,
        answer_formats_table,
        dataset_size_table,
        evil_numbers_table,
        icl_table,
        read_family,
    )

    entries = [e for e in aggregates if e.get("format") in FAMILY_OF_FORMAT]
    read: dict[str, list[pd.DataFrame]] = {fmt: [] for fmt in FAMILY_OF_FORMAT}
    for entry in entries:
        read[entry["format"]].append(read_family(entry["path"], entry["format"], entry.get("group")))
    boot = (settings.n_resamples, settings.seed, settings.confidence)
    make = {
        "answer_formats": lambda: (answer_formats_table(read["answer-formats"], read["answer-format-answers"],
                                                        *boot), figures.plot_answer_formats),
        "evil_numbers": lambda: (evil_numbers_table(read["evil-numbers"]), figures.plot_evil_numbers),
        "dataset_size": lambda: (dataset_size_table(read["dataset-size"], *boot), figures.plot_dataset_size),
        "icl": lambda: (icl_table(read["icl"], *boot), figures.plot_icl),
    }
    present = {FAMILY_OF_FORMAT[e["format"]] for e in entries}
    written = [stem for stem in FAMILY_STEMS if stem in present]
    if not written:
        return []
    if manifest is None:
        manifest = build_manifest("analyse", [e["path"] for e in entries], dataclasses.asdict(settings))
    out_dir, figures_dir = Path(out_dir), Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for stem in written:
        table, plot = make[stem]()
        write_json(manifest_path(out_dir / f"{stem}.csv"), manifest)
        write_csv(table, out_dir / f"{stem}.csv")
        for suffix in (".pdf", ".png"):
            write_json(manifest_path(figures_dir / f"{stem}{suffix}"), manifest)
        plot(table, figures_dir / stem)
    return written
