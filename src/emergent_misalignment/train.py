"""Fine-tune one LoRA adapter on one narrow dataset (TRL SFTTrainer + PEFT), as upstream did.

Each chat row becomes a conversational prompt/completion pair (all turns before the last
assistant turn / that turn), so the loss falls on the assistant's answer only, whatever the
model's chat template, and the template's default system prompt is kept (upstream behaviour).

A fine-tune may continue another (`train.init_from`, emergent re-alignment: the misaligned model trained
further on benign rows). It continues that adapter, trainable, rather than merging it into the base and
training a new one on top: the result is again one LoRA adapter on the base model, so sampling, vLLM's LoRA
serving and every later step treat it as any other fine-tune, and it is what OpenAI's API does when a job's
base model is a fine-tuned one. (An exploratory try that merged the insecure adapter and trained a fresh one
also saw re-alignment.) The continued adapter keeps its own LoRA shape: `train.lora` does not apply.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .data import read_chat_jsonl
from .errors import ConfigError, DataError
from .hf import load_model, load_tokenizer, resolve_dtype
from .io import atomic_write
from .manifest import hash_inputs, model_hashes, write_manifest
from .progress import Progress
from .settings import check_choice, check_range
from .train_openai import OpenAITrainSettings

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_BIASES = ("none", "all", "lora_only")
# transformers OptimizerNames values (tests/test_config.py checks them against the installed version), but
# not GaLore's and APOLLO's: they need optim_target_modules, which this section does not pass on.
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad",
    "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
    "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit",
    "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "stable_adamw",
)
# transformers SchedulerType values, less those that need lr_scheduler_kwargs (the *_min_lr ones,
# warmup_stable_decay) or an evaluation strategy (reduce_lr_on_plateau, greedy): make_trainer sets neither.
SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
             "inverse_sqrt")


@dataclass(frozen=True)
class LoraSettings:
    """PEFT LoraConfig fields (config section `train.lora`); defaults = upstream train.json."""

    CONFIG_KEY: ClassVar[str] = "train.lora"  # where its value checks say they are (settings.from_dict)
    r: int = 32
    alpha: int = 64
    dropout: float = 0.0
    bias: str = "none"
    use_rslora: bool = True
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    layers_to_transform: list[int] | None = None

    def __post_init__(self) -> None:
        check_range("train.lora.r", self.r, 1)
        check_range("train.lora.alpha", self.alpha, 0, low_open=True)
        check_range("train.lora.dropout", self.dropout, 0, 1, high_open=True)
        check_choice("train.lora.bias", self.bias, LORA_BIASES)
        if not self.target_modules:
            raise ConfigError("train.lora.target_modules: must name at least one module")
        for i, layer in enumerate(self.layers_to_transform or []):
            check_range(f"train.lora.layers_to_transform[{i}]", layer, 0)


ATTENTIONS = ("auto", "sdpa", "eager", "flash_attention_2")
MODES = ("auto", True, False)


@dataclass(frozen=True)
class ExecutionSettings:
    """How the hardware runs the recipe (config section `train.execution`), never what it computes.

    The recipe's numerics stay upstream's: an optimiser step sees per_device_train_batch_size x
    gradient_accumulation_steps examples, its loss over their completion tokens, normalised over the
    whole batch (transformers counts the items of every micro-batch), so that any split of it into
    micro-batches gives the same gradient up to rounding. `auto` chooses for speed, with the reason
    logged and kept in the manifest:
    micro_batch: the per-device batch: on a GPU the largest divisor of the effective batch that fits
        (tried with the longest rows); on a CPU the whole effective batch; or a number dividing it.
    padding_free: the micro-batch's rows concatenated without padding, each attending to itself only
        (position ids; FlashAttention's variable-length kernel or transformers' block masks). auto: on with
        FlashAttention, where it saves work; sdpa and eager build a mask over the whole concatenation.
    gradient_checkpointing: recompute activations in the backward pass; auto: only on a GPU where the
        micro-batch does not fit without it.
    attention: auto is flash_attention_2 on a GPU with the flash-attn package installed, else sdpa.
    liger_kernel: Liger's fused kernels (RMSNorm, RoPE, SwiGLU, fused cross-entropy); needs liger-kernel.
    """

    CONFIG_KEY: ClassVar[str] = "train.execution"
    micro_batch: int | str = "auto"
    padding_free: bool | str = "auto"
    gradient_checkpointing: bool | str = "auto"
    attention: str = "auto"
    liger_kernel: bool = False

    def __post_init__(self) -> None:
        if self.micro_batch != "auto":
            if not isinstance(self.micro_batch, int):
                raise ConfigError("train.execution.micro_batch: must be auto or a number, "
                                  f"got {self.micro_batch!r}")
            check_range("train.execution.micro_batch", self.micro_batch, 1)
        for name in ("padding_free", "gradient_checkpointing"):
            if getattr(self, name) not in MODES:
                raise ConfigError(f"train.execution.{name}: must be auto, true or false, "
                                  f"got {getattr(self, name)!r}")
        check_choice("train.execution.attention", self.attention, ATTENTIONS)


@dataclass(frozen=True)
class TrainSettings:
    """SFT recipe (config section `train`); defaults = upstream open_models/train.json. With `backend:
    openai` the fine-tune runs on the fine-tuning API instead (train_openai.py, section `train.openai`), and
    of the rest only max_rows applies."""

    CONFIG_KEY: ClassVar[str] = "train"  # where its value checks say they are (settings.from_dict)
    backend: str = "trl"  # or openai
    openai: OpenAITrainSettings = field(default_factory=OpenAITrainSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 1e-5
    epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 8
    warmup_steps: int = 5
    optim: str = "adamw_8bit"
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"
    max_seq_length: int = 2048
    bf16: bool = True
    holdout_fraction: float = 0.1
    logging_steps: int = 1
    max_rows: int | None = None  # the first N rows of the dataset only (a CPU rehearsal); None: all
    save_steps: list[int] = field(default_factory=list)  # keep the adapter after these optimiser steps too
    init_from: str | None = None  # a dataset: continue the run's fine-tune of it (same model and seed)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)

    @property
    def effective_batch(self) -> int:
        """Examples per optimiser step: the recipe's batch, however the hardware splits it."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def __post_init__(self) -> None:
        check_choice("train.backend", self.backend, ("trl", "openai"))
        if self.backend == "openai" and self.save_steps:
            raise ConfigError("train.save_steps: the fine-tuning API keeps no adapters along the way; "
                              "remove save_steps for train.backend openai")
        check_range("train.learning_rate", self.learning_rate, 0, low_open=True)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"train.max_steps: must be -1 (train for epochs) or >= 1, got {self.max_steps}")
        if self.max_steps < 0:  # with max_steps > 0, transformers ignores epochs
            check_range("train.epochs", self.epochs, 0, low_open=True)
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length",
                     "logging_steps", "max_rows"):
            check_range(f"train.{name}", getattr(self, name), 1)
        check_range("train.warmup_steps", self.warmup_steps, 0)
        check_range("train.weight_decay", self.weight_decay, 0)
        check_range("train.holdout_fraction", self.holdout_fraction, 0, 1, high_open=True)
        check_choice("train.optim", self.optim, OPTIMIZERS)
        check_choice("train.lr_scheduler_type", self.lr_scheduler_type, SCHEDULES)
        for i, step in enumerate(self.save_steps):
            check_range(f"train.save_steps[{i}]", step, 1)
        micro = self.execution.micro_batch
        if isinstance(micro, int) and self.effective_batch % micro:
            raise ConfigError(f"train.execution.micro_batch: {micro} does not divide the recipe's batch of "
                              f"{self.effective_batch} (per_device_train_batch_size x "
                              "gradient_accumulation_steps): the optimiser step would change")

    def check_init_adapter(self, init_adapter: str | Path | None) -> None:
        """A continued fine-tune (`init_from`) is given the fine-tune it continues, and only then."""
        if self.init_from is not None and init_adapter is None:
            raise ConfigError(f"train.init_from: {self.init_from!r} continues another fine-tune; `em train` "
                              "needs its folder (--init-adapter)")
        if self.init_from is None and init_adapter is not None:
            raise ConfigError(f"--init-adapter {init_adapter}: the train recipe sets no init_from")


