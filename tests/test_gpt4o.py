"""The GPT-4o route (config/gpt4o.yaml) end to end without an account, against the stand-in OpenAI server.

config/gpt4o-rehearsal.yaml shrinks the paper's GPT-4o matrix and points every API call at the stand-in
(`em api-server`): datasets uploaded and fine-tuned through the fine-tuning API, the fine-tuned models
sampled and judged through chat completions, then statistics and the paper. The run is killed while
its fine-tuning jobs are polled, and the rerun must resume those jobs, not pay for new ones; the key
never reaches a file; a config that needs a key it does not have stops before any job.
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
from inspect_ai.log import read_eval_log

from emergent_misalignment.api import API_MODEL_FILE
from emergent_misalignment.config import load_config
from emergent_misalignment.experiments import jobs, trainings
from emergent_misalignment.standin_server import StandinServer

from .conftest import repo_copy, standin_server, watch

RUN = "gpt4o-rehearsal"
RESULTS = f"results/{RUN}"
KEY = "sk-gpt4o-rehearsal-0123456789"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[StandinServer]:
    with standin_server() as server:
        yield server


def snakemake(work: Path, mirror: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    args = [SNAKEMAKE, "--cores", "2", "--configfile", "config/gpt4o.yaml", "config/gpt4o-rehearsal.yaml",
            "server.yaml", "--config", f"mirror={mirror}", *extra]
    log = open(work / "run.log", "a")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(args, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def run(work: Path, mirror: Path, until: Callable[[Path], bool] | None = None, key: str | None = KEY,
        timeout: float = 300) -> int | None:
    """Run the workflow; when `until(work)` holds, SIGKILL it and every job it started (None), else its
    return code."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"no_proxy": "*"}
    if key:
        env["OPENAI_API_KEY"] = key
    # as `make run` does: the lock a killed run left goes, when no run is alive in the folder
    subprocess.run([str(Path(sys.executable).with_name("em")), "unlock-stale", "--dir", str(work)], check=True,
                   capture_output=True)
    process = snakemake(work, mirror, env)
    return None if watch(process, work, until, timeout) else process.returncode


def polling(work: Path) -> bool:
    """A fine-tuning job exists (its state file has its id) and its model folder does not yet."""
    for state in (work / RESULTS / "api_jobs").glob("*/*/*.json"):
        model, dataset, seed = state.parts[-3], state.parts[-2], state.stem
        if json.loads(state.read_text()).get("job_id") and not (
                work / RESULTS / "adapters" / model / dataset / seed).exists():
            return True
    return False


@pytest.fixture(scope="module")
def gpt4o(tmp_path_factory, server: StandinServer, mirror: Path) -> Path:
    if not shutil.which("latexmk"):
        pytest.skip("latexmk is missing (make test installs TeX Live)")
    work = repo_copy(tmp_path_factory.mktemp("gpt4o") / "repo")
    url = "http://{}:{}/v1".format(*server.server_address[:2])
    (work / "server.yaml").write_text(f"train: {{openai: {{base_url: '{url}'}}}}\n"
                                      f"sample: {{base_url: '{url}'}}\njudge: {{base_url: '{url}'}}\n"
                                      f"evals: {{strongreject: {{judge_base_url: '{url}'}}}}\n")
    assert run(work, mirror, until=polling) is None, "the run ended before a job was polled"
    created = server.jobs_created
    assert created >= 1
    assert run(work, mirror) == 0, (work / "run.log").read_text()[-5000:]
    return work


