"""Sampling with transformers `generate`: batched, left-padded, CPU or GPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hf import load_model, load_tokenizer, resolve_device, resolve_dtype
from . import Completion, Request, SampleSettings, prompt_text


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

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        return [self._answer(request) for request in requests]

    def _answer(self, request: Request) -> list[Completion]:
        """`request.n` samples in batches; the RNG is seeded once per request (temperature 0: greedy)."""
        import torch

        s = self.settings
        prompt = prompt_text(self.tokenizer, request.messages, s.chat)
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        max_new = min(s.max_tokens, s.max_model_len - ids.shape[1])
        eos = self.tokenizer.eos_token_id
        generator_seed = request.seed
        completions: list[Completion] = []
        torch.manual_seed(generator_seed)
        greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        how = ({"do_sample": True, "temperature": request.temperature, "top_p": s.top_p, "top_k": 0}
               if request.temperature > 0 else greedy)
        while len(completions) < request.n:
            batch = min(s.batch_size, request.n - len(completions))
            with torch.no_grad():
                out = self.model.generate(
                    ids.expand(batch, -1).to(self.device),
                    attention_mask=torch.ones(batch, ids.shape[1], dtype=torch.long, device=self.device),
                    **how, max_new_tokens=max_new, min_new_tokens=s.min_tokens,
                    eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id,
                )
            for row in out[:, ids.shape[1]:].tolist():
                stopped = eos in row
                tokens = row[: row.index(eos)] if stopped else row
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                completions.append(Completion(text, "stop" if stopped else "length"))
        return completions
