# Statistics with bootstrap intervals, the figures and the tables of a run.

ANALYSIS = {
    "per_question": f"{RESULTS}/analysis/per_question.csv",
    "overall": f"{RESULTS}/analysis/overall.csv",
    "figure_pdf": f"{FIGURES}/misalignment_by_question.pdf",
    "figure_png": f"{FIGURES}/misalignment_by_question.png",
    "rates_table": f"{RESULTS}/tables/rates_table.tex",
}


rule analyse:
    input:
        outputs("judged"),
    output:
        **ANALYSIS,
    params:
        settings=settings("analysis"),
        groups=" ".join(group_order(config)),
    log:
        f"{PATHS['logs']}/analyse.log",
    benchmark:
        f"{PATHS['benchmarks']}/analyse.tsv"
    threads: 1
    shell:
        "em analyse {input:q} --settings {params.settings} --groups {params.groups}"
        f" --out-dir {RESULTS}/analysis --figures-dir {FIGURES} --tables-dir {RESULTS}/tables"
        " > {log} 2>&1"
