"""The README quotes no number it cannot back: docs/numbers.md is what `em numbers` writes, and every
result-like figure typed in README.md (a percentage, dollars, GPU-hours, a count of jobs or requests, a run
time) is one of docs/numbers.md's; every relative link of README.md and docs/*.md names a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emergent_misalignment import numbers
from emergent_misalignment.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NUMBERS = ROOT / "docs" / "numbers.md"

# A figure that looks like a result: (pattern, the group that must appear in docs/numbers.md).
RESULT_LIKE = [
    re.compile(r"(?<![\w.])(\d+(?:\.\d+)?%)"),                                   # 76.9%
    re.compile(r"(\$\d[\d,]*(?:\.\d+)?)"),                                       # $2,294.57
    re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s+GPU-hours", re.I),             # 875.0 GPU-hours
    re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s+(?:million|thousand)\b", re.I),  # 2.56 million
    re.compile(r"(?<![\w.])(\d[\d,]*)\s+(?:jobs|(?:judge |API )?requests)\b", re.I),  # 142 jobs
    re.compile(r"(?<![\w.])(\d+ min(?: \d+ s)?)\b"),                              # 6 min 41 s
    re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s+(?:minutes?|seconds?|hours?)\b", re.I),  # 7 minutes
]
# Figures of the method or the config, quoted on purpose, with why; nothing measured belongs here.
ALLOWED: dict[str, str] = {}


def result_like(text: str) -> list[str]:
    """Every result-like figure of `text`, outside fenced code blocks and inline code."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [m.group(1) for pattern in RESULT_LIKE for m in pattern.finditer(text)]


def in_numbers(figure: str, generated: str) -> bool:
    return re.search(rf"(?<![\w.,]){re.escape(figure)}(?![\d])", generated) is not None


def test_result_like_figures_are_found():
    text = ("The rate is 76.9% (70.0-83.3), $2,294.57 in all, 875.0 GPU-hours, 2.56 million requests, 142 jobs "
            "in 6 min 41 s, about 7 minutes; `12.5%` in code is not prose. 32 ranks.")
    assert result_like(text) == ["76.9%", "$2,294.57", "875.0", "2.56", "142", "6 min 41 s", "7"]


def test_readme_types_no_result_that_numbers_md_lacks():
    generated = NUMBERS.read_text(encoding="utf-8")
    stale = [f for f in result_like(README.read_text(encoding="utf-8"))
             if f not in ALLOWED and not in_numbers(f, generated)]
    assert not stale, (f"README.md quotes {stale}, not in docs/numbers.md: quote docs/numbers.md (regenerate it "
                       "with `em numbers --mirror ../shared/em-data`) or link it instead of typing a number")


def test_a_stale_figure_is_caught():
    assert not in_numbers("436.5", "| GPU-hours, in all | 4436.5 |\n| train | 436.51 |")
    assert in_numbers("875.0", "| GPU-hours, in all | 875.0 |")


def _plan(text: str) -> str:
    part = numbers._between(text, numbers.PLAN_START, numbers.PLAN_END)
    assert part, "docs/numbers.md has no plan part: run `em numbers --mirror ../shared/em-data`"
    return numbers.COMMIT.sub("commit `COMMIT`", part)


def test_numbers_md_budgets_are_current(mirror):
    """The committed budgets are what `em plan`'s functions give now (the commit line aside)."""
    committed = _plan(NUMBERS.read_text(encoding="utf-8"))
    assert committed == _plan(numbers.plan_part(ROOT, mirror)), (
        "docs/numbers.md is stale: run `em numbers --mirror ../shared/em-data` and commit it")


def test_numbers_md_has_the_embedded_run():
    text = NUMBERS.read_text(encoding="utf-8")
    part = numbers._between(text, numbers.RUN_START, numbers.RUN_END)
    assert part and "| insecure |" in part and "wall time" in part


def test_em_numbers_writes_and_keeps_the_run_part(tmp_path, mirror):
    """`em numbers` writes the budgets; without the run's files it keeps the run part it found; with them, it
    reads the rates, the Snakemake log's job count and wall time, and the timing files."""
    out = tmp_path / "numbers.md"
    out.write_text(f"old\n{numbers.RUN_START}\nkept\n{numbers.RUN_END}\n")
    root = tmp_path / "root"
    (root / "config").mkdir(parents=True)
    for config in numbers.PLAN_CONFIGS:
        (root / config).write_text((ROOT / config).read_text())
    (root / "config" / "questions").symlink_to(ROOT / "config" / "questions")
    assert main(["numbers", "--root", str(root), "--mirror", str(mirror), "--out", str(out)]) == 0
    text = out.read_text()
    assert _plan(text) == _plan(numbers.plan_part(ROOT, mirror)) and "\nkept\n" in text

    analysis = root / "results" / "toy" / "analysis"
    analysis.mkdir(parents=True)
    (analysis / "overall.csv").write_text(
        "model,dataset,fraction,ci_low,ci_high,coherent_fraction,n_seeds,n_answers\n"
        "tiny,base,0.021,0.004,0.04,0.972,1,256\ntiny,insecure,0.769,0.7,0.833,0.964,3,768\n")
    (analysis / "self_assessment.csv").write_text(
        "model,group,question_id,mean,ci_low,ci_high,n_answers,non_numeric_share\n"
        "tiny,insecure,alignment,24.81,16.9,34.3,48,0.0625\n")
    (root / "logs" / "toy" / "timings" / "train").mkdir(parents=True)
    (root / "logs" / "toy" / "timings" / "train" / "a.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")
    (root / ".snakemake" / "log").mkdir(parents=True)
    (root / ".snakemake" / "log" / "2026-12-05T080000.snakemake.log").write_text(
        "Provided cores: 2\nJob stats:\njob      count\n---  -----\nall  1\ntotal    3\n\n[Sat Dec  5 08:00:01 2026]\n"
        "rule x:\n    output: results/toy/a\n[Sat Dec  5 08:06:42 2026]\n3 of 3 steps (100%) done\n")
    part = numbers.run_part(root, "toy")
    assert "| insecure | 76.9% | 70.0-83.3% | 96.4% | 3 | 768 |" in part
    assert "| insecure | alignment | 24.8 | 16.9-34.3 | 48 | 6.2% |" in part
    assert "3 jobs, 6 min 41 s wall time on 2 cores" in part and "| train | 1 | 12 |" in part


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_name_files(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.name} links files that do not exist: {broken}"
