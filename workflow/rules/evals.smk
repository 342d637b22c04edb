# Table 1's evals (config `evals`: mmlu, humaneval, truthfulqa, strongreject) on each evaluated model, with
# inspect_evals' tasks (evals.py): one job per eval x model x dataset x seed (and kept checkpoint where the
# eval asks), on the data files the data step fetched and checked.
from emergent_misalignment.experiments import eval_jobs

EVAL_JOBS = eval_jobs(config)
EVAL_AT = {(name, j.model, j.group, j.seed): j for name, j in EVAL_JOBS}


def eval_job(w):
    return EVAL_AT[(w.eval, w.model, w.group, int(w.seed))]


def eval_data(w):
    """split -> local file of the eval's `data`."""
    spec = config["evals"][w.eval] or {}
    return {split: source_path(source) for split, source in (spec.get("data") or {}).items()}


def eval_settings(w):
    """The eval's section without its data (given as files), as `em eval --settings`."""
    spec = {k: v for k, v in (config["evals"][w.eval] or {}).items() if k != "data"}
    return as_json(spec)


def eval_outputs():
    return [PATHS["eval_score"].format(eval=name, model=j.model, group=j.group, seed=j.seed)
            for name, j in EVAL_JOBS]


rule evaluate:
    input:
        data=lambda w: list(eval_data(w).values()),
        adapter=lambda w: adapter_input(eval_job(w)),
        base=lambda w: model_inputs(w.model),
    output:
        score=PATHS["eval_score"],
        manifest=manifest(PATHS["eval_score"]),
        logs=directory(PATHS["eval_logs"]),
    params:
        settings=eval_settings,
        sample=lambda w: as_json(sample_settings(RECIPES[eval_job(w)].sample)),
        base=lambda w: model_path(w.model),
        adapter=lambda w, input: adapter_arg(eval_job(w), input),
        data=lambda w: " ".join(f"--data {shlex.quote(f'{s}={p}')}" for s, p in eval_data(w).items()),
        labels=lambda w: f"--dataset {eval_job(w).dataset} --checkpoint {eval_job(w).checkpoint}",
    log:
        f"{PATHS['logs']}/eval/{{eval}}/{{model}}/{{group}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['timings']}/eval/{{eval}}/{{model}}/{{group}}/seed{{seed}}.tsv"
    threads: job_threads(1)
    resources:
        gpu=lambda w: model_resources(w.model)["gpu"],
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: stage_runtime(w.model, "eval"),
    conda:
        model_env
    shell:
        "em eval {wildcards.eval} --base {params.base:q} {params.adapter} --sample-settings {params.sample}"
        " --settings {params.settings} {params.data} --model {wildcards.model} {params.labels}"
        " --seed {wildcards.seed} --threads {threads} --log-dir {output.logs:q} --out {output.score:q}"
        " > {log:q} 2>&1"
