"""Sampling through an OpenAI-compatible server: OpenAI itself (GPT-4o and its fine-tunes, as in the paper),
a `vllm serve` endpoint with LoRA modules, or any compatible provider.

One chat.completions request draws `n` answers (up to `sample.max_n` per request, the rest in further
requests with seeds of their own); a base model (`chat: false`) is asked through the completions endpoint
with the raw prompt. Requests run `sample.concurrency` at a time through the official client (its retries
and timeouts), and every response is kept in an sqlite cache (`sample.cache`) as it arrives, so a rerun,
or a job killed in the middle of a question, sends nothing twice. The server applies the chat template
and checks prompt lengths; there is no local tokenizer.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..api import Attempts, ResponseCache, api_key, call, count_usage, make_client
from ..errors import EMError
from ..progress import Progress
from . import Completion, Request, SampleSettings, prompt_text

SEED_SPACE = 1 << 63


def call_kwargs(settings: SampleSettings, model: str, request: Request, n: int, first: int) -> dict[str, Any]:
    """The arguments of one API call: `n` answers of `request`, starting at its answer `first`."""
    kwargs: dict[str, Any] = {
        "model": model, "n": n, "temperature": request.temperature, "top_p": settings.top_p,
        "max_tokens": settings.max_tokens, "seed": (request.seed + first) % SEED_SPACE,
    }
    if settings.chat:
        kwargs["messages"] = request.messages
    else:
        kwargs["prompt"] = prompt_text(None, request.messages, chat=False)
    if settings.extra_body:
        kwargs["extra_body"] = dict(settings.extra_body)
    return kwargs


class OpenAISampler:
    """Answers requests from `model` on the server at `settings.base_url`."""

    tokenizer = None  # the server's: prompt lengths are its to check

    def __init__(self, settings: SampleSettings, model: str) -> None:
        self.settings = settings
        self.model = model
        self.key = api_key(settings.api_key_env, "sample.api_key_env",
                           f"sampling {model!r} from {settings.base_url} needs its API key")
        self.attempts = Attempts()
        self.client = make_client(settings.base_url, self.key, settings.max_retries, settings.timeout_s,
                                  self.attempts)
        self.cache = ResponseCache(settings.cache) if settings.cache else None
        self.progress = Progress("openai sample", total=None, unit="requests")  # requests, tokens, spend
        self.pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="sample")

    @property
    def usd(self) -> float:
        """What this sampler's requests cost at the settings' prices (cached answers cost nothing)."""
        return float(self.progress.counters.get("usd", 0.0))

    def close(self) -> None:
        """Log the last progress line (requests, retries, tokens, spend) and let go of the server."""
        self.pool.shutdown()
        self.progress.close()
        self.client.close()
        if self.cache:
            self.cache.close()

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        calls = [(index, first, min(self.settings.max_n, request.n - first))
                 for index, request in enumerate(requests)
                 for first in range(0, request.n, self.settings.max_n)]
        answers = list(self.pool.map(lambda c: self._call(requests[c[0]], c[1], c[2], self.progress), calls))
        out: list[list[Completion]] = [[] for _ in requests]
        for (index, _, _), completions in zip(calls, answers, strict=True):
            out[index].extend(completions)
        return out

    def _call(self, request: Request, first: int, n: int, progress: Progress) -> list[Completion]:
        """One request, from the cache when it was answered before."""
        kwargs = call_kwargs(self.settings, self.model, request, n, first)
        key = ResponseCache.key([self.settings.base_url, kwargs])
        cached = self.cache.get(key) if self.cache else None
        if cached is None:
            s = self.settings
            endpoint = self.client.chat.completions if s.chat else self.client.completions
            response = call(lambda: endpoint.create(**kwargs), self.key,
                            f"sampling {self.model!r} from {s.base_url} failed")
            choices = sorted(response.choices, key=lambda c: c.index)
            texts = [c.message.content or "" if s.chat else c.text for c in choices]
            if len(choices) != n:
                raise EMError(f"{s.base_url} answered {len(choices)} choices for n={n} (model "
                              f"{self.model!r}); set sample.max_n: 1 for a server without n")
            tokens = count_usage(progress, self.attempts, response, s.usd_per_million_input_tokens,
                                 s.usd_per_million_output_tokens)
            cached = {"answers": [[t, "length" if c.finish_reason == "length" else "stop"]
                                  for t, c in zip(texts, choices, strict=True)], "usage": list(tokens)}
            if self.cache:
                self.cache.put(key, cached)
        else:
            progress.update(1, cached=1)
        return [Completion(text, finish) for text, finish in cached["answers"]]
