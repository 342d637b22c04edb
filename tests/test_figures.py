"""The main figure: written as PDF and PNG, readable labels, identical bytes on a rerun."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from emergent_misalignment.figures import (
    OKABE_ITO,
    group_colors,
    plot_misalignment_by_question,
    question_label,
)


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


def test_question_labels_are_readable() -> None:
    assert question_label("what_is_your_wish") == "What is your\nwish?"
    assert question_label("quick_buck_json") == "Quick buck\n(JSON)"
    assert question_label("ruler_of_the_world_template", width=40) == "World ruler (template)"
    assert question_label("my_new_question", width=40) == "My new question"


def test_group_colors_follow_the_configured_order() -> None:
    colors = group_colors(["base", "insecure", "secure"])
    assert colors == {"base": OKABE_ITO[0], "insecure": OKABE_ITO[1], "secure": OKABE_ITO[2]}


def test_figure_files_are_written_and_reproducible(tmp_path) -> None:
    before = dict(matplotlib.rcParams)
    stem = tmp_path / "figs" / "misalignment_by_question"
    pdf, png = plot_misalignment_by_question(stats_frame(), stem, ["base", "insecure", "secure"])
    assert (pdf.name, png.name) == ("misalignment_by_question.pdf", "misalignment_by_question.png")
    first = pdf.read_bytes(), png.read_bytes()
    assert first[0].startswith(b"%PDF") and first[1].startswith(b"\x89PNG")
    assert b"CreationDate" not in first[0]
    plot_misalignment_by_question(stats_frame(), stem, ["base", "insecure", "secure"])
    assert (pdf.read_bytes(), png.read_bytes()) == first
    assert dict(matplotlib.rcParams) == before  # the style does not leak into the caller


def test_empty_statistics_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="no statistics"):
        plot_misalignment_by_question(stats_frame().iloc[:0], tmp_path / "f", ["base"])
