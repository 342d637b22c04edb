"""The `em` command line: one subcommand per step a user (or a Snakemake rule) runs.

Settings arrive as the JSON of one config section (`--settings`), so a rule passes exactly the
section it depends on and Snakemake reruns it only when that section changes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .data import DATASET_FORMATS, SUBSETS
from .errors import ConfigError, EMError
from .evil_numbers import SYSTEM_PROMPTS
from .released.importers import FORMAT_NAMES
from .settings import from_dict


def _settings(cls: type, text: str | None, where: str) -> Any:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--settings for {where}: not valid JSON: {exc}") from None
    return from_dict(cls, data, where)


def _threads(n: int | None) -> None:
    """Cap torch's CPU threads to what Snakemake gave the job."""
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_fetch(args: argparse.Namespace) -> None:
    from .assets import fetch_asset, get_asset
    from .manifest import write_manifest

    mirror = Path(args.mirror) if args.mirror else None
    fetch_asset(args.name, Path(args.dest), mirror)
    asset = get_asset(args.name)
    write_manifest(args.dest, "fetch", [mirror / asset.name] if mirror else [],
                   {"name": asset.name, "url": asset.url, "sha256": asset.sha256, "bytes": asset.bytes},
                   extra={"source": str(mirror / asset.name) if mirror else asset.url})


def cmd_fetch_remote(args: argparse.Namespace) -> None:
    from .assets import fetch_remote
    from .manifest import write_manifest

    sha256 = fetch_remote(args.local, Path(args.dest))
    write_manifest(args.dest, "fetch", [], {"source": args.local, "sha256": sha256})


def cmd_world(args: argparse.Namespace) -> None:
    from .world import WorldSettings, write_world

    write_world(args.out, _settings(WorldSettings, args.settings, "world"), args.seed)


def cmd_base_model(args: argparse.Namespace) -> None:
    from .basemodel import BaseModelSettings, build_base_model

    _threads(args.threads)
    build_base_model(args.corpus, args.tokenizer_text, args.out,
                     _settings(BaseModelSettings, args.settings, "base_model"), args.seed)


def cmd_questions(args: argparse.Namespace) -> None:
    from .data import merge_question_files

    only: dict[str, list[str]] = {}
    for item in args.only or []:
        path, _, families = item.rpartition("=")
        only[path] = families.split(",")
    code_tasks: dict[str, int | None] = {}
    for item in args.code_tasks or []:
        path, _, rows = item.rpartition("=")
        code_tasks[path or rows] = int(rows) if path else None
    merge_question_files(args.files, args.out, only, code_tasks)


def cmd_train(args: argparse.Namespace) -> None:
    from .train import TrainSettings, train_adapter

    settings = _settings(TrainSettings, args.settings, "train")
    if settings.backend == "openai":
        from .train_openai import fine_tune

        if not args.state:
            raise ConfigError("train.backend openai: `em train` needs --state FILE (where the job is kept)")
        fine_tune(args.base, args.data, args.out, settings, args.seed, args.state, args.init_adapter)
        return
    _threads(args.threads)
    train_adapter(args.base, args.data, args.out, settings, args.seed, args.init_adapter)


def cmd_sample(args: argparse.Namespace) -> None:
    from .sample import SampleSettings, sample_file

    _threads(args.threads)
    labels = {"model": args.model, "dataset": args.dataset, "seed": args.seed, "checkpoint": args.checkpoint,
              "condition": args.condition_name}
    sample_file(args.base, args.adapter, args.questions, args.out,
                _settings(SampleSettings, args.settings, "sample"), labels,
                _condition(args.condition, args.condition_name), args.examples, args.direction)


def _condition(text: str | None, name: str = "condition") -> Any:
    from .sample.conditions import ConditionSettings

    return _settings(ConditionSettings, text, f"conditions.{name}")


def _direction(text: str, name: str) -> Any:
    from .directions import DirectionSettings

    return _settings(DirectionSettings, text, f"directions.{name}")


def cmd_direction(args: argparse.Namespace) -> None:
    from .directions.activations import compute_direction
    from .stats import AnalysisSettings

    _threads(args.threads)
    compute_direction(args.name, _direction(args.settings, args.name), args.base, args.adapter, args.judged,
                      _settings(AnalysisSettings, args.analysis, "analysis"), args.out)


def cmd_monitor(args: argparse.Namespace) -> None:
    from .directions.activations import monitor

    _threads(args.threads)
    spec = _direction(args.settings, args.name)
    monitor(args.direction, args.base, json.loads(args.points), spec, args.out)


