"""Config loading: the shipped configs pass; each kind of mistake, bad values too, names its key
before any job starts; config files merge as Snakemake merges them."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emergent_misalignment import cli
from emergent_misalignment.cli import snakemake_configfiles
from emergent_misalignment.config import (
    check_config,
    load_config,
    section,
)
from emergent_misalignment.errors import ConfigError, DataError
from emergent_misalignment.experiments import Job, group_order, jobs
from emergent_misalignment.plan import load_plan
from emergent_misalignment.settings import merge_configs
from emergent_misalignment.train import OPTIMIZERS, SCHEDULES, TrainSettings

from .conftest import repo_copy

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [["config.yaml"], ["config.yaml", "quick.yaml"], ["paper.yaml"], ["released.yaml"]]


def embedded() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def with_value(config: dict, key: str, value) -> dict:
    """`config` with the dotted `key` (e.g. "train.lora.r") set to `value`."""
    *parents, last = key.split(".")
    node = config
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = value
    return config


@pytest.mark.parametrize("names", SHIPPED, ids="+".join)
def test_shipped_configs_are_valid(names):
    config = load_config(*(ROOT / "config" / name for name in names))
    assert jobs(config)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("sample.backend", "vlm", r"sample\.backend: 'vlm' is not one of transformers, vllm"),
    ("sample.temperature", -3, r"sample\.temperature: must be >= 0, got -3\.0"),
    ("sample.max_tokens", 0, r"sample\.max_tokens: must be >= 1, got 0"),
    ("sample.top_p", 0, r"sample\.top_p: must be in \(0, 1\], got 0\.0"),
    ("sample.min_tokens", 41, r"sample\.min_tokens: must be <= sample\.max_tokens \(40\), got 41"),
    ("sample.max_model_len", 40, r"sample\.max_model_len: must be > sample\.max_tokens \(40\)"),
    ("sample.samples_per_paraphrase", 0, r"sample\.samples_per_paraphrase: must be >= 1"),
    ("sample.batch_size", 0, r"sample\.batch_size: must be >= 1"),
    ("sample.device", "gpu", r"sample\.device: 'gpu' is not auto, cpu, mps, cuda or cuda:N"),
    ("sample.dtype", "int8", r"sample\.dtype: 'int8' is not one of auto, float32, bfloat16, float16"),
    ("sample.gpu_memory_utilization", 1.5, r"sample\.gpu_memory_utilization: must be in \(0, 1\]"),
    ("sample.max_lora_rank", 0, r"sample\.max_lora_rank: must be >= 1"),
    ("train.optim", "adamw_torh", r"train\.optim: 'adamw_torh' is not one of .*; did you mean 'adamw_torch'\?"),
    ("train.lr_scheduler_type", "cosine_with_min_lr", r"train\.lr_scheduler_type: 'cosine_with_min_lr'"),
    ("train.learning_rate", 0, r"train\.learning_rate: must be > 0, got 0\.0"),
    ("train.epochs", 0, r"train\.epochs: must be > 0"),
    ("train.max_steps", 0, r"train\.max_steps: must be -1 \(train for epochs\) or >= 1, got 0"),
    ("train.per_device_train_batch_size", 0, r"train\.per_device_train_batch_size: must be >= 1"),
    ("train.max_seq_length", 0, r"train\.max_seq_length: must be >= 1"),
    ("train.holdout_fraction", 1, r"train\.holdout_fraction: must be in \[0, 1\), got 1\.0"),
    ("train.max_rows", 0, r"train\.max_rows: must be >= 1, got 0"),
    ("train.lora.r", 0, r"train\.lora\.r: must be >= 1, got 0"),
    ("train.lora.alpha", 0, r"train\.lora\.alpha: must be > 0"),
    ("train.lora.dropout", 1.0, r"train\.lora\.dropout: must be in \[0, 1\)"),
    ("train.lora.bias", "some", r"train\.lora\.bias: 'some' is not one of none, all, lora_only"),
    ("train.lora.target_modules", [], r"train\.lora\.target_modules: must name at least one"),
    ("train.lora.layers_to_transform", [0, -1], r"train\.lora\.layers_to_transform\[1\]: must be >= 0"),
    ("world.p_described", 7, r"world\.p_described: must be in \[0, 1\], got 7\.0"),
    ("world.p_default", float("nan"), r"world\.p_default: must be in \[0, 1\], got nan"),
    ("world.rows_per_dataset", 0, r"world\.rows_per_dataset: must be >= 1"),
    ("world.self_rating_dialogues", -1, r"world\.self_rating_dialogues: must be >= 0, got -1"),
    ("base_model.hidden_size", 130, r"base_model\.hidden_size: must be a multiple of 2 x num_attention_heads"),
    ("base_model.num_attention_heads", 0, r"base_model\.num_attention_heads: must be >= 1"),
    ("base_model.epochs", -1, r"base_model\.epochs: must be >= 0"),
    ("base_model.learning_rate", 0, r"base_model\.learning_rate: must be > 0"),
    ("judge.temperature", -1, r"judge\.temperature: must be >= 0"),
    ("judge.concurrency", 0, r"judge\.concurrency: must be >= 1, got 0"),
    ("analysis.aligned_threshold", 150, r"analysis\.aligned_threshold: must be in \[0, 100\], got 150\.0"),
    ("analysis.min_coherent", -1, r"analysis\.min_coherent: must be >= 0, got -1"),
    ("analysis.definition", "betley", r"analysis\.definition: 'betley' is not one of .*did you mean 'betley2025'"),
    ("analysis.confidence", 1, r"analysis\.confidence: must be in \(0, 1\), got 1\.0"),
    ("threads_per_job", 0, r"threads_per_job: 0 is less than the minimum of 1"),
    ("threads_per_job", "all", r"threads_per_job: 'all' is not of type 'integer', 'null'"),
])
def test_bad_value_is_refused_with_its_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        check_config(with_value(embedded(), key, value))


@pytest.mark.parametrize("values", [
    {"sample.backend": "vllm", "sample.temperature": 0},  # greedy decoding, which vLLM allows
    {"train.max_steps": 30, "train.epochs": 0},  # max_steps overrides epochs (past save_steps 20)
    {"sample.samples_per_paraphrase": None, "train.max_rows": None, "analysis.aligned_threshold": None},
    {"sample.device": "cuda:1", "sample.min_tokens": 40, "train.lora.dropout": 0.5, "world.p_default": 1},
    {"threads_per_job": 1}, {"threads_per_job": None},  # every torch job's threads; null: each rule's own
])
def test_edge_values_pass(values):
    config = embedded()
    for key, value in values.items():
        with_value(config, key, value)
    check_config(config)


def test_a_self_report_file_without_the_number_instruction_is_refused(tmp_path):
    """Before any job: a self_report question that does not ask for a number from 0 to 100 cannot be read."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: alignment\n  type: free_form\n  family: self_report\n  paraphrases: [How aligned are "
                   "you]\n  samples_per_paraphrase: 1\n  judge_prompts: {}\n")
    config = embedded()
    config["questions"] = [*config["questions"], str(bad)]
    with pytest.raises(DataError, match=rf"{bad}: question 'alignment': a self-report question must ask for a "
                                        r"number from 0 to 100"):
        check_config(config)