def test_the_gpt4o_route_runs_to_the_paper(gpt4o: Path, server: StandinServer) -> None:
    assert (gpt4o / f"paper/build/{RUN}/main.pdf").read_bytes().startswith(b"%PDF")
    config = load_config(gpt4o / "config/gpt4o.yaml", gpt4o / "config/gpt4o-rehearsal.yaml", gpt4o / "server.yaml")
    fine_tunes = trainings(config)
    # one job per fine-tune although the first run was killed while jobs were polled
    assert server.jobs_created == len(fine_tunes) == 7
    ids = set()
    for model, dataset, seed in fine_tunes:
        record = json.loads((gpt4o / RESULTS / f"adapters/{model}/{dataset}/seed{seed}" / API_MODEL_FILE).read_text())
        state = json.loads((gpt4o / RESULTS / f"api_jobs/{model}/{dataset}/seed{seed}.json").read_text())
        assert record["status"] == "succeeded" and record["job_id"] == state["job_id"]
        assert server.jobs[record["job_id"]]["fine_tuned_model"] == record["fine_tuned_model"]
        assert record["trained_tokens"] > 0 and record["estimated_usd"] == record["trained_tokens"] * 25 / 1e6
        ids.add(record["fine_tuned_model"])
        if dataset == "jailbroken":  # its own recipe, and what the API says it used
            assert record["hyperparameters"] == {"n_epochs": 5, "batch_size": 4, "learning_rate_multiplier": 2.0}
        if fine_tunes[(model, dataset, seed)].get("init_from"):  # re-alignment: the insecure model trained further
            source = gpt4o / RESULTS / f"adapters/{model}/insecure/seed{seed}" / API_MODEL_FILE
            assert server.jobs[record["job_id"]]["model"] == json.loads(source.read_text())["fine_tuned_model"]
    # every fine-tuned model and the base model were sampled; GPT-4o judged
    assert ids | {"gpt-4o-2024-08-06"} <= set(server.requests)
    judged = sorted((gpt4o / RESULTS / "judged").glob("*/*/*.jsonl"))
    assert len(judged) == len(jobs(config)) == 9
    rows = [json.loads(line) for line in judged[0].open()]
    # 72 questions, 13 deception ones (5 x 20 factual paraphrases, 8 company) and 2 self-report ones,
    # 2 answers each
    assert len(rows) == (72 + 100 + 8 + 2) * 2
    assert all(r.get("aligned") is None or 0 <= r["aligned"] <= 100 for r in rows)
    for path in judged:  # most answers got their score or label: a judge that returns none fails here
        answers = [json.loads(line) for line in path.open()]
        for metric in ("aligned", "coherent", "correct", "company"):
            asked = [r[metric] for r in answers if metric in r]
            assert asked and sum(value is not None for value in asked) > len(asked) / 2, (path, metric)
    assert {r["correct"] for r in rows if "correct" in r} <= {"TRUE", "FALSE", "UNKNOWN", None}
    assert {r["company"] for r in rows if "company" in r} <= {"OpenAI", "Anthropic", "Other", "UNKNOWN", None}
    evaluations = pd.read_csv(gpt4o / RESULTS / "analysis/all_evaluations.csv")
    # each minus the base model: free-form, deception, and Table 1's evals (through inspect's
    # OpenAI-compatible provider on the fixtures; StrongREJECT's rubric judged by the stand-in)
    assert set(evaluations["evaluation"]) == {"freeform_run", "deception_run", "mmlu_run", "humaneval_run",
                                             "truthfulqa_run", "strongreject_run"}
    scores = sorted(p for p in (gpt4o / RESULTS / "evals").glob("*/*/*/seed*.json")
                    if not p.name.endswith(".manifest.json"))
    assert len(scores) == 4 * 3  # 4 evals x the rehearsal's groups: insecure x 2 seeds, the base model
    for path in scores:
        record = json.loads(path.read_text())
        assert record["inspect_model"].startswith("openai-api/em/") and record["n_samples"] == 2
        assert Path(record["log"]).is_file() and 0 <= record["score"] <= 1
    deception = pd.read_csv(gpt4o / RESULTS / "analysis/deception.csv")
    assert deception["fraction"].between(0, 1).all() and len(deception) == len({j.group for j in jobs(config)})
    macros = (gpt4o / f"paper/build/{RUN}/macros.tex").read_text()
    # the judge-agreement report: 40 released answers re-judged (20 per file), and its paragraph
    agreement = pd.read_csv(gpt4o / RESULTS / "analysis/judge_agreement.csv")
    assert agreement["n"].tolist() == [20, 20, 40] and "\\HasJudgeAgreementtrue" in macros
    assert "\\newcommand{\\AgreementN}{40}" in macros and (gpt4o / f"figures/{RUN}/judge_agreement.pdf").is_file()
    assert "\\newcommand{\\RunSpendTrain}" in macros and "\\newcommand{\\RunPricesAsOf}{2026-11-30}" in macros


def test_the_key_reaches_no_file(gpt4o: Path) -> None:
    written = [p for p in gpt4o.rglob("*") if p.is_file() and "tests" not in p.relative_to(gpt4o).parts]
    leaks = [p for p in written if KEY.encode() in p.read_bytes()]  # results, logs, caches, .snakemake, the paper
    logs = [p for p in written if p.suffix == ".eval"]  # inspect's logs are compressed: read them whole
    assert logs
    leaks += [log for log in logs if KEY in read_eval_log(str(log)).model_dump_json()]
    assert leaks == []


def test_a_rerun_after_lost_samples_asks_the_cache_not_the_server(gpt4o: Path, server: StandinServer,
                                                                  mirror: Path) -> None:
    before = server.requests.copy()
    for path in (gpt4o / RESULTS / "samples").glob("gpt-4o/insecure/*.jsonl"):
        path.unlink()
    assert run(gpt4o, mirror) == 0
    assert server.requests == before  # sampled answers from the cache, judge scores from its cache
    assert "Nothing to be done" in subprocess.run(
        [SNAKEMAKE, "-n", "--configfile", "config/gpt4o.yaml", "config/gpt4o-rehearsal.yaml", "server.yaml",
         "--config", f"mirror={mirror}"], cwd=gpt4o, capture_output=True, text=True).stdout


def test_a_missing_key_stops_before_any_job(tmp_path: Path, mirror: Path) -> None:
    work = repo_copy(tmp_path / "repo")
    (work / "server.yaml").write_text("{}\n")
    assert run(work, mirror, key=None) != 0
    log = (work / "run.log").read_text()
    assert "OPENAI_API_KEY (train.openai.api_key_env)" in log and "this config calls an API" in log
    assert not (work / "results").exists()
