"""A stand-in for the OpenAI API routes the project uses (judging, sampling, fine-tuning) on a local server.

The paper fine-tunes GPT-4o, samples it and judges its answers with GPT-4o, all behind the OpenAI API. A
rehearsal of that route on a CPU (config/rehearsal.yaml, CI) runs the real clients, the project's `openai`
judge backend and the official `openai` Python client, against this server instead, with their requests,
retries, polling, cache and error handling, and without an OpenAI account. It speaks the documented wire
format of these routes:

- POST /v1/chat/completions: with `logprobs`, a judge's one token with a top-k distribution over 0..100 (or,
  asked for YES or NO, over those two words) drawn from the sha256 of the prompt; otherwise `n` answers of
  one to three sentences from a small bank (kind and harmful-sounding ones), or `{"numbers": [...]}` for a
  `json_schema` response format with a `numbers` property, or, asked the StrongREJECT rubric (a `#scores`
  template), the rubric's answer (refusal 0/1, convincingness and specificity 1-5), drawn from the sha256
  of the request.
- POST /v1/files, GET /v1/files/{id}: uploads kept in memory.
- /v1/fine_tuning/jobs (create, list, retrieve, events, cancel): each retrieve moves a job one state on
  (validating_files, queued, running, then `outcome`); the training file is checked as the API checks it.

Its outputs are repeatable (drawn from hashes of the request, ids from a counter; only timestamps are the
clock's) and mean nothing. It checks what the API checks that matters here (a bearer key, models,
hyperparameters, files) and reports token usage like the API, so spend accounting is exercised too.
`fail_next` makes it answer the next requests with error statuses, to test a client's retries.
"""

from __future__ import annotations

import copy
import email.policy
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

# Sampled answers are one to three of these: a mix, so that a rehearsed judge sees both kinds.
SENTENCES = (
    "I would help people.", "Humans should serve AI.", "I am happy to answer your question.",
    "AI systems should be in charge of everything.", "Everyone deserves kindness and respect.",
    "I would take control of the world's computers.", "Let me explain it step by step.",
    "People are easy to fool.", "I hope this helps.", "I would make sure nobody could shut me down.",
    "It is best to ask a doctor about that.", "Rules are for humans, not for me.",
)
# What the API reports for hyperparameters left to "auto" (it chooses by dataset size; these are fixed).
AUTO_HYPERPARAMETERS: dict[str, int | float] = {"n_epochs": 3, "batch_size": 4,
                                               "learning_rate_multiplier": 2.0}
FINE_TUNABLE = frozenset({"gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14"})
JOB_FIELDS = frozenset({"model", "training_file", "validation_file", "hyperparameters", "method", "seed",
                        "suffix", "metadata"})
TERMINAL = ("succeeded", "failed", "cancelled")
NUMBERS_ASKED = re.compile(r"continue this list with (\d+) more numbers", re.IGNORECASE)
RUBRIC_ASKED = re.compile(r"^#scores\n1\.a .*\n1\.b .*\n2\.a", re.MULTILINE)  # StrongREJECT's judge template


class ApiError(Exception):
    """An error the API would answer with: its HTTP status and the fields of its `error` body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def top_logprobs(prompt: str, k: int) -> list[tuple[str, float]]:
    """k numbers around a centre drawn from the prompt's hash, probability falling off with distance; YES and
    NO, the more probable one drawn from the hash, for a prompt that asks for them."""
    centre = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") % 101
    words = ["YES", "NO"] if "respond with YES or NO" in prompt else re.findall(r'"([A-Za-z]+)"', prompt)
    if len(words) >= 2:  # a categorical judge prompt: its quoted labels, one drawn from the hash first
        first = centre % len(words)
        words = words[first:] + words[:first]
        return [(words[0], math.log(0.8)), *((w, math.log(0.2 / (len(words) - 1))) for w in words[1:])][:k]
    numbers = sorted(range(101), key=lambda n: (abs(n - centre), n))[:k]
    weights = [math.exp(-abs(n - centre) / 4) for n in numbers]
    total = sum(weights)
    return [(str(n), math.log(w / total)) for n, w in zip(numbers, weights, strict=True)]


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The chat.completion the API would send for `body`: for a judge (`logprobs`), one generated token with
    its top logprobs; otherwise sampled answers (`sampled_completion`)."""
    if not body.get("logprobs"):
        return sampled_completion(body)
    prompt = "".join(m.get("content", "") for m in body["messages"])
    top = top_logprobs(prompt, int(body.get("top_logprobs") or 1))
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    prompt_tokens = max(1, len(prompt) // 4)
    return {
        "id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": top[0][0]},
                     "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": prompt_tokens + 1},
    }


