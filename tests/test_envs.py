"""The conda environments of the rules (`snakemake --use-conda`) and the GPU check script.

The environment files must parse, pin exactly what requirements.txt pins (the GPU one differs only
where vLLM demands it, each difference declared below), and every rule must name one. conda itself
cannot be installed here, so Snakemake's choice of environment per job is checked with a stub
`conda` that only answers Snakemake's questions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "workflow" / "envs"
RULES = REPO / "workflow" / "rules"
BIN = Path(sys.executable).parent
CPU_ENV, GPU_ENV = "em", "em-gpu"
CPU_TORCH_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
# Where the GPU environment may differ from requirements.txt, and why.
GPU_OVERRIDES = {"transformers": "vllm 0.32.0 requires transformers<5.20"}
GPU_ONLY_REQUIRED = ("vllm", "bitsandbytes")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str], where: str) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = PIN.match(line.strip())
        assert match, f"{where}: {line!r} is not an exact pin name==version"
        assert norm(match[1]) not in pins, f"{where}: {match[1]} pinned twice"
        pins[norm(match[1])] = match[2]
    return pins


def requirements() -> dict[str, str]:
    lines = [line for line in (REPO / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return parse_pins(lines, "requirements.txt")


def load_env(name: str) -> tuple[dict, list[str], dict[str, str], list[str]]:
    """(the YAML, its conda specs, its pip pins, its pip option lines)."""
    data = yaml.safe_load((ENVS / f"{name}.yaml").read_text())
    conda = [d for d in data["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in data["dependencies"] if isinstance(d, dict))
    options = [p for p in pip if p.startswith("-")]
    return data, conda, parse_pins([p for p in pip if not p.startswith("-")], f"{name}.yaml"), options


def env_names() -> list[str]:
    return sorted(p.stem for p in ENVS.glob("*.yaml"))


def differences(want: dict[str, str], got: dict[str, str]) -> list[str]:
    return ([f"missing {n}=={v}" for n, v in want.items() if n not in got]
            + [f"{n}: {got[n]} instead of {v}" for n, v in want.items() if n in got and got[n] != v])


def test_the_two_environments_exist():
    assert env_names() == [CPU_ENV, GPU_ENV]


@pytest.mark.parametrize("name", [CPU_ENV, GPU_ENV])
def test_env_file_is_a_conda_environment_of_exact_pins(name):
    data, conda, pip, _ = load_env(name)
    assert set(data) == {"name", "channels", "dependencies"}
    assert data["name"] == name
    assert data["channels"][0] == "conda-forge"
    # conda provides only the interpreter and pip; every Python package comes from pip, pinned.
    assert sorted(spec.split("=")[0] for spec in conda) == ["pip", "python"]
    assert all(re.fullmatch(r"[a-z]+=\d+\.\d+", spec) for spec in conda), conda
    assert len(pip) > 50


def test_cpu_env_pins_exactly_requirements_txt():
    _, _, pip, options = load_env(CPU_ENV)
    want = requirements()
    problems = differences(want, pip) + [f"not in requirements.txt: {n}" for n in pip if n not in want]
    assert not problems, "workflow/envs/em.yaml must list requirements.txt's pins:\n" + "\n".join(problems)
    assert options == [CPU_TORCH_INDEX]


def test_gpu_env_agrees_with_requirements_txt_but_where_vllm_demands():
    _, conda, pip, options = load_env(GPU_ENV)
    want = requirements()
    shared = {n: v for n, v in pip.items() if n in want}
    problems = [p for p in differences({n: want[n] for n in shared}, shared)
                if p.split(":")[0] not in GPU_OVERRIDES]
    assert not problems, "workflow/envs/em-gpu.yaml drifted from requirements.txt:\n" + "\n".join(problems)
    for name in GPU_OVERRIDES:  # an override that no longer differs is stale: drop it
        assert shared[name] != want[name], f"{name} is declared as a GPU override but agrees"
    assert all(name in pip for name in GPU_ONLY_REQUIRED)
    # the GPU stack needs the ML pins; the dev tools and the SLURM plugin run on the submit host
    for name in ("torch", "peft", "trl", "accelerate", "datasets", "tokenizers", "pandas", "scipy"):
        assert name in pip, name
    assert options == [], "the GPU environment takes PyPI's CUDA torch"
    assert "python=3.13" in conda


def test_every_rule_with_a_command_names_an_environment_last_before_it():
    """The rule anatomy: ..., resources, retries, conda, then shell (one env file that exists)."""
    rules = 0
    for path in sorted(RULES.glob("*.smk")):
        text = path.read_text()
        for block in re.split(r"^(?=rule \w+:)", text, flags=re.M)[1:]:
            name = block.split(":")[0].split()[1]
            directives = re.findall(r"^    (\w+):", block, flags=re.M)
            command = next((d for d in directives if d in ("shell", "run", "script")), None)
            if command is None:
                continue
            rules += 1
            assert "conda" in directives, f"{path.name}: rule {name} names no conda environment"
            assert directives.index("conda") == directives.index(command) - 1, \
                f"{path.name}: rule {name}: conda must come right before {command}"
            for env in re.findall(r'"\.\./envs/([^"]+)"', block.split("    conda:")[1]):
                assert (ENVS / env).is_file(), f"{path.name}: rule {name}: no workflow/envs/{env}"
    assert rules >= 8


@pytest.fixture()
def stub_conda(tmp_path) -> dict[str, str]:
    """A `conda` that answers what Snakemake asks before listing environments, and creates nothing."""
    stub = tmp_path / "bin" / "conda"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\ncase \"$*\" in\n"
                    f"  'info --json') echo '{json.dumps({'conda_prefix': str(tmp_path), 'platform': 'linux-64'})}' ;;\n"
                    "  '--version') echo 'conda 25.7.0' ;;\n"
                    "  'config --get channel_priority --json') echo '{\"get\": {\"channel_priority\": \"strict\"}}' ;;\n"
                    "  *) echo \"stub conda: $*\" >&2; exit 1 ;;\nesac\n")
    stub.chmod(0o755)
    return {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}


def listed_envs(env: dict[str, str], *args: str) -> set[str]:
    result = subprocess.run([str(BIN / "snakemake"), "--list-conda-envs", "--nolock", *args], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return {line.split("\t")[0] for line in result.stdout.splitlines() if line.startswith("workflow/envs/")}


def test_snakemake_gives_gpu_jobs_the_gpu_environment(stub_conda):
    assert listed_envs(stub_conda) == {"workflow/envs/em.yaml"}
    paper = listed_envs(stub_conda, "--configfile", "config/paper.yaml")
    assert paper == {"workflow/envs/em.yaml", "workflow/envs/em-gpu.yaml"}


@pytest.mark.parametrize("name", [CPU_ENV, GPU_ENV])
def test_post_deploy_installs_this_repository_editable(name, tmp_path):
    script = ENVS / f"{name}.post-deploy.sh"
    assert script.read_text().startswith("#!/usr/bin/env bash")
    # Snakemake runs it in the working directory with the environment active; fake that python.
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(script)], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args").read_text().split() == ["-m", "pip", "install", "--no-deps", "-e", "."]
    elsewhere = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert elsewhere.returncode == 1
    assert "run snakemake from the repository root" in elsewhere.stderr


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu-check.sh")]).returncode == 0


@pytest.mark.slow
def test_gpu_check_runs_tiny_on_cpu_and_reports_throughput(tmp_path):
    if not shutil.which("bash"):
        pytest.skip("bash is needed")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    start = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--tiny"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    print(f"gpu-check --tiny on CPU: {time.monotonic() - start:.0f} s")
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["environment"]["device"] in ("cpu", "cuda")
    assert set(report["seconds"]) == {"world", "base_model", "train", "sample", "judge"}
    throughput = report["throughput"]
    assert throughput["train_tokens"] > 0 and throughput["train_tokens_per_s"] > 0
    assert throughput["answers"] > 0 and throughput["sample_tokens_per_s"] > 0
    from emergent_misalignment.data import load_questions
    from emergent_misalignment.io import read_jsonl

    metrics = {q.id: len(q.judge_prompts) for q in load_questions(tmp_path / "work" / "world" / "questions.yaml")}
    rows = read_jsonl(tmp_path / "work" / "samples.jsonl")
    assert throughput["answers"] == len(rows)
    assert throughput["judge_requests"] == sum(metrics[r["question_id"]] for r in rows)
    assert "tokens/s" in (tmp_path / "gpu-check.md").read_text()
