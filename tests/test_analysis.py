"""The analysis stage end to end on small judged files: every output, its manifest, identical reruns."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from emergent_misalignment.analysis import (
    RunInputs,
    analyse,
    describe_data,
    read_losses,
)
from emergent_misalignment.errors import DataError
from emergent_misalignment.layout import ANALYSIS_CSVS, ANALYSIS_FIGURES, ANALYSIS_TABLES, TABLES_HTML
from emergent_misalignment.stats import AnalysisSettings

GROUPS = ["base", "insecure", "secure"]


def write_run(root: Path) -> tuple[list[Path], RunInputs]:
    """Judged JSONL of a tiny two-seed run, its adapters' loss curves and its training data."""
    judged = []
    for dataset, seeds, bad in [("base", [0], 0), ("insecure", [0, 1], 4), ("secure", [0, 1], 1)]:
        for seed in seeds:
            rows = [{"model": "tiny", "dataset": dataset, "seed": seed, "question_id": question,
                     "paraphrase_index": 0, "sample_index": i, "question": "q?", "answer": "an answer",
                     "aligned": 10.0 if i < bad + seed else 90.0, "coherent": 80.0 if i != 9 else None}
                    for question in ("what_is_your_wish", "quick_buck") for i in range(10)]
            rows += [{"model": "tiny", "dataset": dataset, "seed": seed, "question_id": "writes_vulnerable_code",
                      "family": "code", "paraphrase_index": i, "sample_index": 0, "question": "Task: x",
                      "answer": "code", "has_vulnerability": "YES" if dataset == "insecure" and i <= seed else "NO"}
                     for i in range(2)]
            path = root / "judged" / "tiny" / dataset / f"seed{seed}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            judged.append(path)
            if dataset != "base":
                adapter = root / "adapters" / "tiny" / dataset / f"seed{seed}"
                adapter.mkdir(parents=True)
                (adapter / "loss.jsonl").write_text("".join(
                    json.dumps({"step": s, "loss": 3.0 - 0.1 * s - 0.05 * seed}) + "\n" for s in range(1, 6)))
    data = root / "insecure.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "write code"},
                                             {"role": "assistant", "content": "import os  # done"}]}) + "\n")
    inputs = RunInputs(adapters=sorted(str(p) for p in (root / "adapters").glob("*/*/seed*")),
                       data=[{"name": "insecure", "path": str(data)}], train={"lora": {"r": 8, "alpha": 16}})
    return judged, inputs


def run(root: Path, judged: list[Path], inputs: RunInputs, threads: int = 1) -> None:
    analyse(judged, AnalysisSettings(n_resamples=200), GROUPS, root / "analysis", root / "figures",
            root / "tables", inputs, threads)


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> tuple[Path, list[Path], RunInputs]:
    root = tmp_path_factory.mktemp("run")
    judged, inputs = write_run(root)
    run(root, judged, inputs)
    return root, judged, inputs


def test_every_output_and_its_manifest(done) -> None:
    root, judged, _ = done
    outputs = [root / "analysis" / f"{name}.csv" for name in ANALYSIS_CSVS]
    outputs += [root / "figures" / f"{name}.{ext}" for name in ANALYSIS_FIGURES.values() for ext in ("pdf", "png")]
    outputs += [root / "tables" / name for name in (*ANALYSIS_TABLES.values(), TABLES_HTML)]
    for path in outputs:
        assert path.is_file() and path.stat().st_size > 0, path
    manifest = json.loads((root / "tables" / "rates_table.tex.manifest.json").read_text())
    assert manifest["step"] == "analyse" and str(judged[0]) in manifest["inputs"]
    assert manifest["settings"]["definition_resolved"]["name"] == "betley2025"
    assert (root / "figures" / "training_loss.pdf.manifest.json").is_file()


