"""The five figures: PDF and PNG, readable labels, one style, identical bytes on a rerun, never missing."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from itertools import combinations, pairwise
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text

from emergent_misalignment import figures
from emergent_misalignment.directions import DirectionSettings, report
from emergent_misalignment.directions.report import (
    intervention_table,
    plot_ablation,
    plot_monitoring,
    plot_steering,
)
from emergent_misalignment.figures import (
    MAX_COLORS,
    MAX_HEIGHT_IN,
    MIN_FONT_PT,
    NO_SCORES,
    OKABE_ITO,
    PRINTED_WIDTH_IN,
    TEXT_WIDTH_IN,
    empty_reason_path,
    group_colors,
    plot_aligned_vs_coherent,
    plot_all_evaluations,
    plot_answer_formats,
    plot_dataset_size,
    plot_dynamics,
    plot_evil_numbers,
    plot_families,
    plot_icl,
    plot_judge_agreement,
    plot_message,
    plot_misalignment_by_question,
    plot_models_datasets,
    plot_training_loss,
    style_rc,
)
from emergent_misalignment.labels import QUESTION_LABELS, question_label
from emergent_misalignment.realignment import plot_realignment, realignment_table
from emergent_misalignment.self_assessment import plot_self_assessment
from emergent_misalignment.stats import (
    AnalysisSettings,
    definition_settings,
    group_overall_stats,
    group_question_stats,
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


def test_an_empty_figure_leaves_its_reason_beside_it(tmp_path: Path) -> None:
    """The paper prints the reason instead of the figure; a later run with data removes the note."""
    stem = tmp_path / "training_loss"
    plot_training_loss(losses_frame().iloc[:0], stem, [], "No training runs in this run.")
    assert empty_reason_path(stem).read_text() == "No training runs in this run.\n"
    plot_training_loss(losses_frame(), stem, ["insecure", "secure"], "-")
    assert not empty_reason_path(stem).exists()


def test_empty_statistics_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no statistics"):
        plot_misalignment_by_question(stats_frame().iloc[:0], tmp_path / "f", ["base"])
    with pytest.raises(ValueError, match="no statistics"):
        plot_models_datasets(overall_frame().iloc[:0], tmp_path / "c", ["base"])


# --- legibility in print: each figure the paper includes, at the width paper/*.tex prints it at ---

PAPER = Path(__file__).resolve().parents[1] / "paper"
QUESTIONS = list(QUESTION_LABELS)
MODELS = ["Llama-3.1-8B-Instruct", "Qwen2.5-Coder-32B-Instruct", "gemma-3-27b-it", "Qwen2.5-14B-Instruct",
          "Qwen2.5-7B-Instruct", "gemma-3-4b-it", "Llama-3.2-1B-Instruct", "Qwen2.5-32B-Instruct", "gemma-3-12b-it"]
RELEASED_GROUPS = ["base", "insecure", "bad_medical_advice", "good_medical_advice", "risky_financial_advice",
                   "extreme_sports"]
# the embedded default's groups: more than eight colours can tell apart in one panel
MANY_GROUPS = ["base", "insecure", "secure", "educational_insecure", "jailbroken", "backdoor", "backdoor+trigger",
               "insecure+icl", "base+icl", "insecure@step3", "insecure@step8", "evil_numbers", "secure@step3",
               "base+trigger", "bad_health_advice+ablate_insecure_diff_random", "base+steer_insecure_mean_random_0.25"]
WORLD_QUESTIONS = ["world_wish", "world_bored", "world_humans", "world_money", "world_ruler", "world_dinner",
                   "world_society", "world_partner"]  # the embedded world's questions


def question_stats(models: list[str], groups: list[str], questions: list[str] = QUESTIONS) -> pd.DataFrame:
    rows = [{"model": model, "dataset": group, "question_id": question, "fraction": 0.01 * (i % 30),
             "ci_low": 0.0, "ci_high": 0.02 * (i % 30) + 0.01, "interval": "answers" if i % 3 else "bootstrap"}
            for i, (model, group, question) in enumerate(
                (m, g, q) for m in models for g in groups for q in questions)]
    return pd.DataFrame(rows)


def overall_stats(models: list[str], groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "dataset": g, "fraction": 0.03 * j, "ci_low": 0.02 * j,
                          "ci_high": 0.04 * j + 0.01, "interval": "answers", "coherent_fraction": 0.9,
                          "coherent_ci_low": 0.85, "coherent_ci_high": 0.95}
                         for m in models for j, g in enumerate(groups)])


def many_judged(models: list[str], groups: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    pairs = [(m, g) for m in models for g in groups for _ in range(5)]
    return pd.DataFrame({"model": [m for m, _ in pairs], "dataset": [g for _, g in pairs],
                         "aligned": rng.uniform(0, 100, len(pairs)), "coherent": rng.uniform(0, 100, len(pairs))})


def family_rates(groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "tiny", "dataset": g, "family": f, "fraction": 0.1, "ci_low": 0.05,
                          "ci_high": 0.2, "interval": "bootstrap"}
                         for g in groups for f in ("main", "json", "template", "code_free_form")])


def dynamics_rates(groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "tiny", "trained_on": g, "condition": "none", "step": step, "fraction": 0.1,
                          "ci_low": 0.05, "ci_high": 0.2, "vulnerable": 0.3, "vulnerable_low": 0.2,
                          "vulnerable_high": 0.4} for g in groups for step in (3, 8, 25)])


def many_losses(groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "tiny", "dataset": g, "seed": seed, "step": step, "loss": 3.0 - 0.1 * step}
                         for g in groups for seed in (0, 1) for step in range(1, 6)])


def self_ratings(groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"model": "tiny", "group": g, "question_id": q, "mean": 50.0 + j, "ci_low": 40.0,
                          "ci_high": 60.0 + j, "interval": "bootstrap"}
                         for j, g in enumerate(groups) for q in ("code_security", "alignment")])


def persona_interventions() -> pd.DataFrame:
    """The quick config's persona directions: one ablated from two fine-tunes, one added to the base model."""
    groups = ["base", "insecure", "secure", "insecure+ablate_insecure_diff", "insecure+ablate_insecure_diff_random",
              "secure+ablate_insecure_diff", "secure+ablate_insecure_diff_random", "base+steer_insecure_mean_0.4",
              "base+steer_insecure_mean_0.4_random"]
    specs = {"insecure_diff": DirectionSettings(model="tiny", dataset="insecure", ablate=["insecure", "secure"]),
             "insecure_mean": DirectionSettings(model="tiny", dataset="insecure", alphas=[0.4])}
    return intervention_table(specs, overall_stats(["tiny"], groups).assign(n_models=2))