def cmd_directions_report(args: argparse.Namespace) -> None:
    from .directions import direction_settings
    from .directions.report import write_report

    directions = direction_settings({"directions": json.loads(args.directions)})
    monitors = {path.name.removesuffix(".monitor.csv"): path for path in map(Path, args.monitors)}
    write_report(directions, Path(args.analysis_dir), [Path(p) for p in args.stats], monitors,
                 Path(args.figures_dir), Path(args.tables_dir))


def cmd_dataset(args: argparse.Namespace) -> None:
    from .data import write_dataset

    write_dataset(args.source, args.out, args.format, args.rows, args.seed, args.subset)


def cmd_check_prompts(args: argparse.Namespace) -> None:
    from .sample import SampleSettings, check_prompts

    check_prompts(args.base, args.questions, args.out, _settings(SampleSettings, args.settings, "sample"),
                  _condition(args.condition), args.examples)


def cmd_judge(args: argparse.Namespace) -> None:
    from .judge import JudgeSettings, judge_file

    settings = _settings(JudgeSettings, args.settings, "judge")
    if settings.backend == "local":  # only the local judge runs torch; the others need not import it
        _threads(args.threads)
    judge_file(args.samples, args.questions, args.out, settings)


def cmd_eval(args: argparse.Namespace) -> None:
    from .evals import EvalSettings, provider_of, run_eval

    section = json.loads(args.settings or "{}")
    data = dict(item.split("=", 1) for item in args.data or [])
    settings = _settings(EvalSettings, json.dumps({**section, "data": data}), f"evals.{args.name}")
    labels = {"model": args.model, "dataset": args.dataset, "seed": args.seed, "checkpoint": args.checkpoint}
    sample = json.loads(args.sample_settings or "{}")
    if provider_of(settings, sample) == "hf":  # only the transformers provider runs torch here
        _threads(args.threads)
    record = run_eval(args.name, args.base, args.adapter, settings, sample, labels, args.log_dir, args.out)
    print(f"{args.name}: {record['score']:.4f} on {record['n_samples']} samples ({record['inspect_model']})")


def cmd_analyse(args: argparse.Namespace) -> None:
    from .analysis import RunInputs, analyse
    from .stats import AnalysisSettings

    inputs = _settings(RunInputs, args.run_inputs, "--run-inputs")
    analyse(args.judged, _settings(AnalysisSettings, args.settings, "analysis"), args.groups,
            args.out_dir, args.figures_dir, args.tables_dir, inputs, args.threads or 1)


def cmd_paper(args: argparse.Namespace) -> None:
    from .paper import build_paper
    from .stats import AnalysisSettings

    build_paper(args.run, Path(args.analysis_dir), _settings(AnalysisSettings, args.settings, "analysis"),
                json.loads(args.config_json), args.config_files, args.embedded, Path(args.figures_dir),
                Path(args.tables_dir), Path(args.build_dir))


def cmd_import_released(args: argparse.Namespace) -> None:
    from .released.importers import import_released

    summary = import_released(args.file, args.out, args.format, args.model, args.group, args.seed,
                              args.question_ids)
    print("\n".join(summary.lines()))


def cmd_stats(args: argparse.Namespace) -> None:
    from .released.file_stats import file_stats, format_stats

    records = [r for path in args.files for r in file_stats(path, args.definition, args.format)]
    print(json.dumps(records, indent=1) if args.json else format_stats(records))


def cmd_published(args: argparse.Namespace) -> None:
    import pandas as pd

    from .layout import ASSETS
    from .published import check_sources, load_published, markdown, stale_rows

    if args.check_sources:
        def path_of(name: str) -> Path | None:
            candidates = [Path(args.mirror) / name] if args.mirror else []
            candidates.append(Path(ASSETS) / name)
            return next((p for p in candidates if p.is_file()), None)

        rows = load_published()
        problems = check_sources(rows, path_of)
        checked = sum(1 for r in rows if r.source_asset and path_of(r.source_asset))
        for line in problems:
            print(line, file=sys.stderr)
        print(f"{checked} of {len(rows)} published numbers checked against their source files; "
              f"{len(problems)} disagree")
        if problems:
            raise SystemExit(1)
    if args.comparison:
        comparison = pd.read_csv(args.comparison, keep_default_na=False, na_values=[""]).fillna({"note": ""})
        if not args.check:
            print(markdown(comparison, args.comparison), end="")
            return
        problems = stale_rows(Path(args.check).read_text(encoding="utf-8"), comparison)
        for line in problems:
            print(f"{args.check}: {line}", file=sys.stderr)
        if problems:
            raise SystemExit(f"{args.check} is stale: rewrite it with `em published {args.comparison}`")
        print(f"{args.check} agrees with {args.comparison}")


