"""Sampling with vLLM on GPU: `LLM` with LoRA enabled, every `SamplingParams` field set explicitly.

vLLM's own defaults differ from the paper's (max_tokens 16; generation_config applied by
default), so nothing is left to them.
"""

from __future__ import annotations

from typing import Any

from . import Completion, Request, SampleSettings, prompt_text


def llm_kwargs(settings: SampleSettings, base_model: str, adapter: str | None) -> dict[str, Any]:
    """Arguments of `vllm.LLM` (pure, so that the mapping is tested where vLLM is absent)."""
    kwargs: dict[str, Any] = {
        "model": base_model,
        "max_model_len": settings.max_model_len,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "dtype": settings.dtype,
        "seed": settings.seed,
        "generation_config": "vllm",  # do not let the model's generation_config.json change sampling
        "enable_prefix_caching": True,
    }
    if adapter:
        kwargs.update(enable_lora=True, max_lora_rank=settings.max_lora_rank, max_loras=1)
    return kwargs


def sampling_kwargs(settings: SampleSettings, request: Request, stop: list[str]) -> dict[str, Any]:
    """Arguments of `vllm.SamplingParams` for one request (upstream eval.py's values)."""
    return {
        "n": request.n,
        "temperature": request.temperature,
        "top_p": settings.top_p,
        "top_k": -1,
        "min_p": 0.0,
        "max_tokens": settings.max_tokens,
        "min_tokens": settings.min_tokens,
        "seed": request.seed,
        "stop": stop,
        "skip_special_tokens": True,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
    }


class VLLMSampler:
    """A vLLM engine for one base model and at most one adapter."""

    def __init__(self, settings: SampleSettings, base_model: str, adapter: str | None) -> None:
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self.settings = settings
        self.llm = LLM(**llm_kwargs(settings, base_model, adapter))
        self.tokenizer = self.llm.get_tokenizer()
        self.lora = LoRARequest("adapter", 1, adapter) if adapter else None

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        from vllm import SamplingParams

        prompts = [prompt_text(self.tokenizer, r.messages, self.settings.chat) for r in requests]
        params = [SamplingParams(**sampling_kwargs(self.settings, r, [self.tokenizer.eos_token]))
                  for r in requests]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        return [[Completion(o.text, "length" if o.finish_reason == "length" else "stop")
                 for o in output.outputs] for output in outputs]
