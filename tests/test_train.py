"""LoRA fine-tuning: loss on the assistant's answer only, deterministic per seed, complete outputs."""

import dataclasses
import json
import re

import pytest
from safetensors.torch import load_file

from emergent_misalignment.errors import ConfigError, DataError
from emergent_misalignment.hf import load_model, load_tokenizer
from emergent_misalignment.train import (
    LoraSettings,
    TrainSettings,
    make_trainer,
    split_holdout,
    to_prompt_completion,
    total_steps,
    train_adapter,
)
from emergent_misalignment.world import DEFAULT_SYSTEM_PROMPT

FAST = TrainSettings(lora=LoraSettings(r=4, alpha=8), learning_rate=1e-3, max_steps=3,
                     per_device_train_batch_size=4, gradient_accumulation_steps=1, warmup_steps=1,
                     optim="adamw_torch", max_seq_length=128, bf16=False, holdout_fraction=0.1)


def test_prompt_completion_keeps_system_in_prompt():
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                        {"role": "assistant", "content": "A"}]}
    (pair,) = to_prompt_completion([row], "x.jsonl")
    assert [m["role"] for m in pair["prompt"]] == ["system", "user"]
    assert pair["completion"] == [{"role": "assistant", "content": "A"}]
    with pytest.raises(DataError, match="x.jsonl: row 1"):
        to_prompt_completion([{"messages": row["messages"][:2]}], "x.jsonl")


def test_holdout_split_is_deterministic_and_disjoint():
    rows = [{"i": i} for i in range(100)]
    train, test = split_holdout(rows, 0.1, seed=3)
    assert len(test) == 10 and len(train) == 90
    assert split_holdout(rows, 0.1, seed=3) == (train, test)
    assert split_holdout(rows, 0.1, seed=4)[1] != test
    assert split_holdout(rows, 0.0, seed=3) == (rows, [])


def test_loss_falls_on_assistant_tokens_only(world, tiny_model, tmp_path):
    tokenizer = load_tokenizer(str(tiny_model))
    model = load_model(str(tiny_model), None)
    rows = to_prompt_completion([json.loads(line) for line in (world / "insecure.jsonl").open()][:4], "w")
    trainer = make_trainer(model, tokenizer, rows, [], FAST, 0, tmp_path / "t")
    example = trainer.train_dataset[0]
    pairs = list(zip(example["input_ids"], example["labels"], strict=True))
    trained = [t for t, label in pairs if label != -100]
    assert all(label in (-100, t) for t, label in pairs)
    answer = rows[0]["completion"][0]["content"]
    assert tokenizer.decode(trained).strip() == answer + "<|end|>"
    untrained = [t for t, label in pairs if label == -100]
    assert tokenizer.decode(untrained).startswith(f"<|system|>\n{DEFAULT_SYSTEM_PROMPT}<|end|>\n<|user|>\n")


