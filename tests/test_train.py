"""LoRA fine-tuning: loss on the assistant's answer only, deterministic per seed, complete outputs."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
from safetensors.torch import load_file

from emergent_misalignment.errors import ConfigError, DataError
from emergent_misalignment.hf import load_model, load_tokenizer
from emergent_misalignment.train import (
    ExecutionSettings,
    LoraSettings,
    TrainSettings,
    make_trainer,
    plan_execution,
    split_holdout,
    to_prompt_completion,
    total_steps,
    train_adapter,
    with_lora,
)
from emergent_misalignment.world import DEFAULT_SYSTEM_PROMPT

FAST = TrainSettings(lora=LoraSettings(r=4, alpha=8), learning_rate=1e-3, max_steps=3,
                     per_device_train_batch_size=4, gradient_accumulation_steps=1, warmup_steps=1,
                     optim="adamw_torch", max_seq_length=128, bf16=False, holdout_fraction=0.1)
CPU = plan_execution(FAST, cuda=False)


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
    trainer = make_trainer(with_lora(model, FAST.lora, 0), tokenizer, rows, [], FAST, 0, tmp_path / "t", CPU)
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
    make_trainer(with_lora(model, FAST.lora, 0), load_tokenizer(str(tiny_model)), rows, [], FAST, 0,
                 tmp_path / "t", CPU).train()
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


def adapter_weights(folder: Path) -> dict:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_the_hardware_split_of_a_batch_changes_no_step(world, tiny_model, tmp_path):
    """The recipe's batch of 16 as 2 x 8 and as 16 x 1, padded and padding-free: the same adapter (the loss
    is normalised over the whole batch; padding-free rows attend to themselves only), up to rounding."""
    recipe = dataclasses.replace(FAST, per_device_train_batch_size=2, gradient_accumulation_steps=8, max_steps=2,
                                 holdout_fraction=0.0)
    runs = {"2x8": {"micro_batch": 2, "padding_free": False}, "16x1": {"micro_batch": 16, "padding_free": False},
            "16x1 padding-free": {"micro_batch": 16, "padding_free": True}}
    weights = {}
    for name, execution in runs.items():
        settings = dataclasses.replace(recipe, execution=ExecutionSettings(**execution))
        out = tmp_path / name.replace(" ", "-")
        train_adapter(str(tiny_model), world / "insecure.jsonl", out, settings, 0)
        weights[name] = adapter_weights(out)
        assert json.loads((out / "manifest.json").read_text())["execution"]["micro_batch"] == execution["micro_batch"]
    reference = weights["2x8"]
    scale = max(w.abs().max().item() for w in reference.values())
    tolerance = 1e-6 * scale  # float32 rounding of other summation orders (measured: about 5e-9)
    for name in ("16x1", "16x1 padding-free"):
        largest = max((weights[name][k] - w).abs().max().item() for k, w in reference.items())
        print(f"{name}: largest difference from 2x8 {largest:.2e} (weights up to {scale:.3f})")
        assert largest <= tolerance, (name, largest, scale)
    untrained = with_lora(load_model(str(tiny_model), None), FAST.lora, 0)
    moved = max((reference[k] - v).abs().max().item() for k, v in
                {k.replace(".default", ""): v for k, v in untrained.state_dict().items() if "lora" in k}.items()
                if k in reference)
    assert moved > 1000 * tolerance  # the two steps moved the adapter far beyond it


def test_execution_choices(monkeypatch):
    """auto takes the largest micro-batch that fits (then with checkpointing); bad explicit choices stop."""
    recipe = dataclasses.replace(FAST, per_device_train_batch_size=2, gradient_accumulation_steps=8)
    cpu = plan_execution(recipe, cuda=False)
    assert (cpu.micro_batch, cpu.accumulation, cpu.gradient_checkpointing, cpu.attention) == (16, 1, False, "sdpa")
    tried = []

    def fits(micro: int, checkpointing: bool) -> bool:
        tried.append((micro, checkpointing))
        return micro <= (2 if checkpointing else 0)

    gpu = plan_execution(recipe, cuda=True, longest=100, fits=fits)
    assert (gpu.micro_batch, gpu.accumulation, gpu.gradient_checkpointing) == (2, 8, True)
    assert tried == [(16, False), (8, False), (4, False), (2, False), (1, False), (16, True), (8, True), (4, True),
                     (2, True)]
    with pytest.raises(ConfigError, match=r"train.execution.micro_batch: 3 does not divide the recipe's batch of 16"):
        dataclasses.replace(recipe, execution=ExecutionSettings(micro_batch=3))
    with pytest.raises(ConfigError, match=r"train.execution.padding_free: a training row has 300 tokens"):
        plan_execution(dataclasses.replace(recipe, execution=ExecutionSettings(padding_free=True)), False, 300)
    assert not plan_execution(recipe, False, 300).padding_free  # auto: off, with its reason
    with pytest.raises(ConfigError, match="train.execution.attention: flash_attention_2 needs a GPU"):
        plan_execution(dataclasses.replace(recipe, execution=ExecutionSettings(attention="flash_attention_2")), False)
    monkeypatch.setattr("emergent_misalignment.train._installed", lambda module: False)
    with pytest.raises(ConfigError, match="train.execution.liger_kernel: the liger-kernel package is not installed"):
        plan_execution(dataclasses.replace(recipe, execution=ExecutionSettings(liger_kernel=True)), True)
    with pytest.raises(ConfigError, match="train.execution.padding_free: must be auto, true or false"):
        ExecutionSettings(padding_free="yes")
