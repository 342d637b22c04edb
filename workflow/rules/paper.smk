# The LaTeX paper of the run, from its figures, tables and numbers: paper/build/<run>/main.pdf.
# paper/*.tex are all inputs, so paper/world.tex (the embedded default's toy-world section) counts too.
from glob import glob

# The embedded default: a model the run's jobs use is built by the DAG (builtin:tiny).
EMBEDDED = any(config["models"].get(j.model, {}).get("path", "").startswith("builtin:") for j in JOBS)


rule paper:
    input:
        sources=sorted(glob("paper/*.tex")),
        csvs=[ANALYSIS[name] for name in ANALYSIS_CSVS],
        figures=[ANALYSIS[f"{name}_pdf"] for name in ANALYSIS_FIGURES],
        tables=[ANALYSIS[name] for name in ANALYSIS_TABLES],
        directions=list(DIRECTIONS_REPORT.values()),
        agreement=[AGREEMENT_CSV] if config.get("judge_agreement") and not PLAN.released else [],
    output:
        pdf=report(PAPER_PDF, caption="../report/paper.rst", category="Paper"),
        manifest=manifest(PAPER_PDF),
    params:
        settings=settings("analysis"),
        config=shlex.quote(json.dumps(config, sort_keys=True)),
        config_files=" ".join(shlex.quote(str(f)) for f in workflow.configfiles),
        embedded="--embedded" if EMBEDDED else "",
    log:
        f"{PATHS['logs']}/paper.log",
    benchmark:
        f"{PATHS['timings']}/paper.tsv"
    threads: 1
    conda:
        "../envs/em.yaml"
    shell:
        f"em paper --run {RUN} --analysis-dir {ANALYSIS_DIR}"
        " --settings {params.settings}"
        " --config-json {params.config} --config-files {params.config_files} {params.embedded}"
        f" --figures-dir {FIGURES} --tables-dir {TABLES_DIR} --build-dir {PAPER_BUILD}"
        " > {log} 2>&1"


def report_targets():
    """Every statistics file, figure and table of the run, so that the README command rebuilds one that was
    deleted (a file the paper does not read would otherwise stay missing)."""
    targets = [str(path) for path in (*ANALYSIS.values(), *DIRECTIONS_REPORT.values())]
    if config.get("judge_agreement") and not PLAN.released:
        targets += [AGREEMENT_CSV, AGREEMENT_ANSWERS,
                    *(f"{FIGURES}/{AGREEMENT_FIGURE}.{ext}" for ext in ("pdf", "png"))]
    return targets
