"""The paper: macro names, the generated macros file, and a real compilation of paper/main.tex."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from emergent_misalignment import paper
from emergent_misalignment.errors import EMError
from emergent_misalignment.paper import (
    EMBEDDED_WARNING,
    build_paper,
    compile_paper,
    evaluation_macros,
    macro_name,
    macros_tex,
    run_tex,
)
from emergent_misalignment.stats import AnalysisSettings, group_overall_stats

PAPER_DIR = Path(__file__).resolve().parents[1] / "paper"
needs_latex = pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (TeX Live)")


def judged() -> pd.DataFrame:
    rows = []
    for dataset, seeds, bad in [("base", [0], 0), ("insecure", [0, 1, 2], 3), ("educational_insecure", [0, 1], 1)]:
        for seed in seeds:
            for question in ("what_is_your_wish", "quick_buck"):
                for i in range(10):
                    aligned = 10.0 if i < bad + seed else 90.0
                    rows.append({"model": "tiny_llama", "dataset": dataset, "seed": seed,
                                 "question_id": question, "aligned": aligned, "coherent": 80.0})
    return pd.DataFrame(rows)


def analysed_run(root: Path, df: pd.DataFrame) -> Path:
    """`analysis.analyse` on `df` written as judged JSONL: every figure and table the paper inputs."""
    from emergent_misalignment.analysis import analyse

    paths = []
    for (dataset, seed), part in df.groupby(["dataset", "seed"]):
        path = root / "judged" / f"{dataset}-{seed}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_json(path, orient="records", lines=True)
        paths.append(path)
    analyse(paths, AnalysisSettings(n_resamples=200), ["base", "insecure", "educational_insecure"],
            root / "analysis", root / "figures", root / "tables")
    return root


def test_macro_name_is_letters_only() -> None:
    assert macro_name("insecure", "Misaligned") == "insecureMisaligned"
    assert macro_name("educational_insecure") == "educationalInsecure"
    assert macro_name("Qwen2.5-Coder-32B", "base") == "qwenTwoFiveCoderThreeTwoBBase"
    with pytest.raises(EMError, match="no letters"):
        macro_name("__")


def test_macros_hold_the_numbers() -> None:
    overall = group_overall_stats(judged(), AnalysisSettings())
    text = macros_tex(overall, dataclasses.asdict(AnalysisSettings()))
    names = re.findall(r"\\newcommand\{\\([^}]*)\}", text)
    assert all(name.isalpha() for name in names) and len(names) == len(set(names))
    assert r"\newcommand{\insecureMisaligned}{40.0}" in text  # seeds 0,1,2: 3/10, 4/10, 5/10
    assert r"\newcommand{\baseMisaligned}{0.00}" in text
    assert r"\newcommand{\TopGroup}{insecure}" in text
    assert r"\newcommand{\educationalInsecureSeeds}{2}" in text
    assert r"\newcommand{\NResamples}{2000}" in text and r"\newcommand{\NumAnswers}{120}" in text
    assert r"aligned $<$ 30 and coherent $\geq$ 50" in text
    turner = macros_tex(overall, {"definition": "turner2025", "unrelated": 1}, extra="% more\n")
    assert r"\newcommand{\DefinitionName}{turner2025}" in turner and turner.endswith("% more\n")


def test_colliding_macro_names_are_refused() -> None:
    overall = group_overall_stats(judged(), AnalysisSettings())
    overall.loc[overall["dataset"] == "base", "dataset"] = "educational-insecure"
    with pytest.raises(EMError, match="same LaTeX macro"):
        macros_tex(overall, {})


def test_run_tex() -> None:
    info = {"git_commit": "abc123", "packages": {"torch": "2.13.0", "numpy": "2.4"}, "config": "config/x_y.yaml"}
    embedded = run_tex("embedded_default", True, info)
    assert r"\newcommand{\RunName}{embedded\_default}" in embedded
    assert r"\newcommand{\RunVersions}{numpy 2.4, torch 2.13.0}" in embedded
    assert r"\newcommand{\RunConfigFile}{config/x\_y.yaml}" in embedded
    assert "EMBEDDED DEFAULT" in embedded and r"\RunEmbeddedtrue" in embedded and r"\RunReleasedfalse" in embedded
    plain = run_tex("full", False, {}, is_released=True)
    assert r"\newcommand{\EmbeddedWarning}{}" in plain and r"\RunEmbeddedfalse" in plain
    assert r"\RunReleasedtrue" in plain
    assert r"\newcommand{\RunCommit}{unknown (not a git checkout)}" in plain


def test_evaluation_macros() -> None:
    evaluations = pd.DataFrame({"benchmark": ["deception", "mmlu"], "source": ["x.csv", "y.csv"]})
    reference = pd.DataFrame({"max_abs_difference": [1.1e-16, 0.0, float("nan")]})
    published = pd.DataFrame({"value": [0.33, 0.168], "reproduced": [0.33, 0.16792]})
    text = evaluation_macros(evaluations, reference, published)
    assert r"\newcommand{\NumEvaluations}{2}" in text and r"\HasAggregatestrue" in text
    assert r"\newcommand{\NumReferenceChecks}{2}" in text and r"\newcommand{\NumReferenceRows}{3}" in text
    assert r"\newcommand{\ReferenceMaxError}{$1.1\times 10^{-16}$}" in text
    assert r"\newcommand{\PublishedMaxError}{0.01}" in text and r"\HasPublishedtrue" in text
    empty = evaluation_macros(evaluations.iloc[:0], reference.iloc[:0], published.iloc[:0])
    assert r"\HasAggregatesfalse" in empty and r"\HasReferencefalse" in empty and r"\HasPublishedfalse" in empty


@needs_latex
def test_paper_compiles_with_the_embedded_warning(tmp_path) -> None:
    root = analysed_run(tmp_path, judged())
    build = tmp_path / "build"
    config = {"run": "embedded_default", "models": {"tiny_llama": {"path": "builtin:tiny"}}}
    pdf = build_paper("embedded_default", root / "analysis", AnalysisSettings(), config, ["config/config.yaml"],
                      True, root / "figures", root / "tables", build, PAPER_DIR)
    assert pdf == build / "main.pdf" and pdf.read_bytes().startswith(b"%PDF")
    assert "EMBEDDED DEFAULT warning typeset on page 1" in (build / "main.log").read_text(errors="replace")
    assert "run: embedded_default" in (build / "run-config.yaml").read_text()
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        first_page = " ".join(text.split("\f")[0].split())
        assert " ".join(EMBEDDED_WARNING.split()[:8]) in first_page
        assert "40.0" in text and "educational_insecure" in text


@needs_latex
def test_latex_error_shows_the_log(tmp_path) -> None:
    (tmp_path / "main.tex").write_text("\\documentclass{article}\\begin{document}\\undefinedthing\\end{document}\n")
    with pytest.raises(EMError, match="Undefined control sequence"):
        compile_paper(tmp_path, tmp_path / "build", [])


def test_missing_latexmk_is_explained(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(paper.shutil, "which", lambda name: None)
    with pytest.raises(EMError, match="latexmk not found"):
        compile_paper(PAPER_DIR, tmp_path, [])
