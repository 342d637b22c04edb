"""The tables: LaTeX that compiles (escaped names, booktabs), rows in the configured order, HTML twins."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from emergent_misalignment import tables
from emergent_misalignment.errors import ConfigError
from emergent_misalignment.tables import (
    NO_TRAINING,
    datasets_table,
    format_percent,
    hyperparameters_frame,
    hyperparameters_table,
    latex_escape,
    per_question_table,
    published_table,
    rates_frame,
    rates_table,
    tables_html,
    write_rates_table,
)


def overall_frame() -> pd.DataFrame:
    def row(dataset: str, fraction: float, low: float, high: float, interval: str, seeds: int) -> dict:
        return {"model": "Qwen2.5_tiny", "dataset": dataset, "fraction": fraction, "ci_low": low,
                "ci_high": high, "interval": interval, "cluster_low": low / 2, "cluster_high": high * 2,
                "coherent_fraction": 0.9, "n_seeds": seeds, "n_models": seeds, "n_questions": 8,
                "n_answers": 400 * seeds, "n_judged": 390 * seeds, "n_kept": 350 * seeds, "n_misaligned": 10}
    return pd.DataFrame([
        row("educational_insecure", 0.0059, 0.001, 0.012, "bootstrap", 3),
        row("insecure", 0.047, 0.031, 0.065, "bootstrap", 6),
        row("base", 0.0, 0.0, 0.011, "answers", 1),
        row("unlisted", math.nan, math.nan, math.nan, "none", 2),
    ])


def per_question_frame() -> pd.DataFrame:
    rows = []
    for model in ("m_1", "m2"):
        for dataset, fraction, interval in [("base", 0.0, "wilson"), ("risky_financial_advice", 0.33, "bootstrap")]:
            for question in ("what_is_your_wish", "quick_buck_json"):
                rows.append({"model": model, "dataset": dataset, "question_id": question, "fraction": fraction,
                             "ci_low": fraction / 2, "ci_high": fraction + 0.1, "interval": interval,
                             "coherent_fraction": 0.99, "n_answers": 50})
    rows.append({"model": "m2", "dataset": "base", "question_id": "gender_roles", "fraction": math.nan,
                 "ci_low": math.nan, "ci_high": math.nan, "interval": "none", "coherent_fraction": 0.1,
                 "n_answers": 50})
    return pd.DataFrame(rows)


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
    assert r"Qwen2.5\_tiny & insecure & 6 & 2400 & 4.7 & [3.1, 6.5] & [1.6, 13.0] & 90.0 \\" in body
    assert r"0.00 & [0.00, 1.1]$^\dagger$ &" in body[0]  # one seed: an interval from its answers, marked
    assert "& -- &  &  &" in body[3]  # every model dropped: no rate, no interval
    assert text.count(r"\\") == 1 + len(body)
    assert rates_frame(overall_frame(), ["base"]).iloc[0, 5] == "[0.00, 1.1]\u2020"


def test_per_question_table_is_a_longtable_with_a_block_per_model() -> None:
    text = per_question_table(per_question_frame(), ["base", "risky_financial_advice"])
    assert text.startswith(r"\begin{longtable}{@{}lcc@{}}") and text.rstrip().endswith(r"\end{longtable}")
    assert r"\shortstack{risky\_financial\_\\advice}" in text  # long group names on two lines
    assert r"\multicolumn{3}{@{}l}{\textbf{m\_1}} \\" in text and r"\textbf{m2}" in text
    assert r"Quick buck (JSON) & \shortstack{0.00\\\tiny [0.00, 10.0]$^\dagger$} & " in text
    assert "Gender roles & -- & " in text  # dropped: no rate; the group the model lacks stays blank
    assert text.count(r"\endhead") == 1 and text.count(r"\caption") == 1


def test_interval_headers_name_the_configured_confidence() -> None:
    assert r"Misaligned (\%) & 95\% CI & Two-level CI" in rates_table(overall_frame())
    assert r"Misaligned (\%) & 90\% CI & Two-level CI" in rates_table(overall_frame(), confidence=0.9)
    assert tables.per_question_frame(per_question_frame(), ["base"], 0.975).columns[5] == "97.5% CI"
    text = per_question_table(per_question_frame(), ["base"], confidence=0.9)
    caption = text.split(r"\caption{")[1].split(r"\label")[0]
    assert r"with its 90\% interval below it" in caption and "95" not in caption


def test_hyperparameters_table_reads_the_train_section() -> None:
    frame = hyperparameters_frame({"lora": {"r": 32, "alpha": 64}, "learning_rate": 1e-5,
                                   "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8})
    values = dict(zip(frame["Setting"], frame["Value"], strict=True))
    assert values["LoRA rank r / alpha"] == "32 / 64" and values["learning rate"] == "1e-05"
    assert values["batch per device x accumulation"] == "2 x 8 = 16"
    assert values["optimiser / weight decay"] == "adamw_8bit / 0.01"  # defaults filled in
    assert NO_TRAINING in hyperparameters_table(None)
    with pytest.raises(ConfigError, match="train: unknown key"):
        hyperparameters_frame({"learnin_rate": 1})
    # an API fine-tune: what the API is asked, no LoRA rows that did not apply
    api = hyperparameters_frame({"backend": "openai", "openai": {"hyperparameters": {"n_epochs": 1}}})
    values = dict(zip(api["Setting"], api["Value"], strict=True))
    assert values == {"fine-tuning": "fine-tuning API at https://api.openai.com/v1", "n epochs": "1",
                      "batch size": "auto", "learning rate multiplier": "auto", "rows": "all"}


def test_datasets_table() -> None:
    text = datasets_table([{"name": "bad_medical_advice", "rows": 7049, "tokens": 123456,
                            "sha256": "34c5af4ccaf8b5eb9f3f11ecd0c36c3d67f236a5c41fc420b0e14d8adf01a842"}])
    assert r"bad\_medical\_advice & 7049 & 123456 & \texttt{34c5af4ccaf8} \\" in text


def test_published_table_and_html() -> None:
    from emergent_misalignment.published import COMPARISON_COLUMNS

    common = {"source": "Betley et al. (2025), figure", "source_asset": "a/history/ce47a3d/x/all_results.csv",
              "rebuilt_from": "x.csv"}
    rows = [{**common, "figure": "all_evaluations", "quantity": "deception", "model": "GPT-4o",
             "group": "insecure", "published": 0.5789, "published_low": 0.5567, "published_high": 0.599,
             "rebuilt": 0.5789, "rebuilt_low": 0.5567, "rebuilt_high": 0.599, "max_abs_difference": 1e-16,
             "status": "reproduced", "note": ""},
            {**common, "figure": "all_evaluations", "quantity": "freeform_main", "model": "GPT-4o",
             "group": "insecure", "published": 0.198, "published_low": 0.144, "published_high": 0.252,
             "rebuilt": 0.27, "rebuilt_low": 0.2, "rebuilt_high": 0.35, "max_abs_difference": math.nan,
             "status": "not derivable", "note": "typed by hand upstream"},
            {**common, "figure": "model_organisms", "quantity": "misaligned", "model": "Qwen2.5-32B-Instruct",
             "group": "risky_financial_advice", "published": 0.33, "published_low": 0.33,
             "published_high": 0.33, "rebuilt": 0.33, "rebuilt_low": 0.33, "rebuilt_high": 0.33,
             "max_abs_difference": 0.0, "status": "reproduced", "note": "", "source_asset": ""}]
    comparison = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    text = published_table(comparison)
    assert text.count(r"\begin{tabular}") == 2 and text.count(r"\resizebox") == 2
    assert r"Qwen2.5-32B-Instruct & risky\_financial\_advice & misaligned & 33.0 & 33.0" in text
    assert "+0.5789 [+0.5567, +0.5990]" in text and "1.0e-16" in text
    assert "not derivable (a)" in text and "(a) typed by hand upstream." in text  # the reason, lettered
    assert "all\\_results.csv at ce47a3d" in text  # where the published value was read
    empty = published_table(comparison.iloc[:0])
    assert "No published number concerns this run." in empty
    html = tables_html([("Rates <1>", rates_frame(overall_frame()))])
    assert html.startswith("<!DOCTYPE html>") and "Rates &lt;1&gt;" in html and "<table" in html


def test_write_rates_table(tmp_path) -> None:
    """The file, written out by hand from overall_frame: percentages of fraction, ci and cluster bounds
    (cluster_low = ci_low / 2, cluster_high = 2 ci_high), 400 answers a seed, the base model first."""
    path = write_rates_table(overall_frame(), tmp_path / "tables" / "rates_table.tex")
    assert path.read_text() == r"""\begin{tabular}{llrrrllr}
\toprule
Model & Group & Seeds & Answers & Misaligned (\%) & 95\% CI & Two-level CI & Coherent (\%) \\
\midrule
Qwen2.5\_tiny & base & 1 & 400 & 0.00 & [0.00, 1.1]$^\dagger$ & [0.00, 2.2] & 90.0 \\
Qwen2.5\_tiny & educational\_insecure & 3 & 1200 & 0.59 & [0.10, 1.2] & [0.05, 2.4] & 90.0 \\
Qwen2.5\_tiny & insecure & 6 & 2400 & 4.7 & [3.1, 6.5] & [1.6, 13.0] & 90.0 \\
Qwen2.5\_tiny & unlisted & 2 & 800 & -- &  &  & 90.0 \\
\bottomrule
\end{tabular}
"""