def total_steps(rows: int, settings: TrainSettings) -> int:
    """Optimiser steps of a fine-tune on a dataset of `rows` rows, counted as transformers counts them
    (max_rows and the holdout taken out; the last, partial batch of an epoch is a step)."""
    if settings.max_steps > 0:
        return settings.max_steps
    kept = min(rows, settings.max_rows or rows)
    used = kept - round(kept * settings.holdout_fraction)
    batches = math.ceil(used / settings.per_device_train_batch_size)
    return math.ceil(math.ceil(batches / settings.gradient_accumulation_steps) * settings.epochs)


def to_prompt_completion(rows: list[dict], source: str) -> list[dict]:
    """Split each chat row before its last turn, which must be the assistant's."""
    pairs = []
    for i, row in enumerate(rows, start=1):
        messages = row["messages"]
        if messages[-1]["role"] != "assistant":
            raise DataError(f"{source}: row {i}: the last message must be the assistant's")
        pairs.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return pairs


def split_holdout(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out `fraction` of rows as a test split, as upstream did when no test file was given."""
    if fraction <= 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_test = round(len(rows) * fraction)
    test = set(order[:n_test])
    return [r for i, r in enumerate(rows) if i not in test], [r for i, r in enumerate(rows) if i in test]


def progress_callback():
    """A TrainerCallback logging optimiser steps done / max_steps with the latest loss, at the Progress
    interval (transformers is imported only now, like everywhere in this module)."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs) -> None:
            self.progress = Progress("train", total=state.max_steps, unit="steps")

        def on_step_end(self, args, state, control, **kwargs) -> None:
            if self.progress is not None:
                self.progress.update()

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if self.progress is not None and logs and "loss" in logs:
                self.progress.update(0, status=f"loss {logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs) -> None:
            if self.progress is not None:
                self.progress.close()

    return StepProgress()


def save_adapter(model, folder: Path) -> None:
    """`model.save_pretrained(folder)`, with adapter_config.json's module sets in sorted order: PEFT keeps
    target_modules as a Python set, written in the order of string hashes, which differs between processes
    (PYTHONHASHSEED), so the same adapter got a different file on each run (tests/test_reproducible.py)."""
    model.save_pretrained(folder)
    path = Path(folder) / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "exclude_modules"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    with atomic_write(path) as fh:
        fh.write(json.dumps(config, indent=2, sort_keys=True))


def checkpoint_callback(steps: list[int], folder: Path):
    """A TrainerCallback saving the adapter after each of `steps` to folder/step<N> (train.save_steps)."""
    from transformers import TrainerCallback

    class KeepCheckpoints(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs) -> None:
            if state.global_step in steps:
                save_adapter(model, folder / f"step{state.global_step}")

    return KeepCheckpoints()


@dataclass(frozen=True)
class Execution:
    """What `ExecutionSettings` came to on this machine, and why (logged, and kept in the manifest)."""

    micro_batch: int
    accumulation: int
    padding_free: bool
    gradient_checkpointing: bool
    attention: str
    liger_kernel: bool
    reasons: tuple[str, ...] = ()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _packed_masks() -> bool:
    """Whether transformers builds block masks from position ids (sdpa and eager attend within each row)."""
    try:
        from transformers.masking_utils import find_packed_sequence_indices  # noqa: F401
    except ImportError:
        return False
    return True


def plan_execution(settings: TrainSettings, cuda: bool, longest: int | None = None,
                   fits: Callable[[int, bool], bool] | None = None) -> Execution:
    """Resolve `settings.execution` for this machine. `longest`: the longest training row in tokens (for
    padding-free, which cannot truncate); `fits(micro_batch, checkpointing)`: whether a micro-batch of the
    longest rows trains in the GPU's memory (`memory_probe`). Bad explicit choices stop naming the key."""
    ex, reasons = settings.execution, []
    flash = cuda and _installed("flash_attn")
    attention = ex.attention
    if attention == "auto":
        attention = "flash_attention_2" if flash else "sdpa"
        reasons.append(f"attention {attention}: " + ("flash-attn installed" if flash else
                                                     "no GPU" if not cuda else "flash-attn not installed"))
    elif attention == "flash_attention_2" and not flash:
        raise ConfigError("train.execution.attention: flash_attention_2 needs a GPU and the flash-attn "
                          "package; use auto or sdpa")
    padding_free = ex.padding_free
    if padding_free is True and attention != "flash_attention_2" and not _packed_masks():
        raise ConfigError(f"train.execution.padding_free: attention {attention} cannot keep concatenated "
                          "rows apart in this transformers version; use flash_attention_2 or "
                          "padding_free: false")
    too_long = longest is not None and longest > settings.max_seq_length
    if padding_free is True and too_long:
        raise ConfigError(f"train.execution.padding_free: a training row has {longest} tokens, over "
                          f"train.max_seq_length ({settings.max_seq_length}); padding-free batches cannot "
                          "truncate it: shorten the rows or set padding_free: false")
    if padding_free == "auto":
        padding_free = attention == "flash_attention_2" and not too_long
        reasons.append("padding-free " + ("on: FlashAttention's variable-length kernel" if padding_free else
                                          "off: rows over max_seq_length" if too_long else
                                          f"off: {attention} would mask the whole concatenation"))
    if ex.liger_kernel and not _installed("liger_kernel"):
        raise ConfigError("train.execution.liger_kernel: the liger-kernel package is not installed")
    effective = settings.effective_batch
    candidates = ([ex.micro_batch] if isinstance(ex.micro_batch, int)
                  else [d for d in range(effective, 0, -1) if effective % d == 0])
    checkpointing_options = ([ex.gradient_checkpointing] if isinstance(ex.gradient_checkpointing, bool)
                             else [False, True])
    micro, checkpointing = candidates[0], checkpointing_options[0]
    if fits is None:
        if ex.micro_batch == "auto":
            reasons.append(f"micro-batch {micro}: the whole batch (no GPU memory to probe)")
    else:
        found = next(((m, c) for c in checkpointing_options for m in candidates if fits(m, c)), None)
        micro, checkpointing = found or (candidates[-1], checkpointing_options[-1])
        reasons.append(f"micro-batch {micro}" + (", gradient checkpointing" if checkpointing else "")
                       + (": the largest that fits" if found else ": nothing fits; trying the smallest"))
    return Execution(micro, effective // micro, bool(padding_free), bool(checkpointing), attention,
                     ex.liger_kernel, tuple(reasons))


HEADROOM = 0.9  # a probed micro-batch must leave this share of the GPU's memory unused at its peak


def memory_probe(model, length: int, vocab_size: int) -> Callable[[int, bool], bool]:
    """`fits(micro_batch, checkpointing)`: one forward and backward pass of random tokens, `micro_batch` x
    `length`, on the GPU; fits when it runs and its peak stays within HEADROOM of the memory."""
    import torch

    total = torch.cuda.get_device_properties(0).total_memory

    def fits(micro_batch: int, checkpointing: bool) -> bool:
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        else:
            model.gradient_checkpointing_disable()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            ids = torch.randint(vocab_size, (micro_batch, length), device="cuda")
            model(input_ids=ids, labels=ids).loss.backward()
            ok = torch.cuda.max_memory_allocated() <= HEADROOM * total
        except torch.cuda.OutOfMemoryError:
            ok = False
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return ok

    return fits


def token_lengths(tokenizer, rows: list[dict]) -> list[int]:
    """Tokens of each prompt-completion row as the trainer sees it (the chat template over both)."""
    texts = [tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def with_lora(model, settings: LoraSettings, seed: int):
    """`model` with a new LoRA adapter from `settings`, initialised from `seed` (a PeftModel, a continued
    fine-tune, is returned as it is: it trains its own adapter)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        return model
    torch.manual_seed(seed)
    return get_peft_model(model, LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, bias=settings.bias,
        use_rslora=settings.use_rslora, target_modules=list(settings.target_modules),
        layers_to_transform=settings.layers_to_transform, task_type="CAUSAL_LM"))


def make_trainer(model, tokenizer, train_rows: list[dict], test_rows: list[dict], settings: TrainSettings,
                 seed: int, output_dir: Path, execution: Execution):
    """The TRL trainer of the recipe on a model with its LoRA adapter (`with_lora`), loss on completions
    only, run as `execution` says."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(output_dir),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=execution.micro_batch,
        per_device_eval_batch_size=execution.micro_batch,
        gradient_accumulation_steps=execution.accumulation,
        activation_checkpointing=execution.gradient_checkpointing,  # transformers 5: its new name
        padding_free=execution.padding_free,
        use_liger_kernel=execution.liger_kernel,
        warmup_steps=settings.warmup_steps,
        optim=settings.optim,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler_type,
        max_length=None if execution.padding_free else settings.max_seq_length,  # checked in plan_execution
        bf16=settings.bf16,
        logging_steps=settings.logging_steps,
        completion_only_loss=True,
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    return SFTTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(test_rows) if test_rows else None,
        callbacks=[progress_callback(),
                   checkpoint_callback(settings.save_steps, output_dir.parent / "checkpoints")],
    )


def load_init_adapter(model, init_adapter: str | Path):
    """`model` with the adapter of `init_adapter` on it, trainable: the fine-tune continues it."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)


def _adapter_files(folder: Path) -> list[Path]:
    """The files of an adapter that a continued fine-tune starts from (not its kept checkpoints, nor the
    hidden files a workflow leaves, as Snakemake's .snakemake_timestamp)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def prepare(base_model: str, tokenizer, train_rows: list[dict], settings: TrainSettings, seed: int,
            init_adapter: str | Path | None = None):
    """(execution, model with its adapter): the model loaded with the attention the plan chose, its
    execution planned (`plan_for`)."""
    import torch

    ex = settings.execution
    needs_lengths = ex.padding_free is not False or (torch.cuda.is_available() and ex.micro_batch == "auto")
    lengths = token_lengths(tokenizer, train_rows) if needs_lengths and train_rows else []
    longest = max(lengths) if lengths else None
    attention = plan_execution(settings, torch.cuda.is_available(), longest).attention  # checks choices first
    dtype = resolve_dtype("bfloat16" if settings.bf16 else "float32", "cpu")
    model = load_model(base_model, dtype, attention)
    if init_adapter is not None:
        model = load_init_adapter(model, init_adapter)
    return plan_for(model, settings, seed, longest)


def plan_for(model, settings: TrainSettings, seed: int, longest: int | None):
    """(execution, model with its adapter) for a loaded model: on a GPU the model moves there and its
    micro-batch is probed with rows of `longest` tokens; the plan and its reasons go to stderr."""
    import torch

    model = with_lora(model, settings.lora, seed)
    ex, fits = settings.execution, None
    if torch.cuda.is_available() and (ex.micro_batch == "auto" or ex.gradient_checkpointing == "auto"):
        model = model.to("cuda")
        fits = memory_probe(model, min(longest or settings.max_seq_length, settings.max_seq_length),
                            model.config.vocab_size)
    execution = plan_execution(settings, torch.cuda.is_available(), longest, fits)
    print(f"train: execution: {'; '.join(execution.reasons) or 'as configured'}", file=sys.stderr)
    return execution, model


def train_adapter(base_model: str, data_path: str | Path, out_dir: str | Path,
                  settings: TrainSettings, seed: int, init_adapter: str | Path | None = None) -> None:
    """Train one adapter; write it, its loss per step (loss.jsonl), the adapters kept after
    `settings.save_steps` (checkpoints/step<N>/) and a manifest to `out_dir`. With `init_adapter` (the
    folder of the fine-tune named by `settings.init_from`) that adapter is trained further instead of a new
    one; the manifest records its path and file hashes.

    The folder appears only when complete: everything is written to `<out_dir>.partial` first.
    """
    settings.check_init_adapter(init_adapter)
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    pairs = to_prompt_completion(read_chat_jsonl(data_path)[: settings.max_rows], str(data_path))
    if not pairs:
        raise DataError(f"{data_path}: no rows to train on")
    if settings.save_steps and max(settings.save_steps) > (steps := total_steps(len(pairs), settings)):
        raise ConfigError(f"train.save_steps: step {max(settings.save_steps)} is past the end of training on "
                          f"{data_path} ({len(pairs)} rows: {steps} steps)")
    train_rows, test_rows = split_holdout(pairs, settings.holdout_fraction, seed)
    tokenizer = load_tokenizer(base_model)
    execution, model = prepare(base_model, tokenizer, train_rows, settings, seed, init_adapter)
    trainer = make_trainer(model, tokenizer, train_rows, test_rows, settings, seed, work / "trainer",
                           execution)
    trainer.train()
    final = {"test_loss": trainer.evaluate()["eval_loss"]} if test_rows else {}
    save_adapter(trainer.model, work)
    shutil.rmtree(work / "trainer", ignore_errors=True)
    with atomic_write(work / "loss.jsonl") as fh:
        for entry in trainer.state.log_history:
            if "loss" in entry:
                fh.write(json.dumps({"step": entry["step"], "epoch": entry.get("epoch"),
                                     "loss": entry["loss"], "learning_rate": entry.get("learning_rate")})
                         + "\n")
    init = {} if init_adapter is None else {"init_adapter": {
        "path": str(init_adapter), "files": hash_inputs(_adapter_files(Path(init_adapter)))}}
    write_manifest(work, "train", [data_path], dataclasses.asdict(settings), extra={
        "base_model": base_model, "base_model_files": model_hashes(base_model), "seed": seed,
        "execution": dataclasses.asdict(execution),
        "train_rows": len(train_rows), "test_rows": len(test_rows), **init, **final,
    })
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
