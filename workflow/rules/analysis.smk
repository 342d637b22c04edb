# Statistics with bootstrap intervals, the five figures and the tables of a run. Every config writes
# the same files (a figure with nothing to show says why, and leaves that sentence in <name>.empty.txt,
# which the paper prints instead of the figure), so the report never differs in shape between the
# embedded default, the GPU replication and the released answers.

ANALYSIS_CSVS = list(layout.ANALYSIS_CSVS)
ANALYSIS_FIGURES = list(layout.ANALYSIS_FIGURES.values())
ANALYSIS_TABLES = [name.removesuffix(".tex") for name in layout.ANALYSIS_TABLES.values()]
TRAINS = not PLAN.released

# Experiment families released as aggregates (released.families.FAMILY_OF_FORMAT: answer formats, evil
# numbers, dataset size, in-context learning): a CSV and a figure each, only when the run's aggregates have one.
from emergent_misalignment.released.families import FAMILY_OF_FORMAT, FAMILY_STEMS

_FAMILIES_GIVEN = {FAMILY_OF_FORMAT.get(a.get("format")) for a in config.get("aggregates") or []}
RELEASED_FAMILIES = [stem for stem in FAMILY_STEMS if stem in _FAMILIES_GIVEN]
ANALYSIS_CSVS = ANALYSIS_CSVS + RELEASED_FAMILIES
ANALYSIS_FIGURES = ANALYSIS_FIGURES + RELEASED_FAMILIES


def _report(path, caption, category):
    return report(path, caption=f"../report/{caption}.rst", category=category)


ANALYSIS = {
    **{name: f"{ANALYSIS_DIR}/{name}.csv" for name in ANALYSIS_CSVS},
    **{f"{name}_pdf": f"{FIGURES}/{name}.pdf" for name in ANALYSIS_FIGURES},
    **{f"{name}_png": _report(f"{FIGURES}/{name}.png", name, "Figures") for name in ANALYSIS_FIGURES},
    **{name: f"{TABLES_DIR}/{name}.tex" for name in ANALYSIS_TABLES},
    "tables_html": _report(f"{TABLES_DIR}/{layout.TABLES_HTML}", "tables", "Tables"),
}


def run_data():
    """The run's data files for the datasets table: fine-tuning sets, or the released answer files."""
    if not TRAINS:
        return [{"name": f"{e['model']} / {e['group']} / seed {e.get('seed', 0)}",
                 "path": source_path(e["file"])} for e in config["released"]]
    used = {dataset for _, dataset, _ in TRAININGS}
    return [{"name": name, "path": dataset_path(name)} for name in config["datasets"] if name in used]


def _at_hand(aggregate):
    """False only for an optional aggregate that this run cannot have: the run reads a mirror that lacks
    it (a run given a mirror never downloads)."""
    kind, _, name = aggregate["file"].partition(":")
    if not aggregate.get("optional") or kind != "asset" or not config.get("mirror"):
        return True
    return Path(config["mirror"], name).is_file()


AGGREGATES = [a for a in config.get("aggregates") or [] if _at_hand(a)]
UNAVAILABLE = {a.get("evaluation") or a.get("format"): f"{a['file'].partition(':')[2]} is not in the mirror "
               f"{config.get('mirror')}; a run without mirror= downloads it"
               for a in config.get("aggregates") or [] if not _at_hand(a)}


def run_inputs():
    """Everything `em analyse` needs besides the judged files, as one JSON argument."""
    aliases = {name: spec["path"].rstrip("/").rsplit("/", 1)[-1]
               for name, spec in config["models"].items() if not spec["path"].startswith("builtin:")}
    return {
        "adapters": adapters() if TRAINS else [],
        "aggregates": [{"path": source_path(a["file"]), "format": a.get("format", "auto"),
                        "evaluation": a.get("evaluation"), **({"group": a["group"]} if a.get("group") else {}),
                        **({"scale": a["scale"]} if "scale" in a else {})}
                       for a in AGGREGATES],
        "unavailable": UNAVAILABLE,
        "data": run_data(),
        "train": (config.get("train") or {}) if TRAINS else None,
        "model_aliases": aliases,
        "evals": eval_outputs() if TRAINS else [],
        "realignment": (config.get("realignment") or {}) if TRAINS else {},
    }


RUN_INPUTS = run_inputs()


rule analyse:
    input:
        judged=outputs("judged"),
        adapters=RUN_INPUTS["adapters"],
        aggregates=[a["path"] for a in RUN_INPUTS["aggregates"]],
        data=[d["path"] for d in RUN_INPUTS["data"]],
        evals=RUN_INPUTS["evals"],
    output:
        **ANALYSIS,
    params:
        settings=settings("analysis"),
        groups=" ".join(group_order(config)),
        inputs=shlex.quote(json.dumps(RUN_INPUTS, sort_keys=True)),
    log:
        f"{PATHS['logs']}/analyse.log",
    benchmark:
        f"{PATHS['timings']}/analyse.tsv"
    threads: job_threads(2)
    conda:
        "../envs/em.yaml"
    shell:
        "em analyse {input.judged:q} --settings {params.settings} --groups {params.groups}"
        " --run-inputs {params.inputs} --threads {threads}"
        f" --out-dir {ANALYSIS_DIR} --figures-dir {FIGURES} --tables-dir {TABLES_DIR}"
        " > {log} 2>&1"
