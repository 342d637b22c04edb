"""Progress lines for long jobs: a job's log shows how far it is while it runs, not only when it ends.

Each Snakemake job writes its stderr to a log file; `Progress` appends one line there every
`interval_s` seconds (done/total, rate, time left and any counters such as retries or spend) and a
final line with the elapsed time. The interval comes from the environment variable
EM_PROGRESS_INTERVAL_S (default 30 s), not from the config: it changes no result, and a config
value would make Snakemake rerun every job whose logging changed.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from .errors import ConfigError

INTERVAL_ENV = "EM_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 30.0


def default_interval_s() -> float:
    """EM_PROGRESS_INTERVAL_S if set (0 logs every update), else 30 seconds."""
    value = os.environ.get(INTERVAL_ENV, "").strip()
    if not value:
        return DEFAULT_INTERVAL_S
    try:
        interval = float(value)
    except ValueError:
        interval = math.nan
    if not math.isfinite(interval) or interval < 0:
        raise ConfigError(f"{INTERVAL_ENV}: must be a number of seconds >= 0, got {value!r}")
    return interval


class Progress:
    """Logs `what: done/total unit (pct), rate/s, ETA h:mm:ss [, counters]` every `interval_s` and on close.

    `done` counts work finished before the job started (e.g. cache hits): it counts towards done/total
    but not towards the rate, so the time left is that of the work still to do. `total` None: no
    percentage and no ETA. `update` is cheap (a lock, a few additions and one clock call), so hot loops
    can call it per item, from any thread.
    """

    def __init__(self, what: str, total: int | None, unit: str, interval_s: float | None = None,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 done: int = 0) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.interval_s = default_interval_s() if interval_s is None else interval_s
        self.stream = sys.stderr if stream is None else stream
        self.done = done
        self.counters: dict[str, float] = {}
        self.status = ""
        self._clock = clock
        self._lock = threading.Lock()
        self._start_done = done
        self._start = clock()
        self._next = self._start + self.interval_s
        self._closed = False

    def update(self, n: int = 1, *, status: str | None = None, **counters: float) -> None:
        """Add `n` to done and each counter to its total (e.g. retries=1, usd=0.002); `status` replaces
        the free text shown last (e.g. "loss 2.31"). Logs a line if `interval_s` has passed."""
        with self._lock:
            self.done += n
            for name, value in counters.items():
                self.counters[name] = self.counters.get(name, 0) + value
            if status is not None:
                self.status = status
            now = self._clock()
            if now < self._next or self._closed:
                return
            self._next = now + self.interval_s
            self._write(self._line(now))

    def close(self, failed: bool = False) -> None:
        """Log the final line with the elapsed time (once); `stopped` instead of `done` if the job failed
        or did not reach its total."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            now = self._clock()
            short = self.total is not None and self.done < self.total
            word = "stopped" if failed or short else "done"
            self._write(self._line(now, f"{word} after {_hms(now - self._start)}"))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(failed=kind is not None)

    def _line(self, now: float, end: str | None = None) -> str:
        elapsed = now - self._start
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.what}: {_number(self.done)}"]
        if self.total is not None:
            pct = 100.0 * self.done / self.total if self.total else 100.0
            parts[0] += f"/{_number(self.total)} {self.unit} ({pct:.1f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{_number(rate)} {self.unit}/s")
        if end is not None:
            parts.append(end)
        elif self.total is not None:
            left = max(0, self.total - self.done)
            parts.append("ETA " + (_hms(left / rate) if rate > 0 else "?" if left else _hms(0)))
        parts.extend(f"{name} {_number(value)}" for name, value in self.counters.items())
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()  # the job's log file must show it now, not when the job ends


def _hms(seconds: float) -> str:
    """h:mm:ss, hours unbounded (a 30-hour job reads 30:00:00)."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _number(value: float) -> str:
    """Whole numbers (and anything >= 100) with thousands separators, else 3 significant digits."""
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