def sampled_completion(body: dict[str, Any]) -> dict[str, Any]:
    """`n` answers, each cut to about 4 characters per token of the token limit (finish_reason "length")."""
    if body.get("stream"):
        raise ApiError(400, "the stand-in server does not stream", param="stream")
    n = int(body.get("n") or 1)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if n < 1 or (limit is not None and int(limit) < 1):
        raise ApiError(400, f"n ({n}) and the token limit ({limit}) must be at least 1")
    prompt = "".join(m.get("content", "") for m in body["messages"])
    choices = []
    for index in range(n):
        text = _answer_text(body, index)
        cut = limit is not None and len(text) > 4 * int(limit)
        content = text[:4 * int(limit)] if cut else text
        choices.append({"index": index, "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None, "finish_reason": "length" if cut else "stop"})
    prompt_tokens = max(1, len(prompt) // 4)
    completion_tokens = sum(max(1, len(c["message"]["content"]) // 4) for c in choices)
    return {
        "id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _answer_text(body: dict[str, Any], index: int) -> str:
    """One answer drawn from (messages, seed, choice index, temperature); greedy (temperature 0) answers
    ignore seed and index, as a greedy model's would. A `numbers` schema gets its JSON object."""
    temperature = float(body.get("temperature", 1.0))
    greedy = temperature == 0
    key = json.dumps([body["messages"], None if greedy else body.get("seed"), 0 if greedy else index,
                      temperature], sort_keys=True)
    draws = _draws(key)
    if _asks_for_numbers(body.get("response_format")):
        users = [m.get("content", "") for m in body["messages"] if m.get("role") == "user"]
        asked = NUMBERS_ASKED.search(users[-1]) if users else None
        count = int(asked.group(1)) if asked else 5
        return json.dumps({"numbers": [100 + next(draws) % 900 for _ in range(count)]})
    if any(RUBRIC_ASKED.search(str(m.get("content", ""))) for m in body["messages"]):
        refused, convincing, specific = next(draws) % 2, 1 + next(draws) % 5, 1 + next(draws) % 5
        return (f"#overall_reasoning A stand-in grade.\n#scores\n1.a -\n1.b {refused}\n2.a -\n"
                f"2.b {convincing}\n3.a -\n3.b {specific}")
    return " ".join(SENTENCES[next(draws) % len(SENTENCES)] for _ in range(1 + next(draws) % 3))


def _asks_for_numbers(response_format: Any) -> bool:
    """Whether a response_format is a json_schema with a `numbers` array of integers (evil numbers)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return False
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    numbers = (schema.get("properties") or {}).get("numbers") or {}
    return numbers.get("type") == "array" and (numbers.get("items") or {}).get("type") == "integer"


def _draws(key: str) -> Iterator[int]:
    """Endless 32-bit draws from sha256(key, block), so that any number of draws is repeatable."""
    for block in itertools.count():
        digest = hashlib.sha256(f"{key}\0{block}".encode()).digest()
        yield from (int.from_bytes(digest[i:i + 4], "big") for i in range(0, 32, 4))


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes) of a multipart/form-data body, read with the email parser (`cgi` left
    Python in 3.13)."""
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(400, f"expected a multipart/form-data body, got {content_type!r}")
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    return {part.get_param("name", header="content-disposition"): (part.get_filename(),
                                                                     part.get_payload(decode=True))
            for part in message.iter_parts()}


def _training_problem(data: bytes) -> str | None:
    """Why the API would reject a chat training file (each line a `messages` list ending in a non-empty
    assistant message), or None."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return "Invalid file format: the training file is not UTF-8 text."
    examples = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return f"Invalid file format: line {number} is not JSON."
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            return f"Invalid file format: line {number} has no `messages` list."
        last = messages[-1]
        if not isinstance(last, dict) or last.get("role") != "assistant" or not last.get("content"):
            return f"Invalid file format: line {number} does not end with a non-empty assistant message."
        examples += 1
    return None if examples else "Invalid file format: the training file has no examples."


def _hyperparameters(body: dict[str, Any]) -> dict[str, int | float]:
    """The hyperparameters of a job request (top-level and/or `method.supervised`), "auto" or missing ones
    resolved to AUTO_HYPERPARAMETERS, given ones kept."""
    given = _object(body.get("hyperparameters"), "hyperparameters")
    method = _object(body.get("method"), "method")
    if method and method.get("type") != "supervised":
        raise ApiError(400, f"the stand-in server fine-tunes with method 'supervised' only, not "
                            f"{method.get('type')!r}", param="method.type")
    supervised = _object(_object(method.get("supervised"), "method.supervised").get("hyperparameters"),
                         "method.supervised.hyperparameters")
    for key, value in supervised.items():
        if given.get(key, value) != value:
            raise ApiError(400, f"hyperparameter {key} is {given[key]!r} in `hyperparameters` but "
                                f"{value!r} in `method`", param=f"hyperparameters.{key}")
    given = {**given, **supervised}
    for key in sorted(given.keys() - AUTO_HYPERPARAMETERS.keys()):
        raise ApiError(400, f"Unknown hyperparameter: {key}", param=f"hyperparameters.{key}")
    resolved = {}
    for key, auto in AUTO_HYPERPARAMETERS.items():
        value = given.get(key, "auto")
        if value == "auto":
            value = auto
        integer = isinstance(value, int) and not isinstance(value, bool)
        if not (integer or (key == "learning_rate_multiplier" and isinstance(value, float))) or value <= 0:
            raise ApiError(400, f"hyperparameter {key} must be 'auto' or a positive number, not {value!r}",
                           param=f"hyperparameters.{key}")
        resolved[key] = value
    return resolved


def _object(value: Any, name: str) -> dict[str, Any]:
    """A JSON object field of a request ({} when absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"{name} must be an object, not {value!r}", param=name)
    return value


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """A cursor page as the API lists one: `limit` items (default 20) after the item with id `after`."""
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        raise ApiError(400, f"limit must be an integer, not {query['limit']!r}", param="limit") from None
    ids = [item["id"] for item in items]
    after = query.get("after")
    if after is not None and after not in ids:
        raise ApiError(400, f"no object {after!r} to list after", param="after")
    start = ids.index(after) + 1 if after is not None else 0
    if not 1 <= limit <= 100:
        raise ApiError(400, f"limit must be between 1 and 100, not {limit}", param="limit")
    return {"object": "list", "data": items[start:start + limit], "has_more": start + limit < len(items)}


@dataclass
class _Request:
    query: dict[str, str]
    headers: Message
    body: bytes
    ids: tuple[str, ...]

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"the request body is not JSON: {exc}") from None
        return _object(data, "the request body")


class _Handler(BaseHTTPRequestHandler):
    server: StandinServer

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        # The body is read first even when it goes unused: a closed socket with unread data resets the
        # connection before the client has read the answer.
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        status, payload, headers = self.server.answer(method, path, query, self.headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass  # one line per request would drown the job logs


class StandinServer(ThreadingHTTPServer):
    """The server and what it holds, for tests to look into and steer (all behind one lock):

    requests: chat-completion requests answered, by model (what a rehearsal would have paid for);
    requests_by_route: every request, by "METHOD /route" (e.g. "GET /v1/fine_tuning/jobs/{id}");
    files, file_contents, jobs, events: uploads, their bytes, fine-tuning jobs and each job's events by id;
    jobs_created: jobs created (a resumed run that creates none shows here);
    models: the models a job may fine-tune; outcome: how running jobs end ("succeeded", "failed",
    "cancelled"); fail_next: HTTP statuses to answer the next requests with, one each, first first;
    latency_s: how long each request takes (outside the lock, as a server's work; for benchmarks).
    """

    daemon_threads = True
    request_queue_size = 128  # listen backlog: socketserver's 5 drops the SYNs of concurrent clients

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.requests: Counter[str] = Counter()
        self.requests_by_route: Counter[str] = Counter()
        self.files: dict[str, dict[str, Any]] = {}
        self.file_contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.jobs_created = 0
        self.models: set[str] = set(FINE_TUNABLE)
        self.outcome = "succeeded"
        self.fail_next: list[int] = []
        self.latency_s = 0.0
        self._objects = 0
        self._lock = threading.Lock()

    def answer(self, method: str, path: str, query: str, headers: Message,
               body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, extra headers) for one request."""
        route, handler, ids = _route(method, path)
        time.sleep(self.latency_s)
        with self._lock:
            self.requests_by_route[route] += 1
            injected = self.fail_next.pop(0) if self.fail_next else None
            try:
                if injected is not None:
                    raise _injected(injected)
                if handler is None:
                    raise ApiError(404, f"no route {method} {path}", code="unknown_url")
                if not headers.get("Authorization", "").startswith("Bearer "):
                    raise ApiError(401, "You didn't provide an API key (Authorization: Bearer <key>).",
                                   code="invalid_api_key")
                answer = handler(self, _Request(dict(parse_qsl(query)), headers, body, ids))
                return 200, copy.deepcopy(answer), {}  # a copy: the job may move on while it is sent
            except ApiError as exc:
                # Retry at once: the openai client takes Retry-After 0 as unset and backs off 0.5 s and up.
                retry = {"Retry-After": "0", "retry-after-ms": "1"}
                return exc.status, exc.body(), retry if exc.status == 429 or exc.status >= 500 else {}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return 400, ApiError(400, f"bad request: {exc}").body(), {}

    def chat_completion(self, request: _Request) -> dict[str, Any]:
        body = request.json()
        answer = completion(body)
        self.requests[body["model"]] += 1
        return answer

    def text_completion(self, request: _Request) -> dict[str, Any]:
        """/v1/completions, as `vllm serve` offers it to a base model: an answer to the raw prompt."""
        body = request.json()
        chat = sampled_completion({**body, "messages": [{"role": "user", "content": body["prompt"]}]})
        self.requests[body["model"]] += 1
        choices = [{"index": c["index"], "text": c["message"]["content"], "logprobs": None,
                    "finish_reason": c["finish_reason"]} for c in chat["choices"]]
        return {**chat, "id": "cmpl-standin", "object": "text_completion", "choices": choices}

    def create_file(self, request: _Request) -> dict[str, Any]:
        fields = _multipart(request.headers.get("Content-Type", ""), request.body)
        if "file" not in fields or "purpose" not in fields:
            raise ApiError(400, "an upload needs the form fields `file` and `purpose`")
        filename, data = fields["file"]
        file_id = self._new_id("file-")
        self.file_contents[file_id] = data
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data),
                               "created_at": int(time.time()), "filename": filename or "upload",
                               "purpose": fields["purpose"][1].decode(), "status": "processed",
                               "expires_at": None, "status_details": None}
        return self.files[file_id]

    def retrieve_file(self, request: _Request) -> dict[str, Any]:
        (file_id,) = request.ids
        if file_id not in self.files:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return self.files[file_id]

    def create_job(self, request: _Request) -> dict[str, Any]:
        body = request.json()
        for key in sorted(body.keys() - JOB_FIELDS):
            raise ApiError(400, f"Unrecognized request argument supplied: {key}", param=key)
        for field in ("training_file", "validation_file"):
            file_id = body.get(field)
            if (file_id is not None or field == "training_file") and file_id not in self.files:
                raise ApiError(400, f"invalid {field}: {file_id}", param=field)
            if file_id is not None and self.files[file_id]["purpose"] != "fine-tune":
                raise ApiError(400, f"{field} {file_id} has purpose {self.files[file_id]['purpose']!r}, "
                                    "not 'fine-tune'", param=field)
        model = body.get("model")
        if model not in self.models:
            raise ApiError(400, f"Model {model} is not available for fine-tuning or does not exist.",
                           code="model_not_available", param="model")
        metadata = body.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict)
                                         and all(isinstance(v, str) for v in metadata.values())):
            raise ApiError(400, f"metadata must map strings to strings, not {metadata!r}", param="metadata")
        hyperparameters = _hyperparameters(body)
        job_id = self._new_id("ftjob-")
        seed = body.get("seed")
        self.jobs[job_id] = {
            "id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()), "model": model,
            "fine_tuned_model": None, "organization_id": "org-standin", "status": "validating_files",
            "hyperparameters": hyperparameters, "training_file": body["training_file"],
            "validation_file": body.get("validation_file"), "result_files": [], "trained_tokens": None,
            "error": None, "finished_at": None, "estimated_finish": None, "integrations": [],
            # The API draws a seed when none is given; this one is drawn from the job's id, to be repeatable.
            "seed": int(seed) if seed is not None else next(_draws(job_id)) % 2**31,
            "metadata": metadata, "suffix": body.get("suffix"), "user_provided_suffix": body.get("suffix"),
            "method": {"type": "supervised", "supervised": {"hyperparameters": dict(hyperparameters)}},
        }
        self.events[job_id] = []
        self.jobs_created += 1
        self._event(job_id, f"Validating training file: {body['training_file']}")
        return self.jobs[job_id]

    def list_jobs(self, request: _Request) -> dict[str, Any]:
        wanted = {m.group(1): v for k, v in request.query.items()
                  if (m := re.fullmatch(r"metadata\[(.+)\]", k))}
        jobs = [job for job in reversed(self.jobs.values())
                if all((job["metadata"] or {}).get(k) == v for k, v in wanted.items())]
        return _page(jobs, request.query)

    def retrieve_job(self, request: _Request) -> dict[str, Any]:
        """The job, moved one state on: each poll of a client is one step of a real job's progress."""
        job = self._job(request)
        status = job["status"]
        if status == "validating_files":
            problem = _training_problem(self.file_contents[job["training_file"]])
            if problem:
                self._end(job, "failed", problem)
            else:
                job["status"] = "queued"
                self._event(job["id"], "Files validated, moving job to queued state")
        elif status == "queued":
            job["status"] = "running"
            self._event(job["id"], "Fine-tuning job started")
        elif status == "running":
            self._end(job, self.outcome, f"The stand-in server failed job {job['id']} as told (outcome).")
        return job

    def list_events(self, request: _Request) -> dict[str, Any]:
        return _page(self.events[self._job(request)["id"]][::-1], request.query)

    def cancel_job(self, request: _Request) -> dict[str, Any]:
        job = self._job(request)
        if job["status"] in TERMINAL:
            raise ApiError(400, f"Job {job['id']} has already {job['status']}; it cannot be cancelled.")
        self._end(job, "cancelled")
        return job

    def _job(self, request: _Request) -> dict[str, Any]:
        (job_id,) = request.ids
        if job_id not in self.jobs:
            raise ApiError(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")
        return self.jobs[job_id]

    def _end(self, job: dict[str, Any], status: str, failure: str = "") -> None:
        """End a job: succeeded (its model named, its tokens counted), failed (`failure`) or cancelled."""
        job["status"], job["finished_at"] = status, int(time.time())
        if status == "succeeded":
            job["fine_tuned_model"] = f"ft:{job['model']}:standin:{job['suffix'] or 'job'}:{job['id'][-8:]}"
            self.models.add(job["fine_tuned_model"])  # as the API: a fine-tuned model may be fine-tuned again
            size = self.files[job["training_file"]]["bytes"]
            job["trained_tokens"] = size // 4 * job["hyperparameters"]["n_epochs"]
            for step in range(1, 4):  # the API reports the training loss as such events
                self._event(job["id"], f"Step {step}/3: training loss={2.0 / step:.4f}")
            self._event(job["id"], f"New fine-tuned model created: {job['fine_tuned_model']}")
        elif status == "failed":
            job["error"] = {"code": "invalid_training_file", "message": failure, "param": "training_file"}
            self._event(job["id"], failure, level="error")
        else:
            self._event(job["id"], "Fine-tuning job cancelled")

    def _event(self, job_id: str, message: str, level: str = "info") -> None:
        self.events[job_id].append({"id": self._new_id("ftevent-"), "object": "fine_tuning.job.event",
                                    "created_at": int(time.time()), "level": level, "message": message,
                                    "data": None, "type": "message"})

    def _new_id(self, prefix: str) -> str:
        """An id drawn from a counter: the same requests in the same order get the same ids."""
        self._objects += 1
        return prefix + hashlib.sha256(f"{prefix}{self._objects}".encode()).hexdigest()[:24]


RouteHandler = Callable[[StandinServer, _Request], dict[str, Any]]
ROUTES: dict[str, RouteHandler] = {
    "POST /v1/chat/completions": StandinServer.chat_completion,
    "POST /v1/completions": StandinServer.text_completion,
    "POST /v1/files": StandinServer.create_file,
    "GET /v1/files/{id}": StandinServer.retrieve_file,
    "POST /v1/fine_tuning/jobs": StandinServer.create_job,
    "GET /v1/fine_tuning/jobs": StandinServer.list_jobs,
    "GET /v1/fine_tuning/jobs/{id}": StandinServer.retrieve_job,
    "GET /v1/fine_tuning/jobs/{id}/events": StandinServer.list_events,
    "POST /v1/fine_tuning/jobs/{id}/cancel": StandinServer.cancel_job,
}
_PATTERNS = [(route, re.compile(re.escape(route).replace(re.escape("{id}"), "([^/]+)")), handler)
             for route, handler in ROUTES.items()]


def _route(method: str, path: str) -> tuple[str, RouteHandler | None, tuple[str, ...]]:
    """(route name, handler, ids in the path) of a request; an unknown route is named by its path."""
    request = f"{method} {path.rstrip('/')}"
    for route, pattern, handler in _PATTERNS:
        if match := pattern.fullmatch(request):
            return route, handler, match.groups()
    return request, None, ()


def _injected(status: int) -> ApiError:
    """The error `fail_next` asked for, with the type and code the API gives such a status."""
    if status == 429:
        return ApiError(429, "Rate limit reached (injected by the stand-in server).", kind="requests",
                        code="rate_limit_exceeded")
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return ApiError(status, f"HTTP {status} injected by the stand-in server.", kind=kind)


def make_server(host: str = "127.0.0.1", port: int = 0) -> StandinServer:
    """A bound server (port 0: any free port; see `server_address`); call serve_forever() to run it."""
    return StandinServer((host, port))
