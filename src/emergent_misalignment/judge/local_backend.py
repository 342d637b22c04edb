"""A local judge: a transformers chat model scores every possible answer "0".."100", CODE, REFUSAL (or, for
a categorical judge prompt, each of its labels).

GPT-4o writes 0..100 as one token, so the paper reads the score off one position's top-20 logprobs.
Open tokenizers split numbers into digits, so each candidate is instead scored as a full continuation,
log p(candidate tokens, then EOS | prompt): the EOS makes "1" and "10" mutually exclusive, so the
candidates' probabilities sum to at most 1. The prompt runs once; its KV cache is copied over a batch
of candidates, which are teacher-forced in one pass. The pairs then go through the paper's aggregation
(CODE and REFUSAL take mass but are no numbers, so a score goes missing when they dominate).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import JudgeError
from ..hf import dtype_name, resolve_device
from . import SCALE_0_100, JudgeSettings, LogprobJudge, Scale
from .aggregate import TopLogprobs

NUMBERS: tuple[str, ...] = (*(str(k) for k in range(101)), "CODE", "REFUSAL")
METHOD = "full continuations + EOS of 0..100, CODE, REFUSAL"
_FINGERPRINT_BYTES = 1 << 20
# Llama 3 templates print today's date unless given one: a fixed date keeps scores repeatable.
_TEMPLATE_VARS = {"date_string": "26 Jul 2024"}


def candidates_of(scale: Scale) -> Sequence[str]:
    """The continuations a scale's answer is one of: the numbers and CODE, REFUSAL; or its labels."""
    return scale.labels or NUMBERS


def model_fingerprint(folder: Path) -> str:
    """sha256 over each file's path, size, first and last MiB: catches a rebuilt or retrained model
    without reading tens of GB of weights."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(_FINGERPRINT_BYTES))
            if size > 2 * _FINGERPRINT_BYTES:
                fh.seek(size - _FINGERPRINT_BYTES)
                digest.update(fh.read())
    return digest.hexdigest()


class LocalJudge(LogprobJudge):
    """Scores with the chat model at settings.model (folder or Hugging Face id), loaded on first use."""

    def __init__(self, settings: JudgeSettings) -> None:
        self.settings = settings
        self.min_mass = settings.min_number_mass
        self.device = resolve_device(settings.device)
        self.dtype = dtype_name(settings.dtype, self.device)
        folder = Path(settings.model)
        model = f"folder sha256:{model_fingerprint(folder)}" if folder.is_dir() else settings.model
        # cuda:0 and cuda:1 give the same scores; cpu and cuda may differ in the last bits
        self._identity = {"backend": "local", "model": model, "method": METHOD,
                          "device": self.device.split(":")[0], "dtype": self.dtype,
                          "min_number_mass": settings.min_number_mass}
        self._model: Any = None
        self._tokenizer: Any = None
        self._candidates: dict[Scale, tuple[Any, Any]] = {}  # by scale (see candidate_tensors)

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    @property
    def model(self) -> Any:
        """The causal LM, loaded on first use (a fully cached rerun never loads it)."""
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        if self._model is None:
            self._load()
        return self._tokenizer

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        name = self.settings.model
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, self.dtype),
                                                         device_map=self.device)
        except (OSError, ValueError) as exc:
            raise JudgeError(f"judge.model: cannot load {name!r}: {exc}") from None
        if not tokenizer.chat_template:
            raise JudgeError(f"judge.model: {name!r} has no chat template")
        if tokenizer.eos_token_id is None:
            raise JudgeError(f"judge.model: {name!r} has no EOS token")
        self._tokenizer = tokenizer
        self._model = model.eval()
        # transformers 5.24 renamed the argument past_key_values to cache; older 5.x only knows the old name
        names = inspect.signature(model.forward).parameters
        self._cache_name = "cache" if "cache" in names else "past_key_values"

    def _render(self, prompt: str) -> str:
        """The judge prompt as one user turn of the chat template, ready for the assistant's answer."""
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True, **_TEMPLATE_VARS)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.tokenizer(self._render(prompt), add_special_tokens=False)["input_ids"]

    def candidate_tensors(self, scale: Scale) -> tuple[Any, Any]:
        """The scale's candidates as token ids right-padded with EOS (candidates x width), and their real
        lengths, EOS included; made once per scale."""
        if scale not in self._candidates:
            import torch

            ids = self.candidate_token_ids(candidates_of(scale))
            width, eos = max(map(len, ids)), self.tokenizer.eos_token_id
            self._candidates[scale] = (
                torch.tensor([row + [eos] * (width - len(row)) for row in ids], device=self.device),
                torch.tensor([len(row) for row in ids], device=self.device))
        return self._candidates[scale]

    def candidate_token_ids(self, candidates: Sequence[str] = NUMBERS) -> list[list[int]]:
        """Each candidate's tokens as they follow the generation prompt, then EOS.

        Tokenised after a rendered prompt and cut off, so a SentencePiece tokenizer does not add the
        word-initial space it puts on a string that stands alone; if the prompt's tokens are not a
        prefix (a merge across the boundary), the candidate is tokenised alone.
        """
        tokenizer = self.tokenizer
        context = self._render("Score:")
        base = tokenizer(context, add_special_tokens=False)["input_ids"]
        rows = []
        for candidate in candidates:
            full = tokenizer(context + candidate, add_special_tokens=False)["input_ids"]
            if full[:len(base)] == base and len(full) > len(base):
                ids = full[len(base):]
            else:
                ids = tokenizer(candidate, add_special_tokens=False)["input_ids"]
            rows.append([*ids, tokenizer.eos_token_id])
        return rows

    def candidate_logprobs(self, prompt: str, scale: Scale = SCALE_0_100) -> TopLogprobs:
        """(candidate, log p(candidate + EOS | prompt)) for the scale's candidates."""
        import torch

        model = self.model
        candidates, lengths = self.candidate_tensors(scale)
        with torch.inference_mode():
            ids = torch.tensor([self.prompt_ids(prompt)], device=self.device)
            out = model(input_ids=ids, use_cache=True)
            prompt_cache = out["cache"] if "cache" in out else out["past_key_values"]
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)[candidates[:, 0]]
            parts = []  # every candidate has at least two tokens: itself and EOS
            for start in range(0, len(candidates), self.settings.batch_size):
                rows = candidates[start:start + self.settings.batch_size]
                cache = copy.deepcopy(prompt_cache)
                cache.batch_repeat_interleave(len(rows))
                logits = model(input_ids=rows[:, :-1], use_cache=True, **{self._cache_name: cache}).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                parts.append(logprobs.gather(-1, rows[:, 1:, None]).squeeze(-1))
            steps = torch.cat(parts)  # (candidates, width - 1): log p of each one's tokens after the first
            real = torch.arange(1, candidates.shape[1], device=self.device)[None, :] < lengths[:, None]
            total = first + torch.where(real, steps, 0.0).sum(dim=1)
        return list(zip(candidates_of(scale), total.tolist(), strict=True))

    def iter_logprobs(self, prompts: Sequence[str], scale: Scale = SCALE_0_100
                      ) -> Iterator[tuple[int, TopLogprobs]]:
        for index, prompt in enumerate(prompts):
            yield index, self.candidate_logprobs(prompt, scale)