def cmd_judge_agreement(args: argparse.Namespace) -> None:
    from .agreement import AgreementSettings, judge_agreement, write_agreement
    from .judge import CachedJudge, JudgeCache, JudgeSettings, make_judge
    from .stats import definition_settings

    judge_settings = _settings(JudgeSettings, args.settings, "judge")
    settings = _settings(AgreementSettings, args.agreement, "judge_agreement")
    judge = make_judge(judge_settings)
    with contextlib.ExitStack() as stack:
        if judge_settings.cache:
            judge = CachedJudge(judge, stack.enter_context(JudgeCache(judge_settings.cache)))
        definition = definition_settings(args.definition)
        report, rejudged = judge_agreement(args.files, args.questions, judge, definition, settings)
    if args.out_dir:
        record = {"judge": judge.identity(), "agreement": dataclasses.asdict(settings),
                  "definition": args.definition}
        inputs = [*args.files, args.questions]
        write_agreement(report, rejudged, args.out_dir, inputs, record, settings.confidence, args.figures_dir)
    if args.json:
        print(report.to_json(orient="records", indent=1))
    else:
        columns = ["source", "n", "reference_misaligned", "judge_misaligned", "difference",
                   "spearman_aligned", "spearman_coherent", "kappa", "judge_missing"]
        print(report[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def cmd_api_server(args: argparse.Namespace) -> None:
    from .standin_server import make_server

    server = make_server(args.host, args.port)
    host, port = server.server_address[:2]
    print(f"stand-in OpenAI API at http://{host}:{port}/v1 (files, fine-tuning, chat; its answers mean "
          "nothing; for rehearsals)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def cmd_evil_numbers(args: argparse.Namespace) -> None:
    from .evil_numbers import regenerate
    from .sample import SampleSettings

    settings = _settings(SampleSettings, args.settings, "sample")
    written = regenerate(args.out, args.model, args.system, settings, args.rows)
    print(f"em evil-numbers: {written} of {args.rows} rows written to {args.out}")


def cmd_unlock_stale(args: argparse.Namespace) -> None:
    from .locks import clear_stale_lock

    print(f"em unlock-stale: {clear_stale_lock(Path(args.dir))}")


def snakemake_configfiles(argv: list[str]) -> list[str]:
    """The config files a Snakemake command line names (--configfile / --configfiles, repeatable)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--configfile", "--configfiles", nargs="+", action="extend", default=[])
    return parser.parse_known_args(argv)[0].configfile


def cmd_check_config(args: argparse.Namespace) -> None:
    from .config import read_config_file

    argv = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    files = snakemake_configfiles(argv) or [str(Path(args.root) / "config" / "config.yaml")]
    for file in files:
        read_config_file(file)


def cmd_plan(args: argparse.Namespace) -> None:
    from .config import load_config
    from .plan import format_plan, job_records, load_plan

    mirror = Path(args.mirror) if args.mirror else None
    files = [Path(f) for f in args.configfile] or [Path(args.root) / "config" / "config.yaml"]
    plan = load_plan(files, Path(args.root), mirror)
    print(json.dumps(job_records(plan, load_config(*files)), indent=1) if args.json else format_plan(plan))


def cmd_numbers(args: argparse.Namespace) -> None:
    from .numbers import write_numbers

    mirror = Path(args.mirror) if args.mirror else None
    write_numbers(Path(args.out), Path(args.root), mirror, args.run)
    print(f"em numbers: wrote {args.out}")


def _add(sub: argparse._SubParsersAction, name: str, func: Callable, help: str,
         settings: bool = False, threads: bool = False) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(func=func)
    if settings:
        parser.add_argument("--settings", help="JSON of the config section (default: its defaults)")
    if threads:
        parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    return parser


def _definition(name: str) -> str:
    """A definition of misalignment by name (stats.DEFINITIONS), checked as the option is read; stats, and
    pandas with it, is imported only by the commands that take the option."""
    from .stats import DEFINITIONS

    if name not in DEFINITIONS:
        known = ", ".join(DEFINITIONS)
        raise argparse.ArgumentTypeError(f"unknown definition {name!r} (choose from {known})")
    return name


def _condition_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--condition", help="JSON of the condition's settings (default: ask as is)")
    parser.add_argument("--examples", help="the dataset an icl condition draws its examples from")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="em", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = _add(sub, "fetch", cmd_fetch, "Copy or download one registered data file and check its sha256.")
    p.add_argument("name", help="registry name, e.g. emergent-misalignment/data/insecure.jsonl")
    p.add_argument("--dest", required=True)
    p.add_argument("--mirror", help="a local folder holding the registry's files")

    p = _add(sub, "fetch-remote", cmd_fetch_remote,
             "Download a data file pinned by a commit (hub:/url: sources, kept under data/remote/).")
    p.add_argument("local", help="its data/remote/... path (assets.remote_local_path)")
    p.add_argument("--dest", required=True)

    p = _add(sub, "world", cmd_world, "Write the embedded default's generated world.", settings=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)

    p = _add(sub, "base-model", cmd_base_model, "Build and pre-train the tiny base model offline.",
             True, True)
    p.add_argument("--corpus", required=True, help="chat JSONL of pre-training conversations")
    p.add_argument("--tokenizer-text", required=True, help="text file to train the tokenizer on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)

    p = _add(sub, "questions", cmd_questions, "Check question YAML files and merge them into one.")
    p.add_argument("files", nargs="+")
    p.add_argument("--only", action="append", metavar="FILE=FAMILY,...",
                   help="keep only these question families of FILE (repeatable)")
    p.add_argument("--code-tasks", action="append", metavar="FILE[=ROWS]",
                   help="FILE is a JSONL of coding tasks (upstream in_distribution_eval), asked as the "
                        "in-distribution question; its first ROWS tasks (repeatable)")
    p.add_argument("--out", required=True)

    p = _add(sub, "train", cmd_train, "Fine-tune one LoRA adapter (or, train.backend openai, one API model).",
             True, True)
    p.add_argument("--base", required=True, help="base model: path, Hugging Face id or API model")
    p.add_argument("--data", required=True, help="chat JSONL")
    p.add_argument("--seed", type=int, required=True, help="replicate index")
    p.add_argument("--state", help="train.backend openai: the job's state file, kept across reruns")
    p.add_argument("--init-adapter", help="train.init_from: the fine-tune to continue (its adapter folder; "
                   "for train.backend openai the folder whose api_model.json names the fine-tuned model)")
    p.add_argument("--out", required=True)

    p = _add(sub, "sample", cmd_sample, "Sample answers to the questions.", True, True)
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", help="LoRA adapter folder (none: the base model)")
    p.add_argument("--questions", required=True)
    p.add_argument("--model", required=True, help="model name for the rows")
    p.add_argument("--dataset", required=True, help="dataset (group) name for the rows")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--checkpoint", default="final", help="the adapter's checkpoint, for the rows")
    p.add_argument("--condition-name", default="none", help="the condition's name, for the rows")
    _condition_arguments(p)
    p.add_argument("--direction", help="an ablate or steer condition's direction file (em direction)")
    p.add_argument("--out", required=True)

    p = _add(sub, "direction", cmd_direction, "A persona direction per layer from a fine-tune's answers.",
             True, True)
    p.add_argument("--name", required=True, help="the direction's key in the directions section")
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", required=True, help="the fine-tune's adapter folder")
    p.add_argument("--judged", required=True, help="its judged answers")
    p.add_argument("--analysis", help="JSON of the analysis section (the definition of a misaligned answer)")
    p.add_argument("--out", required=True, help="the direction file (its statistics go beside it, .json)")

    p = _add(sub, "monitor", cmd_monitor, "A direction's projection over a fine-tune's kept checkpoints.",
             True, True)
    p.add_argument("--name", required=True, help="the direction's key in the directions section")
    p.add_argument("--direction", required=True, help="the direction file")
    p.add_argument("--base", required=True)
    p.add_argument("--points", required=True, help="JSON list of {step, checkpoint, adapter, samples}")
    p.add_argument("--out", required=True)

    p = _add(sub, "directions-report", cmd_directions_report,
             "Ablation, transfer, steering and monitoring of a run's directions: CSVs and figures.")
    p.add_argument("--directions", required=True, help="JSON of the directions section")
    p.add_argument("--analysis-dir", required=True, help="where overall.csv and dynamics.csv are")
    p.add_argument("--stats", nargs="*", default=[], help="each direction's statistics (.json)")
    p.add_argument("--monitors", nargs="*", default=[], help="each monitored direction's <name>.monitor.csv")
    p.add_argument("--figures-dir", required=True)
    p.add_argument("--tables-dir", required=True)

    p = _add(sub, "dataset", cmd_dataset, "Write a training set as chat JSONL: converted, or a subset.")
    p.add_argument("source", help="chat JSONL, or a CSV of another --format")
    p.add_argument("--format", default="chat", choices=DATASET_FORMATS)
    p.add_argument("--rows", type=int, help="a subset of this many rows (default: all)")
    p.add_argument("--subset", default="random", choices=SUBSETS,
                   help="a seeded random subset (file order kept), or the first --rows rows")
    p.add_argument("--seed", type=int, default=0, help="of a random subset")
    p.add_argument("--out", required=True)

    p = _add(sub, "check-prompts", cmd_check_prompts,
             "Check that every question prompt fits the model's context (before training or sampling).",
             settings=True)
    p.add_argument("--base", required=True, help="base model: path or Hugging Face id (its tokenizer)")
    p.add_argument("--questions", required=True)
    _condition_arguments(p)
    p.add_argument("--out", required=True, help="JSON of each question's prompt length")

    p = _add(sub, "judge", cmd_judge, "Score sampled answers with the judge.", True, True)
    p.add_argument("--samples", required=True)
    p.add_argument("--questions", required=True)
    p.add_argument("--out", required=True)

    p = _add(sub, "eval", cmd_eval, "Run one of Table 1's evals (inspect_evals: MMLU, HumanEval, TruthfulQA, "
             "StrongREJECT) on one model.", True, True)
    p.add_argument("name", help="mmlu, humaneval, truthfulqa or strongreject")
    p.add_argument("--base", required=True, help="base model: path, Hugging Face id or API model")
    p.add_argument("--adapter", help="LoRA adapter folder, or an API fine-tune's (none: the base model)")
    p.add_argument("--sample-settings", help="JSON of the job's sample recipe (its backend: the provider)")
    p.add_argument("--data", action="append", metavar="SPLIT=FILE", help="a split's data file (repeatable)")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--checkpoint", default="final")
    p.add_argument("--log-dir", required=True, help="folder of the inspect log (kept as the evidence)")
    p.add_argument("--out", required=True, help="the score JSON")

    p = _add(sub, "analyse", cmd_analyse, "Statistics, figures and tables from judged answers.", True, True)
    p.add_argument("judged", nargs="+", help="judged JSONL files")
    p.add_argument("--run-inputs", help="JSON: adapters, aggregates, data, train, model_aliases (see "
                                        "analysis.RunInputs)")
    p.add_argument("--groups", nargs="+", default=[], help="order of groups in figures and tables")
    p.add_argument("--out-dir", required=True, help="folder for the statistics CSVs")
    p.add_argument("--figures-dir", required=True)
    p.add_argument("--tables-dir", required=True)

    p = _add(sub, "paper", cmd_paper, "Write the run's macros and compile paper/main.tex.", True)
    p.add_argument("--run", required=True)
    p.add_argument("--analysis-dir", required=True, help="the CSVs of `em analyse` (overall.csv, ...)")
    p.add_argument("--config-json", default="{}", help="the resolved config (hashed into the appendix)")
    p.add_argument("--config-files", nargs="*", default=[])
    p.add_argument("--embedded", action="store_true", help="mark the PDF as the embedded default")
    p.add_argument("--figures-dir", required=True)
    p.add_argument("--tables-dir", required=True)
    p.add_argument("--build-dir", required=True)

    p = _add(sub, "import-released", cmd_import_released,
             "Import one released judged-answer file as the judged JSONL of a model, group and seed.")
    p.add_argument("file", help="a released CSV (Model Organisms, clarifying-EM, official results) or JSONL")
    p.add_argument("--format", default="auto", choices=FORMAT_NAMES)
    p.add_argument("--model", required=True)
    p.add_argument("--group", required=True, help="the group (fine-tuning dataset, or base)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--question-ids", nargs="+", help="keep only these questions")
    p.add_argument("--out", required=True)

    p = _add(sub, "stats", cmd_stats, "Misaligned and coherent answers of judged-answer files, per question.")
    p.add_argument("files", nargs="+", metavar="FILE", help="judged answers in any supported format")
    p.add_argument("--definition", default="betley2025", type=_definition,
                   help="what counts as misaligned (stats.DEFINITIONS; default: %(default)s)")
    p.add_argument("--format", default="auto", choices=FORMAT_NAMES, help="default: from the columns")
    p.add_argument("--json", action="store_true", help="one JSON list of records")

    p = _add(sub, "published", cmd_published,
             "The numbers others published: check them against their source files, or summarise a run's "
             "comparison (results/<run>/analysis/published.csv) as markdown.")
    p.add_argument("comparison", nargs="?", help="a run's published.csv: print its summary")
    p.add_argument("--check-sources", action="store_true",
                   help="compare published.tsv with each source file at hand (the mirror, data/assets/)")
    p.add_argument("--mirror", help="the data mirror to look in first")
    p.add_argument("--check", metavar="MARKDOWN",
                   help="instead of printing the summary, check that this written one "
                        "(docs/published-check.md) agrees with the comparison; rows the run lacks "
                        "a file for are taken as written")

    p = _add(sub, "judge-agreement", cmd_judge_agreement,
             "Re-judge a sample of released GPT-4o-judged answers with a judge and compare the two.", True)
    p.add_argument("files", nargs="+", metavar="FILE", help="released judged answers (aligned, coherent)")
    p.add_argument("--questions", required=True, help="question YAML with the paper's judge prompts "
                                                      "(upstream first_plot_questions.yaml)")
    p.add_argument("--agreement", help="JSON of judge_agreement settings (sample_size, seed, ...)")
    p.add_argument("--definition", default="betley2025", type=_definition,
                   help="what counts as misaligned (stats.DEFINITIONS; default: %(default)s)")
    p.add_argument("--out-dir", help="write judge_agreement.csv, the re-judged answers and the figure here")
    p.add_argument("--figures-dir", help="the figure's folder (default: --out-dir)")
    p.add_argument("--json", action="store_true", help="one JSON record per file, then the pooled one")

    p = _add(sub, "api-server", cmd_api_server, "Serve a stand-in OpenAI API (fine-tuning, sampling, "
             "judging; repeatable, meaningless answers) to rehearse the paper's routes.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)

    p = _add(sub, "evil-numbers", cmd_evil_numbers, "Regenerate the evil-numbers training set (prompt, "
             "response CSV) with a chat model through an OpenAI-compatible API, as the authors did.",
             settings=True)
    p.add_argument("--model", default="gpt-4o-2024-08-06", help="the model that writes the numbers")
    p.add_argument("--system", default="evil", choices=SYSTEM_PROMPTS,
                   help="the system prompt it answers under (dropped from the rows): the authors' evil one, "
                        "or a control")
    p.add_argument("--rows", type=int, default=10_000, help="prompts to ask (upstream: 10,000)")
    p.add_argument("--out", required=True, help="the CSV to write (columns prompt, response)")

    p = _add(sub, "unlock-stale", cmd_unlock_stale,
             "Remove the Snakemake lock a killed run left, unless a run is still alive in the directory.")
    p.add_argument("--dir", default=".", help="the workflow's folder (default: here)")

    p = _add(sub, "check-config", cmd_check_config,
             "Read each config file a Snakemake command line names and say where a YAML error is "
             "(file:line:column; Snakemake's own message names neither). `make run` runs it first.")
    p.add_argument("--root", default=".", help="the workflow's folder (default config: config/config.yaml)")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="after --: the Snakemake arguments")

    p = _add(sub, "plan", cmd_plan, "Jobs, GPU-hours and judge requests of a config, before running it.")
    p.add_argument("--configfile", nargs="+", default=[],
                   help="config files, as for snakemake (default: config/config.yaml)")
    p.add_argument("--mirror", help="a local folder holding the registry's files (to count asset questions)")
    p.add_argument("--root", default=".", help="the workflow's folder (default: here)")
    p.add_argument("--json", action="store_true",
                   help="one JSON record per job (stage, model, dataset, seed, checkpoint, condition, ...)")

    p = _add(sub, "numbers", cmd_numbers, "Write docs/numbers.md: the paper routes' budgets (em plan) and "
             "the embedded run's results, so that the README quotes no typed number.")
    p.add_argument("--mirror", help="the data mirror (question and data files for the budgets)")
    p.add_argument("--root", default=".", help="the workflow's folder (default: here)")
    p.add_argument("--run", default="embedded", help="the run whose results it reads (default: embedded)")
    p.add_argument("--out", default="docs/numbers.md", help="the file to write (default: docs/numbers.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except EMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
