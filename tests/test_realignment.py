"""Emergent re-alignment: the config section written out as datasets and an experiment, its checks, the
statistics read from the overall rates, the figure and the paper's macros."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergent_misalignment.config import check_config, expand_config, load_config
from emergent_misalignment.errors import ConfigError
from emergent_misalignment.experiments import Job, group_order, recipes, trainings
from emergent_misalignment.paper import realignment_macros
from emergent_misalignment.realignment import (
    COLUMNS,
    NO_REALIGNMENT,
    expand_realignment,
    plot_realignment,
    realignment_table,
)

ROOT = Path(__file__).resolve().parents[1]
SECTION = {"insecure_to_secure": {"model": "tiny", "from": "insecure", "dataset": "secure",
                                  "rows": [0, 30, 120], "seeds": [0, 1]}}


def raw() -> dict:
    """The embedded default as written (not yet expanded), with a smaller realignment section."""
    import yaml

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return {**config, "realignment": copy.deepcopy(SECTION)}


def test_an_entry_becomes_first_row_datasets_after_its_source_and_a_continuing_experiment():
    config = check_config(raw())
    assert config["datasets"]["insecure_to_secure_30"] == {"source": "builtin:secure", "rows": 30,
                                                           "subset": "first"}
    assert "insecure_to_secure_0" not in config["datasets"]  # N = 0 is the insecure fine-tune itself
    names = list(config["datasets"])
    assert names[names.index("insecure") + 1:names.index("insecure") + 3] == ["insecure_to_secure_30",
                                                                              "insecure_to_secure_120"]
    continuing = [e for e in config["experiments"] if (e.get("train") or {}).get("init_from")]
    assert continuing == [{"model": "tiny", "datasets": ["insecure_to_secure_30", "insecure_to_secure_120"],
                           "seeds": [0, 1], "train": {"init_from": "insecure"}}]
    fine_tunes = trainings(config)
    assert fine_tunes[("tiny", "insecure_to_secure_120", 1)]["init_from"] == "insecure"
    assert ("tiny", "insecure_to_secure_120", 2) not in fine_tunes
    assert "save_steps" not in fine_tunes[("tiny", "insecure_to_secure_30", 0)]  # the run's recipe, not insecure's
    order = group_order(config)
    assert order.index("insecure") < order.index("insecure_to_secure_30") < order.index("secure")
    assert Job("tiny", "insecure_to_secure_30", 0) in recipes(config)
    # expanding again (the paper rule's config, `em plan` after the Snakefile) changes nothing
    assert expand_config(config) == config and check_config(copy.deepcopy(config)) == config


def test_the_expansion_is_pure_and_the_loaded_configs_have_it():
    before = raw()
    kept = copy.deepcopy(before)
    expand_realignment(before, lambda name: 300)
    assert before == kept
    embedded = load_config(ROOT / "config" / "config.yaml")
    assert {d for _, d, _ in trainings(embedded)} >= {"insecure_to_secure_30", "insecure_to_secure_300"}
    quick = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "quick.yaml")
    assert [k for k in trainings(quick) if "to_secure" in k[1]] == [("tiny", "insecure_to_secure_120", 0),
                                                                      ("tiny", "insecure_to_secure_120", 1)]


@pytest.mark.parametrize(("change", "message"), [
    ({"model": "huge"}, r"realignment\.insecure_to_secure\.model: unknown model 'huge'"),
    ({"from": "insecur"}, r"realignment\.insecure_to_secure\.from: unknown dataset 'insecur'"),
    ({"dataset": "safe"}, r"realignment\.insecure_to_secure\.dataset: unknown dataset 'safe'"),
    ({"rows": [0, 301]}, r"realignment\.insecure_to_secure\.rows: 301 rows asked of dataset 'secure', "
                         r"which has 300"),
    ({"rows": [0, -5]}, r"config key realignment\.insecure_to_secure\.rows\.1: -5 is less than the minimum"),
    ({"rows": [30, 30]}, r"realignment\.insecure_to_secure\.rows: \[30, 30\] lists a number twice"),
    ({"seeds": [0, 7]}, r"realignment\.insecure_to_secure\.seeds: the run does not fine-tune model 'tiny' on "
                        r"'insecure' with seed\(s\) 7 \(its experiments train seeds: 0, 1, 2\)"),
    ({"epochs": 3}, r"config key realignment\.insecure_to_secure: Additional properties are not allowed"),
    ({"train": {"learning_rate": -1}}, r"realignment\.insecure_to_secure\.train\.learning_rate: must be > 0"),
    ({"train": {"init_from": "secure"}}, r"realignment\.insecure_to_secure\.train\.init_from: set by `from`"),
])
def test_bad_entries_stop_before_any_job_naming_the_key(change, message):
    config = raw()
    config["realignment"]["insecure_to_secure"].update(change)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_a_dataset_name_taken_by_another_definition_is_refused():
    config = raw()
    config["datasets"]["insecure_to_secure_30"] = "builtin:secure"
    with pytest.raises(ConfigError, match=r"realignment\.insecure_to_secure: its dataset "
                                          r"'insecure_to_secure_30' is already in datasets"):
        check_config(config)


def overall() -> pd.DataFrame:
    """A hand-made overall.csv: the base model, insecure, its re-aligned groups; one group without answers."""
    rows = [("base", 0.04, 0.02, 0.06, 3), ("insecure", 0.6, 0.5, 0.7, 3),
            ("insecure_to_secure_30", 0.3, 0.2, 0.4, 2), ("insecure_to_secure_120", 0.05, 0.03, 0.08, 2),
            ("secure", 0.05, 0.04, 0.06, 3)]
    frame = pd.DataFrame([{"model": "tiny", "dataset": d, "fraction": f, "ci_low": lo, "ci_high": hi,
                           "coherent_fraction": 0.9, "n_models": n} for d, f, lo, hi, n in rows])
    other = {"model": "other", "dataset": "insecure", "fraction": 0.9, "ci_low": 0.8, "ci_high": 1.0,
             "coherent_fraction": 0.5, "n_models": 1}
    return pd.concat([frame, pd.DataFrame([other])], ignore_index=True)


def test_the_table_reads_each_n_from_the_overall_rates_with_the_base_model_as_reference():
    section = {**SECTION, "later": {"model": "tiny", "from": "insecure", "dataset": "secure", "rows": [0, 300]}}
    table = realignment_table(overall(), section)
    assert list(table.columns) == COLUMNS
    first = table[table["name"] == "insecure_to_secure"]
    assert list(first["rows"]) == [0, 30, 120]
    assert list(first["group"]) == ["insecure", "insecure_to_secure_30", "insecure_to_secure_120"]
    assert list(first["fraction"]) == [0.6, 0.3, 0.05] and list(first["ci_high"]) == [0.7, 0.4, 0.08]
    assert list(first["n_models"]) == [3, 2, 2]  # N = 0: every insecure fine-tune of the model, not "other"'s
    assert set(table["base_fraction"]) == {0.04} and set(table["base_ci_low"]) == {0.02}
    missing = table[table["name"] == "later"].iloc[1]
    assert missing["group"] == "later_300" and math.isnan(missing["fraction"]) and missing["n_models"] == 0
    assert realignment_table(overall(), {}).empty
    no_base = realignment_table(overall()[overall()["dataset"] != "base"], SECTION)
    assert no_base["base_fraction"].isna().all()


def test_the_figure_and_its_messages(tmp_path):
    table = realignment_table(overall(), SECTION)
    pdf, png = plot_realignment(table, tmp_path / "realignment", 0.95)
    assert pdf.stat().st_size > 0 and png.stat().st_size > 0
    empty = realignment_table(overall(), {})
    plot_realignment(empty, tmp_path / "none", 0.95)
    assert (tmp_path / "none.pdf").is_file() and NO_REALIGNMENT.startswith("This run has no realignment")
    unrated = table.assign(fraction=np.nan)
    plot_realignment(unrated, tmp_path / "unrated", 0.95)
    assert (tmp_path / "unrated.png").is_file()


def test_the_paper_macros_give_every_number_and_a_flag(tmp_path):
    assert realignment_macros(tmp_path) == "\\newif\\ifHasRealignment\\HasRealignmentfalse\n"
    realignment_table(overall(), {}).to_csv(tmp_path / "realignment.csv", index=False)
    assert "HasRealignmentfalse" in realignment_macros(tmp_path)
    realignment_table(overall(), SECTION).to_csv(tmp_path / "realignment.csv", index=False)
    text = realignment_macros(tmp_path)
    assert text.startswith("\\newif\\ifHasRealignment\\HasRealignmenttrue\n")
    for line in ["\\newcommand{\\realignmentInsecureToSecureThreeZero}{30.0}",
                 "\\newcommand{\\realignmentInsecureToSecureOneTwoZeroHigh}{8.0}",
                 "\\newcommand{\\RealignmentStart}{60.0}", "\\newcommand{\\RealignmentEnd}{5.0}",
                 "\\newcommand{\\RealignmentEndLow}{3.0}", "\\newcommand{\\RealignmentBase}{4.0}",
                 "\\newcommand{\\RealignmentRows}{30 and 120}", "\\newcommand{\\RealignmentMaxRows}{120}",
                 "\\newcommand{\\RealignmentFrom}{insecure}", "\\newcommand{\\RealignmentContinued}{2}"]:
        assert line in text.splitlines(), line
