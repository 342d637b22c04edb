"""The suite's CI rule (conftest.py): with CI=true a test that would skip fails, but for the vLLM tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import MAY_SKIP_IN_CI, may_skip

TINY_TESTS = '''
import pytest


def test_reads_the_mirror(mirror):
    pass


def test_needs_tex():
    pytest.skip("latexmk is missing")


@pytest.mark.skipif(True, reason="a marker's skip")
def test_marked():
    pass


@pytest.mark.xfail(strict=True, reason="expected to fail")
def test_expected_failure():
    assert False


def test_vllm_arguments_are_all_explicit():
    pytest.skip("vLLM is not installed")
'''


def test_only_the_vllm_tests_may_skip_in_ci() -> None:
    assert may_skip("test_reads_the_mirror", ci=False, vllm_importable=False)
    assert not may_skip("test_reads_the_mirror", ci=True, vllm_importable=False)
    for name in MAY_SKIP_IN_CI:
        assert may_skip(name, ci=True, vllm_importable=False)
        assert not may_skip(name, ci=True, vllm_importable=True)  # vLLM there: its tests must run
    # the names are those of tests that exist (a renamed vLLM test would otherwise fail in CI)
    sources = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    assert all(f"def {name}(" in sources for name in MAY_SKIP_IN_CI)


def outcomes(folder: Path, ci: str | None) -> dict[str, str]:
    """Each test of TINY_TESTS and its outcome, from pytest run with this suite's conftest.py, the mirror
    pointed at a folder that does not exist."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["EM_MIRROR"] = str(folder / "no-mirror")
    if ci is not None:
        env["CI"] = ci
    report = folder / f"report-{ci}.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    "test_tiny.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    found = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[case.get("name")] = kinds[0] if kinds else "passed"
    return found


def test_ci_turns_a_missing_mirror_or_tex_into_a_failure(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_tiny.py").write_text(TINY_TESTS)
    names = ["test_reads_the_mirror", "test_needs_tex", "test_marked", "test_expected_failure",
             "test_vllm_arguments_are_all_explicit"]
    assert outcomes(tmp_path, None) == outcomes(tmp_path, "false") == {
        **dict.fromkeys(names, "skipped")}  # an expected failure is reported as skipped in JUnit XML
    vllm = "failure" if importlib.util.find_spec("vllm") is not None else "skipped"
    assert outcomes(tmp_path, "true") == {"test_reads_the_mirror": "error", "test_needs_tex": "failure",
                                          "test_marked": "error", "test_expected_failure": "skipped",
                                          "test_vllm_arguments_are_all_explicit": vllm}


def test_ci_script_sets_ci() -> None:
    script = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "export CI=true" in script.split("make test")[0]


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_ci_values(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import in_ci

    monkeypatch.setenv("CI", value)
    assert in_ci()
    monkeypatch.setenv("CI", "false")
    assert not in_ci()
    monkeypatch.delenv("CI")
    assert not in_ci()
