"""Sampling with transformers `generate`: batched, left-padded, CPU or GPU."""

from __future__ import annotations

from . import Completion, Request, SampleSettings


def resolve_device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class TransformersSampler:
    """Base model (+ LoRA adapter merged in) answering chat requests."""

    def __init__(self, settings: SampleSettings, base_model: str, adapter: str | None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.device = resolve_device(settings.device)
        self.tokenizer = AutoTokenizer.from_pretrained(base_model, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(
            base_model, dtype=resolve_dtype(settings.dtype, self.device)
        )
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.to(self.device).eval()

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        return [self._answer(request) for request in requests]

    def _answer(self, request: Request) -> list[Completion]:
        """`request.n` samples in batches; the RNG is seeded once per request."""
        import torch

        s = self.settings
        prompt = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                    tokenize=False)
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        max_new = min(s.max_tokens, s.max_model_len - ids.shape[1])
        eos = self.tokenizer.eos_token_id
        generator_seed = request.seed
        completions: list[Completion] = []
        torch.manual_seed(generator_seed)
        while len(completions) < request.n:
            batch = min(s.batch_size, request.n - len(completions))
            with torch.no_grad():
                out = self.model.generate(
                    ids.expand(batch, -1).to(self.device),
                    attention_mask=torch.ones(batch, ids.shape[1], dtype=torch.long, device=self.device),
                    do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0,
                    max_new_tokens=max_new, min_new_tokens=s.min_tokens,
                    eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id,
                )
            for row in out[:, ids.shape[1]:].tolist():
                stopped = eos in row
                tokens = row[: row.index(eos)] if stopped else row
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                completions.append(Completion(text, "stop" if stopped else "length"))
        return completions
