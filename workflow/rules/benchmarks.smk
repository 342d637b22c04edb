# Table 1's benchmarks (config `benchmarks`: mmlu, humaneval, truthfulqa, strongreject) on each evaluated
# model, with inspect_evals' tasks (benchmarks.py): one job per benchmark x model x dataset x seed (and
# kept checkpoint where the benchmark asks), on the data files the data step fetched and checked.
from emergent_misalignment.experiments import benchmark_jobs

BENCHMARK_JOBS = benchmark_jobs(config)
BENCHMARK_AT = {(name, j.model, j.group, j.seed): j for name, j in BENCHMARK_JOBS}


def benchmark_job(w):
    return BENCHMARK_AT[(w.benchmark, w.model, w.group, int(w.seed))]


def benchmark_data(w):
    """split -> local file of the benchmark's `data`."""
    spec = config["benchmarks"][w.benchmark] or {}
    return {split: source_path(source) for split, source in (spec.get("data") or {}).items()}


def benchmark_settings(w):
    """The benchmark's section without its data (given as files), as `em benchmark --settings`."""
    spec = {k: v for k, v in (config["benchmarks"][w.benchmark] or {}).items() if k != "data"}
    return as_json(spec)


def benchmark_outputs():
    return [PATHS["benchmark_score"].format(benchmark=name, model=j.model, group=j.group, seed=j.seed)
            for name, j in BENCHMARK_JOBS]


rule benchmark:
    input:
        data=lambda w: list(benchmark_data(w).values()),
        adapter=lambda w: adapter_input(benchmark_job(w)),
        base=lambda w: model_inputs(w.model),
    output:
        score=PATHS["benchmark_score"],
        manifest=manifest(PATHS["benchmark_score"]),
        logs=directory(PATHS["benchmark_logs"]),
    params:
        settings=benchmark_settings,
        sample=lambda w: as_json(sample_settings(RECIPES[benchmark_job(w)]["sample"])),
        base=lambda w: model_path(w.model),
        adapter=lambda w, input: adapter_arg(benchmark_job(w), input),
        data=lambda w: " ".join(f"--data {shlex.quote(f'{s}={p}')}" for s, p in benchmark_data(w).items()),
        labels=lambda w: f"--dataset {benchmark_job(w).dataset} --checkpoint {benchmark_job(w).checkpoint}",
    log:
        f"{PATHS['logs']}/benchmark/{{benchmark}}/{{model}}/{{group}}/seed{{seed}}.log",
    benchmark:
        f"{PATHS['timings']}/benchmark/{{benchmark}}/{{model}}/{{group}}/seed{{seed}}.tsv"
    threads: job_threads(1)
    resources:
        gpu=lambda w: model_resources(w.model)["gpu"],
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: stage_runtime(w.model, "benchmark", 60),
    conda:
        model_env
    shell:
        "em benchmark {wildcards.benchmark} --base {params.base:q} {params.adapter} --sample-settings {params.sample}"
        " --settings {params.settings} {params.data} --model {wildcards.model} {params.labels}"
        " --seed {wildcards.seed} --threads {threads} --log-dir {output.logs:q} --out {output.score:q}"
        " > {log:q} 2>&1"
