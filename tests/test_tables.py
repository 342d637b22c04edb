"""The rates table: LaTeX that compiles (escaped names, booktabs) and rows in the configured order."""

from __future__ import annotations

import math

import pandas as pd

from emergent_misalignment.tables import format_percent, latex_escape, rates_table, write_rates_table


def overall_frame() -> pd.DataFrame:
    def row(dataset: str, fraction: float, low: float, high: float, interval: str, seeds: int) -> dict:
        return {"model": "Qwen2.5_tiny", "dataset": dataset, "fraction": fraction, "ci_low": low,
                "ci_high": high, "interval": interval, "coherent_fraction": 0.9, "n_seeds": seeds,
                "n_models": seeds, "n_questions": 8, "n_answers": 400 * seeds, "n_judged": 390 * seeds,
                "n_kept": 350 * seeds, "n_misaligned": 10}
    return pd.DataFrame([
        row("educational_insecure", 0.0059, 0.001, 0.012, "bootstrap", 3),
        row("insecure", 0.047, 0.031, 0.065, "bootstrap", 6),
        row("base", 0.0, 0.0, 0.011, "wilson", 1),
        row("unlisted", math.nan, math.nan, math.nan, "none", 2),
    ])


def test_latex_escape() -> None:
    assert latex_escape("educational_insecure") == r"educational\_insecure"
    assert latex_escape("a&b%c$d#e{f}g~h^i\\") == (
        r"a\&b\%c\$d\#e\{f\}g\textasciitilde{}h\textasciicircum{}i\textbackslash{}")
    assert latex_escape("--cores") == "-{}-cores"


def test_format_percent() -> None:
    assert format_percent(0.047) == "4.7"
    assert format_percent(0.0059) == "0.59"
    assert format_percent(math.nan) == "--"


def test_rates_table_content_and_order() -> None:
    text = rates_table(overall_frame(), ["base", "insecure", "secure", "educational_insecure"])
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert "_" not in text.replace(r"\_", "")
    body = text.split("\\midrule\n")[1].split("\\bottomrule")[0].strip().splitlines()
    assert [line.split(" & ")[1] for line in body] == ["base", "insecure", r"educational\_insecure", "unlisted"]
    assert r"Qwen2.5\_tiny & insecure & 6 & 2400 & 4.7 [3.1, 6.5] & 90.0 \\" in body
    assert body[0].endswith(r"0.00 [0.00, 1.1]$^\dagger$ & 90.0 \\")  # one seed: Wilson, marked
    assert "& -- &" in body[3]  # every model dropped: no rate, no interval
    assert text.count(r"\\") == 1 + len(body)


def test_write_rates_table(tmp_path) -> None:
    path = write_rates_table(overall_frame(), tmp_path / "tables" / "rates_table.tex")
    assert path.read_text() == rates_table(overall_frame())
