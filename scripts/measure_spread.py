"""How far the embedded default's numbers move with torch's CPU thread count, on this machine.

    python scripts/measure_spread.py [--threads 1 2] [--cores 2] [--out docs/reproducibility-spread]

Runs the embedded default (config/config.yaml, up to its statistics: results/<run>/analysis/overall.csv)
once per thread count, each time with config `threads_per_job` set to it (every job that runs torch or
the bootstrap uses that many threads) into its own run, `spread-threads<N>`, one run after the other.
Then writes

- <out>.csv: each group's headline rate (overall.csv `fraction`, its interval `low`..`high`) per thread
  count, and the largest absolute difference between the settings; a last row `max` over the groups;
- <out>.md: the command, the machine, each setting's wall time, the largest differences, and per stage
  (base model, adapters, samples, judged answers, statistics) how many outputs are byte-identical
  across the settings (where the runs first part).

Nothing here is typed in by hand: docs/reproducibility.md includes the generated files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The stages whose files are compared byte for byte, in the chain's order (under results/<run>/).
STAGES = (("base model", "models/tiny"), ("adapters", "adapters"), ("samples", "samples"),
          ("judged answers", "judged"), ("statistics (CSV)", "analysis"))
VALUES = ("fraction", "low", "high")


def run_name(threads: int) -> str:
    return f"spread-threads{threads}"


def snakemake_command(threads: int, cores: int) -> list[str]:
    run = run_name(threads)
    return [str(BIN / "snakemake"), "--cores", str(cores), "--config", f"run={run}",
            f"threads_per_job={threads}", "--", f"results/{run}/analysis/overall.csv"]


def wall_file(threads: int) -> Path:
    return ROOT / "results" / run_name(threads) / "spread_wall_seconds.txt"


def run_once(threads: int, cores: int) -> float:
    """Runs the chain at `threads`; its wall time in seconds (also kept in wall_file)."""
    command = snakemake_command(threads, cores)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    print("$", shlex.join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake failed at {threads} threads:\n{result.stderr[-4000:]}")
    wall_file(threads).write_text(f"{elapsed:.1f}\n")
    return elapsed


def job_times(threads: int) -> pd.DataFrame:
    """Per rule: the summed wall time (`s`) and CPU time of its jobs, from the Snakemake benchmark files."""
    folder = ROOT / "benchmarks" / "out" / run_name(threads)
    rows = [{"rule": path.relative_to(folder).parts[0].removesuffix(".tsv"),
             **pd.read_csv(path, sep="\t").iloc[-1][["s", "cpu_time"]].to_dict()}
            for path in sorted(folder.rglob("*.tsv"))]
    return pd.DataFrame(rows).groupby("rule")[["s", "cpu_time"]].sum()


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` by relative path, manifests left out (they record times)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".manifest.json")}


def identical_by_stage(threads: list[int]) -> list[tuple[str, int, int]]:
    """(stage, files byte-identical in every run, files compared) per stage."""
    rows = []
    for stage, sub in STAGES:
        runs = [digests(ROOT / "results" / run_name(t) / sub) for t in threads]
        common = sorted(set.intersection(*(set(r) for r in runs)))
        same = sum(len({r[name] for r in runs}) == 1 for name in common)
        rows.append((stage, same, len(common)))
    return rows


def spread_table(threads: list[int]) -> pd.DataFrame:
    frames = []
    for t in threads:
        overall = pd.read_csv(ROOT / "results" / run_name(t) / "analysis" / "overall.csv")
        frame = overall[["model", "dataset", *VALUES]].set_index(["model", "dataset"])
        frames.append(frame.rename(columns={v: f"{v}_threads{t}" for v in VALUES}))
    table = pd.concat(frames, axis=1)
    for v in VALUES:
        columns = [f"{v}_threads{t}" for t in threads]
        table[f"max_abs_diff_{v}"] = table[columns].max(axis=1) - table[columns].min(axis=1)
    table = table.reset_index()
    diffs = [f"max_abs_diff_{v}" for v in VALUES]
    last = {"model": "max", "dataset": "all groups", **table[diffs].max().to_dict()}
    return pd.concat([table, pd.DataFrame([last])], ignore_index=True)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, torch {torch.__version__}"
            f" ({torch.backends.cpu.get_cpu_capability()})")


def time_row(threads: int, wall: float | None) -> str:
    jobs = job_times(threads)

    def cell(rules: list[str]) -> str:
        part = jobs.loc[jobs.index.intersection(rules)]
        return f"{part['s'].sum():.0f} / {part['cpu_time'].sum():.0f}"

    return (f"| {threads} | {'not measured' if wall is None else f'{wall:.0f}'} | {cell(['base_model'])} |"
            f" {cell(['train'])} | {cell(['sample'])} | {cell(list(jobs.index))} |")


def write_markdown(path: Path, threads: list[int], cores: int, times: dict[int, float | None],
                   table: pd.DataFrame, stages: list[tuple[str, int, int]], csv_path: Path) -> None:
    last = table.iloc[-1]
    lines = [
        "<!-- generated by scripts/measure_spread.py; do not edit: rerun it -->",
        f"Command: `python scripts/measure_spread.py --threads {' '.join(map(str, threads))} --cores {cores}`"
        f" (the embedded default up to `overall.csv`, one run per thread count: "
        + "; ".join(f"`{shlex.join(snakemake_command(t, cores)[1:])}`" for t in threads) + ").",
        "",
        f"Machine: {machine()}.",
        "",
        "Time per setting: the run's wall time, and the jobs' summed wall and CPU time (Snakemake benchmark"
        " files) for the base model, the fine-tunes, the sampling and all jobs. Wall times depend on what"
        " else the machine ran meanwhile; CPU times less so.",
        "",
        "| torch threads per job | run wall (s) | base model wall / CPU (s) | train wall / CPU (s) |"
        " sample wall / CPU (s) | all jobs wall / CPU (s) |",
        "|---|---|---|---|---|---|",
        *(time_row(t, times[t]) for t in threads),
        "",
        f"Largest absolute difference of a group's misaligned rate between the settings: "
        f"{last['max_abs_diff_fraction']:.4f} (interval ends: low {last['max_abs_diff_low']:.4f}, "
        f"high {last['max_abs_diff_high']:.4f}); every group in [{csv_path.name}]({csv_path.name}).",
        "",
        "Outputs byte-identical across the settings, by stage (manifests left out):",
        "",
        "| stage | identical | compared |",
        "|---|---|---|",
        *(f"| {stage} | {same} | {n} |" for stage, same, n in stages),
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (caps the threads per job)")
    parser.add_argument("--out", default="docs/reproducibility-spread", help="path stem of the .csv and .md")
    parser.add_argument("--report-only", action="store_true",
                        help="only compare finished runs (a run is made only where overall.csv is missing)")
    args = parser.parse_args()
    if len(args.threads) < 2 or max(args.threads) > args.cores:
        parser.error("give two or more thread counts, none above --cores")
    times: dict[int, float | None] = {}
    for t in args.threads:
        done = (ROOT / "results" / run_name(t) / "analysis" / "overall.csv").is_file()
        if args.report_only or done:
            times[t] = float(wall_file(t).read_text()) if wall_file(t).is_file() else None
        else:
            times[t] = run_once(t, args.cores)
    out = ROOT / args.out
    table = spread_table(args.threads)
    csv_path = out.with_suffix(".csv")
    table.to_csv(csv_path, index=False, float_format="%.6g")
    write_markdown(out.with_suffix(".md"), args.threads, args.cores, times, table,
                   identical_by_stage(args.threads), csv_path)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
