"""Atomic file writes and JSON Lines, so that an interrupted job never leaves a file that looks done;
YAML read with errors that name the file and line."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from .errors import DataError, EMError

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary file beside `path`, then rename it into place; on error, remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; outputs are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl_text(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as the text of a JSON Lines file (what write_jsonl writes, to hash before writing)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]] | str) -> None:
    """Write rows (or their jsonl_text) as JSON Lines, atomically."""
    with atomic_write(path) as fh:
        fh.write(rows if isinstance(rows, str) else jsonl_text(rows))


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line; bad JSON is a DataError at `path:line`."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from None


def read_jsonl(path: str | Path) -> list[Any]:
    """Every value of a JSON Lines file (see `iter_jsonl`)."""
    return [value for _, value in iter_jsonl(path)]


def read_yaml(path: str | Path, error: type[EMError] = DataError) -> Any:
    """A YAML file's content; a syntax error is raised as `error` naming path:line:column and the parser's
    problem (Snakemake, reading a config file, says neither)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start:
            context += f" that starts at line {start.line + 1}, column {start.column + 1}"
        raise error(f"{at}: not valid YAML: {problem}" + (f" ({context})" if context else "")) from None


def write_json(path: str | Path, obj: Any) -> None:
    """Write pretty, key-sorted JSON atomically (stable bytes for the same content)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """CSV with a fixed float format, so reruns give identical bytes."""
    with atomic_write(path) as fh:
        df.to_csv(fh, index=False, float_format="%.10g", lineterminator="\n")
