"""A persistent judge cache: a paid or slow judge is never asked the same prompt twice.

One sqlite file in WAL mode with a busy timeout, so parallel Snakemake jobs can share it (WAL needs a
local file system: keep the cache off NFS). A row is keyed by the sha256 of the canonical JSON of
(judge identity, prompt, and the scale unless 0..100) and keeps the score (None allowed), or in a table
of its own the label of a categorical prompt, and, for audit, the judge's raw (token, logprob) pairs.
API keys never reach it: identities hold no secrets.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import JudgeError
from ..progress import Progress
from ..settings import to_json
from .aggregate import SCALE_0_100, Scale, TopLogprobs

_TABLES = {"score": "judge_scores", "label": "judge_labels"}  # what a row keeps, by the kind of answer
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    key TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    prompt TEXT NOT NULL,
    score {kind},
    top_logprobs TEXT,
    created TEXT NOT NULL
)
"""
_CHUNK = 500  # keys per SELECT, below sqlite's limit on bound variables


def cache_key(identity: dict[str, Any], prompt: str, scale: Scale = SCALE_0_100) -> str:
    """sha256 of the canonical JSON of (identity, prompt), and of the scale where it is not 0..100 (the same
    prompt read on another scale is another score)."""
    what = [identity, prompt, scale.name] if scale.categorical else [identity, prompt]
    return hashlib.sha256(to_json(what).encode("utf-8")).hexdigest()


class JudgeCache:
    """Scores by cache key in one sqlite file; every write is committed at once."""

    def __init__(self, path: str | Path, timeout_s: float = 600.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout_s)
            self._conn.execute("PRAGMA journal_mode=WAL")
            with self._conn:
                for kind, table in (("REAL", _TABLES["score"]), ("TEXT", _TABLES["label"])):
                    self._conn.execute(_SCHEMA.format(table=table, kind=kind))
        except sqlite3.DatabaseError as exc:
            raise JudgeError(f"judge cache {self.path}: not a usable sqlite file: {exc}") from None

    def get_many(self, keys: Sequence[str], kind: str = "score") -> dict[str, float | str | None]:
        """The cached score (or, kind "label", label) of each key that is present."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, float | None] = {}
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(f"SELECT key, score FROM {_TABLES[kind]} WHERE key IN ({marks})", chunk)
            found.update(rows.fetchall())
        return found

    def put(self, key: str, identity: dict[str, Any], prompt: str, score: float | str | None,
            top_logprobs: TopLogprobs | None, kind: str = "score") -> None:
        """Store one result (kind "label": a label) and commit, so an interrupted run keeps it."""
        raw = None if top_logprobs is None else json.dumps([[t, lp] for t, lp in top_logprobs])
        with self._conn:
            self._conn.execute(
                f"INSERT OR REPLACE INTO {_TABLES[kind]} VALUES (?, ?, ?, ?, ?, ?)",
                (key, to_json(identity), prompt, score, raw, datetime.now(UTC).isoformat(timespec="seconds")),
            )

    def top_logprobs(self, key: str) -> TopLogprobs | None:
        """The raw pairs stored with a key (for audit), or None."""
        row = self._conn.execute("SELECT top_logprobs FROM judge_scores WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        return [(token, logprob) for token, logprob in json.loads(row[0])]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CachedJudge:
    """Wraps any judge: asks it only for prompts not in the cache and stores each result as it arrives."""

    def __init__(self, judge: Any, cache: JudgeCache) -> None:
        self.judge = judge
        self.cache = cache

    def identity(self) -> dict[str, Any]:
        return self.judge.identity()

    def score(self, prompts: Sequence[str], scale: Scale = SCALE_0_100) -> list[float | str | None]:
        """Scores (or labels) in prompt order; logs prompts scored / total, those from the cache apart."""
        identity = self.judge.identity()
        kind = "label" if scale.categorical else "score"
        keys = [cache_key(identity, prompt, scale) for prompt in prompts]
        scores = self.cache.get_many(keys, kind)
        uses = Counter(keys)  # a repeated prompt is asked once and scores all its copies
        cached = sum(uses[key] for key in scores)
        todo = {key: prompt for key, prompt in zip(keys, prompts, strict=True) if key not in scores}
        todo_keys = list(todo)
        with Progress("judge", total=len(prompts), unit="prompts", done=cached) as progress:
            progress.update(0, cached=cached)
            for index, score, pairs in self._results([todo[key] for key in todo_keys], scale):
                key = todo_keys[index]
                self.cache.put(key, identity, todo[key], score, pairs, kind)
                scores[key] = score
                progress.update(uses[key])
        return [scores[key] for key in keys]

    def _results(self, prompts: list[str], scale: Scale
                 ) -> Iterator[tuple[int, float | str | None, TopLogprobs | None]]:
        """(index, score, raw pairs or None) from the inner judge, one by one when it can."""
        if not prompts:
            return
        iter_scores = getattr(self.judge, "iter_scores", None)
        if iter_scores is not None:
            yield from iter_scores(prompts, scale)
        else:
            for index, score in enumerate(self.judge.score(prompts, scale)):
                yield index, score, None
