"""How far a judge is from the paper's: re-judge released GPT-4o-judged answers and compare.

Every released judged-answer file (Model Organisms, clarifying-EM) carries GPT-4o's aligned and coherent
scores for every answer: a calibration set. `judge_agreement` draws a seeded sample, stratified over the
files in proportion to their answers with both scores, asks the configured judge the paper's two judge
prompts (those of the question file's question with the answer's id, else its first question's: the main
questions share them) and reports, per file and pooled: the misaligned fraction under both judges (the
run's definition of a misaligned answer) with Wilson intervals, their difference with a paired bootstrap
interval over answers, Spearman's rank correlation of the aligned and of the coherent scores, Cohen's
kappa of the misaligned / not-misaligned classification and its confusion counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .data import format_judge_prompt, load_questions
from .errors import ConfigError, DataError
from .io import write_csv
from .judge import Judge
from .layout import AGREEMENT_CSVS, AGREEMENT_FIGURE
from .manifest import write_manifest
from .released.importers import read_released
from .settings import check_range
from .stats import DefinitionSettings, wilson_ci

METRICS = ("aligned", "coherent")
POOLED = "(pooled)"


@dataclass(frozen=True)
class AgreementSettings:
    """Config section `judge_agreement` (and `em judge-agreement`'s options)."""

    CONFIG_KEY: ClassVar[str] = "judge_agreement"
    sample_size: int = 2000          # answers re-judged, over all files
    seed: int = 0
    max_missing_share: float = 0.2   # stop when the judge gives no score for more of the sample than this
    n_resamples: int = 2000          # paired bootstrap of the difference of the misaligned fractions
    confidence: float = 0.95

    def __post_init__(self) -> None:
        check_range("judge_agreement.sample_size", self.sample_size, 1)
        check_range("judge_agreement.max_missing_share", self.max_missing_share, 0, 1)
        check_range("judge_agreement.n_resamples", self.n_resamples, 1)
        check_range("judge_agreement.confidence", self.confidence, 0, 1)


def reference_answers(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The answers of released judged-answer files that carry both reference scores, labelled by file."""

    parts = []
    for path in paths:
        df, _ = read_released(path)
        if not set(METRICS) <= set(df.columns) or df[list(METRICS)].isna().all().any():
            raise DataError(f"{path}: no judge scores (aligned and coherent) to compare with")
        scored = df.dropna(subset=list(METRICS))
        columns = ["source", "question_id", "question", "answer", *METRICS]
        parts.append(scored.assign(source=str(path))[columns])
    return pd.concat(parts, ignore_index=True)


def stratified_sample(answers: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """`size` answers drawn without replacement, each file's share in proportion to its answers (largest
    remainders), with numpy's default_rng(seed)."""
    if size > len(answers):
        raise ConfigError(f"judge_agreement.sample_size: {size} answers asked, the files hold {len(answers)} "
                          "with both scores")
    counts = answers.groupby("source", sort=False).size()
    exact = counts / counts.sum() * size
    take = np.floor(exact).astype(int)
    for source in (exact - take).sort_values(ascending=False).index[: size - int(take.sum())]:
        take[source] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(answers["source"].to_numpy() == source), n, replace=False)
              for source, n in take.items()]
    return answers.iloc[np.sort(np.concatenate(picked))].reset_index(drop=True)


def judge_prompts_by_id(questions_path: str | Path) -> dict[str, dict[str, str]]:
    """Question id -> its aligned and coherent judge prompts; key "" holds the first question's."""

    found: dict[str, dict[str, str]] = {}
    for question in load_questions(questions_path):
        if set(METRICS) <= set(question.judge_prompts):
            prompts = {m: question.judge_prompts[m] for m in METRICS}
            found.setdefault("", prompts)
            found[question.id] = prompts
    if not found:
        raise DataError(f"{questions_path}: no question with both an aligned and a coherent judge prompt")
    return found


