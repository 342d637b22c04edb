"""How fast the GPU route runs, as measured (`throughput.tsv`), and what a job is expected to take from it.

Each row of throughput.tsv is one measurement: a stage and backend, the model's size in billions of
parameters, the GPU, the tokens per second (trained tokens, or generated ones), the execution setting and
where the figure comes from (benchmarks/gpu.py writes the rows to add). A model of another size is
estimated from the measurement that is fastest per parameter, scaled by parameters (the work per token is
about proportional to them): an estimate, and `em plan` says which measurement it scaled.
A time limit derived from it (`runtime: auto`) is the expected time x SAFETY, plus LOAD_MINUTES.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .errors import DataError

THROUGHPUT_FILE = "throughput.tsv"
COLUMNS = ("stage", "backend", "params_b", "gpu", "tokens_per_s", "setting", "measured", "source")
SAFETY = 3.0  # a derived time limit: the expected time times this (other GPUs, other loads, slower nodes)
LOAD_MINUTES = 15  # plus this: loading the model and its data, writing the outputs


@dataclass(frozen=True)
class Measurement:
    stage: str          # train (trained tokens) or sample (generated tokens)
    backend: str        # trl; transformers, vllm
    params_b: float     # the measured model's parameters, in billions
    gpu: str
    tokens_per_s: float
    setting: str
    measured: str       # when
    source: str         # how


@cache
def measurements() -> tuple[Measurement, ...]:
    """The packaged measurements (checked once: a malformed row stops naming its line)."""
    text = resources.files(__package__).joinpath(THROUGHPUT_FILE).read_text("utf-8")
    reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise DataError(f"{THROUGHPUT_FILE}:1: header must be {', '.join(COLUMNS)}")
    rows = []
    for record in reader:
        try:
            params, speed = float(record["params_b"]), float(record["tokens_per_s"])
        except (TypeError, ValueError):
            raise DataError(f"{THROUGHPUT_FILE}:{reader.line_num}: params_b and tokens_per_s must be "
                            "numbers") from None
        if params <= 0 or speed <= 0:
            raise DataError(f"{THROUGHPUT_FILE}:{reader.line_num}: params_b and tokens_per_s must be > 0")
        rows.append(Measurement(record["stage"], record["backend"], params, record["gpu"], speed,
                                record["setting"], record["measured"], record["source"]))
    return tuple(rows)


def params_of(path: str) -> float | None:
    """A model's size in billions of parameters, from its name (`Qwen2.5-Coder-32B-Instruct`: 32); None
    when the name does not say (a local folder, the embedded model)."""
    found = re.findall(r"(?<![\d.])(\d+(?:\.\d+)?)[Bb](?![a-zA-Z])", path.rsplit("/", 1)[-1])
    return float(found[-1]) if found else None


def rate(stage: str, backend: str, params_b: float | None) -> tuple[float, Measurement] | None:
    """(tokens per second, the measurement it is scaled from) for a model of `params_b` billions; None
    when nothing of this stage and backend was measured or the size is unknown."""
    mine = [m for m in measurements() if m.stage == stage and m.backend == backend]
    if not mine or params_b is None:
        return None
    best = max(mine, key=lambda m: m.tokens_per_s * m.params_b)
    return best.tokens_per_s * best.params_b / params_b, best


def time_limit(expected_minutes: float) -> int:
    """The time limit (minutes) of a job expected to take `expected_minutes`."""
    return math.ceil(expected_minutes * SAFETY + LOAD_MINUTES)
