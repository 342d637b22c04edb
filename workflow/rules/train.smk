# One LoRA adapter per model x dataset x seed (seed = replicate index).


rule train:
    input:
        data=lambda w: source_path(config["datasets"][w.dataset]),
        base=lambda w: model_inputs(w.model),
        checked=PATHS["prompt_check"],
    output:
        directory(PATHS["adapter"]),
    params:
        settings=settings("train"),
        base=lambda w: model_path(w.model),
    log:
        f"{PATHS['logs']}/train/{{model}}/{{dataset}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['benchmarks']}/train/{{model}}/{{dataset}}/seed{{seed}}.tsv"
    threads: 1
    resources:
        gpu=lambda w: model_resources(w.model, "train")["gpu"],
        mem_mb=lambda w: model_resources(w.model, "train").get("mem_mb", 4000),
        runtime=lambda w: model_resources(w.model, "train").get("runtime", 30),
    conda:
        model_env
    shell:
        "em train --base {params.base:q} --data {input.data:q} --seed {wildcards.seed}"
        " --settings {params.settings} --threads {threads} --out {output:q} > {log:q} 2>&1"
