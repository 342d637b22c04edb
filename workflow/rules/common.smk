# Paths, wildcards and the small helpers every rule file uses: each output path is written here once.
import dataclasses
import functools
from pathlib import Path
import json
import os
import shlex
import sys

from emergent_misalignment.assets import remote_local_path
from emergent_misalignment.config import judge_gpus, section
from emergent_misalignment.sample.conditions import INTERVENTIONS
from emergent_misalignment.experiments import (condition_settings, dataset_spec, group_order, jobs,
                                               question_sources, recipes, trainings)
from emergent_misalignment.plan import DEFAULT_RUNTIME, build_plan, train_time_limit

# Rules call `em`: find it beside the Python that runs Snakemake, activated or not.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

RUN = config["run"]
RESULTS = f"results/{RUN}"
FIGURES = f"figures/{RUN}"
PAPER_BUILD = f"paper/build/{RUN}"
JOBS = jobs(config)
RECIPES = {} if config.get("released") else recipes(config)
TRAININGS = {} if config.get("released") else trainings(config)
JOB_AT = {(j.model, j.group, j.seed): j for j in JOBS}  # a job by the wildcards of its files

PATHS = {
    "asset": "data/assets/{asset}",
    "world": f"{RESULTS}/world",
    "tiny": f"{RESULTS}/models/tiny",
    "questions": f"{RESULTS}/questions.yaml",
    "dataset": f"{RESULTS}/data/{{dataset}}.jsonl",
    "prompt_check": f"{RESULTS}/checks/{{model}}/{{condition}}/prompt_lengths.json",
    "adapter": f"{RESULTS}/adapters/{{model}}/{{dataset}}/seed{{seed}}",
    "api_job": f"{RESULTS}/api_jobs/{{model}}/{{dataset}}/seed{{seed}}.json",
    # {group}: the dataset, +condition and @checkpoint where not "none" and "final" (experiments.group_label)
    "samples": f"{RESULTS}/samples/{{model}}/{{group}}/seed{{seed}}.jsonl",
    "judged": f"{RESULTS}/judged/{{model}}/{{group}}/seed{{seed}}.jsonl",
    # Table 1's evals: the score, and the inspect log it was read from
    "eval_score": f"{RESULTS}/evals/{{eval}}/{{model}}/{{group}}/seed{{seed}}.json",
    "eval_logs": f"{RESULTS}/evals/{{eval}}/{{model}}/{{group}}/seed{{seed}}.inspect",
    # persona directions (directions/): the vectors, their statistics, their projection over training
    "direction": f"{RESULTS}/directions/{{direction}}.pt",
    "direction_stats": f"{RESULTS}/directions/{{direction}}.json",
    "monitor": f"{RESULTS}/directions/{{direction}}.monitor.csv",
    "judge_cache": f"{RESULTS}/cache/judge.sqlite",
    "sample_cache": f"{RESULTS}/cache/sample.sqlite",
    "logs": f"logs/{RUN}",
    # Snakemake's `benchmark:` files, one timing (.tsv) per job: read by `em numbers`, benchmarks/run.py and
    # scripts/measure_spread.py
    "timings": f"logs/{RUN}/timings",
}
PAPER_PDF = f"{PAPER_BUILD}/main.pdf"


wildcard_constraints:
    asset=r"[A-Za-z0-9_.\-/]+",
    model=r"[^/]+",
    dataset=r"[^/+@]+",
    condition=r"[^/+@]+",
    group=r"[^/]+",
    seed=r"\d+",
    eval=r"[a-z]+",
    direction=r"[A-Za-z0-9_.-]+",
    remote=r"(hub|url)/.+",


def job_threads(default):
    """The CPU threads (torch's intra-op threads, `--threads`) of a model or statistics job: the rule's own
    default, or config `threads_per_job` for every such job (docs/reproducibility.md: byte-identical
    outputs are promised at the same thread counts; scripts/measure_spread.py compares settings)."""
    return config.get("threads_per_job") or default


def manifest(path):
    """The manifest beside an output file (manifest.manifest_path): declared as an output too, so that
    Snakemake deletes it with its file before a rerun and after a failure, and reruns a job whose
    manifest is gone."""
    return path + ".manifest.json"


def source_path(source):
    """Where the file named by a config source string (asset:, builtin:, path) lives locally."""
    kind, _, name = source.partition(":")
    if kind == "asset":
        return PATHS["asset"].format(asset=name)
    if kind in ("hub", "url"):
        return remote_local_path(source)
    if kind == "builtin":
        if name == "tiny":
            return PATHS["tiny"]
        suffix = ".yaml" if name.endswith("questions") else ".jsonl"
        return f"{PATHS['world']}/{name}{suffix}"
    return source


