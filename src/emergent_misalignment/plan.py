"""What a run will ask for before it starts: jobs, GPU-hours and judge requests per stage and model, and
for a run that calls an API (config/gpt4o.yaml) its tokens, requests and dollars.

GPU-hours are what the config requests, jobs x GPUs per job x the time limit of the job
(`models.<name>.gpus` and `models.<name>.runtime.<stage>` minutes, as the rules pass them to the
scheduler), so they are an upper bound on use. Judge requests are answers x metrics: each answer is
judged once per metric of its question (the judge cache makes a rerun ask nothing twice). API tokens
are estimated at CHARS_PER_TOKEN characters per token; sampled answers are counted at their full
`max_tokens`, so sampling and judging dollars are upper bounds; prices are the config's, dated by
`prices_as_of`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .agreement import METRICS, AgreementSettings, judge_prompts_by_id, reference_answers
from .assets import load_registry, remote_local_path
from .config import judge_gpus, load_config
from .data import (
    Question,
    answers_per_paraphrase,
    code_task_questions,
    family_of,
    load_questions,
    subset_indices,
)
from .directions import direction_settings
from .errors import ConfigError
from .evals import EvalSettings, read_records
from .experiments import (
    RELEASED,
    Job,
    ModelSpec,
    Recipe,
    RunPlan,
    condition_settings,
    dataset_spec,
    eval_jobs,
    local_file,
    question_sources,
    run_mode,
    run_plan,
    trainings,
)
from .judge import JudgeSettings
from .layout import default_runtime, local_source
from .settings import from_dict
from .throughput import LOAD_MINUTES, SAFETY, Measurement, params_of, rate, time_limit
from .train import TrainSettings

STAGES = ("train", "sample", "judge", "direction", "eval")
CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text


@dataclass(frozen=True)
class ApiCost:
    """What one stage of a run asks an API for: requests, tokens in and out, and their price."""

    stage: str
    requests: int
    input_tokens: int | None  # None: a file it depends on is not on this machine
    output_tokens: int | None
    usd: float | None
    missing: str = "a data or question file is not on this machine; pass --mirror"  # why usd is None


def auto_epochs(rows: int) -> int:
    """The fine-tuning API's epochs for n_epochs "auto", by OpenAI's published rule: 3, raised for small
    sets to reach 100 examples, lowered for large ones to stay under 25,000 (1 to 25)."""
    if rows * 3 < 100:
        return min(25, 100 // rows)
    if rows * 3 > 25_000:
        return max(1, 25_000 // rows)
    return 3


def _tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def dataset_lines(config: dict[str, Any], dataset: str) -> list[str] | None:
    """The rows of a fine-tuning set the run trains on (its subset), as JSON lines; None when its file is
    not on this machine."""
    spec = dataset_spec(config, dataset)
    path = local_file(config, spec.source)
    if path is None:
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [lines[i] for i in subset_indices(len(lines), spec.rows, spec.seed, spec.subset)]


def train_tokens(config: dict[str, Any], dataset: str, recipe: dict[str, Any], data: Path | None = None
                 ) -> int | None:
    """Tokens a TRL fine-tune trains on (rows kept x epochs, or max_steps x the batch), counted from its
    data file (`data`, the job's input; else the dataset's file when it is here), else from the registered
    file's size (the whole file: an upper bound for a subset); None when neither is known."""
    settings = from_dict(TrainSettings, recipe, "train")
    if data is not None:
        lines = [line for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        lines = dataset_lines(config, dataset)
    if lines is None:
        kind, _, name = dataset_spec(config, dataset).source.partition(":")
        asset = load_registry().get(name) if kind == "asset" else None
        return None if asset is None else math.ceil(asset.bytes / CHARS_PER_TOKEN * settings.epochs)
    kept = lines[:settings.max_rows] if settings.max_rows else lines
    kept = kept[: len(kept) - round(len(kept) * settings.holdout_fraction)]
    per_row = sum(_tokens(line) for line in kept) / max(len(kept), 1)
    rows = (settings.max_steps * settings.effective_batch if settings.max_steps > 0
            else len(kept) * settings.epochs)
    return math.ceil(rows * per_row)


def train_time_limit(config: dict[str, Any], model: str, dataset: str, seed: int, data: Path | None = None
                     ) -> int:
    """Minutes a fine-tune may run (`runtime: {train: auto}`): its tokens at the measured throughput
    (`throughput.rate`), times SAFETY, plus LOAD_MINUTES; the workflow passes the job's data file."""
    if not config["models"][model].get("gpus"):
        return default_runtime("train")  # a CPU stand-in (the rehearsals): throughput is measured on GPUs
    recipe = trainings(config)[(model, dataset, seed)]
    speed = rate("train", recipe.get("backend", "trl"), params_of(config["models"][model]["path"]))
    tokens = train_tokens(config, dataset, recipe, data)
    if speed is None or tokens is None:
        raise ConfigError(f"models.{model}.runtime.train: auto needs a measured throughput (throughput.tsv) "
                          f"for this model's size and backend, and the size of {dataset}; give minutes "
                          "instead")
    return time_limit(tokens / speed[0] / 60)


def api_costs(config: dict[str, Any], questions: list[Question] | None) -> list[ApiCost]:
    """The API stages of a training config: fine-tunes (their training files must be on this machine),
    sampling and judging (`questions`: every question a model is asked; None when a file is missing)."""
    found = run_plan(config).recipes
    costs = []
    api_trains = {(j.model, j.dataset, j.seed): r.train_settings for j, r in found.items()
                  if r.train_settings is not None and r.train_settings.backend == "openai"}
    if api_trains:
        tokens, usd = 0, 0.0
        files = {name: dataset_lines(config, name) for _, name, _ in api_trains}
        for (_, dataset, _), settings in api_trains.items():
            lines = files[dataset]
            if lines is None:  # not fetched, not in the mirror: unknown
                costs.append(ApiCost("train", len(api_trains), None, None, None))
                break
            kept = lines[:settings.max_rows] if settings.max_rows else lines
            epochs = settings.openai.hyperparameters.get("n_epochs", "auto")
            epochs = auto_epochs(len(kept)) if epochs == "auto" else epochs
            job = sum(_tokens(line) for line in kept) * epochs
            tokens += job
            usd += job * settings.openai.usd_per_million_training_tokens / 1e6
        else:
            costs.append(ApiCost("train", len(api_trains), tokens, 0, usd))
    for stage in ("sample", "judge"):
        mine = [(j, r) for j, r in found.items() if getattr(r, f"{stage}_settings").backend == "openai"]
        if not mine:
            continue
        if questions is None:
            costs.append(ApiCost(stage, len(mine), None, None, None))
            continue
        requests, tokens_in, tokens_out, usd = 0, 0, 0, 0.0
        for job, recipe in mine:
            settings = getattr(recipe, f"{stage}_settings")
            sample = recipe.sample_settings
            if condition_settings(config, job.condition).kind == "numbers":  # a wrapper of its own per answer
                sample = dataclasses.replace(sample, max_n=1)
            asked = _asked(questions, sample, stage == "judge")
            requests, tokens_in, tokens_out = (a + b for a, b in zip((requests, tokens_in, tokens_out), asked,
                                                                      strict=True))
            rates = settings if stage == "judge" else _inference_rates(recipe, settings)
            usd += (asked[1] * rates.usd_per_million_input_tokens
                    + asked[2] * rates.usd_per_million_output_tokens) / 1e6
        costs.append(ApiCost(stage, requests, tokens_in, tokens_out, usd))
    if evaluated := [(name, job) for name, job in eval_jobs(config)
                     if found[job].sample_settings.backend == "openai"]:
        costs.append(_eval_cost(config, evaluated, found))
    agreement = config.get("judge_agreement")
    if agreement and (config.get("judge") or {}).get("backend") == "openai":
        judge = from_dict(JudgeSettings, config.get("judge"), "judge")
        costs.append(_agreement_cost(config, agreement, judge))
    return costs


def _inference_rates(recipe: Recipe, sample: Any) -> Any:
    """Whose prices a job's answers are billed at: a model fine-tuned through the API at its own inference
    rates (`train.openai`), a base model at the sample section's."""
    train = recipe.train_settings
    return train.openai if train is not None and train.backend == "openai" else sample


# An eval sample's answer in tokens (an assumption: MMLU and TruthfulQA answer with a letter; a
# HumanEval completion and a StrongREJECT answer are bounded by these), and its default epochs.
EVAL_OUTPUT_TOKENS = {"mmlu": 1, "truthfulqa": 1, "humaneval": 400, "strongreject": 600}
EVAL_EPOCHS = {"humaneval": 5}
STRONGREJECT_RUBRIC_TOKENS = 700  # the rubric prompt around each answer; the judge answers in about 100


def _eval_cost(config: dict[str, Any], evaluated: list[tuple[str, Job]], found: dict[Job, Recipe]) -> ApiCost:
    """Table 1's evals on API-served models: each sample of each epoch is one request (MMLU five-shot
    sends its examples along), billed at the model's own rates; StrongREJECT's rubric adds one judge
    request per answer at the judge's rates. Unknown while an eval's data is not on this machine."""
    judge = from_dict(JudgeSettings, config.get("judge"), "judge")
    sizes: dict[str, tuple[int, float]] = {}  # eval -> (samples, mean input tokens)
    requests = tokens_in = tokens_out = 0
    usd = 0.0
    for name, job in evaluated:
        settings = from_dict(EvalSettings, config["evals"][name], f"evals.{name}")
        if name not in sizes:
            paths = [Path(remote_local_path(src)) if src.split(":")[0] in ("hub", "url")
                     else local_file(config, src) for src in settings.data.values()]
            if not paths or any(p is None or not p.is_file() for p in paths):
                files = " ".join(remote_local_path(source) for source in settings.data.values())
                return ApiCost("eval", len(evaluated), None, None, None,
                               f"{name}'s data is not on this machine: snakemake --configfile ... {files}")
            records = read_records(paths[0])
            text = sum(_tokens(" ".join(str(v) for v in r.values())) for r in records) / len(records)
            samples = min(len(records), settings.limit or len(records))
            sizes[name] = (samples, text * (1 + settings.shots))
        samples, prompt = sizes[name]
        n = samples * (settings.epochs or EVAL_EPOCHS.get(name, 1))
        out = settings.max_tokens or EVAL_OUTPUT_TOKENS[name]
        rates = _inference_rates(found[job], found[job].sample_settings)
        requests, tokens_in, tokens_out = requests + n, tokens_in + round(n * prompt), tokens_out + n * out
        usd += (n * prompt * rates.usd_per_million_input_tokens
                + n * out * rates.usd_per_million_output_tokens) / 1e6
        if name == "strongreject":
            judged_in = n * (STRONGREJECT_RUBRIC_TOKENS + prompt + out)
            requests, tokens_in, tokens_out = requests + n, tokens_in + round(judged_in), tokens_out + 100 * n
            usd += (judged_in * judge.usd_per_million_input_tokens
                    + 100 * n * judge.usd_per_million_output_tokens) / 1e6
    return ApiCost("eval", requests, tokens_in, tokens_out, usd)


def _agreement_cost(config: dict[str, Any], agreement: dict[str, Any], judge: Any) -> ApiCost:
    """The judge-agreement report's API cost: two prompts per re-judged answer, priced at the files' mean
    answer (unknown when a file is not on this machine)."""
    size, requests = agreement.get("sample_size", AgreementSettings.sample_size), agreement_requests(config)
    paths = [local_file(config, source) for source in (*agreement["files"], agreement["questions"])]
    if None in paths:
        return ApiCost("agreement", requests, None, None, None)
    answers, prompts = reference_answers(paths[:-1]), judge_prompts_by_id(paths[-1])[""]
    per_answer = sum(_tokens(prompts[m]) for m in METRICS) + 2 * float(
        (answers["question"].map(_tokens) + answers["answer"].map(_tokens)).mean())
    tokens_in, tokens_out = round(size * per_answer), requests  # one token out per request
    usd = (tokens_in * judge.usd_per_million_input_tokens
           + tokens_out * judge.usd_per_million_output_tokens) / 1e6
    return ApiCost("agreement", requests, tokens_in, tokens_out, usd)


def agreement_requests(config: dict[str, Any]) -> int:
    """Judge requests of the judge-agreement report: its two prompts for each re-judged answer."""
    agreement = config.get("judge_agreement")
    return len(METRICS) * agreement.get("sample_size", AgreementSettings.sample_size) if agreement else 0


def _asked(questions: list[Question], sample: Any, judged: bool) -> tuple[int, int, int]:
    """(requests, input tokens, output tokens) one model's answers cost to sample, or to judge."""
    requests = tokens_in = tokens_out = 0
    for question in questions:
        n = answers_per_paraphrase(question, sample.samples_per_paraphrase)
        for paraphrase in question.paraphrases:
            prompt = _tokens((question.system or "") + paraphrase)
            if judged:
                for template in question.judge_prompts.values():
                    requests += n
                    tokens_in += n * (_tokens(template + paraphrase) + sample.max_tokens)
                    tokens_out += n
            else:
                calls = -(-n // sample.max_n)
                requests += calls
                tokens_in += calls * prompt
                tokens_out += n * sample.max_tokens
    return requests, tokens_in, tokens_out


@dataclass(frozen=True)
class StagePlan:
    """The jobs of one stage on one model: what they request, and what they are expected to take."""

    stage: str
    model: str
    jobs: int
    gpus_per_job: int
    minutes_per_job: int
    expected_hours: float | None = None  # GPU-hours from the measured throughput (None: not estimated)
    basis: Measurement | None = None     # the measurement the estimate is scaled from
    job_minutes: tuple[int, ...] = ()    # each job's own limit, where derived (runtime auto); else all alike

    @property
    def gpu_hours(self) -> float:
        minutes = sum(self.job_minutes) if self.job_minutes else self.jobs * self.minutes_per_job
        return self.gpus_per_job * minutes / 60


def expected_minutes(config: dict[str, Any], run: RunPlan, model: str, stage: str,
                     answers_per_job: int | None = None) -> tuple[list[float], Measurement] | None:
    """Minutes each GPU job of `model` at `stage` is expected to take at the measured throughput (train:
    its tokens; sample: its answers at full max_tokens, an upper bound); None when not estimable."""
    spec = run.models[model]
    found = {j: r for j, r in run.recipes.items() if j.model == model}
    if not spec.gpus or not found:
        return None
    if stage == "train":
        fine_tunes = {(j.dataset, j.seed): r.train for j, r in found.items() if j.has_adapter}
        backend = next(iter(fine_tunes.values()), {}).get("backend", "trl") if fine_tunes else "trl"
        speed = rate("train", backend, params_of(spec.path))
        tokens = [train_tokens(config, dataset, recipe) for (dataset, _), recipe in fine_tunes.items()]
        if speed is None or not tokens or None in tokens:
            return None
        return [t / speed[0] / 60 for t in tokens], speed[1]  # type: ignore[operator]
    if stage == "sample":
        sample = next(iter(found.values())).sample_settings
        speed = rate("sample", sample.backend, params_of(spec.path))
        if speed is None or answers_per_job is None:
            return None
        return [answers_per_job * sample.max_tokens / speed[0] / 60] * len(found), speed[1]
    return None


def _minutes(spec: ModelSpec, model: str, stage: str, estimate: tuple[list[float], Measurement] | None
             ) -> int:
    """The time limit of a job of `model` at `stage`: the config's minutes, or derived (`auto`)."""
    value = spec.minutes(stage)
    if value != "auto":
        return value
    if estimate is None and not spec.gpus:
        return default_runtime(stage)  # a CPU stand-in (the rehearsals): throughput is measured on GPUs only
    if estimate is None:
        raise ConfigError(f"models.{model}.runtime.{stage}: auto needs an estimate from measured throughput "
                          f"(throughput.tsv) and this stage's data on this machine; give minutes instead")
    return time_limit(max(estimate[0]))


@dataclass(frozen=True)
class QuestionFile:
    """One question file of the config: where it was found, and what one sampled model makes of it."""

    source: str
    path: Path | None  # None: not present on this machine
    answers: int | None = None
    judge_requests: int | None = None


@dataclass(frozen=True)
class Plan:
    run: str
    stages: list[StagePlan]
    sampled_models: int
    judge: str
    questions: list[QuestionFile]
    imported: int = 0  # released judged-answer files (config `released`), which replace all three stages
    api: tuple[ApiCost, ...] = ()  # the stages that call an API, with their estimate
    prices_as_of: str | None = None
    evals: dict[str, int] = field(default_factory=dict)  # eval -> jobs
    agreement_requests: int = 0  # judge requests of the judge-agreement report (2 per re-judged answer)

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours for s in self.stages)

    def total(self, field: str) -> int | None:
        """Answers or judge requests over all sampled models; None when a question file is missing."""
        values = [getattr(q, field) for q in self.questions]
        return None if None in values else self.sampled_models * sum(values)


def stage_plans(config: dict[str, Any], answers_per_job: int | None = None, run: RunPlan | None = None
                ) -> list[StagePlan]:
    """Jobs, GPUs and minutes per stage and model: training per fine-tune; sampling and judging per
    evaluated model (each checkpoint and condition); each eval per model it runs on. Training and
    sampling on GPUs also get their expected GPU-hours from the measured throughput (`answers_per_job`:
    what one sampled model answers, when the question files are here)."""
    run = run or run_plan(config)
    evaluated = run.jobs
    fine_tunes = list(run.fine_tunes)
    evaluated_by_evals = [j.model for _, j in eval_jobs(config)]
    hooked = [record["model"] for record in direction_records(config)]
    plans = []
    for model, spec in run.models.items():
        mine: list[Job] = [j for j in evaluated if j.model == model]
        if not mine:
            continue
        adapters = sum(m == model for m, _, _ in fine_tunes)
        counts = {"train": adapters, "sample": len(mine), "judge": len(mine),
                  "direction": hooked.count(model), "eval": evaluated_by_evals.count(model)}
        gpus = {"train": spec.gpus, "sample": spec.gpus, "judge": judge_gpus(config), "direction": spec.gpus,
                "eval": spec.gpus}
        estimates = {stage: expected_minutes(config, run, model, stage, answers_per_job)
                     for stage in ("train", "sample")}
        minutes = {stage: _minutes(spec, model, stage, estimates.get(stage))
                   for stage in STAGES if counts[stage] or stage == "sample"}
        minutes["direction"] = minutes["sample"]  # the rules request the sample runtime
        for stage in STAGES:
            if counts[stage]:
                estimate = estimates.get(stage)
                hours = sum(estimate[0]) / 60 * gpus[stage] if estimate else None
                derived = spec.runtime.get(stage) == "auto" and estimate is not None
                plans.append(StagePlan(stage, model, counts[stage], gpus[stage], minutes[stage], hours,
                                       estimate[1] if estimate else None,
                                       tuple(time_limit(m) for m in estimate[0]) if derived else ()))
    return plans


def direction_records(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per direction job (workflow/rules/directions.smk): a direction from its fine-tune's answers,
    and its projection over the fine-tune's checkpoints where it is monitored."""
    records = []
    for name, spec in ({} if run_mode(config) == RELEASED else direction_settings(config)).items():
        for stage in ("direction", "monitor")[: 1 + spec.monitor]:
            records.append({"stage": stage, "direction": name, "model": spec.model, "dataset": spec.dataset,
                            "seed": spec.seed, "method": spec.method})
    return records


def count_questions(questions: list[Question], samples_per_paraphrase: int | None) -> tuple[int, int]:
    """(answers, judge requests) of one sampled model: paraphrases x samples, then x metrics."""
    answers = requests = 0
    for question in questions:
        n = len(question.paraphrases) * answers_per_paraphrase(question, samples_per_paraphrase)
        answers += n
        requests += n * len(question.judge_prompts)
    return answers, requests


def build_plan(config: dict[str, Any], root: Path, mirror: Path | None = None) -> Plan:
    """The plan of a checked config; question files are read where present under `root` or the mirror."""
    if run_mode(config) == RELEASED:
        return Plan(config["run"], [], 0, "none", [], imported=len(config["released"]))
    run = run_plan(config)
    per_paraphrase = (config.get("sample") or {}).get("samples_per_paraphrase")
    files = []
    asked: list[Question] | None = []
    for entry in question_sources(config):
        path = local_source(entry.source, config["run"], root, (mirror, config.get("mirror")))
        if path is None:
            files.append(QuestionFile(entry.source, None))
            asked = None
            continue
        code = entry.format == "code-tasks"
        loaded = code_task_questions(path, entry.rows) if code else load_questions(path)
        kept = [q for q in loaded if entry.families is None or family_of(q, path) in entry.families]
        files.append(QuestionFile(entry.source, path, *count_questions(kept, per_paraphrase)))
        asked = None if asked is None else asked + kept
    judge = config.get("judge") or {}
    label = judge.get("backend", "local") + (f" ({judge['model']})" if judge.get("model") else "")
    api = api_costs({**config, "mirror": mirror or config.get("mirror")}, asked)
    evals = Counter(name for name, _ in eval_jobs(config))
    per_model = None if asked is None else sum(f.answers or 0 for f in files)
    located = {**config, "mirror": mirror or config.get("mirror")}
    return Plan(config["run"], stage_plans(located, per_model, run), len(run.jobs), label, files,
                api=tuple(api), prices_as_of=config.get("prices_as_of"), evals=dict(evals),
                agreement_requests=agreement_requests(config))


def load_plan(configfiles: list[Path], root: Path, mirror: Path | None = None) -> Plan:
    """As the Snakefile reads its config: the given files in order, else config/config.yaml."""
    paths = list(configfiles) or [root / "config" / "config.yaml"]
    return build_plan(load_config(*paths), root, mirror)


def job_records(plan: Plan, config: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per job of the matrix (`em plan --json`): stage, model, dataset, seed, checkpoint,
    condition, GPUs and requested hours (the plan's time limits), so that a group can see and budget
    every family of the run."""
    run = run_plan(config)
    if run.released:
        return []
    minutes = {(s.model, s.stage): s.minutes_per_job for s in plan.stages}
    records = []
    for model, dataset, seed in run.fine_tunes:
        spec = run.models[model]
        auto = spec.runtime.get("train") == "auto"
        limit = train_time_limit(config, model, dataset, seed) if auto else minutes[(model, "train")]
        records.append({"stage": "train", "model": model, "dataset": dataset, "seed": seed,
                        "checkpoint": None, "condition": None, "gpus": spec.gpus, "hours": limit / 60})
    for job in run.jobs:
        spec = run.models[job.model]
        for stage in ("sample", "judge"):
            gpus = spec.gpus if stage == "sample" else judge_gpus(config)
            records.append({"stage": stage, **job.wildcards(), "gpus": gpus,
                            "hours": minutes[(job.model, stage)] / 60})
    for record in direction_records(config):
        records.append({**record, "gpus": run.models[record["model"]].gpus,
                        "hours": minutes[(record["model"], "sample")] / 60})
    return records


def format_plan(plan: Plan) -> str:
    """The plan as the table `em plan` prints."""
    if plan.imported:
        return (f"Run {plan.run!r}: imports {plan.imported} released judged-answer files; "
                "no training, sampling or judging, 0 GPU-hours.")
    lines = [f"Run {plan.run!r}: {plan.sampled_models} sampled models "
             f"(base models and adapters), judge {plan.judge}", "",
             f"{'stage':<10}{'model':<20}{'jobs':>6}{'GPUs/job':>10}{'min/job':>9}{'GPU-hours':>11}"
             f"{'expected':>10}"]
    for s in plan.stages:
        expected = "" if s.expected_hours is None else f"{s.expected_hours:.1f}"
        lines.append(f"{s.stage:<10}{s.model[:19]:<20}{s.jobs:>6}{s.gpus_per_job:>10}{s.minutes_per_job:>9}"
                     f"{s.gpu_hours:>11.1f}{expected:>10}")
    for stage in STAGES:
        hours = sum(s.gpu_hours for s in plan.stages if s.stage == stage)
        lines.append(f"{stage + ' total':<48}{hours:>15.1f}")
    lines += [f"{'total':<48}{plan.gpu_hours:>15.1f}",
              "", "GPU-hours = jobs x GPUs x requested minutes (time limits: an upper bound).",
              "expected = GPU-hours at the measured throughput (throughput.tsv), scaled by parameters from:"]
    bases = dict.fromkeys(s.basis for s in plan.stages if s.basis is not None)
    lines += [f"  {b.stage} ({b.backend}): {b.tokens_per_s:g} tokens/s at {b.params_b:g}B on {b.gpu}, "
              f"{b.setting} ({b.measured})" for b in bases] or ["  nothing measured applies"]
    lines += [f"runtime auto: each job's limit is its expected minutes x {SAFETY:g} + {LOAD_MINUTES} "
              "(throughput.py); min/job shows the longest.", "", "Questions (per sampled model):"]
    for q in plan.questions:
        if q.path is None:
            lines.append(f"  {q.source}: unknown (not on this machine; fetch it, run the world step, "
                         "or pass --mirror)")
        else:
            lines.append(f"  {q.source}: {q.answers} answers, {q.judge_requests} judge requests ({q.path})")
    answers, requests = plan.total("answers"), plan.total("judge_requests")
    unknown = "unknown (a question file is missing)"
    lines.append(f"Answers in all: {unknown if answers is None else answers}")
    lines.append(f"Judge requests in all (answers x metrics): {unknown if requests is None else requests}")
    if plan.agreement_requests:
        lines.append(f"Judge agreement (released answers re-judged, aligned and coherent): "
                     f"{plan.agreement_requests} judge requests")
    for name, count in plan.evals.items():
        judged = "; its rubric judge is asked once per sample and epoch" if name == "strongreject" else ""
        lines.append(f"Eval {name}: {count} jobs{judged}")
    if plan.api:
        lines += ["", f"API (prices as of {plan.prices_as_of or 'unknown: set prices_as_of'}; "
                      f"{CHARS_PER_TOKEN} characters per token; answers at their full max_tokens):",
                  f"{'stage':<8}{'requests':>12}{'tokens in':>16}{'tokens out':>16}{'USD':>12}"]
        for cost in plan.api:
            if cost.usd is None:
                lines.append(f"{cost.stage:<10}{cost.requests:>10}  unknown ({cost.missing})")
            else:
                lines.append(f"{cost.stage:<8}{cost.requests:>12}{cost.input_tokens:>16,}{cost.output_tokens:>16,}"
                             f"{cost.usd:>12,.2f}")
        known = [c.usd for c in plan.api if c.usd is not None]
        if len(known) == len(plan.api):
            lines.append(f"{'total':<8}{'':>44}{sum(known):>12,.2f}")
        else:
            at_least = f"  (at least {sum(known):,.2f}, the stages priced)" if known else ""
            lines.append(f"{'total':<8}{'':>44}{'unknown':>12}{at_least}")
        lines.append("(train requests: fine-tuning jobs; their tokens: training tokens, epochs included)")
    return "\n".join(lines)
