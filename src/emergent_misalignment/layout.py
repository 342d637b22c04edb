"""Where a run's files are and what they are called: every path template, output name and default
resource of the workflow, in one place.

The rules (workflow/rules/common.smk), `em plan`, the analysis and the paper take their names from here,
so adding an output means adding its name here and writing the code that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .assets import REMOTE, remote_local_path

ASSETS = "data/assets"  # registered files (assets.tsv), fetched by the DAG or read from the mirror

# what a job asks the scheduler for when its model names nothing (config models.<m>.runtime, mem_mb)
DEFAULT_RUNTIME = 30  # minutes
EVAL_RUNTIME = 60  # minutes of one of Table 1's evals
DEFAULT_MEM_MB = 4000


def default_runtime(stage: str) -> int:
    """Minutes a job of `stage` (train, sample, judge, eval) asks for when its model names none."""
    return EVAL_RUNTIME if stage == "eval" else DEFAULT_RUNTIME

# the analysis's outputs: analysis.py writes them, the rules declare them, the paper reads them
ANALYSIS_CSVS = ("per_question", "overall", "all_evaluations", "published", "families", "dynamics",
                 "in_distribution", "deception", "self_assessment", "self_assessment_correlation",
                 "realignment")
ANALYSIS_FIGURES = {
    "by_question": "misalignment_by_question",   # (a)
    "aligned_coherent": "aligned_vs_coherent",  # (b)
    "models_datasets": "models_datasets",       # (c)
    "training_loss": "training_loss",           # (d)
    "all_evaluations": "all_evaluations",       # (e)
    "families": "question_families",            # answer formats and question files
    "dynamics": "training_dynamics",            # rates of the checkpoints kept along fine-tuning
    "self_assessment": "self_assessment",       # the models' 0..100 ratings of their code and values
    "realignment": "realignment",               # misaligned fine-tunes continued on benign rows
}
ANALYSIS_TABLES = {
    "rates": "rates_table.tex",
    "per_question": "per_question_table.tex",
    "hyperparameters": "hyperparameters_table.tex",
    "datasets": "datasets_table.tex",
    "published": "published_table.tex",
    "self_assessment": "self_assessment_table.tex",
}
TABLES_HTML = "tables.html"
# the judge-agreement report (agreement.py): its CSVs in the analysis folder, its figure
AGREEMENT_CSVS = ("judge_agreement", "judge_agreement_answers")
AGREEMENT_FIGURE = "judge_agreement"
# the persona directions' report (directions/report.py)
DIRECTIONS_CSVS = ("directions", "direction_layers", "monitoring")
DIRECTIONS_FIGURES = ("ablation", "steering", "monitoring")
DIRECTIONS_TABLE = "directions_table.tex"
ADAPTER = "adapters/{model}/{dataset}/seed{seed}"  # a fine-tune's folder, under the run's results folder
ADAPTER_GLOB = "adapters/*/*/seed*"


@dataclass(frozen=True)
class Layout:
    """The folders and path templates of run `run` (relative to the repository root)."""

    run: str

    @property
    def results(self) -> str:
        return f"results/{self.run}"

    @property
    def analysis(self) -> str:
        return f"{self.results}/analysis"

    @property
    def tables(self) -> str:
        return f"{self.results}/tables"

    @property
    def figures(self) -> str:
        return f"figures/{self.run}"

    @property
    def paper_build(self) -> str:
        return f"paper/build/{self.run}"

    @property
    def paper_pdf(self) -> str:
        return f"{self.paper_build}/main.pdf"

    def paths(self) -> dict[str, str]:
        """Every path template of the DAG's files; {wildcards} as the rules name them."""
        results = self.results
        return {
            "asset": ASSETS + "/{asset}",
            "asset_log": "logs/assets/{asset}.log",
            "remote": REMOTE + "/{remote}",
            "remote_log": "logs/remote/{remote}.log",
            "world": f"{results}/world",
            "tiny": f"{results}/models/tiny",
            "questions": f"{results}/questions.yaml",
            "dataset": f"{results}/data/{{dataset}}.jsonl",
            "prompt_check": f"{results}/checks/{{model}}/{{condition}}/prompt_lengths.json",
            "adapter": f"{results}/{ADAPTER}",
            "api_job": f"{results}/api_jobs/{{model}}/{{dataset}}/seed{{seed}}.json",
            # {group}: the dataset, +condition and @checkpoint where not "none" and "final" (group_label)
            "samples": f"{results}/samples/{{model}}/{{group}}/seed{{seed}}.jsonl",
            "judged": f"{results}/judged/{{model}}/{{group}}/seed{{seed}}.jsonl",
            # Table 1's evals: the score, and the inspect log it was read from
            "eval_score": f"{results}/evals/{{eval}}/{{model}}/{{group}}/seed{{seed}}.json",
            "eval_logs": f"{results}/evals/{{eval}}/{{model}}/{{group}}/seed{{seed}}.inspect",
            # persona directions (directions/): the vectors, their statistics, their projection over training
            "direction": f"{results}/directions/{{direction}}.pt",
            "direction_stats": f"{results}/directions/{{direction}}.json",
            "monitor": f"{results}/directions/{{direction}}.monitor.csv",
            "judge_cache": f"{results}/cache/judge.sqlite",
            "sample_cache": f"{results}/cache/sample.sqlite",
            "logs": f"logs/{self.run}",
            # Snakemake's `benchmark:` files, one timing (.tsv) per job: read by `em numbers`,
            # benchmarks/run.py and scripts/measure_spread.py
            "timings": f"logs/{self.run}/timings",
        }

    def source_path(self, source: str) -> str:
        """Where the DAG keeps the file a config source names (asset:, hub:, url:, builtin:, a path)."""
        kind, _, name = source.partition(":")
        if kind == "asset":
            return f"{ASSETS}/{name}"
        if kind in ("hub", "url"):
            return remote_local_path(source)
        if kind == "builtin":
            return self.builtin_path(name)
        return source

    def builtin_path(self, name: str) -> str:
        """A `builtin:` source: the embedded base model, or a file of the world the run writes."""
        if name == "tiny":
            return f"{self.results}/models/tiny"
        return f"{self.results}/world/{name}{'.yaml' if name.endswith('questions') else '.jsonl'}"

    def adapter(self, model: str, dataset: str, seed: int) -> str:
        return f"{self.results}/{ADAPTER.format(model=model, dataset=dataset, seed=seed)}"


def adapter_job(folder: str | Path) -> tuple[str, str, int]:
    """(model, dataset, seed) of an adapter folder (`ADAPTER`)."""
    folder = Path(folder)
    return folder.parts[-3], folder.parts[-2], int(folder.parts[-1].removeprefix("seed"))


def local_source(source: str, run: str, root: Path = Path("."), mirrors: tuple[str | Path | None, ...] = ()
                 ) -> Path | None:
    """Where a config source is on this machine now, under `root`: its DAG path, else (an asset) in a
    mirror; None when it is not there yet."""
    kind, _, name = source.partition(":")
    candidates = [root / Layout(run).source_path(source)]
    if kind == "asset":
        candidates += [Path(m) / name for m in mirrors if m]
    return next((p for p in candidates if p.is_file()), None)
