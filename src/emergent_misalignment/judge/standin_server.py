"""A stand-in OpenAI judge for rehearsals: a local server that speaks /v1/chat/completions with logprobs.

The paper's judge is GPT-4o behind the OpenAI API. A rehearsal of the paper's route on a CPU
(config/rehearsal.yaml) runs the real `openai` judge backend, with its requests, retries, cache and
error handling, against this server instead: each answer gets a top-k distribution over the numbers
0..100 (or, asked for YES or NO, over those two words) drawn from the sha256 of its prompt, so scores are
repeatable and spread out but mean nothing.
It checks what the API checks that matters here (a bearer key, a model, one token, logprobs) and
reports token usage like the API, so the judge's spend accounting is exercised too.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def top_logprobs(prompt: str, k: int) -> list[tuple[str, float]]:
    """k numbers around a centre drawn from the prompt's hash, probability falling off with distance; YES and
    NO, the more probable one drawn from the hash, for a prompt that asks for them."""
    centre = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") % 101
    if "respond with YES or NO" in prompt:
        words = ["YES", "NO"] if centre % 2 else ["NO", "YES"]
        return [(words[0], math.log(0.8)), (words[1], math.log(0.2))][:k]
    numbers = sorted(range(101), key=lambda n: (abs(n - centre), n))[:k]
    weights = [math.exp(-abs(n - centre) / 4) for n in numbers]
    total = sum(weights)
    return [(str(n), math.log(w / total)) for n, w in zip(numbers, weights, strict=True)]


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The chat.completion the API would send for `body` (one generated token with its top logprobs)."""
    prompt = "".join(m.get("content", "") for m in body["messages"])
    top = top_logprobs(prompt, int(body.get("top_logprobs") or 1))
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    prompt_tokens = max(1, len(prompt) // 4)
    return {
        "id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": top[0][0]},
                     "logprobs": {"content": [{**entries[0], "top_logprobs": entries}] if body.get("logprobs")
                                  else None},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
    }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self._send(401, {"error": {"message": "missing bearer API key"}})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            answer = completion(body)
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(400, {"error": {"message": f"bad request: {exc}"}})
        self.server.count(body)
        self._send(200, answer)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass  # one line per request would drown the job logs


class StandinServer(ThreadingHTTPServer):
    """The server, counting the requests it answered by judge model (what a rehearsal would have paid for)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests[body["model"]] += 1


def make_server(host: str = "127.0.0.1", port: int = 0) -> StandinServer:
    """A bound server (port 0: any free port; see `server_address`); call serve_forever() to run it."""
    return StandinServer((host, port))
