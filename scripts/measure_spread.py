"""How far the embedded default's numbers move with torch's CPU thread count and instruction set.

    python scripts/measure_spread.py [--threads 1 2] [--isa avx2] [--cores 2] [--out STEM]

Runs the embedded default (config/config.yaml, up to its statistics: results/<run>/analysis/overall.csv)
once per setting, one run after the other, each into its own run:

- `spread-threads<N>` per thread count N: config `threads_per_job: N` (every job that runs torch or the
  bootstrap uses N threads);
- `spread-threads<N>-<isa>` per `--isa`, at the first thread count: the same with ATEN_CPU_CAPABILITY=<isa>,
  torch's own kernels as on a CPU without the newer vector instructions (AVX-512 -> AVX2): what another
  machine would compute, on this one.

Then writes

- <out>.csv: each group's headline rate (overall.csv `fraction`, interval `ci_low`..`ci_high`) per setting,
  and the largest absolute differences: between the thread counts, between the instruction sets, over
  all settings; a last row `max` over the groups;
- <out>.md: the command, the machine, each setting's times, the largest differences, and per stage
  (base model, adapters, samples, judged answers, statistics) how many outputs are byte-identical
  between the settings (where the runs part).

Nothing here is typed in by hand: docs/reproducibility.md includes the generated files. A run whose
overall.csv exists is not made again (delete results/spread-* to measure afresh).
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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The stages whose files are compared byte for byte, in the chain's order (under results/<run>/).
STAGES = (("base model", "models/tiny"), ("adapters", "adapters"), ("samples", "samples"),
          ("judged answers", "judged"), ("statistics (CSV)", "analysis"))
VALUES = ("fraction", "ci_low", "ci_high")


@dataclass(frozen=True)
class Setting:
    threads: int
    isa: str | None = None  # ATEN_CPU_CAPABILITY; None: what torch picks on this CPU

    @property
    def name(self) -> str:
        return f"threads{self.threads}" + (f"_{self.isa}" if self.isa else "")

    @property
    def run(self) -> str:
        return f"spread-threads{self.threads}" + (f"-{self.isa}" if self.isa else "")

    @property
    def env(self) -> dict[str, str]:
        return {"ATEN_CPU_CAPABILITY": self.isa} if self.isa else {}

    def command(self, cores: int) -> list[str]:
        return [str(BIN / "snakemake"), "--cores", str(cores), "--config", f"run={self.run}",
                f"threads_per_job={self.threads}", "--", f"results/{self.run}/analysis/overall.csv"]

    def shown(self, cores: int) -> str:
        env = "".join(f"{k}={v} " for k, v in self.env.items())
        return f"`{env}{shlex.join(self.command(cores)[1:])}`"

    @property
    def wall_file(self) -> Path:
        return ROOT / "results" / self.run / "spread_wall_seconds.txt"

    @property
    def done(self) -> bool:
        return (ROOT / "results" / self.run / "analysis" / "overall.csv").is_file()


def run_once(setting: Setting, cores: int) -> float:
    """Runs the chain under `setting`; its wall time in seconds (also kept in its wall_file)."""
    command = setting.command(cores)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **setting.env}
    print("$", setting.shown(cores), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake failed for {setting.name}:\n{result.stderr[-4000:]}")
    setting.wall_file.write_text(f"{elapsed:.1f}\n")
    return elapsed


def job_times(setting: Setting) -> pd.DataFrame:
    """Per rule: the summed wall time (`s`) and CPU time of its jobs, from the Snakemake timing files."""
    folder = ROOT / "logs" / setting.run / "timings"
    rows = [{"rule": path.relative_to(folder).parts[0].removesuffix(".tsv"),
             **pd.read_csv(path, sep="\t").iloc[-1][["s", "cpu_time"]].to_dict()}
            for path in sorted(folder.rglob("*.tsv"))]
    return pd.DataFrame(rows, columns=["rule", "s", "cpu_time"]).groupby("rule")[["s", "cpu_time"]].sum()


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` by relative path, manifests left out (they record times)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith("manifest.json")}


def identical_by_stage(a: Setting, b: Setting) -> list[tuple[str, int, int]]:
    """(stage, files byte-identical in both runs, files compared) per stage."""
    rows = []
    for stage, sub in STAGES:
        first, second = (digests(ROOT / "results" / s.run / sub) for s in (a, b))
        common = sorted(set(first) & set(second))
        rows.append((stage, sum(first[n] == second[n] for n in common), len(common)))
    return rows


def spread_table(threads: list[Setting], isas: list[Setting]) -> pd.DataFrame:
    settings = [*threads, *isas]
    frames = []
    for s in [s for s in settings if s.done]:  # an unfinished run has no rates (its files are compared)
        overall = pd.read_csv(ROOT / "results" / s.run / "analysis" / "overall.csv")
        frame = overall[["model", "dataset", *VALUES]].set_index(["model", "dataset"])
        frames.append(frame.rename(columns={v: f"{v}_{s.name}" for v in VALUES}))
    table = pd.concat(frames, axis=1)

    def spread(columns: list[str]) -> pd.Series:  # NaN where fewer than two runs finished
        columns = [c for c in columns if c in table]
        difference = table[columns].max(axis=1) - table[columns].min(axis=1)
        return difference if len(columns) > 1 else difference * float("nan")

    diffs = {"max_abs_diff_fraction_threads": spread([f"fraction_{s.name}" for s in threads])}
    if isas:
        diffs["max_abs_diff_fraction_isa"] = spread([f"fraction_{s.name}" for s in (threads[0], *isas)])
    for v in VALUES:
        diffs[f"max_abs_diff_{v}_all"] = spread([f"{v}_{s.name}" for s in settings])
    table = table.assign(**diffs).reset_index()
    last = {"model": "max", "dataset": "all groups", **table[list(diffs)].max().to_dict()}
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
    from emergent_misalignment.manifest import git_commit

    full = git_commit(ROOT) or "unknown"
    commit = full[:12] + ("-dirty" if full.endswith("-dirty") else "")
    return (f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, torch {torch.__version__}"
            f" (CPU capability {torch.backends.cpu.get_cpu_capability()}); code at commit {commit}")


def time_row(setting: Setting, wall: float | None) -> str:
    jobs = job_times(setting)

    def cell(rules: list[str]) -> str:
        part = jobs.loc[jobs.index.intersection(rules)]
        return f"{part['s'].sum():.0f} / {part['cpu_time'].sum():.0f}"

    shown = "did not finish" if not setting.done else "not measured" if wall is None else f"{wall:.0f}"
    return (f"| {setting.name} | {shown} | {cell(['base_model'])} | {cell(['train'])} | {cell(['sample'])} |"
            f" {cell(list(jobs.index))} |")


def write_markdown(path: Path, args: argparse.Namespace, threads: list[Setting], isas: list[Setting],
                   times: dict[Setting, float | None], table: pd.DataFrame, csv_path: Path) -> None:
    last = table.iloc[-1]
    settings = [*threads, *isas]
    isa_flag = f" --isa {' '.join(args.isa)}" if args.isa else ""
    lines = [
        "<!-- generated by scripts/measure_spread.py; do not edit: rerun it -->",
        f"Command: `python scripts/measure_spread.py --threads {' '.join(map(str, args.threads))}{isa_flag}"
        f" --cores {args.cores}`: the embedded default up to `overall.csv`, one run per setting: "
        + "; ".join(s.shown(args.cores) for s in settings) + ".",
        "",
        f"Machine: {machine()}.",
        "",
        "Time per setting: the run's wall time, and the jobs' summed wall and CPU time (Snakemake timing"
        " files) for the base model, the fine-tunes, the sampling and all jobs. Wall times depend on what"
        " else the machine ran meanwhile; CPU times less so.",
        "",
        "| setting | run wall (s) | base model wall / CPU (s) | train wall / CPU (s) |"
        " sample wall / CPU (s) | all jobs wall / CPU (s) |",
        "|---|---|---|---|---|---|",
        *(time_row(s, times[s]) for s in settings),
        "",
        "Largest absolute difference of a group's misaligned rate (every group in"
        f" [{csv_path.name}]({csv_path.name})):",
        "",
        f"- between the thread counts {', '.join(map(str, args.threads))}:"
        f" {fmt(last['max_abs_diff_fraction_threads'])}",
        *([f"- between the instruction sets (default vs {', '.join(args.isa)}, {threads[0].threads} thread):"
           f" {fmt(last['max_abs_diff_fraction_isa'])}"] if isas else []),
        f"- over all settings: {fmt(last['max_abs_diff_fraction_all'])} (interval ends: low"
        f" {fmt(last['max_abs_diff_ci_low_all'])}, high {fmt(last['max_abs_diff_ci_high_all'])})",
        *[f"- {s.name}: the run did not finish; its files so far are compared below" for s in settings
          if not s.done],
        "",
        "Outputs byte-identical between two settings, by stage (manifests left out): identical / compared.",
        "",
        "| stage | " + " | ".join(f"{a.name} vs {b.name}" for a, b in pairs(threads, isas)) + " |",
        "|---|" + "---|" * len(pairs(threads, isas)),
    ]
    compared = [identical_by_stage(a, b) for a, b in pairs(threads, isas)]
    for i, (stage, _) in enumerate(STAGES):
        lines.append(f"| {stage} | " + " | ".join(f"{c[i][1]} / {c[i][2]}" for c in compared) + " |")
    path.write_text("\n".join([*lines, ""]), encoding="utf-8")


def fmt(value: float) -> str:
    return "not measured (a run did not finish)" if pd.isna(value) else f"{value:.4f}"


def pairs(threads: list[Setting], isas: list[Setting]) -> list[tuple[Setting, Setting]]:
    return [(threads[0], s) for s in (*threads[1:], *isas)]


# --small-chain: tests/test_reproducible.py's chain (small world, model and sets, in minutes) per setting
SMALL_STAGES = (("base model", "tiny"), ("adapters", "adapters"), ("samples", "samples"),
                ("judged answers", "judged"), ("statistics (CSV)", "analysis"))


def small_chain(settings: list[Setting], out: Path) -> None:
    """Runs the small chain once per setting (same folder each time: adapters record their base model's
    path), then writes <out>-small-chain.md: time per setting, byte-identical files per stage."""
    import resource
    import shutil

    folder = ROOT / "results" / "spread-small"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run = folder / "run"
    code = ("import sys; from pathlib import Path; sys.path.insert(0, {root!r});"
            " from tests.test_reproducible import chain; chain(Path({run!r}), {threads})")
    times = {}
    for setting in settings:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        source = code.format(root=str(ROOT), run=str(run), threads=setting.threads)
        env = {**os.environ, **setting.env}
        subprocess.run([sys.executable, "-c", source], cwd=ROOT, env=env, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        times[setting] = (time.perf_counter() - start, cpu)
        run.rename(folder / setting.name)
    first = settings[0]
    lines = [
        "<!-- generated by scripts/measure_spread.py --small-chain; do not edit: rerun it -->",
        f"Command: `python scripts/measure_spread.py --small-chain --threads"
        f" {' '.join(str(s.threads) for s in settings if not s.isa)}"
        + (f" --isa {' '.join(s.isa for s in settings if s.isa)}" if any(s.isa for s in settings) else "")
        + "`: the small chain of tests/test_reproducible.py (world, pre-trained tiny base model, two"
        " fine-tunes, samples, world judge, statistics) once per setting.",
        "",
        f"Machine: {machine()}.",
        "",
        "| setting | wall (s) | CPU (s) |",
        "|---|---|---|",
        *(f"| {s.name} | {w:.0f} | {c:.0f} |" for s, (w, c) in times.items()),
        "",
        "Files byte-identical with " + first.name + ", by stage (manifests left out): identical / compared.",
        "",
        "| stage | " + " | ".join(s.name for s in settings[1:]) + " |",
        "|---|" + "---|" * (len(settings) - 1),
    ]
    for stage, sub in SMALL_STAGES:
        base = digests(folder / first.name / sub)
        cells = []
        for other in settings[1:]:
            theirs = digests(folder / other.name / sub)
            common = set(base) & set(theirs)
            cells.append(f"{sum(base[n] == theirs[n] for n in common)} / {len(common)}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    path = out.with_name(out.name + "-small-chain.md")
    path.write_text("\n".join([*lines, ""]), encoding="utf-8")
    print(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--isa", nargs="*", default=[], help="ATEN_CPU_CAPABILITY values: avx2, default")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (caps the threads per job)")
    parser.add_argument("--out", default="docs/reproducibility-spread",
                        help="path stem of the .csv and .md (default: docs/reproducibility-spread)")
    parser.add_argument("--report-only", action="store_true", help="only compare finished runs")
    parser.add_argument("--small-chain", action="store_true",
                        help="tests/test_reproducible.py's small chain per setting instead (minutes)")
    args = parser.parse_args()
    if len(args.threads) < 2 or max(args.threads) > args.cores:
        parser.error("give two or more thread counts, none above --cores")
    threads = [Setting(t) for t in args.threads]
    isas = [Setting(args.threads[0], isa) for isa in args.isa]
    if args.small_chain:
        small_chain([*threads, *isas], ROOT / args.out)
        return
    times: dict[Setting, float | None] = {}
    for setting in (*threads, *isas):
        if args.report_only or setting.done:
            times[setting] = float(setting.wall_file.read_text()) if setting.wall_file.is_file() else None
        else:
            times[setting] = run_once(setting, args.cores)
    out = ROOT / args.out
    table = spread_table(threads, isas)
    csv_path = out.with_suffix(".csv")
    table.to_csv(csv_path, index=False, float_format="%.6g")
    write_markdown(out.with_suffix(".md"), args, threads, isas, times, table, csv_path)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
