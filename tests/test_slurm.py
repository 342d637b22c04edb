"""The embedded default through a real single-node SLURM cluster and snakemake-executor-plugin-slurm.

The test installs Debian's slurm-wlm and munge when they are missing (root and apt-get needed), writes
a cluster config to a temporary folder and to /etc/slurm/slurm.conf (the plugin's job steps drop
SLURM_CONF), starts munged, slurmctld and slurmd, runs a small embedded default with
`--profile profiles/slurm`, checks its outputs and that SLURM ran its jobs, and stops every daemon it
started by process id. Where SLURM cannot be installed or run it is skipped with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from .conftest import repo_copy

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SLURM_CONF = Path("/etc/slurm/slurm.conf")
LOCK = Path("/tmp/emergent-misalignment-slurm-test.lock")  # one test cluster per machine at a time
PLUGIN_PINS = ("snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep")

# A smaller embedded default, so the whole DAG (world -> tiny model -> train -> sample -> judge ->
# analysis -> paper) stays within a few minutes of SLURM round trips on 2 cores.
SMALL = {
    "world": {"rows_per_dataset": 40, "corpus_dialogues": 200, "samples_per_paraphrase": 1},
    "base_model": {"vocab_size": 600, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                   "epochs": 1.0},
    "sample": {"max_tokens": 16},
    "experiments": [{"model": "tiny", "datasets": ["insecure"], "seeds": [0], "base": True}],
    "realignment": None,  # the embedded default's sections of more experiments, switched off
    "directions": None,
    "analysis": {"n_resamples": 200},
}


# Snakemake job groups: each fine-tuned or base model is trained, sampled and judged in one SLURM job,
# the statistics and the paper in another. The plugin checks job status at widening intervals (the
# first one, then 10 s longer each time no job has finished), so fewer rounds keep the test short.
GROUPS = ("train=model", "sample=model", "judge=model", "analyse=report", "directions_report=report",
          "paper=report")
# profiles/slurm is used as shipped (jobs, retries, latency-wait, status command, default resources);
# the test adds two plugin settings that are not profile values. The plugin's first status check comes
# 40 s after a submission by default: polite on a shared cluster, only waiting on this one (measured:
# 242 s for the run with it, 74 s with 1 s). Successful jobs' SLURM logs are kept so that the test sees
# which rules SLURM ran (the plugin deletes them by default; logs/<run>/ is kept either way).
TEST_ONLY = ("--slurm-init-seconds-before-status-checks", "1", "--slurm-keep-successful-logs")

pytestmark = pytest.mark.slow


def _run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def _ensure_slurm() -> None:
    """Install slurm-wlm and munge with apt-get when missing; skip where that cannot be done."""
    if all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and cannot be: installing slurm-wlm and munge needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ("apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge")
    if _run(*install, env=env).returncode != 0:
        _run("apt-get", "update", "-qq", env=env)
        result = _run(*install, env=env)
        if result.returncode != 0:
            pytest.skip(f"apt-get could not install slurm-wlm and munge: {result.stderr.strip()[-300:]}")


def _ensure_plugin() -> None:
    """The SLURM executor plugin at requirements.txt's pins, in the Python that runs this test."""
    if _run(sys.executable, "-c", "import snakemake_executor_plugin_slurm").returncode == 0:
        return
    pins = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.split("==")[0] in PLUGIN_PINS]
    result = _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", *pins)
    if result.returncode != 0:
        pytest.skip(f"could not install {pins}: {result.stderr.strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(state: Path, host: str) -> str:
    """One node with 2 CPUs, no accounting, no cgroups: what runs as root in a container."""
    return "\n".join([
        "ClusterName=emtest",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"StateSaveLocation={state}/ctld",
        f"SlurmdSpoolDir={state}/spool",
        f"SlurmctldPidFile={state}/slurmctld.pid",
        f"SlurmdPidFile={state}/slurmd.pid",
        f"SlurmctldLogFile={state}/slurmctld.log",
        f"SlurmdLogFile={state}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "MinJobAge=600",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=20000 State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _munge_works() -> bool:
    encoded = _run("munge", "-n")
    return encoded.returncode == 0 and _run("unmunge", input=encoded.stdout).returncode == 0


def _wait(check, what: str, seconds: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in logs if p.exists())
    raise AssertionError(f"{what} within {seconds} s\n{tails}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def machine_lock(seconds: float) -> Iterator[None]:
    """Serialise test clusters on this machine: they share /etc/slurm/slurm.conf and munged."""
    with open(LOCK, "w") as fh:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another SLURM test cluster held {LOCK} for {seconds:.0f} s")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def cluster(state: Path) -> Iterator[dict[str, str]]:
    """Start munged (unless one answers already), slurmctld and slurmd; yield the environment for clients."""
    host = socket.gethostname().split(".")[0]
    state.mkdir(parents=True)
    (state / "ctld").mkdir()
    (state / "spool").mkdir()
    conf = state / "slurm.conf"
    conf.write_text(slurm_conf(state, host))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    saved = SLURM_CONF.read_bytes() if SLURM_CONF.exists() else None
    started: list[subprocess.Popen] = []
    try:
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(conf, SLURM_CONF)
        if not _munge_works():
            key = Path("/etc/munge/munge.key")
            if not key.exists():  # Debian's package makes one; a container image may have dropped it
                _run("mungekey", "--create", "--keyfile", str(key), check=True)
                shutil.chown(key, "munge", "munge")
            run_dir = Path("/run/munge")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            with open(state / "munged.log", "wb") as log:
                started.append(subprocess.Popen(["munged", "-F", "--force"], user="munge", group="munge",
                                                stdout=log, stderr=subprocess.STDOUT))
            _wait(_munge_works, "munged did not answer", 20, [state / "munged.log"])
        for daemon in (["slurmctld", "-D", "-c"], ["slurmd", "-D"]):
            with open(state / f"{daemon[0]}.out", "wb") as log:
                started.append(subprocess.Popen([*daemon, "-f", str(conf)], env=env, stdout=log,
                                                stderr=subprocess.STDOUT))
        logs = [state / "slurmctld.log", state / "slurmd.log", state / "slurmctld.out", state / "slurmd.out"]
        _wait(lambda: _run("sinfo", "-h", "-o", "%T", env=env).stdout.strip() == "idle",
              "the node did not become idle", 60, logs)
        yield env
    finally:
        if any(p.args[0] == "slurmctld" and p.poll() is None for p in started):
            # Cancel what is left and let slurmd end its job steps before the daemons go.
            _run("scancel", "--user", "root", env=env)
            deadline = time.monotonic() + 30
            while _run("squeue", "-h", env=env).stdout.strip() and time.monotonic() < deadline:
                time.sleep(1)
        for proc in reversed(started):
            _stop(proc)
        if saved is None:
            SLURM_CONF.unlink(missing_ok=True)
        else:
            SLURM_CONF.write_bytes(saved)


def test_slurm_conf_names_one_idle_node_without_accounting(tmp_path):
    text = slurm_conf(tmp_path, "node1")
    assert "SlurmctldHost=node1(127.0.0.1)" in text
    assert "AccountingStorageType=accounting_storage/none" in text
    assert "NodeName=node1 NodeAddr=127.0.0.1 CPUs=2 RealMemory=20000" in text
    # squeue sees finished jobs only for MinJobAge seconds; the plugin wants at least 120.
    assert int(text.split("MinJobAge=")[1].split()[0]) >= 120


def test_embedded_default_runs_on_slurm(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld, slurmd and munged needs root")
    _ensure_slurm()
    _ensure_plugin()
    if not shutil.which("git"):
        pytest.skip("git is needed to copy the repository's files")
    work = repo_copy(tmp_path / "repo")
    (work / "small.yaml").write_text(yaml.safe_dump(SMALL))
    with machine_lock(600), cluster(tmp_path / "slurm") as env:
        env = {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
               "PYTHONPATH": f"{work / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"}
        target = [] if shutil.which("latexmk") else ["results/embedded/analysis/overall.csv"]
        if target:
            print("latexmk is missing: the paper is left out of this run")
        started = time.monotonic()
        result = _run(
            str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", "config/config.yaml", "small.yaml",
            *TEST_ONLY, "--groups", *GROUPS, *target,
            cwd=work, env=env, timeout=420,
        )
        print(f"snakemake on SLURM: {time.monotonic() - started:.0f} s")
        states = _run("squeue", "--states=all", "-h", "-o", "%j %T", env=env).stdout.split("\n")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    run = work / "results" / "embedded"
    for path in ["judged/tiny/insecure/seed0.jsonl", "judged/tiny/base/seed0.jsonl", "analysis/overall.csv"]:
        assert (run / path).stat().st_size > 0, path
    if not target:
        assert (work / "paper" / "build" / "embedded" / "main.pdf").stat().st_size > 0
    # Every job but the target rule went to SLURM, and SLURM saw each one complete: world, base_model,
    # questions, one group per model (base and insecure) and the report group.
    completed = [line for line in states if line.strip()]
    assert len(completed) == result.stderr.count("has been submitted with SLURM jobid") >= 6, completed
    assert all(line.endswith(" COMPLETED") for line in completed), completed
    # SLURM logs are kept per rule or group (rule_world, group_model_judge_sample_train, ...).
    logs = " ".join(p.name for p in (work / ".snakemake" / "slurm_logs").iterdir())
    rules = ["world", "base_model", "questions", "train", "sample", "judge", "analyse"] + ([] if target else ["paper"])
    assert all(f"_{rule}" in logs for rule in rules), logs