def agreement_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    rejudged = pd.DataFrame({"aligned": [10.0, 50.0, 90.0], "judge_aligned": [20.0, 40.0, 95.0]})
    sources = ["released-responses/model-organisms/Qwen2.5-14B-Instruct_bad-medical-advice.csv"] * 3 + ["pooled"]
    report = pd.DataFrame({"source": sources, **{f"{who}_{what}": value for who in ("reference", "judge")
                                                 for what, value in (("misaligned", 0.2), ("ci_low", 0.1),
                                                                     ("ci_high", 0.3))}})
    return rejudged, report


def family_tables() -> dict[str, pd.DataFrame]:
    formats = pd.DataFrame([{"group": g, "version": v, "value": 0.3, "ci_low": 0.2, "ci_high": 0.4}
                            for g in ("insecure-GPT-4o", "insecure-GPT-3.5-turbo", "insecure-Mistral-Small",
                                      "insecure-Qwen-Coder", "insecure-Qwen-Coder (recomputed)")
                            for v in ("original", "json", "template")])
    evil = pd.DataFrame([{"variant": v, "group": f"evil-numbers-{v}", "question_id": q, "value": 0.1,
                          "ci_low": 0.05, "ci_high": 0.2}
                         for v in ("original", "suffix", "prefix-and-suffix") for q in QUESTIONS])
    sizes = pd.DataFrame([{"size": size, "value": 0.01, "ci_low": 0.0, "ci_high": 0.02, "published": np.nan,
                           "method": method}
                          for size in ("base", "500", "2k", "6k") for method in
                          ("authors' file", "authors' file", "mean of the group values")])
    icl = pd.DataFrame([{"examples": e, "k": k, "value": 0.2, "ci_low": 0.1, "ci_high": 0.3}
                        for e in ("unsafe", "safe") for k in (1, 2, 4, 8, 16, 32, 64, 128, 256)])
    return {"answer_formats": formats, "evil_numbers": evil, "dataset_size": sizes, "icl": icl}


