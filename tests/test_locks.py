"""Crash recovery: a dead run's Snakemake lock is cleared, a live run's never."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from emergent_misalignment.locks import LOCKS, clear_stale_lock, live_runs

pytestmark = pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc (Linux)")


def lock(workdir: Path) -> Path:
    (workdir / LOCKS).mkdir(parents=True, exist_ok=True)
    path = workdir / LOCKS / "0.input.lock"
    path.write_text("results/x\n")
    return path


def test_a_dead_runs_lock_is_removed(tmp_path: Path) -> None:
    assert clear_stale_lock(tmp_path) == "no Snakemake lock in this directory"
    held = lock(tmp_path)
    assert "removed the lock a dead run left" in clear_stale_lock(tmp_path)
    assert not held.exists()


@pytest.mark.parametrize("argv0", ["snakemake", "em"])
def test_a_live_runs_lock_stays(tmp_path: Path, argv0: str) -> None:
    held = lock(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    # A process of the run (named as snakemake or an `em` job) working in the directory, and one elsewhere.
    alive = subprocess.Popen(["bash", "-c", f"exec -a {argv0} sleep 30"], cwd=tmp_path)
    elsewhere = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 30"], cwd=other)
    try:
        for _ in range(100):  # until bash has exec'd
            if live_runs(tmp_path):
                break
            time.sleep(0.02)
        assert [p.pid for p in live_runs(tmp_path)] == [alive.pid]
        message = clear_stale_lock(tmp_path)
        assert f"a run is still working in this directory (pid {alive.pid}" in message and held.exists()
    finally:
        alive.kill()
        elsewhere.kill()
        alive.wait()
        elsewhere.wait()
    assert "removed" in clear_stale_lock(tmp_path) and not held.exists()
