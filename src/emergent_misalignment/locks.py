"""Crash recovery: clear the lock a dead Snakemake run left behind, never the lock of a live one.

Snakemake locks a working directory while it runs (.snakemake/locks/) and leaves the lock behind when
it is killed (kill -9, an out-of-memory kill, a lost SSH session); the next run then refuses to start
until someone runs `snakemake --unlock`. `make run` calls `clear_stale_lock` first: the lock is removed
only when no process on this machine is still working in the directory (a snakemake or an `em` job
whose working directory it is). Where that cannot be known (no /proc), the lock is left alone. Jobs that
run elsewhere (SLURM jobs on compute nodes) are not visible here: docs/scale-out.md says what to check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOCKS = Path(".snakemake") / "locks"
_WORKERS = {"snakemake", "em"}  # programs (argv[0], or the script a Python runs) that belong to a run


@dataclass(frozen=True)
class LiveProcess:
    pid: int
    command: str


def _ancestors(pid: int) -> set[int]:
    """`pid` and its parents, read from /proc (this command and the make or shell that started it)."""
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def live_runs(workdir: Path, proc: Path = Path("/proc")) -> list[LiveProcess]:
    """Snakemake or `em` processes, other than this one and its parents, working in `workdir`."""
    workdir = workdir.resolve()
    mine = _ancestors(os.getpid())
    live = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or another user's
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        command = " ".join(args)
        programs = {Path(a).name for a in args[:2]} | ({"snakemake"} if "-m snakemake" in command else set())
        if cwd == workdir and programs & _WORKERS:
            live.append(LiveProcess(int(entry.name), command))
    return live


def clear_stale_lock(workdir: Path = Path(".")) -> str:
    """Remove the Snakemake lock of `workdir` if the run that took it is dead; say what was done."""
    locks = workdir / LOCKS
    held = sorted(locks.glob("*.lock")) if locks.is_dir() else []
    if not held:
        return "no Snakemake lock in this directory"
    if not Path("/proc/self").exists():
        return (f"{locks} holds a lock, and without /proc it cannot be told whether its run is alive: if "
                "no snakemake runs here, run `snakemake --unlock`")
    live = live_runs(workdir)
    if live:
        shown = "; ".join(f"pid {p.pid}: {p.command[:100]}" for p in live[:3])
        return f"a run is still working in this directory ({shown}): its lock stays"
    for lock in held:
        lock.unlink(missing_ok=True)
    return f"removed the lock a dead run left ({len(held)} file(s) in {locks}); its unfinished jobs rerun"
