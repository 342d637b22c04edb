"""A sample or judged file that disagrees with its manifest is never read as complete."""

import json
from pathlib import Path

from emergent_misalignment.io import jsonl_text
from emergent_misalignment.manifest import set_aside_altered_outputs, sha256_text


def _output(path: Path, rows: int, manifest_rows: int, hashed: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = jsonl_text({"i": i} for i in range(rows))
    path.write_text(text)
    manifest = {"rows": manifest_rows, "step": "judge", **({"sha256": sha256_text(text)} if hashed else {})}
    path.with_name(path.name + ".manifest.json").write_text(json.dumps(manifest))
    return path


def test_a_file_unlike_its_manifest_is_set_aside_and_kept(tmp_path: Path) -> None:
    whole = _output(tmp_path / "judged/m/insecure/seed0.jsonl", 276, 276)
    cut = _output(tmp_path / "judged/m/secure/seed0.jsonl", 138, 276)
    longer = _output(tmp_path / "samples/m/secure/seed0.jsonl", 5, 4)
    edited = _output(tmp_path / "samples/m/insecure/seed0.jsonl", 4, 4)
    edited.write_text(edited.read_text().replace('{"i": 2}', '{"i": 7}'))
    old = _output(tmp_path / "judged/m/base/seed0.jsonl", 3, 3, hashed=False)  # a manifest without sha256
    old.write_text(old.read_text().replace('{"i": 2}', '{"i": 7}'))
    moved = set_aside_altered_outputs([tmp_path / "samples", tmp_path / "judged", tmp_path / "absent"])
    assert len(moved) == 3 and "138 rows, its manifest says 276" in moved[2]
    assert "its 4 rows differ from those its manifest hashed" in moved[0]
    assert whole.is_file() and old.is_file() and not cut.exists() and not longer.exists() and not edited.exists()
    aside = cut.with_name("seed0.jsonl.altered")
    assert len(aside.read_text().splitlines()) == 138  # nothing lost
    assert set_aside_altered_outputs([tmp_path / "judged"]) == []  # the rest agrees with its manifests