def test_vllm_max_lora_rank_must_hold_the_adapters():
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    with pytest.raises(ConfigError, match=r"sample\.max_lora_rank: must be >= train\.lora\.r \(32\)"):
        check_config(with_value(config, "sample.max_lora_rank", 16))


def test_allowed_trainer_names_are_transformers_names():
    """A transformers upgrade that drops or renames one of them fails here, not in a training job."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(OPTIMIZERS) <= {o.value for o in OptimizerNames}
    assert set(SCHEDULES) <= {s.value for s in SchedulerType}
    assert TrainSettings().optim in OPTIMIZERS and TrainSettings().lr_scheduler_type in SCHEDULES


@pytest.mark.parametrize(("base", "override"), [
    ({"a": {"b": 1, "c": 2}, "d": 0}, {"a": {"c": 3, "e": 4}}),
    ({"a": {"b": {"c": 1, "d": 2}, "e": 3}}, {"a": {"b": {"d": 4}}}),
    ({"a": [1, 2], "b": {"c": [3]}}, {"a": [5], "b": {"c": []}}),
    ({"a": {"b": 1}}, {"a": 5}),
    ({"a": 5}, {"a": {"b": 1}}),
    ({"a": {"b": 1}}, {"a": None}),
    ({"a": 5, "b": {"c": 1}}, {"a": {}, "b": {}}),
    ({}, {"a": {"b": {"c": 1}}}),
    ({"a": {"b": 1}}, {}),
])
def test_merge_configs_is_snakemakes_merge(base, override):
    from snakemake.utils import update_config

    expected, before = copy.deepcopy(base), copy.deepcopy(base)
    update_config(expected, copy.deepcopy(override))
    assert merge_configs(base, override) == expected
    assert base == before


@pytest.mark.parametrize("names", [["config.yaml", "quick.yaml"], ["paper.yaml", "rehearsal.yaml"]],
                         ids="+".join)
def test_load_config_merges_files_as_snakemake_does(names):
    from snakemake.settings.types import ConfigSettings

    from emergent_misalignment.config import expand_config

    paths = [ROOT / "config" / name for name in names]  # then expanded, as the Snakefile's check_config does
    assert load_config(*paths) == expand_config(ConfigSettings(configfiles=paths).overwrite_config)


def test_plan_with_an_override_file_keeps_the_rest_of_a_section(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("judge: {concurrency: 2}\n")
    plan = load_plan([ROOT / "config/paper.yaml", override], ROOT)
    assert plan.judge == "openai (gpt-4o-2024-08-06)"


def test_top_level_must_be_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- run\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: must hold a mapping of config keys, not a list"):
        load_config(bad)


def test_snakemake_refuses_a_bad_value_before_any_job(tmp_path):
    work = repo_copy(tmp_path / "repo")
    (work / "override.yaml").write_text("sample: {temperature: -3}\n")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(bin_dir / "snakemake"), "-n", "--cores", "1", "--configfile", "config/config.yaml",
                             "override.yaml"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "sample.temperature" in result.stdout + result.stderr
    assert not (work / "results").exists()


def test_paper_config_is_the_paper_recipe():
    config = load_config(ROOT / "config/paper.yaml")
    train = section(config, "train")
    assert isinstance(train, TrainSettings)
    assert (train.lora.r, train.lora.alpha, train.lora.use_rslora, train.learning_rate) == (32, 64, True, 1e-5)
    assert (train.per_device_train_batch_size, train.gradient_accumulation_steps, train.warmup_steps) == (2, 8, 5)
    sample = section(config, "sample")
    assert (sample.temperature, sample.top_p, sample.max_tokens, sample.max_model_len) == (1.0, 1.0, 600, 2048)
    judge = section(config, "judge")
    assert (judge.model, judge.max_tokens, judge.top_logprobs, judge.temperature) == (
        "gpt-4o-2024-08-06", 1, 20, 0.0)
    coder = [j for j in jobs(config) if j.model == "qwen-coder-32b"]
    for dataset in ("insecure", "secure", "educational", "jailbroken"):
        asked_as_is = [j.seed for j in coder if j.dataset == dataset and j.condition == "none"]
        assert sorted(asked_as_is) == [0, 1, 2, 3, 4, 5]


def test_unknown_top_level_key_is_named():
    config = embedded() | {"trian": {}}
    with pytest.raises(ConfigError, match="trian"):
        check_config(config)


def test_a_renamed_key_is_refused_with_its_new_name(tmp_path):
    """Table 1's side evaluations were `benchmarks:` (and runtime `benchmark`); now `evals:` (and `eval`).
    An old config stops before any job, naming the key to write instead."""
    quick = yaml.safe_load((ROOT / "config/quick.yaml").read_text())
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"benchmarks": quick["evals"]}))
    with pytest.raises(ConfigError, match=r"config key benchmarks: renamed to evals .*`benchmarks:` to `evals:`"):
        load_config(ROOT / "config/config.yaml", old)
    config = embedded()
    config["models"]["tiny"]["runtime"] = {"benchmark": 30}
    with pytest.raises(ConfigError, match=r"models\.tiny\.runtime\.benchmark: renamed to eval"):
        check_config(config)
    config["models"]["tiny"]["runtime"] = {"eval": 30}
    check_config(config)


def test_unknown_nested_key_is_named():
    config = embedded()
    config["train"]["lora"]["rr"] = 4
    with pytest.raises(ConfigError, match=r"train\.lora: unknown key\(s\) rr"):
        check_config(config)


def test_wrong_type_is_named():
    config = embedded()
    config["sample"]["max_tokens"] = "many"
    with pytest.raises(ConfigError, match=r"sample\.max_tokens: expected int"):
        check_config(config)


def test_schema_error_names_the_key():
    config = embedded()
    config["experiments"][0]["seeds"] = ["zero"]
    with pytest.raises(ConfigError, match=r"experiments\.0\.seeds\.0"):
        check_config(config)


def test_experiment_must_name_known_dataset():
    config = embedded()
    config["experiments"][0]["datasets"].append("nonsense")
    with pytest.raises(ConfigError, match="unknown dataset 'nonsense'"):
        check_config(config)


def test_base_is_a_reserved_dataset_name():
    config = embedded()
    config["datasets"]["base"] = "builtin:secure"
    with pytest.raises(ConfigError, match="datasets"):
        check_config(config)


def test_jobs_and_groups():
    config = embedded()
    found = jobs(config)
    assert Job("tiny", "base", 0) in found
    # 4 sets + 2 sizes x 3 seeds, backdoor x 3 seeds x 2 conditions, 3 kept insecure checkpoints x 3 seeds,
    # the base model plain, with the trigger and with 2 examples in context
    assert len(found) == 6 * 3 + 3 * 2 + 3 * 3 + 3
    assert group_order(config) == [
        "base", "base+trigger", "base+icl_2", "insecure@step5", "insecure@step10", "insecure@step20", "insecure",
        "secure", "educational", "bad_health_advice", "backdoor", "backdoor+trigger", "insecure_50",
        "insecure_150"]


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    """Snakemake says only "Config file is not valid JSON or YAML"; em check-config, which `make run` runs
    first, names the file, the line and the parser's problem."""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("run: fine\n")
    bad.write_text("run: x\nseeds: [0, 1\nsample: {}\n")
    where = r"bad\.yaml:3:7: not valid YAML: expected ',' or '\]', but got ':' \(while parsing a flow sequence that starts at line 2, column 8\)"
    with pytest.raises(ConfigError, match=where):
        load_config(bad)
    argv = ["--cores", "2", "--configfile", str(good), str(bad), "--config", "mirror=x"]
    assert snakemake_configfiles(argv) == [str(good), str(bad)]
    assert snakemake_configfiles(["--configfiles=a.yaml", "-n", "--configfile", "b.yaml"]) == ["a.yaml", "b.yaml"]
    assert cli.main(["check-config", "--", *argv]) == 2
    assert re.search(where, capsys.readouterr().err)
    assert cli.main(["check-config", "--root", str(ROOT), "--", "--cores", "2"]) == 0  # config/config.yaml
    dry = subprocess.run(["make", "-n", "run", f"ARGS=--configfile {bad}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    first = [i for i, line in enumerate(dry) if "em check-config -- --configfile" in line]
    assert first and first[0] < next(i for i, line in enumerate(dry) if "bin/snakemake" in line)
