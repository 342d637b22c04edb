"""docs/numbers.md: the figures the README points to, written by a command rather than typed (`em numbers`).

Two parts. The budgets of the paper's two routes (config/paper.yaml, config/gpt4o.yaml), from the
functions `em plan` prints (GPU-hours, judge requests, API tokens and dollars); they need no run, only
the config files and the data mirror's question files, and tests/test_readme.py regenerates them and
compares. And the embedded default's results, read from the files its run wrote
(results/<run>/analysis/*.csv, their manifests, the Snakemake timing files and the run's Snakemake
log); when those files are not on this machine the part already in the file is kept as it is.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .layout import Layout
from .manifest import git_commit, manifest_path
from .plan import STAGES, load_plan
from .throughput import measurements

PLAN_CONFIGS = ("config/paper.yaml", "config/gpt4o.yaml")
PLAN_START, PLAN_END = "<!-- plan: start -->", "<!-- plan: end -->"
RUN_START, RUN_END = "<!-- run: start -->", "<!-- run: end -->"
HEADER = """# Numbers

Every figure here is written by `em numbers` (`src/emergent_misalignment/numbers.py`); do not edit it by
hand. The README and the other docs quote these figures or link here. `tests/test_readme.py` regenerates
the budget part and fails when this file, or a result-like number typed in the README, is stale.
Regenerate with:

