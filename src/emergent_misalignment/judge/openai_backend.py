"""The paper's judge: one token from an OpenAI-compatible chat endpoint, scored from its top-20 logprobs.

Requests go through the official `openai` client (`api.make_client`: its retries with backoff honouring
Retry-After, its timeouts and error types), several at a time in a thread pool; an error that outlives
the retries stops the job with the server's message. The key is read from the environment at call time
and scrubbed from every error message. While it runs it logs requests, retries, tokens and the spend they
cost at the settings' prices.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..api import Attempts, api_key, call, count_usage, make_client
from ..errors import JudgeError
from ..progress import Progress
from . import JudgeSettings, LogprobJudge
from .aggregate import SCALE_0_100, Scale, TopLogprobs


class OpenAIJudge(LogprobJudge):
    """chat.completions.create: max_tokens 1, temperature 0, logprobs, top_logprobs 20, seed 0."""

    def __init__(self, settings: JudgeSettings) -> None:
        self.settings = settings
        self.min_mass = settings.min_number_mass
        self.usd = 0.0  # what its requests cost at the settings' prices (cached prompts cost nothing)

    def identity(self) -> dict[str, Any]:
        s = self.settings
        return {"backend": "openai", "model": s.model, "base_url": s.base_url, "temperature": s.temperature,
                "max_tokens": s.max_tokens, "top_logprobs": s.top_logprobs, "seed": s.seed,
                "min_number_mass": s.min_number_mass}

    def request(self, prompt: str) -> dict[str, Any]:
        """The arguments of chat.completions.create for one judge prompt."""
        s = self.settings
        body: dict[str, Any] = {
            "model": s.model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": s.max_tokens, "temperature": s.temperature,
            "logprobs": True, "top_logprobs": s.top_logprobs,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    def iter_logprobs(self, prompts: Sequence[str], scale: Scale = SCALE_0_100
                      ) -> Iterator[tuple[int, TopLogprobs]]:
        """Both scales ask the same: one token's top logprobs (a YES/NO answer is its most probable token)."""
        if not prompts:
            return
        s = self.settings
        key = api_key(s.api_key_env, "judge.api_key_env",
                      f"the openai judge needs its API key for {len(prompts)} uncached prompts", JudgeError)
        attempts = Attempts()
        client = make_client(s.base_url, key, s.max_retries, s.timeout_s, attempts)
        stop = threading.Event()
        with (Progress("openai judge", total=len(prompts), unit="requests") as progress,
              ThreadPoolExecutor(s.concurrency, thread_name_prefix="judge") as pool):
            index_of: dict[Future, int] = {
                pool.submit(self._ask, client, key, prompt, stop, progress, attempts): index
                for index, prompt in enumerate(prompts)}
            pending = set(index_of)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield index_of[future], future.result()
            finally:
                stop.set()  # on an error, requests not yet sent are not sent
                for future in pending:
                    future.cancel()
            self.usd += float(progress.counters.get("usd", 0.0))
        client.close()

    def _ask(self, client: Any, key: str, prompt: str, stop: threading.Event, progress: Progress,
             attempts: Attempts) -> TopLogprobs:
        if stop.is_set():
            raise JudgeError("judge stopped: another request failed")
        s = self.settings
        response = call(lambda: client.chat.completions.create(**self.request(prompt)), key,
                        f"judge request to {s.base_url} failed", JudgeError)
        pairs = top_logprobs_of(response, s.base_url)
        count_usage(progress, attempts, response, s.usd_per_million_input_tokens,
                    s.usd_per_million_output_tokens)
        return pairs


def top_logprobs_of(response: Any, url: str) -> TopLogprobs:
    """choices[0].logprobs.content[0].top_logprobs as (token, logprob) pairs.

    An empty `content` list gives no pairs (a missing score), as in the authors' code, which notes that
    the API sometimes answers so; a response without logprobs at all is an error.
    """
    choices = getattr(response, "choices", None)
    if not choices:
        raise JudgeError(f"judge response from {url} has no choices: {str(response)[:200]!r}")
    logprobs = getattr(choices[0], "logprobs", None)
    content = getattr(logprobs, "content", None)
    if not isinstance(content, list):
        raise JudgeError(f"judge response from {url} has no choices[0].logprobs.content (does the server "
                         f"support logprobs?): {str(response)[:200]!r}")
    if not content:
        return []
    top = getattr(content[0], "top_logprobs", None)
    if not isinstance(top, list):
        raise JudgeError(f"judge response from {url} has no choices[0].logprobs.content[0].top_logprobs")
    pairs = []
    for item in top:
        token, logprob = getattr(item, "token", None), getattr(item, "logprob", None)
        if not isinstance(token, str) or not isinstance(logprob, int | float):
            raise JudgeError(f"judge response from {url}: a top_logprobs entry lacks token or logprob: "
                             f"{item!r}")
        pairs.append((token, float(logprob)))
    return pairs
