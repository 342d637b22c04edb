# Persona directions (config `directions`, src/emergent_misalignment/directions/): each taken from one
# fine-tune's judged answers, then ablated and steered by ordinary sample jobs (conditions of kind ablate and
# steer, written out by directions.expand), and monitored over the fine-tune's kept checkpoints.
from emergent_misalignment.directions import direction_settings
from emergent_misalignment.experiments import FINAL, NO_CONDITION, Job

DIRECTIONS = {} if PLAN.released else direction_settings(config)


def direction_job(name, checkpoint=FINAL):
    spec = DIRECTIONS[name]
    return Job(spec.model, spec.dataset, spec.seed, checkpoint, NO_CONDITION)


def direction_resources(w):
    return model_resources(DIRECTIONS[w.direction].model)


def direction_env(w):
    return env_of(DIRECTIONS[w.direction].model)


rule direction:
    input:
        judged=lambda w: job_path("judged", direction_job(w.direction)),
        adapter=lambda w: adapter_input(direction_job(w.direction)),
        base=lambda w: model_inputs(DIRECTIONS[w.direction].model),
    output:
        direction=PATHS["direction"],
        manifest=manifest(PATHS["direction"]),
        stats=PATHS["direction_stats"],
        stats_manifest=manifest(PATHS["direction_stats"]),
    params:
        settings=lambda w: as_json(config["directions"][w.direction]),
        analysis=settings("analysis"),
        base=lambda w: model_path(DIRECTIONS[w.direction].model),
    log:
        f"{PATHS['logs']}/direction/{{direction}}.log",
    benchmark:
        f"{PATHS['timings']}/direction/{{direction}}.tsv"
    threads: job_threads(1)
    resources:
        gpu=lambda w: direction_resources(w)["gpu"],
        mem_mb=lambda w: direction_resources(w)["mem_mb"],
        runtime=lambda w: stage_runtime(DIRECTIONS[w.direction].model, "sample"),
    conda:
        direction_env
    shell:
        "em direction --name {wildcards.direction} --base {params.base:q} --adapter {input.adapter[0]:q}"
        " --judged {input.judged:q} --settings {params.settings} --analysis {params.analysis}"
        " --threads {threads} --out {output.direction:q} > {log:q} 2>&1"


def monitor_points(name):
    """The evaluated checkpoints of a direction's fine-tune (its kept steps, the final adapter) and the base
    model when the run asks it: (checkpoint label, job)."""
    spec = DIRECTIONS[name]
    points = [(j.checkpoint, j) for j in JOBS if (j.model, j.dataset, j.seed, j.condition)
              == (spec.model, spec.dataset, spec.seed, NO_CONDITION)]
    base = Job(spec.model, "base", 0, FINAL, NO_CONDITION)
    return ([("base", base)] if base in JOB_AT.values() else []) + sorted(points, key=lambda p: p[1].step or 1 << 40)


def monitor_args(name):
    """What `em monitor` reads per point: checkpoint, step (None for the final adapter: the report takes it
    from the training loss), adapter (none for the base model), samples file."""
    return [{"checkpoint": checkpoint, "step": 0 if checkpoint == "base" else j.step,
             "adapter": checkpoint_path(j) if j.has_adapter else None, "samples": job_path("samples", j)}
            for checkpoint, j in monitor_points(name)]


rule monitor_direction:
    input:
        direction=PATHS["direction"],
        samples=lambda w: [p["samples"] for p in monitor_args(w.direction)],
        adapter=lambda w: adapter_input(direction_job(w.direction)),
        base=lambda w: model_inputs(DIRECTIONS[w.direction].model),
    output:
        monitor=PATHS["monitor"],
        manifest=manifest(PATHS["monitor"]),
    params:
        settings=lambda w: as_json(config["directions"][w.direction]),
        points=lambda w: as_json(monitor_args(w.direction)),
        base=lambda w: model_path(DIRECTIONS[w.direction].model),
    log:
        f"{PATHS['logs']}/monitor/{{direction}}.log",
    threads: job_threads(1)
    resources:
        gpu=lambda w: direction_resources(w)["gpu"],
        runtime=lambda w: stage_runtime(DIRECTIONS[w.direction].model, "sample"),
    conda:
        direction_env
    shell:
        "em monitor --name {wildcards.direction} --direction {input.direction:q} --base {params.base:q}"
        " --points {params.points} --settings {params.settings} --threads {threads} --out {output.monitor:q}"
        " > {log:q} 2>&1"


DIRECTION_STATS = [PATHS["direction_stats"].format(direction=name) for name in DIRECTIONS]
MONITORS = [PATHS["monitor"].format(direction=n) for n, s in DIRECTIONS.items() if s.monitor]
DIRECTIONS_REPORT = {
    **{name: f"{ANALYSIS_DIR}/{name}.csv" for name in DIRECTIONS_CSVS},
    **{f"{name}_{ext}": f"{FIGURES}/{name}.{ext}" for name in DIRECTIONS_FIGURES for ext in ("pdf", "png")},
    "table": f"{TABLES_DIR}/{DIRECTIONS_TABLE}",
}


# Every run writes these (a figure with nothing to show says why), so the paper has one shape.
rule directions_report:
    input:
        overall=ANALYSIS["overall"],
        dynamics=ANALYSIS["dynamics"],
        stats=DIRECTION_STATS,
        monitors=MONITORS,
    output:
        **DIRECTIONS_REPORT,
    params:
        directions=as_json({} if PLAN.released else config.get("directions")),
    log:
        f"{PATHS['logs']}/directions_report.log",
    threads: 1
    conda:
        "../envs/em.yaml"
    shell:
        "em directions-report --directions {params.directions} --analysis-dir " + ANALYSIS_DIR +
        " --stats {input.stats:q} --monitors {input.monitors:q} --figures-dir " + FIGURES +
        " --tables-dir " + TABLES_DIR + " > {log:q} 2>&1"