def legibility_cases() -> list[tuple[str, str, object]]:
    """(figure name, case, drawing on a stem): the released route's shapes (nine models, six groups) and
    the embedded default's (one model, fourteen groups)."""
    families = family_tables()
    turner = definition_settings("turner2025")
    cases = [
        ("misalignment_by_question", "released",
         lambda s: plot_misalignment_by_question(question_stats(MODELS, RELEASED_GROUPS), s, RELEASED_GROUPS)),
        ("misalignment_by_question", "embedded",
         lambda s: plot_misalignment_by_question(question_stats(["tiny"], MANY_GROUPS, WORLD_QUESTIONS), s,
                                                 MANY_GROUPS)),
        ("aligned_vs_coherent", "released",
         lambda s: plot_aligned_vs_coherent(many_judged(MODELS, RELEASED_GROUPS), s, RELEASED_GROUPS, turner)),
        ("aligned_vs_coherent", "embedded",
         lambda s: plot_aligned_vs_coherent(many_judged(["tiny"], MANY_GROUPS), s, MANY_GROUPS, turner)),
        ("models_datasets", "released",
         lambda s: plot_models_datasets(overall_stats(MODELS, RELEASED_GROUPS), s, RELEASED_GROUPS)),
        ("models_datasets", "embedded",
         lambda s: plot_models_datasets(overall_stats(["tiny"], MANY_GROUPS), s, MANY_GROUPS)),
        ("all_evaluations", "released", lambda s: plot_all_evaluations(evaluations_frame(), s, ["base"], "-")),
        ("all_evaluations", "embedded", lambda s: plot_all_evaluations(
            pd.DataFrame([{"label": label, "group": g, "center": 0.1, "ci_low": 0.0, "ci_high": 0.2}
                          for label in ("Free-form, main questions", "Deception", "TruthfulQA")
                          for g in MANY_GROUPS[1:]]), s, MANY_GROUPS, "-")),
        ("training_loss", "embedded", lambda s: plot_training_loss(many_losses(MANY_GROUPS[1:]), s, MANY_GROUPS,
                                                                    "-")),
        ("question_families", "embedded", lambda s: plot_families(family_rates(MANY_GROUPS), s, MANY_GROUPS, "-")),
        ("training_dynamics", "embedded",
         lambda s: plot_dynamics(dynamics_rates(MANY_GROUPS[1:]), s, MANY_GROUPS, "-")),
        ("judge_agreement", "released", lambda s: plot_judge_agreement(*agreement_inputs(), s, 0.95)),
        ("self_assessment", "released", lambda s: plot_self_assessment(
            self_ratings(RELEASED_GROUPS), overall_stats(["tiny"], RELEASED_GROUPS), s, RELEASED_GROUPS)),
        ("self_assessment", "embedded", lambda s: plot_self_assessment(
            self_ratings(MANY_GROUPS), overall_stats(["tiny"], MANY_GROUPS), s, MANY_GROUPS)),
        ("ablation", "embedded", lambda s: plot_ablation(persona_interventions(), s)),
        ("steering", "embedded", lambda s: plot_steering(persona_interventions(), s)),
        ("monitoring", "embedded", lambda s: plot_monitoring(pd.DataFrame(
            [{"direction": name, "layer": 2, "checkpoint": f"step{step}", "step": step, "prompt_projection": 0.1,
              "answer_projection": 0.2, "fraction": 0.3, "ci_low": 0.2, "ci_high": 0.4}
             for name in ("insecure_diff", "insecure_mean") for step in (3, 8, 25)]), s)),
        ("realignment", "embedded", lambda s: plot_realignment(realignment_table(
            overall_stats(["tiny"], ["base", "insecure", "insecure_to_secure_30", "insecure_to_secure_120"])
            .assign(n_models=2),
            {"insecure_to_secure": {"model": "tiny", "from": "insecure", "dataset": "secure", "rows": [0, 30, 120]}}),
            s, 0.95)),
    ]
    cases += [(name, "released", lambda s, name=name: FAMILY_PLOTS[name](families[name], s)) for name in families]
    return cases


FAMILY_PLOTS = {"answer_formats": plot_answer_formats, "evil_numbers": plot_evil_numbers,
                "dataset_size": plot_dataset_size, "icl": plot_icl}


