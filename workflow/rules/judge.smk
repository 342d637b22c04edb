# Scores for every answer and every metric of its question (aligned, coherent, ...).
# All judge jobs of a run share one on-disk cache, so a rerun asks the judge nothing twice.

JUDGE = {"cache": PATHS["judge_cache"], **(config.get("judge") or {})}
if JUDGE.get("backend", "local") == "local":
    JUDGE["model"] = source_path(JUDGE.get("model", "builtin:tiny"))
JUDGE_INPUTS = [JUDGE["model"]] if JUDGE.get("model") == PATHS["tiny"] else []
JUDGE_GPUS = judge_gpus(config)


rule judge:
    input:
        samples=PATHS["samples"],
        questions=PATHS["questions"],
        judge_model=JUDGE_INPUTS,
    output:
        judged=PATHS["judged"],
        manifest=manifest(PATHS["judged"]),
    params:
        settings=shlex.quote(json.dumps(JUDGE, sort_keys=True)),
    log:
        f"{PATHS['logs']}/judge/{{model}}/{{dataset}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['benchmarks']}/judge/{{model}}/{{dataset}}/seed{{seed}}.tsv"
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
