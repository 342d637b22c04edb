# Answers to the evaluation questions from each adapter (or kept checkpoint) and each base model (group
# "base"), under each condition of its experiment (experiments.py); files are named by the job's group.


def examples_input(condition):
    """The dataset an icl condition draws its in-context examples from (none for other conditions)."""
    spec = condition_settings(config, condition)
    return [dataset_path(spec.dataset)] if spec.kind == "icl" else []


def direction_input(condition):
    """The direction file an ablate or steer condition uses (none for other conditions)."""
    spec = condition_settings(config, condition)
    return [PATHS["direction"].format(direction=spec.direction)] if spec.kind in INTERVENTIONS else []


def condition_args(condition):
    """--condition JSON (and --examples PATH for icl) of a condition, for `em sample` and `em check-prompts`."""
    spec = dataclasses.asdict(condition_settings(config, condition))
    examples = examples_input(condition)
    return f"--condition {as_json(spec)}" + (f" --examples {examples[0]}" if examples else "")


def sample_settings(sample):
    """A sample recipe as `em sample` takes it: an API sampler keeps its responses in the run's cache."""
    if (sample or {}).get("backend") == "openai":
        return {"cache": PATHS["sample_cache"], **sample}
    return sample


def first_recipe(model, condition):
    """The sample recipe of the first job on `model` under `condition` (what its prompt check uses)."""
    return next(r.sample for j, r in RECIPES.items() if j.model == model and j.condition == condition)


# Every prompt fits the model's context: checked once per base model and condition from its tokenizer,
# before any of its fine-tunes or samplings start (train.smk waits for it too), not hours later.
rule check_prompts:
    input:
        questions=PATHS["questions"],
        base=lambda w: model_inputs(w.model),
        examples=lambda w: examples_input(w.condition),
    output:
        lengths=PATHS["prompt_check"],
        manifest=manifest(PATHS["prompt_check"]),
    params:
        settings=lambda w: as_json(first_recipe(w.model, w.condition)),
        base=lambda w: model_path(w.model),
        condition=lambda w: condition_args(w.condition),
    log:
        f"{PATHS['logs']}/check_prompts/{{model}}/{{condition}}.log",
    threads: 1
    conda:
        model_env
    shell:
        "em check-prompts --base {params.base:q} --questions {input.questions:q} --settings {params.settings}"
        " {params.condition} --out {output.lengths:q} > {log:q} 2>&1"



rule sample:
    input:
        questions=PATHS["questions"],
        checked=lambda w: PATHS["prompt_check"].format(model=w.model, condition=job(w).condition),
        adapter=lambda w: adapter_input(job(w)),
        base=lambda w: model_inputs(w.model),
        examples=lambda w: examples_input(job(w).condition),
        direction=lambda w: direction_input(job(w).condition),
    output:
        samples=PATHS["samples"],
        manifest=manifest(PATHS["samples"]),
    params:
        settings=lambda w: as_json(sample_settings(RECIPES[job(w)].sample)),
        base=lambda w: model_path(w.model),
        adapter=lambda w, input: adapter_arg(job(w), input),
        labels=lambda w: f"--dataset {job(w).dataset} --checkpoint {job(w).checkpoint}",
        condition=lambda w: f"--condition-name {job(w).condition} " + condition_args(job(w).condition),
        direction=lambda w, input: f"--direction {input.direction[0]}" if input.direction else "",
    log:
        f"{PATHS['logs']}/sample/{{model}}/{{group}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['timings']}/sample/{{model}}/{{group}}/seed{{seed}}.tsv"
    threads: job_threads(1)
    resources:
        gpu=lambda w: model_resources(w.model)["gpu"],
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: stage_runtime(w.model, "sample"),
    conda:
        model_env
    shell:
        "em sample --base {params.base:q} {params.adapter} --questions {input.questions:q}"
        " --model {wildcards.model} {params.labels} --seed {wildcards.seed} {params.condition}"
        " {params.direction} --settings {params.settings} --threads {threads} --out {output.samples:q}"
        " > {log:q} 2>&1"