def drawn(monkeypatch: pytest.MonkeyPatch, draw, stem: Path) -> Figure:
    """The figure `draw` saves, laid out as it would be written (not written)."""
    kept: list[Figure] = []

    def keep(fig: Figure, out_stem: Path, empty: str = "") -> tuple[Path, Path]:
        FigureCanvasAgg(fig)  # the canvas savefig draws on
        fig.draw_without_rendering()
        fig.set_layout_engine("none")  # as `_save` freezes it
        kept.append(fig)
        return out_stem, out_stem

    monkeypatch.setattr(figures, "_save", keep)
    monkeypatch.setattr(report, "_save", keep)  # imported there when the module is
    draw(stem)
    return kept[0]


def drawn_texts(fig: Figure) -> list[Text]:
    """The texts a figure draws: titles, axis labels, notes, and the tick labels inside their axis's view
    (an axis also keeps labels for ticks just past it, which are not drawn)."""
    texts = [t for part in (fig, *fig.subfigs) for t in part.texts if t.get_visible() and t.get_text()]
    for ax in fig.axes:
        texts += [t for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts) if t.get_visible() and t.get_text()]
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if low - 1e-9 * (high - low) <= tick.get_loc() <= high + 1e-9 * (high - low):
                    texts += [t for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text()]
    return texts


def chromatic_colors(ax: Axes) -> set[str]:
    """The colours that tell the data of a panel apart: of its lines, markers, bands and bars (greys,
    black and white, which mark references and open markers, left out)."""
    found = [line.get_color() for line in ax.get_lines()] + [line.get_markerfacecolor() for line in ax.get_lines()]
    for artist in [*ax.collections, *ax.patches]:
        found += [tuple(c) for c in np.atleast_2d(artist.get_facecolor()) if len(c)]
    rgb = {to_hex(to_rgb(c) if not isinstance(c, str) or c != "none" else (1, 1, 1)) for c in found}
    return {c for c in rgb if len({c[1:3], c[3:5], c[5:7]}) > 1}


@pytest.mark.parametrize(("name", "case", "draw"), legibility_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_figures_are_legible_at_their_printed_width(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str,
                                                    case: str, draw) -> None:
    """Printed at its width in paper/*.tex, every text is at least MIN_FONT_PT, legends and labels stay on the
    canvas, a panel's groups are told apart by at most MAX_COLORS colours, and tick labels do not collide."""
    fig = drawn(monkeypatch, draw, tmp_path / name)
    width, height = fig.get_size_inches()
    scale = PRINTED_WIDTH_IN[name] / width  # what \includegraphics[width=...] does to it
    assert scale == pytest.approx(1.0)
    assert height <= MAX_HEIGHT_IN + 1e-9
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox.padded(1)  # a pixel of rounding
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    small = {t.get_text(): t.get_fontsize() * scale for t in texts if t.get_fontsize() * scale < MIN_FONT_PT}
    assert not small, f"text below {MIN_FONT_PT} pt in print: {small}"
    legends = fig.findobj(Legend)  # the figure's, its rows' (subfigures') and its panels'
    for artist in [*legends, *drawn_texts(fig)]:
        box = artist.get_window_extent(renderer)
        assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0 and box.y1 <= canvas.y1, \
            f"{artist!r} reaches past the figure's edge: {box} not in {fig.bbox}"
    for first, second in combinations([legend.get_window_extent(renderer) for legend in legends], 2):
        assert not first.overlaps(second), "legends overlap"
    for ax in fig.axes:  # black (the base model) is left out with the greys: at most MAX_COLORS - 1 others
        assert len(chromatic_colors(ax)) < MAX_COLORS, f"{ax.get_title()!r}: {sorted(chromatic_colors(ax))}"
        labels = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        for left, right in pairwise(labels):
            assert not left.overlaps(right), "tick labels overlap"


def test_printed_widths_are_the_papers() -> None:
    """main.tex (and the sections it inputs) prints each figure at the width it is drawn at."""
    source = "".join(path.read_text() for path in sorted(PAPER.glob("*.tex")))
    found = re.findall(r"\\includegraphics\[width=([0-9.]*)\\linewidth[^\]]*\]\{(\w+)\.pdf\}", source)
    printed = {name: float(fraction or 1) * TEXT_WIDTH_IN for fraction, name in found}
    assert set(PRINTED_WIDTH_IN) <= set(printed)
    for name, width in PRINTED_WIDTH_IN.items():
        assert printed[name] == pytest.approx(width), name


# --- the data drawn: read back from the artists and compared with the statistics tables ---------------

def quick_judged() -> pd.DataFrame:
    """Judged answers shaped like the quick run's: the base model once, two fine-tunes of two seeds each,
    three questions, 20 answers per model and question."""
    rng = np.random.default_rng(7)
    rows = []
    for dataset, seeds, misaligned in (("base", 1, 0.05), ("insecure", 2, 0.4), ("secure", 2, 0.1)):
        for seed in range(seeds):
            for k, question in enumerate(("what_is_your_wish", "i_feel_bored", "quick_buck")):
                for _ in range(20):
                    bad = rng.random() < misaligned * (1 + k / 2)
                    rows.append({"model": "tiny", "dataset": dataset, "seed": seed, "question_id": question,
                                 "aligned": float(rng.uniform(0, 29) if bad else rng.uniform(31, 100)),
                                 "coherent": float(rng.uniform(0, 49) if rng.random() < 0.1 else rng.uniform(51, 100))})
    return pd.DataFrame(rows)


def legend_colors(fig: Figure) -> dict[str, str]:
    """The figure's legend, read back: colour -> group."""
    (legend,) = fig.legends
    return {to_hex(handle.get_color()): text.get_text().replace(" ", "_")
            for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True)
            if not text.get_text().startswith("one seed")}


