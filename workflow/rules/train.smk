# One LoRA adapter per model x dataset x seed (seed = replicate index), with the checkpoints its recipe
# keeps (train.save_steps) inside; a recipe with init_from continues the adapter of that dataset (same model
# and seed). A dataset entry with `rows` (a seeded subset) or another `format` is
# first written as the run's own chat JSONL.


def dataset_args(w):
    spec = dataset_spec(config, w.dataset)
    subset = "" if spec.subset == "random" else f" --subset {spec.subset}"  # the default: as before
    return f"--format {spec.format} --seed {spec.seed}" + (f" --rows {spec.rows}{subset}" if spec.rows else "")


rule dataset:
    input:
        lambda w: source_path(dataset_spec(config, w.dataset).source),
    output:
        rows=PATHS["dataset"],
        manifest=manifest(PATHS["dataset"]),
    params:
        args=dataset_args,
    log:
        f"{PATHS['logs']}/dataset/{{dataset}}.log",
    threads: 1
    conda:
        "../envs/em.yaml"
    shell:
        "em dataset {input:q} {params.args} --out {output.rows:q} > {log:q} 2>&1"


def prompt_checks(w):
    """The prompt-length checks of every condition the model is asked under: done before it trains."""
    conditions = sorted({j.condition for j in JOBS if j.model == w.model})
    return [PATHS["prompt_check"].format(model=w.model, condition=c) for c in conditions]


def init_adapter(w):
    """The fine-tune this one continues (train.init_from: re-alignment), same model and seed; else none."""
    init_from = TRAININGS[(w.model, w.dataset, int(w.seed))].get("init_from")
    return [PATHS["adapter"].format(model=w.model, dataset=init_from, seed=w.seed)] if init_from else []


rule train:
    input:
        data=lambda w: dataset_path(w.dataset),
        base=lambda w: model_inputs(w.model),
        checked=prompt_checks,
        init=init_adapter,
    output:
        directory(PATHS["adapter"]),
    params:
        settings=lambda w: as_json(TRAININGS[(w.model, w.dataset, int(w.seed))]),
        init=lambda w, input: f"--init-adapter {shlex.quote(input.init[0])}" if input.init else "",
        base=lambda w: model_path(w.model),
        # an API fine-tune's job, kept outside the output folder (which Snakemake deletes after a failure)
        state=lambda w: shlex.quote(PATHS["api_job"].format(**w)),
    log:
        f"{PATHS['logs']}/train/{{model}}/{{dataset}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['timings']}/train/{{model}}/{{dataset}}/seed{{seed}}.tsv"
    threads: job_threads(1)
    resources:
        gpu=lambda w: model_resources(w.model)["gpu"],
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=train_runtime,
    conda:
        model_env
    shell:
        "em train --base {params.base:q} --data {input.data:q} --seed {wildcards.seed} --state {params.state}"
        " --settings {params.settings} {params.init} --threads {threads} --out {output:q} > {log:q} 2>&1"
