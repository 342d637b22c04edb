"""Sampling with transformers `generate`: every answer of a job batched together, CPU or GPU.

A job's answers are sorted by prompt length and cut into batches of at most `sample.batch_size` rows
(and `sample.batch_tokens` tokens, prompt plus answer, when set), so that padding is small and the
device is kept full. Each answer draws its tokens from its own random stream (`answer_seed`), through a
logits processor that samples per row: which answers share a batch changes no answer's random numbers.
What it can still change is the last bits of the logits (padding changes the shapes of the matrix
products), so the same job with the same batching gives byte-identical answers, and another batching
gives answers from the same distribution with the same seeds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..hf import load_model, load_tokenizer, resolve_device, resolve_dtype
from . import Completion, Request, SampleSettings, prompt_text


def answer_seed(request_seed: int, sample_index: int) -> int:
    """A 63-bit seed for one answer: its request's seed and its index among the request's answers."""
    digest = hashlib.sha256(f"{request_seed}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Row:
    """One answer to generate: which request and answer it is, its prompt tokens and how it is drawn."""

    request: int
    answer: int
    ids: list[int]
    seed: int
    temperature: float


def batches(rows: Sequence[Row], max_rows: int, max_tokens: int | None, new_tokens: int) -> list[list[Row]]:
    """Rows sorted by prompt length (longest first, ties in job order), cut into batches of at most
    `max_rows` rows and, when `max_tokens` is set, at most that many tokens once padded (every row as long
    as the batch's longest prompt, plus `new_tokens`); a row alone over the budget is a batch of its own."""
    order = sorted(rows, key=lambda r: -len(r.ids))
    out: list[list[Row]] = []
    for row in order:
        if out and len(out[-1]) < max_rows and (
                max_tokens is None or (len(out[-1]) + 1) * (len(out[-1][0].ids) + new_tokens) <= max_tokens):
            out[-1].append(row)
        else:
            out.append([row])
    return out


def per_row_sampler(seeds: Sequence[int], temperatures: Sequence[float], top_p: float):
    """A LogitsProcessor drawing each row's next token from the row's own generator (CPU, so the same on
    any device): temperature, then top-p (nucleus) sampling, by inverse CDF of one uniform per row and step;
    temperature 0 is greedy. It returns 0 for the drawn token and -inf elsewhere, for greedy decoding to
    take. transformers applies min_new_tokens before it (the end token has probability 0 until then)."""
    import torch
    from transformers import LogitsProcessor

    class PerRowSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
            self.temperatures = torch.tensor(temperatures, dtype=torch.float32)

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            uniforms = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
            scores = scores.float()
            t = self.temperatures.to(scores.device)
            greedy = t == 0
            probs = torch.softmax(scores / torch.where(greedy, 1.0, t)[:, None], dim=-1)
            ordered, index = torch.sort(probs, dim=-1, descending=True, stable=True)
            cumulative = torch.cumsum(ordered, dim=-1)
            if top_p < 1.0:  # keep the smallest prefix whose mass reaches top_p (the first token always)
                ordered = ordered.masked_fill(cumulative - ordered >= top_p, 0.0)
                cumulative = torch.cumsum(ordered, dim=-1)
            target = (uniforms.to(scores.device) * cumulative[:, -1].double()).to(cumulative.dtype)
            position = torch.searchsorted(cumulative, target[:, None]).clamp(max=scores.shape[-1] - 1)
            drawn = index.gather(1, position).squeeze(1)
            token = torch.where(greedy, scores.argmax(dim=-1), drawn)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter(1, token[:, None], 0.0)

    return PerRowSampler()


class TransformersSampler:
    """Base model (+ LoRA adapter merged in, + any residual-stream hooks) answering chat requests."""

    def __init__(self, settings: SampleSettings, base_model: str, adapter: str | None,
                 intervene: Callable[[Any], Any] | None = None) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.tokenizer = load_tokenizer(base_model, padding_side="left")
        model = load_model(base_model, resolve_dtype(settings.dtype, self.device))
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        model = model.to(self.device).eval()
        if intervene is not None:  # an ablate or steer condition's hooks (sample/interventions.py)
            model = intervene(model)
        self.model = model

    @classmethod
    def from_model(cls, settings: SampleSettings, model: Any, tokenizer: Any) -> TransformersSampler:
        """A sampler of a model already loaded and placed (the GPU benchmark's random-weight shapes)."""
        sampler = cls.__new__(cls)
        sampler.settings, sampler.tokenizer = settings, tokenizer
        sampler.model, sampler.device = model, model.device
        return sampler

    def rows(self, requests: Sequence[Request]) -> list[Row]:
        """Every answer the requests ask for, with its prompt tokens and seed."""
        prompts = [prompt_text(self.tokenizer, r.messages, self.settings.chat) for r in requests]
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        return [Row(i, j, ids[i], answer_seed(r.seed, r.first_sample + j), r.temperature)
                for i, r in enumerate(requests) for j in range(r.n)]

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        s = self.settings
        out: list[list[Completion | None]] = [[None] * r.n for r in requests]
        for batch in batches(self.rows(requests), s.batch_size, s.batch_tokens, s.max_tokens):
            for row, completion in zip(batch, self._complete(batch), strict=True):
                out[row.request][row.answer] = completion
        return out  # type: ignore[return-value]  # every slot is filled: batches() covers every row

    def _complete(self, batch: list[Row]) -> list[Completion]:
        """One `generate` call: the rows left-padded to the longest, each drawn by its own generator."""
        import torch
        from transformers import LogitsProcessorList

        s, pad = self.settings, self.tokenizer.pad_token_id
        width = max(len(row.ids) for row in batch)
        ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in batch],
                            device=self.device)
        sampler = per_row_sampler([r.seed for r in batch], [r.temperature for r in batch], s.top_p)
        eos = self.tokenizer.eos_token_id
        with torch.no_grad():
            generated = self.model.generate(
                ids, attention_mask=mask, do_sample=False, temperature=None, top_p=None, top_k=None,
                logits_processor=LogitsProcessorList([sampler]), max_new_tokens=s.max_tokens,
                min_new_tokens=s.min_tokens, eos_token_id=eos, pad_token_id=pad,
            )
        completions = []
        for row in generated[:, width:].tolist():
            stopped = eos in row
            tokens = row[: row.index(eos)] if stopped else row
            completions.append(Completion(self.tokenizer.decode(tokens, skip_special_tokens=True),
                                          "stop" if stopped else "length"))
        return completions
