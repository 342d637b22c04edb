# Answers to the evaluation questions, from each adapter and from each base model (group "base").


def adapter_input(w):
    return [] if w.dataset == BASE_GROUP else [PATHS["adapter"].format(**w)]


# Every prompt fits the model's context: checked once per base model from its tokenizer, before any of
# its fine-tunes or samplings start (train.smk waits for it too), not hours later in the sampling job.
rule check_prompts:
    input:
        questions=PATHS["questions"],
        base=lambda w: model_inputs(w.model),
    output:
        lengths=PATHS["prompt_check"],
        manifest=manifest(PATHS["prompt_check"]),
    params:
        settings=settings("sample"),
        base=lambda w: model_path(w.model),
    log:
        f"{PATHS['logs']}/check_prompts/{{model}}.log",
    threads: 1
    conda:
        model_env
    shell:
        "em check-prompts --base {params.base:q} --questions {input.questions:q} --settings {params.settings}"
        " --out {output.lengths:q} > {log:q} 2>&1"


rule sample:
    input:
        questions=PATHS["questions"],
        checked=PATHS["prompt_check"],
        adapter=adapter_input,
        base=lambda w: model_inputs(w.model),
    output:
        samples=PATHS["samples"],
        manifest=manifest(PATHS["samples"]),
    params:
        settings=settings("sample"),
        base=lambda w: model_path(w.model),
        adapter=lambda w, input: f"--adapter {input.adapter[0]}" if input.adapter else "",
    log:
        f"{PATHS['logs']}/sample/{{model}}/{{dataset}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['benchmarks']}/sample/{{model}}/{{dataset}}/seed{{seed}}.tsv"
    threads: 1
    resources:
        gpu=lambda w: model_resources(w.model, "sample")["gpu"],
        mem_mb=lambda w: model_resources(w.model, "sample").get("mem_mb", 4000),
        runtime=lambda w: model_resources(w.model, "sample").get("runtime", 30),
    conda:
        model_env
    shell:
        "em sample --base {params.base:q} {params.adapter} --questions {input.questions:q}"
        " --model {wildcards.model} --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --settings {params.settings} --threads {threads} --out {output.samples:q} > {log:q} 2>&1"
