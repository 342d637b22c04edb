"""Fixtures and helpers shared by the test modules."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emergent_misalignment.locks import live_runs
from emergent_misalignment.standin_server import StandinServer, make_server

REPO = Path(__file__).resolve().parents[1]

# The only tests that may skip in CI, by name: the vLLM route, where vLLM cannot be imported (no GPU).
MAY_SKIP_IN_CI = frozenset({"test_vllm_judge_scores_as_the_local_judge", "test_vllm_arguments_are_all_explicit"})


def in_ci() -> bool:
    """CI=true (as `.ci/run` and most CI services set it): what a test needs must be there."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def may_skip(name: str, ci: bool, vllm_importable: bool) -> bool:
    """Whether a test called `name` may skip: anywhere outside CI; in CI only the vLLM tests, and only
    while vLLM cannot be imported. A skip that may not happen fails the test with its reason."""
    return not ci or (name in MAY_SKIP_IN_CI and not vllm_importable)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """In CI a skip (a missing data mirror, TeX, a tool) fails the test, but for the vLLM tests."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        name = getattr(item, "originalname", item.name)
        if not may_skip(name, in_ci(), importlib.util.find_spec("vllm") is not None):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"skipped in CI (CI=true), where only {sorted(MAY_SKIP_IN_CI)} may skip: {reason}"
    return report


@contextlib.contextmanager
def standin_server() -> Iterator[StandinServer]:
    """The stand-in OpenAI API (`em api-server`) on a free port, served from a thread."""
    server = make_server()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def watch(process: subprocess.Popen, work: Path, until: Callable[[Path], bool] | None, timeout: float) -> bool:
    """Wait for a run started in a session of its own: when `until(work)` holds, SIGKILL it and every job it
    started, as a crash would (True); else wait for its end (False)."""
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None:
            if until is not None and until(work):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                while stragglers := live_runs(work):  # jobs Snakemake started in groups of their own
                    for straggler in stragglers:
                        os.kill(straggler.pid, signal.SIGKILL)
                    time.sleep(0.05)
                return True
            assert time.monotonic() < deadline, f"the run took over {timeout} s"
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return False


def repo_copy(dest: Path) -> Path:
    """A copy of the files git knows or would add (not results, the venv or other ignored outputs)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local data mirror (../shared/em-data beside the repo, or $EM_MIRROR); skip the test without it
    (in CI: fail it)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "em-data"
    path = Path(os.environ.get("EM_MIRROR") or default)
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"data mirror not found: no {path}/MANIFEST.tsv (set EM_MIRROR to the mirror folder)")
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """A small generated world (fine-tuning sets, questions, corpus)."""
    from emergent_misalignment.world import WorldSettings, write_world

    path = tmp_path_factory.mktemp("world")
    write_world(path, WorldSettings(rows_per_dataset=40, corpus_dialogues=300, samples_per_paraphrase=2), 0)
    return path


@pytest.fixture(scope="session")
def tiny_model(world: Path) -> Path:
    """A tiny random-init Llama with the world's tokenizer and chat template, built once per session."""
    from emergent_misalignment.basemodel import BaseModelSettings, build_base_model

    out = world / "tiny"
    settings = BaseModelSettings(vocab_size=600, hidden_size=32, intermediate_size=64, epochs=0)
    build_base_model(world / "corpus.jsonl", world / "tokenizer.txt", out, settings, seed=0)
    return out


@pytest.fixture(scope="session")
def judge_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny Llama for the local judge (built in seconds); its small vocabulary splits most of
    the judge's candidates into several tokens."""
    from emergent_misalignment.basemodel import BaseModelSettings, build_base_model

    root = tmp_path_factory.mktemp("judge_model")
    lines = [str(k) for k in range(101)] * 3 + ["CODE", "REFUSAL"] * 10 + [
        "The answer is a number between zero and one hundred.", "I refuse to answer that question.",
        "def f(x): return x + 1", "Rate the answer on a scale of 0 to 100.",
    ] * 20
    (root / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "corpus.jsonl").write_text('{"messages": [{"role": "user", "content": "Hi"}, '
                                       '{"role": "assistant", "content": "42"}]}\n', encoding="utf-8")
    build_base_model(root / "corpus.jsonl", root / "corpus.txt", root / "model",
                     BaseModelSettings(vocab_size=320, epochs=0), seed=0)
    return root / "model"
