"""Config loading: both shipped configs pass; each kind of mistake names its key."""

from pathlib import Path

import pytest
import yaml

from emergent_misalignment.config import Job, check_config, group_order, jobs, load_config, section
from emergent_misalignment.errors import ConfigError
from emergent_misalignment.train import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


def embedded() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    config = load_config(ROOT / "config" / name)
    assert jobs(config)


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
        assert sorted(j.seed for j in coder if j.dataset == dataset) == [0, 1, 2, 3, 4, 5]


def test_unknown_top_level_key_is_named():
    config = embedded() | {"trian": {}}
    with pytest.raises(ConfigError, match="trian"):
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
    assert len(found) == 1 + 4 * 3
    assert group_order(config) == ["base", "insecure", "secure", "educational", "bad_health_advice"]


def test_yaml_syntax_error_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
