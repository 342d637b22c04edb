"""scripts/measure_spread.py's comparison of finished runs: rates per setting, their spread, identical files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "measure_spread.py"


@pytest.fixture
def spread(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("measure_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "measure_spread", module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def write_run(root: Path, run: str, rates: dict[str, float], adapter: bytes) -> None:
    analysis = root / "results" / run / "analysis"
    analysis.mkdir(parents=True)
    pd.DataFrame([{"model": "tiny", "dataset": d, "fraction": f, "ci_low": f - 0.02, "ci_high": f + 0.03}
                  for d, f in rates.items()]).to_csv(analysis / "overall.csv", index=False)
    (analysis / "overall.csv.manifest.json").write_text(run)  # differs, and is left out
    weights = root / "results" / run / "adapters" / "tiny" / "insecure" / "seed0"
    weights.mkdir(parents=True)
    (weights / "adapter_model.safetensors").write_bytes(adapter)
    (weights / "adapter_config.json").write_text("{}")


def test_rates_per_setting_and_their_largest_differences(spread, tmp_path) -> None:
    write_run(tmp_path, "spread-threads1", {"base": 0.03, "insecure": 0.666}, b"a")
    write_run(tmp_path, "spread-threads2", {"base": 0.03, "insecure": 0.669}, b"a")
    write_run(tmp_path, "spread-threads1-avx2", {"base": 0.05, "insecure": 0.6}, b"b")
    threads = [spread.Setting(1), spread.Setting(2)]
    isas = [spread.Setting(1, "avx2")]
    assert isas[0].env == {"ATEN_CPU_CAPABILITY": "avx2"} and threads[0].env == {}
    assert "threads_per_job=2" in threads[1].command(2) and "run=spread-threads1-avx2" in isas[0].command(2)
    table = spread.spread_table(threads, isas).set_index("dataset")
    assert table.loc["insecure", "fraction_threads2"] == 0.669
    assert table.loc["insecure", "max_abs_diff_fraction_threads"] == pytest.approx(0.003)
    assert table.loc["base", "max_abs_diff_fraction_isa"] == pytest.approx(0.02)
    assert table.loc["all groups", "max_abs_diff_fraction_all"] == pytest.approx(0.069)
    assert table.loc["all groups", "model"] == "max"

    by_stage = {stage: (same, n) for stage, same, n in spread.identical_by_stage(threads[0], threads[1])}
    assert by_stage["adapters"] == (2, 2) and by_stage["statistics (CSV)"] == (0, 1)
    assert by_stage["base model"] == (0, 0)
    assert dict((s, (a, n)) for s, a, n in spread.identical_by_stage(threads[0], isas[0]))["adapters"] == (1, 2)


def test_an_unfinished_run_has_no_rates_but_its_files_are_compared(spread, tmp_path) -> None:
    write_run(tmp_path, "spread-threads1", {"base": 0.03}, b"a")
    write_run(tmp_path, "spread-threads2", {"base": 0.03}, b"a")
    (tmp_path / "results/spread-threads2/analysis/overall.csv").unlink()
    threads = [spread.Setting(1), spread.Setting(2)]
    table = spread.spread_table(threads, []).set_index("dataset")
    assert "fraction_threads2" not in table and table["max_abs_diff_fraction_threads"].isna().all()
    assert dict((s, (a, n)) for s, a, n in spread.identical_by_stage(*threads))["adapters"] == (2, 2)
    assert spread.fmt(table.loc["all groups", "max_abs_diff_fraction_all"]).startswith("not measured")
