# The LaTeX paper of the run, from its figure, table and numbers: paper/build/<run>/main.pdf.

EMBEDDED = any(m["path"].startswith("builtin:") for m in config["models"].values())


rule paper:
    input:
        sources=["paper/main.tex"],
        overall=ANALYSIS["overall"],
        figure=ANALYSIS["figure_pdf"],
        table=ANALYSIS["rates_table"],
    output:
        PAPER_PDF,
    params:
        settings=settings("analysis"),
        config=shlex.quote(json.dumps(config, sort_keys=True)),
        config_files=" ".join(shlex.quote(str(f)) for f in workflow.configfiles),
        embedded="--embedded" if EMBEDDED else "",
    log:
        f"{PATHS['logs']}/paper.log",
    benchmark:
        f"{PATHS['benchmarks']}/paper.tsv"
    threads: 1
    shell:
        "em paper --run {RUN} --overall {input.overall} --settings {params.settings}"
        " --config-json {params.config} --config-files {params.config_files} {params.embedded}"
        f" --figures-dir {FIGURES} --tables-dir {RESULTS}/tables --build-dir {PAPER_BUILD}"
        " > {log} 2>&1"