def dataset_path(name):
    """Where the rows a fine-tune on dataset `name` trains on live: its source, or the run's own chat JSONL
    of it (a subset, or converted from another format)."""
    spec = dataset_spec(config, name)
    return PATHS["dataset"].format(dataset=name) if spec.is_prepared else source_path(spec.source)


def job(w):
    """The job of a sample or judged file's wildcards (model, group, seed)."""
    return JOB_AT[(w.model, w.group, int(w.seed))]


def adapter_input(j):
    """The adapter folder a job's model needs (none for a base model)."""
    return [PATHS["adapter"].format(model=j.model, dataset=j.dataset, seed=j.seed)] if j.has_adapter else []


def checkpoint_path(j):
    """The adapter a job's model is: the final adapter, or the checkpoint kept inside its folder."""
    folder = PATHS["adapter"].format(model=j.model, dataset=j.dataset, seed=j.seed)
    return folder + ("" if j.checkpoint == "final" else f"/checkpoints/{j.checkpoint}")


def adapter_arg(j, input):
    """--adapter of a job (none for a base model)."""
    return f"--adapter {checkpoint_path(j)}" if input.adapter else ""


def as_json(value):
    """A section or a job's resolved recipe as a shell-quoted JSON argument (a rule reruns when it changes)."""
    return shlex.quote(json.dumps(value or {}, sort_keys=True))


def model_path(model):
    return source_path(config["models"][model]["path"])


def model_inputs(model):
    """A base model built by the DAG is an input; a hub id is not a file."""
    return [model_path(model)] if config["models"][model]["path"].startswith("builtin:") else []


def settings(section):
    """The config section as a shell-quoted JSON argument (a rule reruns when it changes)."""
    return as_json(config.get(section))


def mirror_flag():
    return f"--mirror {shlex.quote(config['mirror'])}" if config.get("mirror") else ""


def model_resources(model):
    """Snakemake resources of a job on `model`: its GPUs and memory."""
    spec = config["models"][model]
    return {"gpu": spec.get("gpus", 0), "mem_mb": spec.get("mem_mb", 4000)}


def stage_runtime(model, stage, default):
    """A job's time limit in minutes: the config's `runtime.<stage>`, `auto` as `em plan` derives it from
    the measured throughput, else `default`. Evaluated per job when it is scheduled, when its inputs exist."""
    minutes = config["models"][model].get("runtime", {}).get(stage, default)
    return planned_minutes()[(model, stage)] if minutes == "auto" else minutes


def train_runtime(w, input):
    """A fine-tune's time limit: the config's minutes, or with `auto` its own from its data file's tokens
    at the measured throughput (evaluated when the job is ready, so the file is there)."""
    minutes = config["models"][w.model].get("runtime", {}).get("train", DEFAULT_RUNTIME)
    if minutes != "auto":
        return minutes
    return train_time_limit(config, w.model, w.dataset, int(w.seed), Path(input.data))


@functools.cache
def planned_minutes():
    """Each (model, stage)'s time limit as `em plan` gives it: `runtime: auto` derived from the measured
    throughput (emergent_misalignment.throughput)."""
    return {(s.model, s.stage): s.minutes_per_job for s in build_plan(config, Path.cwd()).stages}


def env_of(model):
    """The conda environment of a job on `model`: the GPU stack when the model asks for GPUs."""
    return "../envs/em-gpu.yaml" if config["models"][model].get("gpus") else "../envs/em.yaml"


def model_env(w):
    return env_of(w.model)


def job_path(kind, j):
    """The path of `kind` (samples, judged) of job `j`."""
    return PATHS[kind].format(model=j.model, group=j.group, seed=j.seed)


def outputs(kind):
    """The path of `kind` (samples, judged) for every evaluated job."""
    return [job_path(kind, j) for j in JOBS]


def adapters():
    """Every fine-tune's adapter folder (its kept checkpoints inside)."""
    return [PATHS["adapter"].format(model=m, dataset=d, seed=s) for m, d, s in TRAININGS]


def run_targets():
    """Every per-model output of a run: an adapter, sample or judged file deleted or lost in a crash is
    rebuilt by the next run, and everything downstream of it with it."""
    if config.get("released"):
        return outputs("judged")
    return adapters() + outputs("samples") + outputs("judged") + eval_outputs()
