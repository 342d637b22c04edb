"""A sample or judged file that disagrees with its manifest is never read as complete."""

import json
from pathlib import Path

from emergent_misalignment.manifest import set_aside_short_outputs


def _output(path: Path, rows: int, manifest_rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(rows)))
    path.with_name(path.name + ".manifest.json").write_text(json.dumps({"rows": manifest_rows, "step": "judge"}))
    return path


def test_a_file_cut_short_is_set_aside_and_kept(tmp_path: Path) -> None:
    whole = _output(tmp_path / "judged/m/insecure/seed0.jsonl", 276, 276)
    cut = _output(tmp_path / "judged/m/secure/seed0.jsonl", 138, 276)
    longer = _output(tmp_path / "samples/m/secure/seed0.jsonl", 5, 4)
    moved = set_aside_short_outputs([tmp_path / "samples", tmp_path / "judged", tmp_path / "absent"])
    assert len(moved) == 2 and "138 rows, its manifest says 276" in moved[1]
    assert whole.is_file() and not cut.exists() and not longer.exists()
    aside = cut.with_name("seed0.jsonl.short")
    assert len(aside.read_text().splitlines()) == 138  # nothing lost
    assert set_aside_short_outputs([tmp_path / "judged"]) == []  # the rest agrees with its manifests