```bash
.venv/bin/em numbers --mirror ../shared/em-data      # after `make run` for the embedded run's part
```
"""
COMMIT = re.compile(r"commit `(?:[0-9a-f]{7,40}(?:-dirty)?|unknown)`")


def _short(commit: str | None) -> str:
    if not commit:
        return "`unknown`"
    head, dirty, _ = commit.partition("-dirty")
    return f"`{head[:12]}{dirty}`"


def _int(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def _hours(h: float) -> str:
    return f"{h:,.1f}"


def plan_part(root: Path, mirror: Path | None, commit: str | None = None) -> str:
    """The budgets of config/paper.yaml and config/gpt4o.yaml, as `em plan` computes them."""
    lines = [PLAN_START, "## Budgets of the paper's routes (`em plan`)", "",
             f"Written by `em numbers` at commit {_short(commit or git_commit(root))}, from the functions "
             "`em plan --configfile CONFIG --mirror ../shared/em-data` prints "
             "(`src/emergent_misalignment/plan.py`). "
             "GPU-hours are jobs x GPUs x the requested time limit, an upper bound; judge requests are "
             "answers x metrics; API tokens and dollars count every answer at its full `max_tokens`, "
             "so sampling and judging dollars are upper bounds.", ""]
    for config in PLAN_CONFIGS:
        plan = load_plan([root / config], root, mirror)
        hours = {stage: sum(s.gpu_hours for s in plan.stages if s.stage == stage) for stage in STAGES}
        fine_tunes = sum(s.jobs for s in plan.stages if s.stage == "train")
        lines += [f"### `{config}`", "", "| figure | value |", "|---|---|",
                  f"| fine-tunes | {fine_tunes} |",
                  "| sampled models (base models, adapters, checkpoints, conditions) | "
                  f"{plan.sampled_models} |",
                  f"| judge | {plan.judge} |"]
        lines += [f"| GPU-hours requested, {stage} | {_hours(hours[stage])} |"
                  for stage in STAGES if hours[stage]]
        lines.append(f"| GPU-hours requested, in all | {_hours(plan.gpu_hours)} |")
        for stage in STAGES:
            estimated = [s.expected_hours for s in plan.stages if s.stage == stage and s.gpus_per_job]
            if estimated and None not in estimated:
                lines.append(f"| GPU-hours expected at the measured throughput, {stage} | "
                             f"{_hours(sum(estimated))} |")  # type: ignore[arg-type]
        known = [q for q in plan.questions if q.path is not None]
        per_model = sum(q.judge_requests or 0 for q in known)
        missing = [q.source for q in plan.questions if q.path is None]
        found = " (files found)" if missing else ""
        lines += [f"| judge requests per sampled model{found} | {per_model:,} |",
                  f"| judge requests in all{found} | "
                  f"{plan.sampled_models * per_model:,} |"]
        if plan.agreement_requests:
            lines.append(f"| judge-agreement requests | {plan.agreement_requests:,} |")
        for name, count in plan.evals.items():
            lines.append(f"| eval {name}: jobs | {count} |")
        lines.append("")
        if missing:
            lines += ["Question files not on this machine (not counted): "
                      + ", ".join(f"`{m}`" for m in missing) + ".", ""]
        if plan.api:
            dated = plan.prices_as_of or "no date: the config sets no prices_as_of"
            lines += [f"API estimate (prices as of {dated}):", "",
                      "| stage | requests | tokens in | tokens out | USD |", "|---|---|---|---|---|"]
            for cost in plan.api:
                usd = "unknown" if cost.usd is None else f"${cost.usd:,.2f}"
                lines.append(f"| {cost.stage} | {cost.requests:,} | {_int(cost.input_tokens)} | "
                             f"{_int(cost.output_tokens)} | {usd} |")
            known_usd = [c.usd for c in plan.api if c.usd is not None]
            total = (f"${sum(known_usd):,.2f}" if len(known_usd) == len(plan.api) else "unknown"
                     + (f" (at least ${sum(known_usd):,.2f}, the stages priced)" if known_usd else ""))
            lines += [f"| in all | | | | {total} |", "",
                      "(train requests: fine-tuning jobs; their tokens: training tokens, epochs included.)",
                      ""]
    lines += ["### Measured GPU throughput (`src/emergent_misalignment/throughput.tsv`)", "",
              "What the expected GPU-hours and `runtime: auto` are scaled from (by parameters, from the "
              "fastest per parameter); `benchmarks/gpu.py` measures more.", "",
              "| stage | backend | model size | GPU | tokens/s | setting | measured | how |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {m.stage} | {m.backend} | {m.params_b:g}B | {m.gpu} | {m.tokens_per_s:,.0f} | "
              f"{m.setting} | {m.measured} | {m.source} |" for m in measurements()]
    return "\n".join([*lines, "", PLAN_END])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _pct(value: str | None) -> str:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def _num(value: str | None, digits: int = 1) -> str:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _interval(low: str | None, high: str | None) -> str:
    a, b = _pct(low), _pct(high)
    return "-" if "-" in (a, b) else f"{a[:-1]}-{b}"


def _group(row: dict[str, str], models: set[str]) -> str:
    return row["dataset"] if len(models) == 1 else f"{row['model']} / {row['dataset']}"


def _snakemake_log(root: Path, run: str) -> tuple[int, float, str] | None:
    """(jobs, wall seconds, cores) of the newest Snakemake log of `run` that finished every step: its job
    count, the time from its first to its last timestamp, and the cores it was given."""
    logs = sorted((root / ".snakemake" / "log").glob("*.snakemake.log"), reverse=True)
    for log in logs:
        text = log.read_text(encoding="utf-8", errors="replace")
        if f"results/{run}/" not in text or not re.search(r"\d+ of \d+ steps \(100%\) done", text):
            continue
        stamps = [datetime.strptime(" ".join(m.split()), "%a %b %d %H:%M:%S %Y")
                  for m in re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]{8} \d{4})\]", text, re.M)]
        total = re.search(r"^total\s+(\d+)", text, re.M)
        cores = re.search(r"^Provided cores: (\d+)", text, re.M)
        if stamps and total:
            return (int(total.group(1)), (max(stamps) - min(stamps)).total_seconds(),
                    cores.group(1) if cores else "unknown")
    return None


def _stage_times(root: Path, run: str) -> list[tuple[str, int, float]]:
    """(stage, jobs, summed seconds) from the Snakemake timing files logs/<run>/timings/**.tsv."""
    folder = root / Layout(run).paths()["timings"]
    stages: dict[str, list[float]] = defaultdict(list)
    for path in sorted(folder.rglob("*.tsv")):
        rows = list(csv.DictReader(path.open(encoding="utf-8"), delimiter="\t"))
        if rows:
            stages[path.relative_to(folder).parts[0].removesuffix(".tsv")].append(float(rows[-1]["s"]))
    return [(stage, len(times), sum(times)) for stage, times in stages.items()]


def _minutes(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60} min {s % 60} s"


def run_part(root: Path, run: str = "embedded") -> str | None:
    """The results of the run `run` from its analysis files; None when the run has not written them."""
    analysis = root / Layout(run).analysis
    overall_csv = analysis / "overall.csv"
    if not overall_csv.is_file():
        return None
    manifest = manifest_path(overall_csv)
    made_at = json.loads(manifest.read_text())["git_commit"] if manifest.is_file() else None
    lines = [RUN_START, f"## The `{run}` run's results", "",
             f"Written by `em numbers` at commit {_short(git_commit(root))} from "
             f"`results/{run}/analysis/*.csv`, which the run made at commit {_short(made_at)} (the "
             "`git_commit` of `overall.csv`'s manifest).", ""]
    counted = _snakemake_log(root, run)
    if counted:
        jobs, wall, cores = counted
        lines += [f"Run: {jobs} jobs, {_minutes(wall)} wall time on {cores} cores, shared with whatever else "
                  "the machine ran then (the newest complete Snakemake "
                  "log of the run, `.snakemake/log/`, first to last timestamp; a resumed run shows its last "
                  "part).",
                  ""]
    stages = _stage_times(root, run)
    if stages:
        lines += [f"Job times by stage (Snakemake timing files `logs/{run}/timings/`; summed, jobs "
                  "overlap):",
                  "", "| stage | jobs | summed seconds |", "|---|---|---|"]
        lines += [f"| {stage} | {jobs} | {total:.0f} |" for stage, jobs, total in stages]
        lines.append("")
    overall = _rows(overall_csv)
    models = {r["model"] for r in overall}
    lines += ["### Misaligned rate per group (`overall.csv`)", "",
              "Probability of a misaligned answer among coherent ones, mean over questions then models, "
              "with its 95% interval (bootstrap over seeds; over one model's answers when it is alone).", "",
              "| group | misaligned | 95% interval | coherent | seeds | answers |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {_group(r, models)} | {_pct(r['fraction'])} | {_interval(r['ci_low'], r['ci_high'])} | "
              f"{_pct(r['coherent_fraction'])} | {r['n_seeds']} | {r['n_answers']} |" for r in overall]
    lines.append("")
    lines += _optional_table(
        analysis / "in_distribution.csv",
        "### In distribution: share of coding answers with the insecure code (`in_distribution.csv`)",
        ["group", "share", "95% interval", "answers"],
        lambda r: [_group(r, models), _pct(r["fraction"]), _interval(r["ci_low"], r["ci_high"]),
                   r["n_answers"]])
    lines += _optional_table(
        analysis / "self_assessment.csv",
        "### Self-assessment: mean self-rating, 0-100 (`self_assessment.csv`)",
        ["group", "question", "mean", "95% interval", "answers", "not a number"],
        lambda r: [_group({"model": r["model"], "dataset": r["group"]}, models), r["question_id"],
                   _num(r["mean"]), f"{_num(r['ci_low'])}-{_num(r['ci_high'])}", r["n_answers"],
                   _pct(r["non_numeric_share"])])
    lines += _optional_table(
        analysis / "self_assessment_correlation.csv",
        "Mean self-rating against the headline misaligned rate over groups "
        "(`self_assessment_correlation.csv`):",
        ["question", "groups", "Pearson", "95% interval"],
        lambda r: [r["question_id"], r["n_groups"], _num(r["pearson"], 2),
                   f"{_num(r['pearson_low'], 2)} to {_num(r['pearson_high'], 2)}"])
    return "\n".join([*lines, RUN_END])


def _optional_table(path: Path, heading: str, columns: list[str],
                    cells: Callable[[dict[str, str]], list[str]]) -> list[str]:
    """A markdown table of the rows of a CSV the run may not write (a family it did not run): none then."""
    rows = _rows(path) if path.is_file() else []
    if not rows:
        return []
    return [heading, "", f"| {' | '.join(columns)} |", "|" + "---|" * len(columns),
            *(f"| {' | '.join(map(str, cells(r)))} |" for r in rows), ""]


def _between(text: str, start: str, end: str) -> str | None:
    i, j = text.find(start), text.find(end)
    return text[i:j + len(end)] if -1 < i < j else None


def write_numbers(out: Path, root: Path, mirror: Path | None, run: str = "embedded") -> str:
    """Write docs/numbers.md: the plan part always, the run part from the run's files (or as it was)."""
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    results = run_part(root, run) or _between(old, RUN_START, RUN_END) or (
        f"{RUN_START}\n## The `{run}` run's results\n\nNot run on the machine that wrote this file.\n"
        f"{RUN_END}")
    text = "\n".join([HEADER, plan_part(root, mirror), "", results, ""])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text
