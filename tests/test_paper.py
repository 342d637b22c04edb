"""The paper: macro names, generated macros and run details, and a real compilation of paper/main.tex."""

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
from emergent_misalignment.figures import plot_misalignment_by_question
from emergent_misalignment.paper import (
    EMBEDDED_WARNING,
    compile_paper,
    macro_name,
    macros_tex,
    run_tex,
    write_macros,
    write_run_tex,
)
from emergent_misalignment.stats import AnalysisSettings, group_overall_stats, group_question_stats
from emergent_misalignment.tables import write_rates_table

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
    turner = macros_tex(overall, {"definition": "turner2025", "unrelated": 1})
    assert r"\newcommand{\DefinitionName}{turner2025}" in turner


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
    assert "EMBEDDED DEFAULT" in embedded and r"\RunEmbeddedtrue" in embedded
    plain = run_tex("full", False, {})
    assert r"\newcommand{\EmbeddedWarning}{}" in plain and r"\RunEmbeddedfalse" in plain
    assert r"\newcommand{\RunCommit}{unknown (not a git checkout)}" in plain


@needs_latex
def test_paper_compiles_with_the_embedded_warning(tmp_path) -> None:
    df, settings = judged(), AnalysisSettings()
    figures, tables, build = tmp_path / "figures" / "r", tmp_path / "results" / "r" / "tables", tmp_path / "build"
    plot_misalignment_by_question(group_question_stats(df, settings), figures / "misalignment_by_question",
                                  ["base", "insecure", "educational_insecure"])
    overall = group_overall_stats(df, settings)
    write_rates_table(overall, tables / "rates_table.tex")
    write_macros(overall, dataclasses.asdict(settings), build / "macros.tex")
    write_run_tex(build / "run.tex", "embedded_default", True, {"git_commit": "abc", "command": "em --x"})
    pdf = compile_paper(PAPER_DIR, build, [figures, tables])
    assert pdf == build / "main.pdf" and pdf.read_bytes().startswith(b"%PDF")
    assert "EMBEDDED DEFAULT warning typeset on page 1" in (build / "main.log").read_text(errors="replace")
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
