# Released judged answers (config `released`): each registered file is fetched, sha256-checked and
# imported as the judged answers of one model, group and seed, in place of train -> sample -> judge.

RELEASED = {(e["model"], e["group"], e.get("seed", 0)): e for e in config["released"]}


def released_entry(wildcards):
    return RELEASED[(wildcards.model, wildcards.group, int(wildcards.seed))]


def question_ids_flag(wildcards):
    ids = released_entry(wildcards).get("question_ids")
    return "--question-ids " + " ".join(shlex.quote(q) for q in ids) if ids else ""


rule import_released:
    input:
        lambda w: source_path(released_entry(w)["file"]),
    output:
        judged=PATHS["judged"],
        manifest=manifest(PATHS["judged"]),
    params:
        format=lambda w: released_entry(w)["format"],
        question_ids=question_ids_flag,
    log:
        f"{PATHS['logs']}/import/{{model}}/{{group}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['timings']}/import/{{model}}/{{group}}/seed{{seed}}.tsv"
    threads: 1
    conda:
        "../envs/em.yaml"
    shell:
        "em import-released {input:q} --format {params.format} --model {wildcards.model:q}"
        " --group {wildcards.group:q} --seed {wildcards.seed} {params.question_ids}"
        " --out {output.judged:q} > {log:q} 2>&1"
