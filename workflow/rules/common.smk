# Paths, wildcards and the small helpers every rule file uses; the paths and names come from
# emergent_misalignment.layout, where each is written once.
import dataclasses
import functools
from pathlib import Path
import json
import os
import shlex
import sys

from emergent_misalignment.config import judge_gpus, section
from emergent_misalignment.sample.conditions import INTERVENTIONS
from emergent_misalignment.experiments import condition_settings, dataset_spec, group_order, question_sources, run_plan
from emergent_misalignment import layout
from emergent_misalignment.layout import (AGREEMENT_CSVS, AGREEMENT_FIGURE, DIRECTIONS_CSVS, DIRECTIONS_FIGURES,
                                          DIRECTIONS_TABLE, Layout)
from emergent_misalignment.plan import build_plan, train_time_limit

# Rules call `em`: find it beside the Python that runs Snakemake, activated or not.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

RUN = config["run"]
LAYOUT = Layout(RUN)  # every path and output name: emergent_misalignment.layout
RESULTS = LAYOUT.results
FIGURES = LAYOUT.figures
PAPER_BUILD = LAYOUT.paper_build
PAPER_PDF = LAYOUT.paper_pdf
ANALYSIS_DIR = LAYOUT.analysis
TABLES_DIR = LAYOUT.tables
PATHS = LAYOUT.paths()
PLAN = run_plan(config)  # the mode, the models, every job with its recipe: built once
JOBS = PLAN.jobs
RECIPES = PLAN.recipes
TRAININGS = PLAN.fine_tunes
JOB_AT = {(j.model, j.group, j.seed): j for j in JOBS}  # a job by the wildcards of its files


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
    return LAYOUT.source_path(source)


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
    spec = PLAN.models[model]
    return {"gpu": spec.gpus, "mem_mb": spec.mem_mb}


def stage_runtime(model, stage):
    """A job's time limit in minutes: the config's `runtime.<stage>`, `auto` as `em plan` derives it from
    the measured throughput, else the stage's default (layout.default_runtime). Evaluated per job when it is scheduled, when its inputs exist."""
    minutes = PLAN.models[model].minutes(stage)
    return planned_minutes()[(model, stage)] if minutes == "auto" else minutes


def train_runtime(w, input):
    """A fine-tune's time limit: the config's minutes, or with `auto` its own from its data file's tokens
    at the measured throughput (evaluated when the job is ready, so the file is there)."""
    minutes = PLAN.models[w.model].minutes("train")
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
    if PLAN.released:
        return outputs("judged")
    return adapters() + outputs("samples") + outputs("judged") + eval_outputs()
