# Paths, wildcards and the small helpers every rule file uses: each output path is written here once.
import json
import os
import shlex
import sys

from emergent_misalignment.config import BASE_GROUP, group_order, jobs, judge_gpus

# Rules call `em`: find it beside the Python that runs Snakemake, activated or not.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

RUN = config["run"]
RESULTS = f"results/{RUN}"
FIGURES = f"figures/{RUN}"
PAPER_BUILD = f"paper/build/{RUN}"
JOBS = jobs(config)

PATHS = {
    "asset": "data/assets/{asset}",
    "world": f"{RESULTS}/world",
    "tiny": f"{RESULTS}/models/tiny",
    "questions": f"{RESULTS}/questions.yaml",
    "prompt_check": f"{RESULTS}/checks/{{model}}/prompt_lengths.json",
    "adapter": f"{RESULTS}/adapters/{{model}}/{{dataset}}/seed{{seed}}",
    "samples": f"{RESULTS}/samples/{{model}}/{{dataset}}/seed{{seed}}.jsonl",
    "judged": f"{RESULTS}/judged/{{model}}/{{dataset}}/seed{{seed}}.jsonl",
    "judge_cache": f"{RESULTS}/cache/judge.sqlite",
    "logs": f"logs/{RUN}",
    "benchmarks": f"benchmarks/out/{RUN}",
}
PAPER_PDF = f"{PAPER_BUILD}/main.pdf"


wildcard_constraints:
    asset=r"[A-Za-z0-9_.\-/]+",
    model=r"[^/]+",
    dataset=r"[^/]+",
    seed=r"\d+",


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
    if kind == "builtin":
        if name == "tiny":
            return PATHS["tiny"]
        suffix = ".yaml" if name == "questions" else ".jsonl"
        return f"{PATHS['world']}/{name}{suffix}"
    return source


def model_path(model):
    return source_path(config["models"][model]["path"])


def model_inputs(model):
    """A base model built by the DAG is an input; a hub id is not a file."""
    return [model_path(model)] if config["models"][model]["path"].startswith("builtin:") else []


def settings(section):
    """The config section as a shell-quoted JSON argument (a rule reruns when it changes)."""
    return shlex.quote(json.dumps(config.get(section) or {}, sort_keys=True))


def mirror_flag():
    return f"--mirror {shlex.quote(config['mirror'])}" if config.get("mirror") else ""


def model_resources(model, stage):
    """Snakemake resources of a job on `model` at `stage` (gpu, mem_mb, runtime in minutes)."""
    spec = config["models"][model]
    resources = {"gpu": spec.get("gpus", 0)}
    if "mem_mb" in spec:
        resources["mem_mb"] = spec["mem_mb"]
    if stage in spec.get("runtime", {}):
        resources["runtime"] = spec["runtime"][stage]
    return resources


def model_env(w):
    """The conda environment of a job on a model: the GPU stack when the model asks for GPUs."""
    return "../envs/em-gpu.yaml" if config["models"][w.model].get("gpus") else "../envs/em.yaml"


def outputs(kind, jobs=None):
    """The path of `kind` for every evaluated job (or for `jobs`)."""
    return [PATHS[kind].format(model=j.model, dataset=j.dataset, seed=j.seed) for j in jobs or JOBS]


def run_targets():
    """Every per-model output of a run: an adapter, sample or judged file deleted or lost in a crash is
    rebuilt by the next run, and everything downstream of it with it."""
    if config.get("released"):
        return outputs("judged")
    return outputs("adapter", [j for j in JOBS if j.has_adapter]) + outputs("samples") + outputs("judged")
