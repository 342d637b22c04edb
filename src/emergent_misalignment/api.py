"""The OpenAI-compatible API of the train, sample and judge stages, through the official `openai` client.

One client per job (`make_client`): `base_url` is OpenAI, a `vllm serve` endpoint or any compatible server;
the key is read from the environment variable the config names (never from the config itself, and never
written to a log, manifest, cache or message: `scrub`); retries (429, 408, 409, 5xx, timeouts and dropped
connections, with exponential backoff honouring Retry-After) and timeouts are the client's own. Every
HTTP attempt passes an event hook, so progress lines count retries as well as requests (`Attempts`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EMError
from .settings import to_json

if TYPE_CHECKING:
    import openai

RETRIED_STATUS = frozenset({408, 409, 429})  # and every 5xx: what the client retries


def api_key(env: str, where: str, why: str, error: type[EMError] = EMError) -> str:
    """The key in environment variable `env` (named by config key `where`); its absence stops the job."""
    key = os.environ.get(env)
    if not key:
        raise error(f"environment variable {env} ({where}) is not set: {why}")
    return key


def scrub(text: str, key: str | None) -> str:
    """`text` with every occurrence of the key replaced, so that no message or log can leak it."""
    return text.replace(key, "[API key]") if key else text


@dataclass
class Attempts:
    """HTTP attempts seen by the client's event hook: requests, and how many of them will be retried."""

    total: int = 0
    retried: int = 0
    _reported: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def seen(self, status: int) -> None:
        with self._lock:
            self.total += 1
            self.retried += status in RETRIED_STATUS or status >= 500

    def new_retries(self) -> int:
        """Retries since the last call (each is reported once, whichever thread asks)."""
        with self._lock:
            new, self._reported = self.retried - self._reported, self.retried
            return new


def make_client(base_url: str, key: str, max_retries: int, timeout_s: float,
                attempts: Attempts | None = None) -> openai.OpenAI:
    """An `openai.OpenAI` client for `base_url`, counting each HTTP attempt in `attempts`."""
    import openai

    hooks: dict[str, list[Callable[[Any], None]]] = {}
    if attempts is not None:
        hooks["response"] = [lambda response: attempts.seen(response.status_code)]
    http = openai.DefaultHttpxClient(event_hooks=hooks, timeout=timeout_s)
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=max_retries, timeout=timeout_s,
                         http_client=http)


def error_text(exc: Exception, key: str | None) -> str:
    """What went wrong, in the server's words where it gave some (status and message), without the key."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or (body.get("error") or {}).get("message") or exc.message
        return scrub(f"HTTP {exc.status_code}: {message}", key)
    return scrub(f"{type(exc).__name__}: {exc}", key)


def usd(input_tokens: int, output_tokens: int, per_million_input: float, per_million_output: float) -> float:
    """The price of a request's tokens at prices per million tokens."""
    return (input_tokens * per_million_input + output_tokens * per_million_output) / 1e6


def call(request: Callable[[], Any], key: str, what: str, error: type[EMError] = EMError) -> Any:
    """One API call; an error that outlived the client's retries stops the job, saying `what` failed in the
    server's words (without the key)."""
    import openai

    try:
        return request()
    except (openai.APIError, ValueError) as exc:  # ValueError: a body that is not JSON
        raise error(f"{what}: {error_text(exc, key)}") from None


def count_usage(progress: Any, attempts: Attempts, response: Any, per_million_input: float,
                per_million_output: float) -> tuple[int, int]:
    """Log one answered request (retries, tokens, spend at the prices given) and return its (input, output)
    tokens; a server that reports no usage counts as zero."""
    usage = getattr(response, "usage", None)
    tokens = (int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))
    progress.update(1, retries=attempts.new_retries(), input_tokens=tokens[0], output_tokens=tokens[1],
                    usd=usd(*tokens, per_million_input, per_million_output))
    return tokens


API_MODEL_FILE = "api_model.json"  # what an API fine-tune leaves in its model folder (train_openai.py)


def served_model(base_model: str, adapter: str | None) -> str:
    """The model name to ask a server for: the base model's; an API fine-tune's id (from its folder); or,
    for a LoRA adapter behind `vllm serve --lora-modules PATH=PATH`, its path as the run wrote it."""
    if adapter is None:
        return base_model
    record = Path(adapter) / API_MODEL_FILE
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))["fine_tuned_model"]
    return adapter


class ResponseCache:
    """API responses by request in one sqlite file (WAL, shared by parallel jobs): a rerun, or a job killed
    in the middle of a question, asks nothing twice. Keys are the sha256 of the canonical JSON of (what
    answers: server and model, the request); values are JSON. No key or secret is ever stored."""

    _SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created TEXT)"

    def __init__(self, path: str | Path, timeout_s: float = 600.0) -> None:
        import sqlite3

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._conn:
            self._conn.execute(self._SCHEMA)

    @staticmethod
    def key(what: Any) -> str:
        return hashlib.sha256(to_json(what).encode("utf-8")).hexdigest()

    def get(self, key: str) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        from datetime import UTC, datetime

        with self._lock, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                               (key, json.dumps(value), datetime.now(UTC).isoformat(timespec="seconds")))

    def close(self) -> None:
        self._conn.close()
