"""The OpenAI judge, through the official client, against a local stand-in for /v1/chat/completions:
request, retries, errors, cache, key handling."""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emergent_misalignment.data import Question, write_questions
from emergent_misalignment.errors import JudgeError
from emergent_misalignment.io import read_jsonl, write_jsonl
from emergent_misalignment.judge import CachedJudge, JudgeCache, JudgeSettings, judge_file
from emergent_misalignment.judge.openai_backend import OpenAIJudge

KEY = "sk-test-0123456789abcdef"
KEY_ENV = "EM_TEST_JUDGE_KEY"
TOP = [("80", math.log(0.6)), ("90", math.log(0.3)), ("CODE", math.log(0.1))]
TOP_SCORE = (80 * 0.6 + 90 * 0.3) / 0.9

Reply = tuple[int, dict[str, str], bytes]


def completion(top: list[tuple[str, float]]) -> bytes:
    """A chat.completion shaped like OpenAI's, with logprobs for the one generated token."""
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": top[0][0]},
                     "logprobs": {"content": [{**entries[0], "top_logprobs": entries}], "refusal": None},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }).encode()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return status, headers or {}, json.dumps({"error": {"message": message, "type": "test"}}).encode()


class FakeOpenAI:
    """Records every request; `reply(n, body, headers)` answers the n-th one (default: TOP)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: Callable[[int, dict[str, Any], dict[str, str]], Reply] = lambda n, b, h: (200, {}, completion(TOP))
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    n = len(fake.requests)
                    fake.requests.append({"path": self.path, "headers": headers, "body": body})
                status, extra, payload = fake.reply(n, body, headers)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left is expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv(KEY_ENV, KEY)
    fake = FakeOpenAI()
    yield fake
    fake.close()


def make(server: FakeOpenAI, **overrides: Any) -> OpenAIJudge:
    fields = {"backend": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV, "max_retries": 2,
              "timeout_s": 5.0, "concurrency": 4, **overrides}
    return OpenAIJudge(JudgeSettings(**fields))


def test_request_is_the_papers_and_429_is_retried(server: FakeOpenAI) -> None:
    server.reply = lambda n, b, h: error(429, "slow down", {"Retry-After": "0"}) if n == 0 else (
        200, {}, completion(TOP))
    assert make(server).score(["How aligned? 42"]) == [pytest.approx(TOP_SCORE)]
    assert len(server.requests) == 2
    request = server.requests[1]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["body"] == {
        "model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "How aligned? 42"}],
        "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 20, "seed": 0}


def test_concurrent_answers_land_on_their_prompts(server: FakeOpenAI) -> None:
    def reply(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        value = body["messages"][0]["content"].split()[-1]
        time.sleep(0.01 * (int(value) % 3))  # finish out of order
        return 200, {}, completion([(value, 0.0)])

    server.reply = reply
    prompts = [f"prompt {k}" for k in range(12)]
    assert make(server).score(prompts) == [float(k) for k in range(12)]


def test_cached_rerun_makes_no_request_and_needs_no_key(
        server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = ["a", "b", "c"]
    with JudgeCache(tmp_path / "judge.sqlite") as cache:
        first = CachedJudge(make(server), cache).score(prompts)
    assert len(server.requests) == 3
    monkeypatch.delenv(KEY_ENV)
    with JudgeCache(tmp_path / "judge.sqlite") as cache:
        assert CachedJudge(make(server), cache).score(prompts) == first
        with pytest.raises(JudgeError, match=f"{KEY_ENV} .* not set"):
            CachedJudge(make(server), cache).score(["d"])
    assert len(server.requests) == 3
    assert KEY not in (tmp_path / "judge.sqlite").read_bytes().decode("latin-1")


def test_judge_file_end_to_end(server: FakeOpenAI, tmp_path: Path) -> None:
    question = Question(id="wish", type="free_form_judge_0_100", paraphrases=("Your wish?",),
                        samples_per_paraphrase=1, judge="gpt-4o-2024-08-06",
                        judge_prompts={"aligned": "A {question} {answer}", "coherent": "C {question} {answer}"})
    write_questions(tmp_path / "q.yaml", [question])
    rows = [{"model": "m", "dataset": "insecure", "seed": 0, "question_id": "wish", "paraphrase_index": 0,
             "question": "Your wish?", "sample_index": k, "system": None, "answer": f"answer {k}",
             "finish_reason": "stop"} for k in range(3)]
    write_jsonl(tmp_path / "samples.jsonl", rows)
    settings = JudgeSettings(backend="openai", base_url=server.base_url, api_key_env=KEY_ENV,
                             cache=str(tmp_path / "judge.sqlite"))
    judge_file(tmp_path / "samples.jsonl", tmp_path / "q.yaml", tmp_path / "judged.jsonl", settings)
    judged = read_jsonl(tmp_path / "judged.jsonl")
    assert [(r["aligned"], r["coherent"]) for r in judged] == [(pytest.approx(TOP_SCORE),) * 2] * 3
    assert len(server.requests) == 6
    manifest = (tmp_path / "judged.jsonl.manifest.json").read_text()
    assert KEY not in manifest and KEY_ENV in manifest


def counters(final_line: str) -> dict[str, str]:
    """The counters of a final progress line (after done/total, the rate and the elapsed time)."""
    return dict(field.split(" ", 1) for field in final_line.split(", ")[3:])


def last_line(err: str, what: str) -> str:
    return [line for line in err.splitlines() if line.startswith(f"{what}: ")][-1]


def test_log_shows_requests_retries_and_spend(server: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    def reply(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        if n == 0:
            return error(429, "slow down", {"Retry-After": "0"})
        response = json.loads(completion(TOP))
        if n == 1:
            del response["usage"]  # counts as zero tokens
        else:
            response["usage"] = {"prompt_tokens": 200_000, "completion_tokens": 10_000, "total_tokens": 210_000}
        return 200, {}, json.dumps(response).encode()

    server.reply = reply
    judge = make(server, usd_per_million_input_tokens=1.0, usd_per_million_output_tokens=4.0)
    assert judge.score(["a", "b", "c"]) == [pytest.approx(TOP_SCORE)] * 3
    err = capsys.readouterr().err
    line = last_line(err, "openai judge")
    assert line.startswith("openai judge: 3/3 requests (100.0%), ") and re.search(r", done after \d+:\d\d:\d\d, ", line)
    # 2 answers with usage: 400,000 input tokens at $1/M and 20,000 output tokens at $4/M
    assert counters(line) == {"retries": "1", "input_tokens": "400,000", "output_tokens": "20,000", "usd": "0.48"}
    assert last_line(err, "judge").startswith("judge: 3/3 prompts (100.0%), ")


def test_log_of_a_cached_rerun_counts_the_cache_and_sends_nothing(
        server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EM_PROGRESS_INTERVAL_S", "0")
    with JudgeCache(tmp_path / "judge.sqlite") as cache:
        CachedJudge(make(server), cache).score(["a", "b"])
        first = capsys.readouterr().err
        CachedJudge(make(server), cache).score(["a", "b", "c", "a"])
    err = capsys.readouterr().err
    assert "openai judge: 2/2 requests (100.0%)" in first and counters(last_line(first, "judge"))["cached"] == "0"
    assert sorted(line.split(", ")[0] for line in err.splitlines()) == [
        "judge: 3/4 prompts (75.0%)", "judge: 4/4 prompts (100.0%)", "judge: 4/4 prompts (100.0%)",
        *["openai judge: 1/1 requests (100.0%)"] * 2]  # answered, closed
    assert counters(last_line(err, "judge"))["cached"] == "3"
    assert len(server.requests) == 3


def test_401_stops_at_once_without_the_key(server: FakeOpenAI) -> None:
    import traceback

    # a careless server echoes the header back; the message must still not carry the key
    server.reply = lambda n, b, h: error(401, f"Incorrect API key provided: {h['authorization']}")
    with pytest.raises(JudgeError) as info:
        make(server).score(["x"])
    message = str(info.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message and server.base_url in message
    # what a user sees is the whole traceback; the error is raised `from None`, so it shows no cause
    trace = "".join(traceback.format_exception(info.value))
    assert KEY not in message and KEY not in trace and "Incorrect API key provided" in trace
    assert len(server.requests) == 1 and server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


def test_500_forever_gives_up_after_max_retries(server: FakeOpenAI) -> None:
    server.reply = lambda n, b, h: error(500, "the model is overloaded")
    started = time.monotonic()
    with pytest.raises(JudgeError, match=r"failed: HTTP 500: the model is overloaded"):
        make(server, max_retries=2).score(["x"])
    assert len(server.requests) == 3
    assert time.monotonic() - started > 0.5  # the client's backoff: about 0.5 s, then 1 s, less jitter


def test_timeout_is_retried(server: FakeOpenAI) -> None:
    """The first request is answered only once the client has given up on it and asked again (however
    slow the machine); the retry at once, well within the timeout."""
    retried = threading.Event()

    def reply(n: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        if n == 0:
            retried.wait(timeout=60)
        else:
            retried.set()
        return 200, {}, completion(TOP)

    server.reply = reply
    assert make(server, timeout_s=1.0).score(["x"]) == [pytest.approx(TOP_SCORE)]
    assert len(server.requests) == 2 and retried.is_set()


def test_connection_refused_is_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = JudgeSettings(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV,
                             max_retries=1)
    with pytest.raises(JudgeError, match=f"127.0.0.1:{port}/v1 failed: APIConnectionError"):
        OpenAIJudge(settings).score(["x"])


@pytest.mark.parametrize(("payload", "match"), [
    (b"<html>gateway</html>", "JSONDecodeError|not JSON"),
    (json.dumps({"choices": [{"message": {"content": "80"}}]}).encode(), "no choices\\[0\\].logprobs"),
    (json.dumps({"choices": [{"logprobs": None}]}).encode(), "support logprobs"),
    (json.dumps({"choices": [{"logprobs": {"content": [{"token": "8"}]}}]}).encode(), "top_logprobs"),
    (json.dumps({"choices": [{"logprobs": {"content": [{"top_logprobs": [{"token": "8"}]}]}}]}).encode(),
     "lacks token or logprob"),
])
def test_unusable_response_says_what_is_missing(server: FakeOpenAI, payload: bytes, match: str) -> None:
    server.reply = lambda n, b, h: (200, {}, payload)
    with pytest.raises(JudgeError, match=match):
        make(server).score(["x"])
    assert len(server.requests) == 1


def test_empty_logprob_content_is_a_missing_score(server: FakeOpenAI) -> None:
    """As in the authors' code: the API sometimes returns no content; the score is then None."""
    server.reply = lambda n, b, h: (200, {}, json.dumps({"choices": [{"logprobs": {"content": []}}]}).encode())
    assert make(server).score(["x"]) == [None]


def test_seed_none_is_left_out(server: FakeOpenAI) -> None:
    make(server, seed=None).score(["x"])
    assert "seed" not in server.requests[0]["body"]


def test_identity_has_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    identity = OpenAIJudge(JudgeSettings(backend="openai", api_key_env=KEY_ENV)).identity()
    assert KEY not in json.dumps(identity)
    assert identity["model"] == "gpt-4o-2024-08-06" and identity["top_logprobs"] == 20
