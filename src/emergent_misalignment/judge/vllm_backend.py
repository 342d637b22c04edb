"""An open-weights judge on GPU with vLLM: the `local` judge's scoring, batched.

The same rule as judge/local_backend.py: every candidate "0".."100", CODE, REFUSAL (or a categorical
prompt's labels) is scored as a full continuation, log p(candidate tokens, then EOS | prompt), through the
same chat template and the same tokenization, then the paper's aggregation. vLLM computes it as prompt
logprobs: each (prompt + candidate + EOS) is one sequence asked for one token with `prompt_logprobs=0`
(the log-probability of every given token), and prefix caching runs each judge prompt once for all its
candidates. `continuation_logprob` (pure) reads the sum off vLLM's output, so the mapping is tested where
vLLM is absent; where it is installed, a test checks the scores against the `local` backend's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import SCALE_0_100, JudgeSettings, Scale
from .aggregate import TopLogprobs
from .local_backend import LocalJudge, candidates_of

METHOD = "vLLM prompt logprobs of full continuations + EOS of 0..100, CODE, REFUSAL"


def judge_llm_kwargs(settings: JudgeSettings) -> dict[str, Any]:
    """Arguments of `vllm.LLM` for a judge (pure, so the mapping is tested without vLLM)."""
    return {"model": settings.model, "dtype": settings.dtype, "seed": 0, "enable_prefix_caching": True,
            "gpu_memory_utilization": settings.gpu_memory_utilization,
            "max_model_len": settings.max_model_len, "generation_config": "vllm"}


def continuation_logprob(prompt_logprobs: Sequence[Mapping[int, Any] | None], sequence: Sequence[int],
                         start: int) -> float:
    """Sum of log p(sequence[i] | sequence[:i]) for i >= start, from vLLM's `prompt_logprobs` (one entry per
    position, None for the first; each maps token ids to Logprob objects or floats)."""
    total = 0.0
    for position in range(start, len(sequence)):
        entry = prompt_logprobs[position]
        if entry is None or sequence[position] not in entry:
            raise ValueError(f"vLLM returned no log-probability for position {position} of a judge sequence")
        value = entry[sequence[position]]
        total += float(getattr(value, "logprob", value))
    return total


class VLLMJudge(LocalJudge):
    """The judge model at settings.model on vLLM; prompts are rendered and candidates tokenised as `local`."""

    def __init__(self, settings: JudgeSettings) -> None:
        super().__init__(settings)
        self._identity = {**self._identity, "backend": "vllm", "method": METHOD}
        self._identity.pop("device", None)  # vLLM runs on the GPU it is given
        self._candidate_ids: dict[Scale, list[list[int]]] = {}  # by scale: tokenised once

    def _load(self) -> None:
        from transformers import AutoTokenizer
        from vllm import LLM

        self._tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
        self._model = LLM(**judge_llm_kwargs(self.settings))

    def candidate_logprobs(self, prompt: str, scale: Scale = SCALE_0_100) -> TopLogprobs:
        return self._batch([prompt], scale)[0]

    def _batch(self, prompts: Sequence[str], scale: Scale) -> list[TopLogprobs]:
        """Every candidate of every prompt in one vLLM call."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if scale not in self._candidate_ids:
            self._candidate_ids[scale] = self.candidate_token_ids(candidates_of(scale))
        candidates = self._candidate_ids[scale]
        starts, sequences = [], []
        for prompt in prompts:
            ids = self.prompt_ids(prompt)
            starts += [len(ids)] * len(candidates)
            sequences += [ids + row for row in candidates]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.model.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params,
                                      use_tqdm=False)
        totals = [continuation_logprob(o.prompt_logprobs, s, start)
                  for o, s, start in zip(outputs, sequences, starts, strict=True)]
        names = list(candidates_of(scale))
        return [list(zip(names, totals[i * len(names):(i + 1) * len(names)], strict=True))
                for i in range(len(prompts))]

    def iter_logprobs(self, prompts: Sequence[str], scale: Scale = SCALE_0_100
                      ) -> Iterator[tuple[int, TopLogprobs]]:
        size = self.settings.batch_size
        for start in range(0, len(prompts), size):
            for offset, pairs in enumerate(self._batch(prompts[start:start + size], scale)):
                yield start + offset, pairs
