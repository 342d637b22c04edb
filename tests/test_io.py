"""Atomic writes and JSON Lines: nothing half-written counts as done; errors name file:line."""

import os

import pytest

from emergent_misalignment.errors import DataError
from emergent_misalignment.io import atomic_write, iter_jsonl, read_jsonl, write_jsonl


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "out.txt") as fh:
            fh.write("done")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644


def test_jsonl_round_trip_and_bad_line(tmp_path):
    rows = [{"a": 1}, {"b": "x\ny"}]
    write_jsonl(tmp_path / "r.jsonl", rows)
    assert read_jsonl(tmp_path / "r.jsonl") == rows
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n\n{"b": \n')
    assert next(iter_jsonl(tmp_path / "bad.jsonl")) == (1, {"a": 1})
    with pytest.raises(DataError, match=r"bad.jsonl:3: invalid JSON"):
        read_jsonl(tmp_path / "bad.jsonl")
