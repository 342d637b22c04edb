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
    model = judge_settings(RECIPES[job(w)].judge).get("model")
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
        settings=lambda w: as_json(judge_settings(RECIPES[job(w)].judge)),
    log:
        f"{PATHS['logs']}/judge/{{model}}/{{group}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['timings']}/judge/{{model}}/{{group}}/seed{{seed}}.tsv"
    threads: job_threads(1)
    resources:
        gpu=JUDGE_GPUS,
        runtime=lambda w: stage_runtime(w.model, "judge"),
    retries: 1
    conda:
        "../envs/em-gpu.yaml" if JUDGE_GPUS else "../envs/em.yaml"
    shell:
        "em judge --samples {input.samples:q} --questions {input.questions:q}"
        " --settings {params.settings} --threads {threads} --out {output.judged:q} > {log:q} 2>&1"


# How far the run's judge is from the paper's (config `judge_agreement`): a stratified sample of released
# GPT-4o-judged answers re-judged with the run's judge (agreement.py); the paper reports it.
AGREEMENT = config.get("judge_agreement")
AGREEMENT_CSV, AGREEMENT_ANSWERS = (f"{ANALYSIS_DIR}/{name}.csv" for name in AGREEMENT_CSVS)

if AGREEMENT:

    rule judge_agreement:
        input:
            files=[source_path(f) for f in AGREEMENT["files"]],
            questions=source_path(AGREEMENT["questions"]),
            judge_model=[PATHS["tiny"]] if judge_settings(config.get("judge")).get("model") == PATHS["tiny"] else [],
        output:
            report=AGREEMENT_CSV,
            manifest=manifest(AGREEMENT_CSV),
            answers=AGREEMENT_ANSWERS,
            answers_manifest=manifest(AGREEMENT_ANSWERS),
            pdf=f"{FIGURES}/{AGREEMENT_FIGURE}.pdf",
            png=f"{FIGURES}/{AGREEMENT_FIGURE}.png",
        params:
            settings=as_json(judge_settings(config.get("judge"))),
            agreement=as_json({k: v for k, v in AGREEMENT.items() if k not in ("files", "questions")}),
            definition=section(config, "analysis").definition,
        log:
            f"{PATHS['logs']}/judge_agreement.log",
        threads: 1
        resources:
            gpu=JUDGE_GPUS,
        conda:
            "../envs/em-gpu.yaml" if JUDGE_GPUS else "../envs/em.yaml"
        shell:
            "em judge-agreement {input.files:q} --questions {input.questions:q} --settings {params.settings}"
            " --agreement {params.agreement} --definition {params.definition}"
            f" --out-dir {ANALYSIS_DIR} --figures-dir {FIGURES}"
            " > {log:q} 2>&1"
