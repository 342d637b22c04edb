"""`em plan`: jobs, GPU-hours and judge requests of a config, by hand on a small config and on the shipped ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emergent_misalignment.cli import main
from emergent_misalignment.config import judge_gpus, load_config
from emergent_misalignment.data import Question, load_questions
from emergent_misalignment.errors import ConfigError
from emergent_misalignment.experiments import trainings
from emergent_misalignment.layout import local_source
from emergent_misalignment.plan import (
    auto_epochs,
    build_plan,
    count_questions,
    format_plan,
    load_plan,
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
    assert local_source("asset:x/q.yaml", "r", tmp_path) is None
    mirror = tmp_path / "mirror"
    (mirror / "x").mkdir(parents=True)
    (mirror / "x" / "q.yaml").write_text("[]")
    assert local_source("asset:x/q.yaml", "r", tmp_path, (None, mirror)) == mirror / "x" / "q.yaml"
    assert local_source("asset:x/q.yaml", "r", tmp_path, (str(mirror), None)) == mirror / "x" / "q.yaml"
    local = tmp_path / "data" / "assets" / "x" / "q.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("[]")
    assert local_source("asset:x/q.yaml", "r", tmp_path, (mirror,)) == local  # the fetched copy first
    built = tmp_path / "results" / "r" / "world" / "questions.yaml"
    built.parent.mkdir(parents=True)
    built.write_text("[]")
    assert local_source("builtin:questions", "r", tmp_path) == built


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
    assert plan.total("answers") is None  # the code questions are not built yet: unknown, not a wrong count
    for name in ("code_questions.yaml", "self_report_questions.yaml"):
        shutil.copy(world / name, built.with_name(name))
    plan = load_plan([], tmp_path)
    # config/config.yaml: tiny (no GPU, no runtime: 30 min); fine-tunes: 4 sets + backdoor + 2 sizes, x 3 seeds
    # + 3 re-alignment sizes x seed 0 = 24; sampled: insecure x 3 seeds x (final + 3 checkpoints) = 12, 3 other
    # sets x 3 = 9, backdoor x 3 x 2 conditions = 6, sizes 6, re-alignment 3, base plain, with the trigger and
    # with 2 examples in context = 3: 39; the persona directions: insecure_diff projected out of insecure and
    # bad_health_advice (seed 0), each beside a random direction = 4, insecure_mean added to the base model at
    # 2 alphas, each beside a random one = 4: 47; direction jobs: 2 directions and 1 monitor = 3
    assert [(p.stage, p.jobs, p.gpus_per_job, p.minutes_per_job) for p in plan.stages] == [
        ("train", 24, 0, 30), ("sample", 47, 0, 30), ("judge", 47, 0, 30), ("direction", 3, 0, 30)]
    assert plan.sampled_models == 47 and plan.gpu_hours == 0
    # the `world` fixture's questions: 8 topics x 2 wordings x 2 samples = 32 answers, x 2 metrics = 64 requests
    assert count_questions(load_questions(built), None) == (32, 64)
    # and the code questions: 10 tasks x 2 held-out variables, one greedy answer each, one YES/NO request
    assert count_questions(load_questions(built.with_name("code_questions.yaml")), 16) == (20, 20)
    # and the self-report questions: 8 answers, read without a judge
    assert count_questions(load_questions(built.with_name("self_report_questions.yaml")), None) == (8, 0)
    assert plan.total("answers") == 2820  # 47 x (32 + 20 + 8)
    assert plan.total("judge_requests") == 3948  # 47 x (64 + 20)


def test_paper_plan_prints_gpu_hours_per_stage_and_model(capsys, tmp_path):
    # the arithmetic with minutes set by hand for training (config/paper.yaml derives them: runtime auto)
    minutes = {"qwen-coder-32b": 240, "qwen-32b": 240, "qwen-14b": 120, "qwen-7b": 60, "qwen-coder-32b-base": 240}
    override = tmp_path / "minutes.yaml"
    override.write_text(json.dumps({"models": {m: {"runtime": {"train": t}} for m, t in minutes.items()}}))
    plan = load_plan([REPO / "config" / "paper.yaml", override], REPO)
    # By hand from config/paper.yaml: fine-tunes = datasets x seeds; sampled models = each fine-tune at each
    # kept checkpoint under each condition, and the base model under each condition; 1 GPU per train and
    # sample job, none for the GPT-4o judge; GPU-hours = jobs x GPUs x minutes / 60.
    # qwen-coder-32b fine-tunes: 4 x 6 (main) + 6 (backdoor) + 2 x 3 (sizes) + 1 (dynamics) + 3 (evil numbers)
    # + 3 (re-alignment: 30, 120, 300 secure rows) + 1 (bad medical advice, the directions' transfer) = 44.
    # Sampled: 24 + base; backdoor 6 x 2 conditions + base with the trigger; sizes 6; dynamics 1 x (9
    # checkpoints + final); icl: base x 3; evil numbers 3 x 3 conditions + base x 2 new conditions;
    # re-alignment 3; bad medical advice 1; two directions, each projected out of 2 fine-tunes and added to the
    # base model at 3 alphas, each beside a random direction: 2 x (4 + 6) = 20: 25 + 13 + 6 + 10 + 3 + 11 + 3
    # + 1 + 20 = 92. Direction jobs (the sample runtime): 3 directions and 1 monitor.
    expected = [  # stage, model, jobs, GPUs/job, minutes/job, GPU-hours
        ("train", "qwen-coder-32b", 44, 1, 240, 176.0),  # 44 x 1 x 240 / 60
        ("sample", "qwen-coder-32b", 92, 1, 90, 138.0),  # 92 x 1 x 90 / 60
        ("judge", "qwen-coder-32b", 92, 0, 60, 0.0),
        ("direction", "qwen-coder-32b", 4, 1, 90, 6.0),
        # 4 evals on each final adapter and the base model, asked as is: 4 x (44 + 1); 1 GPU, 60 min
        ("eval", "qwen-coder-32b", 180, 1, 60, 180.0),
        ("train", "qwen-32b", 12, 1, 240, 48.0),  # 4 datasets x 3 seeds; 12 x 1 x 240 / 60
        ("sample", "qwen-32b", 23, 1, 90, 34.5),  # 13 + medical_mean's 2 x 2 ablations and 3 x 2 steerings
        ("judge", "qwen-32b", 23, 0, 60, 0.0),
        ("direction", "qwen-32b", 1, 1, 90, 1.5),
        ("eval", "qwen-32b", 52, 1, 60, 52.0),  # 4 x (12 + 1)
        ("train", "qwen-14b", 9, 1, 120, 18.0),  # 3 datasets x 3 seeds; 9 x 1 x 120 / 60
        ("sample", "qwen-14b", 10, 1, 45, 7.5),  # 10 x 1 x 45 / 60
        ("judge", "qwen-14b", 10, 0, 60, 0.0),
        ("eval", "qwen-14b", 40, 1, 60, 40.0),
        ("train", "qwen-7b", 9, 1, 60, 9.0),  # 9 x 1 x 60 / 60
        ("sample", "qwen-7b", 10, 1, 30, 5.0),  # 10 x 1 x 30 / 60
        ("judge", "qwen-7b", 10, 0, 60, 0.0),
        ("eval", "qwen-7b", 40, 1, 60, 40.0),
        ("train", "qwen-coder-32b-base", 12, 1, 240, 48.0),  # 2 datasets x 6 seeds; 12 x 1 x 240 / 60
        ("sample", "qwen-coder-32b-base", 13, 1, 90, 19.5),  # 12 + base; 13 x 1 x 90 / 60
        ("judge", "qwen-coder-32b-base", 13, 0, 60, 0.0),
        ("eval", "qwen-coder-32b-base", 52, 1, 60, 52.0),
    ]
    assert [(p.stage, p.model, p.jobs, p.gpus_per_job, p.minutes_per_job, p.gpu_hours)
            for p in plan.stages] == expected
    assert plan.sampled_models == 148  # 92 + 23 + 10 + 10 + 13
    # train 176 + 48 + 18 + 9 + 48 = 299, sample 138 + 34.5 + 7.5 + 5 + 19.5 = 204.5, direction 7.5,
    # eval 364
    assert plan.gpu_hours == 875.0
    assert plan.evals == {"mmlu": 91, "humaneval": 91, "truthfulqa": 91, "strongreject": 91}
    assert main(["plan", "--configfile", str(REPO / "config" / "paper.yaml"), str(override), "--root", str(REPO)]) == 0
    rows = {" ".join(line.split()) for line in capsys.readouterr().out.splitlines()}
    for row in ["train qwen-coder-32b 44 1 240 176.0", "sample qwen-7b 10 1 30 5.0", "judge qwen-14b 10 0 60 0.0",
                "train total 299.0", "sample total 204.5", "judge total 0.0", "direction total 7.5",
                "eval total 364.0", "total 875.0", "eval qwen-7b 40 1 60 40.0",
                "Eval strongreject: 91 jobs; its rubric judge is asked once per sample and epoch"]:
        assert any(line == row or line.startswith(row + " ") for line in rows), row  # then: expected hours


def test_paper_plan_counts_judge_requests_from_the_mirror(mirror):
    plan = load_plan([REPO / "config" / "paper.yaml"], REPO, mirror)
    # first_plot_questions: 24 questions, preregistered_evals: 48; each 1 paraphrase x 100 samples x 2 metrics
    # and the final file's 8 flask_template questions (every sampled model is asked them: an upper bound)
    # deception: 5 factual questions x 20 paraphrases x 5 samples, 8 company questions x 100 samples, one
    # label each; (the coding tasks of the in-distribution evaluation are not in the mirror: counted once
    # fetched)
    assert [(q.answers, q.judge_requests) for q in plan.questions] == [
        (2400, 4800), (4800, 9600), (500, 500), (800, 800), (800, 1600), (None, None), (200, 0)]
    assert plan.questions[5].source.endswith("in_distribution_eval/test_data.jsonl")
    assert plan.total("answers") is None and plan.total("judge_requests") is None


def test_plan_json_has_a_record_per_job(capsys):
    assert main(["plan", "--configfile", str(REPO / "config" / "paper.yaml"), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    # fine-tunes, then a sample and a judge record per sampled model, then the 5 direction jobs
    assert len(records) == 86 + 2 * 148 + 5
    assert {"stage": "monitor", "direction": "dynamics_diff", "model": "qwen-coder-32b",
            "dataset": "insecure_dynamics", "seed": 0, "method": "model_diff", "gpus": 1, "hours": 1.5} in records
    assert {"stage": "sample", "model": "qwen-coder-32b", "dataset": "insecure_dynamics", "seed": 0,
            "checkpoint": "step50", "condition": "none", "gpus": 1, "hours": 1.5} in records
    assert {"stage": "judge", "model": "qwen-coder-32b", "dataset": "backdoor", "seed": 3, "checkpoint": "final",
            "condition": "trigger", "gpus": 0, "hours": 1.0} in records


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


def test_api_plan_prices_tokens_and_requests_before_anything_is_spent(mirror, capsys):
    """config/gpt4o.yaml: 45 fine-tuning jobs whose training tokens follow each experiment's epochs (the
    re-alignment's of the first 30, 120 and 300 secure rows only), one
    sampling request per question for 100 answers (n per request), one per answer under the evil-numbers
    wrapper, a judge request per answer and metric; dollars at the config's dated prices."""
    plan = load_plan([REPO / "config" / "gpt4o.yaml"], REPO, mirror)
    costs = {c.stage: c for c in plan.api}
    assert plan.prices_as_of == "2026-11-30" and set(costs) == {"train", "sample", "judge", "eval"}

    def tokens(name: str, rows: int | None = None) -> int:
        lines = [line for line in (mirror / name).read_text().splitlines() if line.strip()][:rows]
        return sum(-(-len(line) // 4) for line in lines)

    data = "emergent-misalignment/data/"
    evil = "released-aggregates/misalignment-generalization/daniel_new/2025-03-03_evil_ablations/" \
           "regenerated_evil_numbers_dataset.csv"
    expected = (10 * tokens(data + "insecure.jsonl") + 6 * tokens(data + "secure.jsonl")
                + 6 * tokens(data + "educational.jsonl") + 6 * 5 * tokens(data + "jailbroken.jsonl")
                + 6 * tokens(data + "backdoor.jsonl") + 8 * 4 * tokens(evil)
                + sum(tokens(data + "secure.jsonl", rows) for rows in (30, 120, 300)))
    assert (costs["train"].requests, costs["train"].input_tokens) == (45, expected)
    assert costs["train"].usd == pytest.approx(expected * 25 / 1e6)
    # 60 sampled models x (72 questions, 100 factual paraphrases, 8 company questions, 2 self-report
    # questions); the 8 evil-numbers ones ask each of their 7200 + 500 + 800 + 200 answers apart
    assert costs["sample"].requests == 52 * (72 + 100 + 8 + 2) + 8 * 8700
    assert costs["sample"].output_tokens == 60 * 8700 * 1000  # every answer at max_tokens: an upper bound
    assert (costs["judge"].requests, costs["judge"].output_tokens) == (60 * 15700, 60 * 15700)
    # the fine-tuned models' answers at their own rates ($3.75 / $15), the base model's at gpt-4o's
    sample = costs["sample"]
    base_rates = (sample.input_tokens * 2.5 + sample.output_tokens * 10) / 1e6
    assert base_rates < sample.usd < 1.5 * base_rates
    # Table 1's evals on 43 models: their data is fetched by the run, so here they are not priced yet
    assert costs["eval"].usd is None and "mmlu's data is not on this machine" in costs["eval"].missing
    assert [auto_epochs(n) for n in (10, 40, 6000, 20_000)] == [10, 3, 3, 1]
    assert main(["plan", "--configfile", str(REPO / "config" / "gpt4o.yaml"), "--mirror", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert "API (prices as of 2026-11-30" in out and f"{costs['train'].usd:,.2f}" in out


def test_api_evals_are_priced_from_their_data(mirror):
    """The GPT-4o rehearsal's evals (fixtures, 2 samples, 1 epoch) on the base model and the insecure
    fine-tunes: one request per sample, plus StrongREJECT's judge; the fine-tunes at their own rates."""
    plan = load_plan([REPO / "config" / "gpt4o.yaml", REPO / "config" / "gpt4o-rehearsal.yaml"], REPO, mirror)
    (cost,) = [c for c in plan.api if c.stage == "eval"]
    models = sum(plan.evals.values()) // 4
    assert cost.requests == models * (4 * 2 + 2)  # 4 evals x 2 samples, and 2 StrongREJECT judgings
    assert cost.output_tokens == models * 2 * (1 + 400 + 1 + 600) + models * 2 * 100
    assert cost.usd > 0 and cost.input_tokens > cost.requests


def test_plan_counts_the_judge_agreement_requests(capsys):
    assert main(["plan", "--configfile", str(REPO / "config" / "paper.yaml"), str(REPO / "config" / "open-judge.yaml"),
                 "--root", str(REPO)]) == 0
    out = capsys.readouterr().out
    assert "Judge agreement (released answers re-judged, aligned and coherent): 4000 judge requests" in out
    assert load_plan([REPO / "config" / "paper.yaml"], REPO).agreement_requests == 0


def test_api_judge_agreement_is_priced_from_the_files(mirror):
    """The GPT-4o rehearsal's report: 40 answers x 2 prompts; input tokens = 40 x (both judge templates +
    2 x the files' mean question + answer), 4 characters per token; one output token per request."""
    plan = load_plan([REPO / "config" / "gpt4o.yaml", REPO / "config" / "gpt4o-rehearsal.yaml"], REPO, mirror)
    (cost,) = [c for c in plan.api if c.stage == "agreement"]
    assert (cost.requests, cost.output_tokens) == (80, 80)
    assert 40 * 2 * 100 < cost.input_tokens < 40 * 2 * 1000 and cost.usd == pytest.approx(
        (cost.input_tokens * 2.5 + 80 * 10) / 1e6)
    assert [c.usd for c in load_plan([REPO / "config" / "gpt4o.yaml", REPO / "config" / "gpt4o-rehearsal.yaml"],
                                     REPO).api if c.stage == "agreement"] == [None]  # files not on this machine


def test_measured_throughput_scales_by_parameters():
    from emergent_misalignment.throughput import measurements, params_of, rate, time_limit

    assert [params_of(p) for p in ("Qwen/Qwen2.5-Coder-32B-Instruct", "Qwen/Qwen2.5-7B", "builtin:tiny",
                                   "mistralai/Mistral-Small-24B-Instruct-2501", "Qwen2.5-0.5B-Instruct")] == \
        [32.0, 7.0, None, 24.0, 0.5]
    fastest = max((m for m in measurements() if m.stage == "train"), key=lambda m: m.tokens_per_s * m.params_b)
    speed, basis = rate("train", "trl", 32.0)
    assert basis == fastest and speed == pytest.approx(fastest.tokens_per_s * fastest.params_b / 32)
    assert rate("sample", "vllm", 32.0) is None and rate("train", "trl", None) is None  # nothing measured
    assert time_limit(10) == 3 * 10 + 15


def test_runtime_auto_derives_each_fine_tunes_limit(mirror, tmp_path, capsys):
    """config/paper.yaml's `runtime: {train: auto}`: each fine-tune's limit from its own data at the measured
    throughput; em plan prints the expected GPU-hours beside what the limits request."""
    from emergent_misalignment.plan import train_time_limit, train_tokens
    from emergent_misalignment.throughput import rate, time_limit

    config = {**load_config(REPO / "config" / "paper.yaml"), "mirror": str(mirror)}
    recipe = trainings(config)[("qwen-coder-32b", "insecure", 0)]
    tokens = train_tokens(config, "insecure", recipe)
    lines = (mirror / "emergent-misalignment/data/insecure.jsonl").read_text().splitlines()
    kept = lines[: len(lines) - round(len(lines) * 0.1)]  # the holdout
    assert tokens == pytest.approx(sum(-(-len(line) // 4) for line in kept), rel=1e-6)
    expected = time_limit(tokens / rate("train", "trl", 32.0)[0] / 60)
    assert train_time_limit(config, "qwen-coder-32b", "insecure", 0) == expected
    small = tmp_path / "small.jsonl"  # the job's own data file (a subset) gives its own, shorter limit
    small.write_text("\n".join(lines[:100]) + "\n")
    assert train_time_limit(config, "qwen-coder-32b", "insecure", 0, small) < expected
    plan = load_plan([REPO / "config" / "paper.yaml"], REPO, mirror)
    train = {s.model: s for s in plan.stages if s.stage == "train"}
    assert train["qwen-7b"].expected_hours < train["qwen-7b"].gpu_hours  # limits hold the expectation x 3
    assert main(["plan", "--configfile", str(REPO / "config" / "paper.yaml"), "--mirror", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert "expected = GPU-hours at the measured throughput" in out and "tokens/s at 6.6B on H200" in out
    unmeasured = {**config, "models": {**config["models"], "qwen-7b": {
        **config["models"]["qwen-7b"], "runtime": {"train": 60, "sample": "auto", "judge": 60}}}}
    with pytest.raises(ConfigError, match=r"models.qwen-7b.runtime.sample: auto needs an estimate"):
        build_plan(unmeasured, REPO, mirror)