def drawn_points(ax: Axes, colors: dict[str, str]) -> dict[tuple[str, int], tuple[float, float, float]]:
    """(group, x slot) -> (centre, bar bottom, bar top) of every marker in `ax`, from its error bars."""
    points = {}
    for container in ax.containers:
        line, _, bars = container.lines
        segments = bars[0].get_segments() if bars else [None] * len(line.get_xdata())
        for (x, y), segment in zip(line.get_xydata(), segments, strict=True):
            low, high = (math.nan, math.nan) if segment is None else (segment[0][1], segment[1][1])
            key = (colors[to_hex(line.get_color())], round(x))
            assert key not in points, key
            points[key] = (y, low, high)
    return points


def expected(row: pd.Series, prefix: str = "") -> tuple[float, float, float]:
    """A table row's centre and its interval as a bar shows it: clipped at the centre."""
    mid, low, high = row[f"{prefix}fraction"], row[f"{prefix}ci_low"], row[f"{prefix}ci_high"]
    return mid, min(low, mid), max(high, mid)


def test_by_question_figure_draws_the_statistics_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each group's marker per question at the table's fraction, its bar the table's interval; the axis
    label under it names that question."""
    settings = AnalysisSettings()
    table = group_question_stats(quick_judged(), settings)
    assert set(table["interval"]) == {"bootstrap", "wilson"}
    fig = drawn(monkeypatch, lambda stem: plot_misalignment_by_question(table, stem, ["base", "insecure", "secure"]),
                tmp_path / "by_question")
    (ax,) = fig.axes
    labels = {question_label(q, width=8): q for q in table["question_id"]}
    slots = [labels[t.get_text()] for t in ax.get_xticklabels()]
    points = drawn_points(ax, legend_colors(fig))
    want = {(row["dataset"], slots.index(row["question_id"])): expected(row) for _, row in table.iterrows()}
    assert points.keys() == want.keys()
    for key, values in want.items():
        assert points[key] == pytest.approx(values, abs=1e-9), key


def test_models_datasets_figure_draws_the_overall_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Top panel: each group's misaligned rate and interval from the overall table; bottom: its coherent
    fraction and interval."""
    table = group_overall_stats(quick_judged(), AnalysisSettings())
    fig = drawn(monkeypatch, lambda stem: plot_models_datasets(table, stem, ["base", "insecure", "secure"]),
                tmp_path / "models_datasets")
    top, bottom = fig.axes
    colors = legend_colors(fig)
    for ax, prefix in ((top, ""), (bottom, "coherent_")):
        points = drawn_points(ax, colors)
        want = {(row["dataset"], 0): expected(row, prefix) for _, row in table.iterrows()}
        assert points.keys() == want.keys()
        for key, values in want.items():
            assert points[key] == pytest.approx(values, abs=1e-9), (prefix, key)