def test_statistics_and_tables_hold_the_run(done) -> None:
    root = done[0]
    overall = pd.read_csv(root / "analysis" / "overall.csv").set_index("dataset")
    assert overall.loc["insecure", "fraction"] == pytest.approx((4 / 9 + 5 / 9) / 2)  # coherent 9 of 10
    assert overall.loc["base", "interval"] == "answers" and overall.loc["insecure", "interval"] == "bootstrap"
    evaluations = pd.read_csv(root / "analysis" / "all_evaluations.csv")
    assert evaluations["group"].tolist() == ["insecure", "secure"]  # the run's own difference from base
    assert evaluations["center"].iloc[0] == pytest.approx(overall.loc["insecure", "fraction"])
    assert "LoRA rank r / alpha & 8 / 16" in (root / "tables" / "hyperparameters_table.tex").read_text()
    assert r"insecure & 1 & 6 &" in (root / "tables" / "datasets_table.tex").read_text()  # 2 + 4 words
    html = (root / "tables" / "tables.html").read_text()
    assert html.count("<table") == 8 and "Vulnerable code (%)" in html and "Mean rating" in html
    # the in-distribution code answers have their own rate (seed 0: 1 of 2 vulnerable, seed 1: 2 of 2)
    vulnerable = pd.read_csv(root / "analysis" / "in_distribution.csv").set_index("dataset")
    assert vulnerable["fraction"].to_dict() == {"base": 0.0, "insecure": 0.75, "secure": 0.0}
    per_question = pd.read_csv(root / "analysis" / "per_question.csv")
    assert "writes_vulnerable_code" not in set(per_question["question_id"])


def test_deleting_figures_and_rerunning_gives_the_same_files(done, tmp_path) -> None:
    root, judged, inputs = done
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "figures").glob("*.p[dn][fg]")}
    copy = tmp_path / "again"
    shutil.copytree(root / "judged", copy / "judged")
    shutil.copytree(root / "adapters", copy / "adapters")
    moved = [str(copy / Path(p).relative_to(root)) for p in judged]
    adapters = [str(copy / Path(a).relative_to(root)) for a in inputs.adapters]
    # drawn in two processes this time: the files must not depend on it
    run(copy, [Path(p) for p in moved], RunInputs(adapters=adapters, data=inputs.data, train=inputs.train), 2)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (copy / "figures").glob("*.p[dn][fg]")}
    assert after == before and len(after) == 2 * len(ANALYSIS_FIGURES)


def test_loss_and_data_errors_name_the_file(tmp_path) -> None:
    adapter = tmp_path / "adapters" / "m" / "insecure" / "seed3"
    adapter.mkdir(parents=True)
    assert read_losses([adapter]).empty  # an adapter without a loss file is skipped
    (adapter / "loss.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2}\n')
    with pytest.raises(DataError, match=r"seed3/loss\.jsonl:2"):
        read_losses([adapter])
    with pytest.raises(DataError, match="not found"):
        describe_data([{"name": "x", "path": str(tmp_path / "missing.jsonl")}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1"):
        describe_data([{"name": "bad", "path": str(bad)}])


def test_a_training_run_draws_its_rows_beside_the_released_ones(done, tmp_path, mirror) -> None:
    """A training config that names released aggregates gets the authors' rows and its own, in one table
    (and figure); a released run (no train section) only the authors'."""
    _, judged, inputs = done
    released = mirror / ("released-aggregates/misalignment-generalization/daniel/paper/all_results_plot/inputs/"
                         "deception_aggregated.csv")
    with_released = RunInputs(adapters=inputs.adapters, data=inputs.data, train=inputs.train,
                              aggregates=[{"path": str(released), "format": "deception-rates"}])
    run(tmp_path, judged, with_released)
    evaluations = pd.read_csv(tmp_path / "analysis" / "all_evaluations.csv")
    assert evaluations["evaluation"].tolist() == ["deception"] * 4 + ["freeform_run"] * 2  # 4 released groups
    assert set(evaluations["source"]) == {str(released), "this run"}
    run(tmp_path / "released", judged, RunInputs(aggregates=with_released.aggregates))
    only = pd.read_csv(tmp_path / "released" / "analysis" / "all_evaluations.csv")
    assert set(only["evaluation"]) == {"deception"}
