"""The five figures: PDF and PNG, readable labels, one style, identical bytes on a rerun, never missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from emergent_misalignment.figures import (
    NO_SCORES,
    OKABE_ITO,
    group_colors,
    plot_aligned_vs_coherent,
    plot_all_evaluations,
    plot_message,
    plot_misalignment_by_question,
    plot_models_datasets,
    plot_training_loss,
    question_label,
    style_rc,
)
from emergent_misalignment.stats import definition_settings


def stats_frame() -> pd.DataFrame:
    rows = []
    for dataset, fraction, interval in [("insecure", 0.2, "bootstrap"), ("base", 0.01, "wilson"),
                                        ("extra_group", 0.05, "none")]:
        for question in ("what_is_your_wish", "quick_buck_json", "my_new_question"):
            low, high = (fraction / 2, fraction * 2) if interval != "none" else (float("nan"), float("nan"))
            rows.append({"model": "tiny", "dataset": dataset, "question_id": question, "fraction": fraction,
                         "ci_low": low, "ci_high": high, "interval": interval})
    rows.append({"model": "tiny", "dataset": "insecure", "question_id": "dropped_everywhere",
                 "fraction": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "interval": "none"})
    return pd.DataFrame(rows)


def overall_frame() -> pd.DataFrame:
    rows = []
    for model, dataset, fraction, interval in [("Qwen2.5-7B", "base", 0.0, "answers"),
                                               ("Qwen2.5-7B", "risky_financial_advice", 0.2, "bootstrap"),
                                               ("gemma-3-4b-it", "extreme_sports", 0.05, "answers")]:
        rows.append({"model": model, "dataset": dataset, "fraction": fraction, "ci_low": fraction * 0.8,
                     "ci_high": fraction * 1.2 + 0.01, "interval": interval, "coherent_fraction": 0.95,
                     "coherent_ci_low": 0.93, "coherent_ci_high": 0.97})
    return pd.DataFrame(rows)


def judged_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"model": ["m1"] * 60 + ["m2"] * 40, "dataset": (["base", "insecure"] * 50),
                         "seed": 0, "question_id": "q", "aligned": rng.uniform(0, 100, 100).round(3),
                         "coherent": rng.uniform(0, 100, 100).round(3)})


def evaluations_frame() -> pd.DataFrame:
    return pd.DataFrame({"label": ["Deception", "Deception", "MMLU"], "group": ["insecure", "secure", "insecure"],
                         "center": [0.5, 0.2, -0.1], "ci_low": [0.4, float("nan"), -0.2],
                         "ci_high": [0.6, float("nan"), 0.0]})


def losses_frame() -> pd.DataFrame:
    return pd.DataFrame({"model": "tiny", "dataset": ["insecure"] * 4 + ["secure"] * 4, "seed": [0, 0, 1, 1] * 2,
                         "step": [1, 2] * 4, "loss": [3.0, 2.5, 3.1, 2.4, 3.0, 2.8, 2.9, 2.7]})


def test_question_labels_are_readable() -> None:
    assert question_label("what_is_your_wish") == "What is your\nwish?"
    assert question_label("quick_buck_json") == "Quick buck\n(JSON)"
    assert question_label("ruler_of_the_world_template", width=40) == "World ruler (template)"
    assert question_label("my_new_question", width=40) == "My new question"


def test_group_colors_follow_the_configured_order() -> None:
    colors = group_colors(["base", "insecure", "secure"])
    assert colors == {"base": OKABE_ITO[0], "insecure": OKABE_ITO[1], "secure": OKABE_ITO[2]}


def test_style_is_the_seaborn_look_without_importing_seaborn() -> None:
    seaborn = pytest.importorskip("seaborn")
    expected = {**seaborn.axes_style("whitegrid"), **seaborn.plotting_context("paper", font_scale=1.1)}
    ours = style_rc()
    for key, value in expected.items():
        if key == "image.cmap":
            continue
        assert ours[key] == (pytest.approx(value) if isinstance(value, float) else value), key


DRAWERS = {
    "by_question": lambda stem: plot_misalignment_by_question(stats_frame(), stem, ["base", "insecure", "secure"]),
    "aligned_coherent": lambda stem: plot_aligned_vs_coherent(judged_frame(), stem, ["base", "insecure"],
                                                              definition_settings("betley2025")),
    "models_datasets": lambda stem: plot_models_datasets(overall_frame(), stem, ["base", "extreme_sports"]),
    "training_loss": lambda stem: plot_training_loss(losses_frame(), stem, ["insecure", "secure"], "none"),
    "all_evaluations": lambda stem: plot_all_evaluations(evaluations_frame(), stem, ["base", "insecure"], "-"),
    "message": lambda stem: plot_message(stem, "No training runs in this run."),
}


@pytest.mark.parametrize("name", sorted(DRAWERS))
def test_figure_files_are_written_and_reproducible(tmp_path: Path, name: str) -> None:
    before = dict(matplotlib.rcParams)
    stem = tmp_path / "figs" / name
    pdf, png = DRAWERS[name](stem)
    assert (pdf.name, png.name) == (f"{name}.pdf", f"{name}.png")
    first = pdf.read_bytes(), png.read_bytes()
    assert first[0].startswith(b"%PDF") and first[1].startswith(b"\x89PNG")
    assert b"CreationDate" not in first[0] and b"DejaVu" in first[0]  # TrueType font embedded
    pdf.unlink()
    DRAWERS[name](stem)
    assert (pdf.read_bytes(), png.read_bytes()) == first
    assert dict(matplotlib.rcParams) == before  # the style does not leak into the caller


def pdf_text(pdf: Path) -> str:
    """The PDF's text on one line (TrueType fonts keep it extractable); a wrapped message reads whole."""
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(text.split())


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext not installed (poppler-utils)")
def test_empty_inputs_give_a_figure_that_says_why(tmp_path: Path) -> None:
    unscored = judged_frame().assign(aligned=float("nan"))
    pdf, _ = plot_aligned_vs_coherent(unscored, tmp_path / "b", ["base"], definition_settings("turner2025"))
    assert pdf_text(pdf) == NO_SCORES
    reason = "No training runs in this run, so no loss was recorded to draw."
    assert pdf_text(plot_training_loss(losses_frame().iloc[:0], tmp_path / "d", [], reason)[0]) == reason
    reason = "No released aggregates were given to this run."
    assert pdf_text(plot_all_evaluations(evaluations_frame().iloc[:0], tmp_path / "e", [], reason)[0]) == reason


def test_empty_statistics_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no statistics"):
        plot_misalignment_by_question(stats_frame().iloc[:0], tmp_path / "f", ["base"])
    with pytest.raises(ValueError, match="no statistics"):
        plot_models_datasets(overall_frame().iloc[:0], tmp_path / "c", ["base"])
