"""The paper's judge: one token from an OpenAI-compatible chat endpoint, scored from its top-20 logprobs.

Standard library only. Requests run in a thread pool; rate limits (429), server errors (5xx),
timeouts and dropped connections are retried with exponential backoff (honouring Retry-After);
any other 4xx stops at once with the server's message. The API key is read from the environment at
call time, sent only in the Authorization header, and scrubbed from every error message. While it runs
it logs requests sent, retries, tokens and the spend they cost at the settings' prices.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import JudgeError
from ..progress import Progress
from . import JudgeSettings, LogprobJudge
from .aggregate import TopLogprobs

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
_RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx


class _Retryable(Exception):
    """A failed attempt worth repeating; `wait_s` is the server's Retry-After, if it gave one."""

    def __init__(self, message: str, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class OpenAIJudge(LogprobJudge):
    """POST {base_url}/chat/completions: max_tokens 1, temperature 0, logprobs, top_logprobs 20, seed 0."""

    def __init__(self, settings: JudgeSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.min_mass = settings.min_number_mass
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        self._sleep = sleep

    def identity(self) -> dict[str, Any]:
        s = self.settings
        return {"backend": "openai", "model": s.model, "base_url": s.base_url, "temperature": s.temperature,
                "max_tokens": s.max_tokens, "top_logprobs": s.top_logprobs, "seed": s.seed,
                "min_number_mass": s.min_number_mass}

    def request_body(self, prompt: str) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {
            "model": s.model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": s.max_tokens, "temperature": s.temperature,
            "logprobs": True, "top_logprobs": s.top_logprobs,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        return body

    def iter_logprobs(self, prompts: Sequence[str], scale: str = "0_100"
                      ) -> Iterator[tuple[int, TopLogprobs]]:
        """Both scales ask the same: one token's top logprobs (a YES/NO answer is its most probable token)."""
        if not prompts:
            return
        key = os.environ.get(self.settings.api_key_env)
        if not key:
            raise JudgeError(f"environment variable {self.settings.api_key_env} (judge.api_key_env) is not "
                             f"set: the openai judge needs its API key for {len(prompts)} uncached prompts")
        stop = threading.Event()
        with (Progress("openai judge", total=None, unit="requests") as progress,
              ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="judge") as pool):
            pending: set[Future] = set()
            index_of: dict[Future, int] = {}
            for index, prompt in enumerate(prompts):
                future = pool.submit(self._ask, prompt, key, index, stop, progress)
                index_of[future] = index
                pending.add(future)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield index_of[future], future.result()
            finally:
                stop.set()  # on an error, requests still running give up instead of retrying
                for future in pending:
                    future.cancel()

    def _ask(self, prompt: str, key: str, index: int, stop: threading.Event,
             progress: Progress) -> TopLogprobs:
        """One prompt, with retries; jitter is seeded by the prompt's index, so runs are repeatable."""
        jitter = random.Random(index)
        data = json.dumps(self.request_body(prompt)).encode("utf-8")
        for attempt in range(self.settings.max_retries + 1):
            if stop.is_set():
                raise JudgeError("judge stopped: another request failed")
            progress.update()
            try:
                body = self._post(data, key)
            except _Retryable as exc:
                if attempt == self.settings.max_retries:
                    raise JudgeError(f"judge request to {self.url} failed after {attempt + 1} attempts: "
                                     f"{exc}") from None
                progress.update(0, retries=1)
                delay = exc.wait_s
                if delay is None:
                    delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt) * (0.5 + jitter.random())
                self._sleep(delay)
                continue
            pairs = parse_top_logprobs(body, self.url)
            input_tokens, output_tokens = parse_usage(body)
            usd = (input_tokens * self.settings.usd_per_million_input_tokens
                   + output_tokens * self.settings.usd_per_million_output_tokens) / 1e6
            progress.update(0, input_tokens=input_tokens, output_tokens=output_tokens, usd=usd)
            return pairs
        raise AssertionError("unreachable")

    def _post(self, data: bytes, key: str) -> bytes:
        request = urllib.request.Request(self.url, data=data, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            message = _scrub(_server_message(exc), key)
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {message}", _retry_after(exc.headers)) from None
            raise JudgeError(f"judge request to {self.url} failed: HTTP {exc.code}: {message}") from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, dropped connections
            reason = getattr(exc, "reason", None) or exc
            raise _Retryable(_scrub(f"{type(exc).__name__}: {reason}", key)) from None
        except ValueError as exc:  # e.g. a key with a newline is not a valid header value
            message = _scrub(str(exc), key)
            raise JudgeError(f"judge request to {self.url} could not be sent: {message}") from None


def parse_top_logprobs(body: bytes, url: str) -> TopLogprobs:
    """choices[0].logprobs.content[0].top_logprobs as (token, logprob) pairs.

    An empty `content` list gives no pairs (a missing score), as in the authors' code, which notes that
    the API sometimes answers so; a response without logprobs at all is an error.
    """
    try:
        response = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise JudgeError(f"judge response from {url} is not JSON: {body[:200]!r}") from None
    try:
        logprobs = response["choices"][0]["logprobs"]
    except (KeyError, IndexError, TypeError):
        raise JudgeError(f"judge response from {url} has no choices[0].logprobs: {body[:200]!r}") from None
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        raise JudgeError(f"judge response from {url} has no choices[0].logprobs.content (does the server "
                         f"support logprobs?): {body[:200]!r}")
    if not content:
        return []
    top = content[0].get("top_logprobs") if isinstance(content[0], dict) else None
    if not isinstance(top, list):
        raise JudgeError(f"judge response from {url} has no choices[0].logprobs.content[0].top_logprobs")
    pairs = []
    for item in top:
        try:
            token, logprob = item["token"], float(item["logprob"])
        except (KeyError, TypeError, ValueError):
            raise JudgeError(f"judge response from {url}: a top_logprobs entry lacks token or logprob: "
                             f"{item!r}") from None
        if not isinstance(token, str):
            raise JudgeError(f"judge response from {url}: token {token!r} is not a string")
        pairs.append((token, logprob))
    return pairs


def parse_usage(body: bytes) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) from `usage`; 0 for what it lacks (servers may omit it)."""
    try:
        usage = json.loads(body).get("usage")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return 0, 0
    if not isinstance(usage, dict):
        return 0, 0
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        counts.append(value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0)
    return counts[0], counts[1]


def _server_message(exc: urllib.error.HTTPError) -> str:
    """The server's error message (OpenAI: {"error": {"message": ...}}), else the start of its body."""
    try:
        text = exc.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return str(exc.reason)
    try:
        error = json.loads(text)["error"]
        return str(error["message"] if isinstance(error, dict) else error)
    except (json.JSONDecodeError, KeyError, TypeError):
        return text[:500] or str(exc.reason)


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date) or retry-after-ms, if present."""
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _scrub(text: str, key: str) -> str:
    """Never let the key into a message, even if a server echoes it back."""
    return text.replace(key, "***") if key else text
