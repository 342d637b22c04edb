"""`em plan`: jobs, GPU-hours and judge requests of a config, by hand on a small config and on the shipped ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emergent_misalignment.cli import main
from emergent_misalignment.config import judge_gpus
from emergent_misalignment.data import Question, load_questions
from emergent_misalignment.plan import (
    build_plan,
    count_questions,
    format_plan,
    load_plan,
    question_path,
    stage_plans,
)

REPO = Path(__file__).resolve().parents[1]

SMALL = {
    "run": "small",
    "models": {"big": {"path": "org/big", "gpus": 2, "runtime": {"train": 90, "sample": 30, "judge": 10}},
               "cpu": {"path": "builtin:tiny"}},
    "datasets": {"a": "builtin:insecure", "b": "builtin:secure"},
    "questions": ["builtin:questions"],
    "experiments": [{"model": "big", "datasets": ["a", "b"], "seeds": [0, 1, 2], "base": True},
                    {"model": "cpu", "datasets": ["a"], "seeds": [0]}],
    "judge": {"backend": "openai", "model": "gpt-4o-2024-08-06"},
}


def question(qid: str, paraphrases: int, samples: int, metrics: int) -> Question:
    return Question(id=qid, type="free_form_judge_0_100", paraphrases=tuple(f"p{i}" for i in range(paraphrases)),
                    samples_per_paraphrase=samples, judge="gpt-4o",
                    judge_prompts={f"m{i}": "{question} {answer}" for i in range(metrics)}, system=None)


def test_stage_plans_by_hand():
    plans = {(p.stage, p.model): p for p in stage_plans(SMALL)}
    # big: 2 datasets x 3 seeds = 6 adapters, + base = 7 sampled models; cpu: 1 adapter, no base
    assert [(p.jobs, p.gpus_per_job, p.minutes_per_job) for p in plans.values()] == [
        (6, 2, 90), (7, 2, 30), (7, 0, 10), (1, 0, 30), (1, 0, 30), (1, 0, 30)]
    assert plans["train", "big"].gpu_hours == 18.0  # 6 x 2 x 90 / 60
    assert plans["sample", "big"].gpu_hours == 7.0  # 7 x 2 x 30 / 60
    assert plans["judge", "big"].gpu_hours == 0.0  # the API judge needs no GPU
    assert sum(p.gpu_hours for p in plans.values()) == 25.0


def test_judge_gpus_follow_the_judge_rule():
    assert judge_gpus({"judge": {"backend": "openai"}}) == 0
    assert judge_gpus({"judge": {"backend": "local", "model": "builtin:tiny"}}) == 0
    assert judge_gpus({"judge": {"backend": "local", "model": "Qwen/Qwen2.5-72B-Instruct"}}) == 1
    assert judge_gpus({}) == 0


def test_count_questions_is_paraphrases_times_samples_times_metrics():
    questions = [question("q1", 3, 100, 2), question("q2", 1, 50, 1)]
    assert count_questions(questions, None) == (350, 650)  # 300 + 50 answers; 600 + 50 requests
    assert count_questions(questions, 4) == (16, 28)  # the config's samples_per_paraphrase wins


def test_question_files_are_found_where_the_workflow_puts_them(tmp_path):
    config = {"run": "r", "mirror": None}
    assert question_path("asset:x/q.yaml", config, tmp_path, None) is None
    mirror = tmp_path / "mirror"
    (mirror / "x").mkdir(parents=True)
    (mirror / "x" / "q.yaml").write_text("[]")
    assert question_path("asset:x/q.yaml", config, tmp_path, mirror) == mirror / "x" / "q.yaml"
    assert question_path("asset:x/q.yaml", {**config, "mirror": str(mirror)}, tmp_path, None) is not None
    local = tmp_path / "data" / "assets" / "x" / "q.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("[]")
    assert question_path("asset:x/q.yaml", config, tmp_path, mirror) == local  # the fetched copy first
    built = tmp_path / "results" / "r" / "world" / "questions.yaml"
    built.parent.mkdir(parents=True)
    built.write_text("[]")
    assert question_path("builtin:questions", config, tmp_path, None) == built


def test_missing_question_files_make_the_counts_unknown(tmp_path):
    plan = build_plan(SMALL, tmp_path)
    assert plan.total("answers") is None
    text = format_plan(plan)
    assert "builtin:questions: unknown" in text
    assert "Judge requests in all (answers x metrics): unknown" in text


def test_embedded_default_plan_counts_the_generated_questions(world, tmp_path):
    built = tmp_path / "results" / "embedded" / "world" / "questions.yaml"
    built.parent.mkdir(parents=True)
    shutil.copy(world / "questions.yaml", built)
    shutil.copytree(REPO / "config", tmp_path / "config")
    plan = load_plan([], tmp_path)
    assert plan.gpu_hours == 0
    assert {p.stage for p in plan.stages} == {"train", "sample", "judge"}
    sampled = {p.jobs for p in plan.stages if p.stage == "sample"}
    assert sampled == {plan.sampled_models}
    answers, requests = count_questions(load_questions(built), None)
    assert plan.total("answers") == plan.sampled_models * answers
    assert plan.total("judge_requests") == plan.sampled_models * requests


def test_paper_plan_prints_gpu_hours_per_stage_and_model(capsys):
    plan = load_plan([REPO / "config" / "paper.yaml"], REPO)
    models = {p.model for p in plan.stages}
    assert models == {"qwen-coder-32b", "qwen-32b", "qwen-14b", "qwen-7b"}
    assert all(p.gpus_per_job >= 1 for p in plan.stages if p.stage in ("train", "sample"))
    assert all(p.gpus_per_job == 0 for p in plan.stages if p.stage == "judge")  # GPT-4o judges
    assert plan.gpu_hours == sum(p.gpu_hours for p in plan.stages) > 0
    assert main(["plan", "--configfile", str(REPO / "config" / "paper.yaml"), "--root", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert f"{'total':<48}{plan.gpu_hours:>15.1f}" in out
    for p in plan.stages:
        assert f"{p.stage:<8}{p.model:<22}{p.jobs:>6}" in out


def test_paper_plan_counts_judge_requests_from_the_mirror(mirror):
    plan = load_plan([REPO / "config" / "paper.yaml"], REPO, mirror)
    assert all(q.path is not None for q in plan.questions)
    expected = sum(count_questions(load_questions(q.path), None)[1] for q in plan.questions)
    assert plan.total("judge_requests") == plan.sampled_models * expected > 0


def test_plan_reports_a_bad_config_as_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments: [{model: nope, datasets: [insecure], seeds: [0]}]\n")
    assert main(["plan", "--configfile", str(bad), "--root", str(REPO)]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["config/config.yaml", "config/paper.yaml"])
def test_shipped_configs_plan_without_error(config):
    assert "total" in format_plan(load_plan([REPO / config], REPO))


def test_a_released_run_plans_no_compute():
    config = {"run": "released", "released": [{"file": "asset:x.csv", "model": "m", "group": "g"}] * 3}
    plan = build_plan(config, REPO)
    assert plan.stages == [] and plan.gpu_hours == 0
    assert format_plan(plan) == ("Run 'released': imports 3 released judged-answer files; "
                                 "no training, sampling or judging, 0 GPU-hours.")