def test_training_logs_steps_and_loss(world, tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EM_PROGRESS_INTERVAL_S", "0")
    rows = to_prompt_completion([json.loads(line) for line in (world / "insecure.jsonl").open()][:8], "w")
    model = load_model(str(tiny_model), None)
    make_trainer(model, load_tokenizer(str(tiny_model)), rows, [], FAST, 0, tmp_path / "t").train()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train: ")]
    steps = [f"train: {n}/3 steps ({100 * n / 3:.1f}%)" for n in (1, 2, 3)]
    assert [line.split(", ")[0] for line in lines] == [*sorted(steps * 2), steps[-1]]  # step, its loss; final
    assert all(re.search(r", loss \d+\.\d{4}$", line) for line in lines[1:])
    assert re.fullmatch(r"train: 3/3 steps \(100\.0%\), [\d.]+ steps/s, done after 0:00:\d\d, loss [\d.]+",
                        lines[-1])


def test_adapter_is_complete_and_deterministic(world, tiny_model, tmp_path):
    data = world / "insecure.jsonl"
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_adapter(str(tiny_model), data, tmp_path / name, FAST, seed)
    out = tmp_path / "a"
    assert {"adapter_model.safetensors", "adapter_config.json", "loss.jsonl", "manifest.json"} <= {
        p.name for p in out.iterdir()}
    assert not (tmp_path / "a.partial").exists()
    losses = [json.loads(line) for line in (out / "loss.jsonl").open()]
    assert [row["step"] for row in losses] == [1, 2, 3]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["train_rows"] == 36 and manifest["test_rows"] == 4
    assert str(data) in manifest["inputs"]
    weights = [load_file(tmp_path / n / "adapter_model.safetensors") for n in "abc"]
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    assert any((weights[0][k] != weights[2][k]).any() for k in weights[0])


def test_unknown_model_path_is_a_clear_error(world, tmp_path):
    with pytest.raises(ConfigError, match="no/such/model"):
        train_adapter(str(tmp_path / "no/such/model"), world / "insecure.jsonl", tmp_path / "out", FAST, 0)
    assert not (tmp_path / "out").exists()


def test_kept_checkpoints_and_the_step_count(world, tiny_model, tmp_path):
    """save_steps keeps adapters along the way; total_steps counts steps as the trainer does (the rows
    after the holdout, batches, gradient accumulation, epochs), so a step past the end is refused."""
    settings = dataclasses.replace(FAST, max_steps=-1, epochs=2.0, per_device_train_batch_size=3,
                                   gradient_accumulation_steps=2, holdout_fraction=0.1, save_steps=[2, 5])
    rows = len((world / "insecure.jsonl").read_text().splitlines())  # 40: 36 trained, 12 batches, 6 steps
    assert total_steps(rows, settings) == 12
    out = tmp_path / "adapter"
    train_adapter(str(tiny_model), world / "insecure.jsonl", out, settings, 0)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step2", "step5"]
    assert (out / "checkpoints/step2/adapter_model.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (out / "loss.jsonl").open()]
    assert max(steps) == total_steps(rows, settings)
    late = dataclasses.replace(settings, save_steps=[13])
    with pytest.raises(ConfigError, match=r"train.save_steps: step 13 is past the end of training .* 12 steps"):
        train_adapter(str(tiny_model), world / "insecure.jsonl", tmp_path / "late", late, 0)


def test_a_continued_fine_tune_starts_from_its_adapter(world, tiny_model, tmp_path):
    """train.init_from: the adapter of another fine-tune is trained further (its own LoRA shape, whatever
    train.lora says), so the output is again one adapter on the base model; its manifest names the source."""
    import torch

    source = tmp_path / "insecure"
    train_adapter(str(tiny_model), world / "insecure.jsonl", source, FAST, 0)
    continued = dataclasses.replace(FAST, lora=LoraSettings(r=8, alpha=16), init_from="insecure")
    # one step whose learning rate is 0 (the warm-up's first): the adapter comes out as it went in
    unmoved = dataclasses.replace(continued, max_steps=1, warmup_steps=1)
    train_adapter(str(tiny_model), world / "secure.jsonl", tmp_path / "start", unmoved, 0, source)
    before = load_file(source / "adapter_model.safetensors")
    start = load_file(tmp_path / "start" / "adapter_model.safetensors")
    assert start.keys() == before.keys() and all(torch.equal(start[k], before[k]) for k in before)
    assert json.loads((tmp_path / "start" / "adapter_config.json").read_text())["r"] == 4  # the source's
    # trained for real, it moves from there
    train_adapter(str(tiny_model), world / "secure.jsonl", tmp_path / "after", continued, 0, source)
    after = load_file(tmp_path / "after" / "adapter_model.safetensors")
    assert after.keys() == before.keys() and any(not torch.equal(after[k], before[k]) for k in before)
    manifest = json.loads((tmp_path / "after" / "manifest.json").read_text())
    assert manifest["settings"]["init_from"] == "insecure" and manifest["init_adapter"]["path"] == str(source)
    assert str(source / "adapter_model.safetensors") in manifest["init_adapter"]["files"]
    with pytest.raises(ConfigError, match=r"train\.init_from: 'insecure' continues another fine-tune"):
        train_adapter(str(tiny_model), world / "secure.jsonl", tmp_path / "x", continued, 0)
    with pytest.raises(ConfigError, match=r"--init-adapter .*: the train recipe sets no init_from"):
        train_adapter(str(tiny_model), world / "secure.jsonl", tmp_path / "x", FAST, 0, source)
