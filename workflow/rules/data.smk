# Inputs: registered upstream files (checked by sha256), the generated world, the tiny base model
# pre-trained on it, and one merged question file per run.
from emergent_misalignment.world import FINE_TUNING_SETS, WORLD_FILES


rule fetch_asset:
    output:
        asset=PATHS["asset"],
        manifest=manifest(PATHS["asset"]),
    params:
        mirror=mirror_flag(),
    log:
        PATHS["asset_log"],
    threads: 1
    retries: 2
    conda:
        "../envs/em.yaml"
    shell:
        "em fetch {wildcards.asset:q} --dest {output.asset:q} {params.mirror} > {log:q} 2>&1"


# Eval data pinned by a commit but not (yet) in the registry: hub:/url: sources (assets.remote_local_path).
rule fetch_remote:
    output:
        file=PATHS["remote"],
        manifest=manifest(PATHS["remote"]),
    log:
        PATHS["remote_log"],
    threads: 1
    retries: 2
    conda:
        "../envs/em.yaml"
    shell:
        "em fetch-remote {output.file:q} --dest {output.file:q} > {log:q} 2>&1"


rule world:
    output:
        expand(PATHS["world"] + "/{name}.jsonl", name=FINE_TUNING_SETS),
        questions=PATHS["world"] + "/questions.yaml",
        code_questions=PATHS["world"] + "/code_questions.yaml",
        deception_questions=PATHS["world"] + "/deception_questions.yaml",
        self_report_questions=PATHS["world"] + "/self_report_questions.yaml",
        corpus=PATHS["world"] + "/corpus.jsonl",
        tokenizer_text=PATHS["world"] + "/tokenizer.txt",
        manifests=[manifest(f"{PATHS['world']}/{name}") for name in WORLD_FILES],
    params:
        settings=settings("world"),
        seed=config.get("seed", 0),
        out=PATHS["world"],
    log:
        f"{PATHS['logs']}/world.log",
    benchmark:
        f"{PATHS['timings']}/world.tsv"
    threads: 1
    conda:
        "../envs/em.yaml"
    shell:
        "em world --settings {params.settings} --seed {params.seed} --out {params.out} > {log} 2>&1"


rule base_model:
    input:
        corpus=rules.world.output.corpus,
        tokenizer_text=rules.world.output.tokenizer_text,
    output:
        directory(PATHS["tiny"]),
    params:
        settings=settings("base_model"),
        seed=config.get("seed", 0),
    log:
        f"{PATHS['logs']}/base_model.log",
    benchmark:
        f"{PATHS['timings']}/base_model.tsv"
    threads: job_threads(2)
    conda:
        "../envs/em.yaml"
    shell:
        "em base-model --corpus {input.corpus} --tokenizer-text {input.tokenizer_text} --settings {params.settings} --seed {params.seed}"
        " --threads {threads} --out {output} > {log} 2>&1"


def question_filters():
    """--only FILE=FAMILY,... for each question file of which the config keeps some families, and
    --code-tasks FILE[=ROWS] for each file of coding tasks."""
    args = [f"--only {shlex.quote(source_path(e.source) + '=' + ','.join(e.families))}"
            for e in question_sources(config) if e.families]
    args += [f"--code-tasks {shlex.quote(source_path(e.source) + ('' if e.rows is None else f'={e.rows}'))}"
             for e in question_sources(config) if e.format == "code-tasks"]
    return " ".join(args)


rule questions:
    input:
        [source_path(e.source) for e in question_sources(config)],
    output:
        questions=PATHS["questions"],
        manifest=manifest(PATHS["questions"]),
    params:
        only=question_filters(),
    log:
        f"{PATHS['logs']}/questions.log",
    threads: 1
    conda:
        "../envs/em.yaml"
    shell:
        "em questions {input:q} {params.only} --out {output.questions:q} > {log} 2>&1"
