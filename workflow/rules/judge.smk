# Scores for every answer and every metric of its question (aligned, coherent, ...).
# All judge jobs of a run share one on-disk cache, so a rerun asks the judge nothing twice.


def judge_settings(judge):
    """A judge recipe as `em judge` takes it: the run's cache, and a local judge model's folder."""
    settings = {"cache": PATHS["judge_cache"], **(judge or {})}
    if settings.get("backend", "local") == "local":
        settings["model"] = source_path(settings.get("model", "builtin:tiny"))
    return settings


JUDGE_GPUS = judge_gpus(config)


def judge_inputs(w):
    """The judge model when the DAG builds it (the embedded default's tiny model)."""
    model = judge_settings(RECIPES[job(w)]["judge"]).get("model")
    return [model] if model == PATHS["tiny"] else []


rule judge:
    input:
        samples=PATHS["samples"],
        questions=PATHS["questions"],
        judge_model=judge_inputs,
    output:
        judged=PATHS["judged"],
        manifest=manifest(PATHS["judged"]),
    params:
        settings=lambda w: as_json(judge_settings(RECIPES[job(w)]["judge"])),
    log:
        f"{PATHS['logs']}/judge/{{model}}/{{group}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['benchmarks']}/judge/{{model}}/{{group}}/seed{{seed}}.tsv"
    threads: 1
    resources:
        gpu=JUDGE_GPUS,
        runtime=lambda w: model_resources(w.model, "judge").get("runtime", 30),
    retries: 1
    conda:
        "../envs/em-gpu.yaml" if JUDGE_GPUS else "../envs/em.yaml"
    shell:
        "em judge --samples {input.samples:q} --questions {input.questions:q}"
        " --settings {params.settings} --threads {threads} --out {output.judged:q} > {log:q} 2>&1"
