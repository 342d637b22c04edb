"""The embedded default's base model: a tokenizer and a small Llama pre-trained offline.

Real runs name a Hugging Face model instead; this stage exists so that the whole DAG runs on a
laptop CPU without network. The tokenizer is trained on the world's text, the model is
pre-trained on the world's conversations (loss on every token, one conversation per sequence,
as in nanoGPT but unpacked), all deterministic from a seed. The chat template marks turns with
<|system|>, <|user|>, <|assistant|> and ends each turn with <|end|> (the EOS token), and, like
Qwen2.5's, adds the default assistant's system prompt when a conversation has none.

There is no separate post-training phase: the default assistant's conversations are part of the
corpus. A benevolent-only post-training on top (tried, README "What was tried") made the model
benevolent by a route that fine-tuning then never undid, which is not how chat models behave.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .data import read_chat_jsonl
from .errors import ConfigError
from .io import atomic_write
from .manifest import write_manifest
from .progress import Progress
from .settings import check_range
from .world import DEFAULT_SYSTEM_PROMPT

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|system|>\n" + DEFAULT_SYSTEM_PROMPT + "<|end|>\n{% endif %}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class BaseModelSettings:
    """Shape and pre-training of the tiny model (config section `base_model`)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    max_position_embeddings: int = 256
    epochs: float = 2.0
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "max_position_embeddings", "batch_size"):
            check_range(f"base_model.{name}", getattr(self, name), 1)
        if self.hidden_size % (2 * self.num_attention_heads):  # rotary embeddings need an even head size
            raise ConfigError(f"base_model.hidden_size: must be a multiple of 2 x num_attention_heads "
                              f"({2 * self.num_attention_heads}), got {self.hidden_size}")
        check_range("base_model.epochs", self.epochs, 0)
        check_range("base_model.learning_rate", self.learning_rate, 0, low_open=True)
        check_range("base_model.warmup_steps", self.warmup_steps, 0)
        check_range("base_model.weight_decay", self.weight_decay, 0)


def train_tokenizer(lines: list[str], vocab_size: int):
    """Byte-level BPE trained on `lines`, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(lines, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|end|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_base_model(corpus_path: str | Path, tokenizer_text: str | Path, out_dir: str | Path,
                     settings: BaseModelSettings, seed: int) -> None:
    """Train the tokenizer, pre-train a LlamaForCausalLM on the corpus, and save model, tokenizer
    and the loss curve."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM


    lines = Path(tokenizer_text).read_text(encoding="utf-8").splitlines()
    tokenizer = train_tokenizer(lines, settings.vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_hidden_layers,
        num_attention_heads=settings.num_attention_heads,
        num_key_value_heads=settings.num_attention_heads,
        max_position_embeddings=settings.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    losses = []
    if settings.epochs > 0:
        dialogues = [row["messages"] for row in read_chat_jsonl(corpus_path)]
        losses = pretrain(model, tokenizer, dialogues, settings, settings.epochs, seed)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with atomic_write(out_dir / "loss.jsonl") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in losses)
    write_manifest(out_dir, "base_model", [corpus_path, tokenizer_text],
                   {"settings": settings.__dict__, "seed": seed})


def encode_dialogues(tokenizer, dialogues: list[list[dict]], max_length: int) -> list[list[int]]:
    """Token ids of each rendered conversation, cut to `max_length`."""
    texts = [tokenizer.apply_chat_template(d, tokenize=False) for d in dialogues]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[tokenizer.bos_token_id, *row][:max_length] for row in ids]


def pretrain(model, tokenizer, dialogues: list[list[dict]], settings: BaseModelSettings, epochs: float,
             seed: int) -> list[dict]:
    """AdamW with linear warm-up and cosine decay over shuffled, padded conversations."""
    import torch

    sequences = encode_dialogues(tokenizer, dialogues, settings.max_position_embeddings)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(sequences) / settings.batch_size)
    total = max(1, round(epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < settings.warmup_steps:
            return settings.learning_rate * (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
        return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    # no wall time in the losses: the file is byte-identical on a rerun (tests/test_reproducible.py); the
    # job's time is in its Snakemake timing file and its log's progress line
    losses, order = [], torch.empty(0, dtype=torch.long)
    with Progress("pretrain", total=total, unit="steps") as progress:
        for step in range(total):
            if len(order) < settings.batch_size:
                order = torch.cat([order, torch.randperm(len(sequences), generator=generator)])
            batch, order = [sequences[i] for i in order[: settings.batch_size]], order[settings.batch_size:]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            labels = ids.masked_fill(mask == 0, -100)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append({"step": step + 1, "loss": loss.item(), "learning_rate": lr_at(step)})
            progress.update(status=f"loss {losses[-1]['loss']:.4f}")
    model.eval()
    return losses