def rejudge(sample: pd.DataFrame, judge: Judge, prompts: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """The sample with the judge's own aligned and coherent scores (columns judge_aligned, judge_coherent)."""

    out = sample.copy()
    for metric in METRICS:
        asked = [format_judge_prompt(prompts.get(qid, prompts[""])[metric], question, answer)
                 for qid, question, answer in zip(sample["question_id"], sample["question"], sample["answer"],
                                                  strict=True)]
        scores = judge.score(asked)
        out[f"judge_{metric}"] = [s if isinstance(s, int | float) else math.nan for s in scores]
    return out


def misaligned(aligned: np.ndarray, coherent: np.ndarray, definition: DefinitionSettings
               ) -> tuple[np.ndarray, np.ndarray]:
    """(misaligned, counted) per answer under `definition`: counted = in its denominator."""
    judged = ~(np.isnan(aligned) | np.isnan(coherent))
    kept = judged & ((coherent >= definition.coherent_threshold) if definition.coherent_inclusive
                     else (coherent > definition.coherent_threshold))
    low = (aligned <= definition.aligned_threshold) if definition.aligned_inclusive \
        else (aligned < definition.aligned_threshold)
    return kept & low, (kept if definition.denominator == "kept" else judged)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two boolean classifications of the same items (nan when chance agreement is 1)."""
    observed = float(np.mean(a == b))
    chance = float(np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b))
    return math.nan if chance == 1 else (observed - chance) / (1 - chance)


def agreement_record(part: pd.DataFrame, definition: DefinitionSettings, settings: AgreementSettings
                     ) -> dict[str, Any]:
    """One row of the report for a set of re-judged answers."""
    from scipy.stats import spearmanr


    def scores(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return misaligned(part[f"{prefix}aligned"].to_numpy(float), part[f"{prefix}coherent"].to_numpy(float),
                          definition)

    (ref_mis, ref_counted), (new_mis, new_counted) = scores(""), scores("judge_")
    both = ref_counted & new_counted  # the classification compared where both judges counted the answer
    record: dict[str, Any] = {"n": len(part), "judge_missing": int(part[["judge_aligned", "judge_coherent"]]
                                                                       .isna().any(axis=1).sum())}
    for name, mis, counted in (("reference", ref_mis, ref_counted), ("judge", new_mis, new_counted)):
        k, n = int(mis.sum()), int(counted.sum())
        low, high = wilson_ci(k, n, settings.confidence) if n else (math.nan, math.nan)
        record |= {f"{name}_misaligned": k / n if n else math.nan, f"{name}_ci_low": low,
                   f"{name}_ci_high": high, f"{name}_n": n}
    record["difference"] = record["judge_misaligned"] - record["reference_misaligned"]
    record["difference_ci_low"], record["difference_ci_high"] = _paired_interval(
        ref_mis, ref_counted, new_mis, new_counted, settings)
    for metric in METRICS:
        pairs = part[[metric, f"judge_{metric}"]].dropna()
        rho = spearmanr(pairs[metric], pairs[f"judge_{metric}"]).statistic if len(pairs) > 2 else math.nan
        record[f"spearman_{metric}"] = float(rho)
    a, b = ref_mis[both], new_mis[both]
    record |= {"kappa": cohen_kappa(a, b) if both.any() else math.nan, "n_compared": int(both.sum()),
               "both_misaligned": int((a & b).sum()), "reference_only": int((a & ~b).sum()),
               "judge_only": int((~a & b).sum()), "neither": int((~a & ~b).sum())}
    return record


def _paired_interval(ref_mis: np.ndarray, ref_counted: np.ndarray, new_mis: np.ndarray,
                     new_counted: np.ndarray, settings: AgreementSettings) -> tuple[float, float]:
    """Percentile interval of judge minus reference fraction, resampling answers (the pairs stay together)."""
    n = len(ref_mis)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(settings.seed)
    idx = rng.integers(0, n, size=(settings.n_resamples, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = new_mis[idx].sum(1) / new_counted[idx].sum(1) - ref_mis[idx].sum(1) / ref_counted[idx].sum(1)
    diffs = diffs[~np.isnan(diffs)]
    if not len(diffs):
        return math.nan, math.nan
    tail = (1 - settings.confidence) / 2 * 100
    return float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))


def agreement_table(rejudged: pd.DataFrame, definition: DefinitionSettings, settings: AgreementSettings
                    ) -> pd.DataFrame:
    """One record per source file, then the pooled one (source POOLED)."""
    rows = [{"source": source, **agreement_record(part, definition, settings)}
            for source, part in rejudged.groupby("source", sort=False)]
    rows.append({"source": POOLED, **agreement_record(rejudged, definition, settings)})
    return pd.DataFrame(rows)


def judge_agreement(files: Sequence[str | Path], questions: str | Path, judge: Judge,
                    definition: DefinitionSettings, settings: AgreementSettings
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(report, the re-judged sample): the whole comparison. Stops (DataError) when the judge gave no score
    for more than `max_missing_share` of the sample, saying how many."""
    sample = stratified_sample(reference_answers(files), settings.sample_size, settings.seed)
    rejudged = rejudge(sample, judge, judge_prompts_by_id(questions))
    missing = rejudged[["judge_aligned", "judge_coherent"]].isna().any(axis=1).mean()
    if missing > settings.max_missing_share:
        raise DataError(f"the judge gave no score for {missing:.1%} of the {len(rejudged)} sampled answers "
                        f"(judge_agreement.max_missing_share: {settings.max_missing_share:.0%}); is it a "
                        "chat model that answers with a number?")
    return agreement_table(rejudged, definition, settings), rejudged


def write_agreement(report: pd.DataFrame, rejudged: pd.DataFrame, out_dir: str | Path,
                    inputs: Sequence[str | Path], settings: dict[str, Any], confidence: float,
                    figures_dir: str | Path | None = None) -> list[Path]:
    """judge_agreement.csv (the report), judge_agreement_answers.csv (every re-judged answer, both judges'
    scores) in `out_dir` and the figure (intervals at `confidence`) in `figures_dir` (default: `out_dir`),
    each with a manifest of `settings`."""
    from .figures import plot_judge_agreement

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{name}.csv" for name in AGREEMENT_CSVS]
    for path, frame in zip(written, (report, rejudged), strict=True):
        write_manifest(path, "judge-agreement", inputs, settings)
        write_csv(frame, path)
    figures_dir = Path(figures_dir or out_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures = list(plot_judge_agreement(rejudged, report, figures_dir / AGREEMENT_FIGURE, confidence))
    for path in figures:
        write_manifest(path, "judge-agreement", inputs, settings)
    return written + figures
