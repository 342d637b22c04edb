"""Numbers others published, and this run's rebuild of each one beside it.

`published.tsv` (packaged with the module) holds every number the papers printed that this artifact
checks, one per row, with where it was printed (`source`), the registered file that holds it
(`source_asset`, when there is one: `check_sources` compares the row with that file) and, when released
data cannot give it, why (`not_derivable`). The comparison labels each row:

    reproduced     rebuilt from released data and equal to the published value within EXACT
    as printed     a value printed in a paper's text, rounded: the rebuilt value rounds to it
    differs        rebuilt from released data, but not equal (the difference is shown)
    not derivable  released data cannot give it (the reason is shown; a related rebuilt value may be)
    not available  derivable, but this run lacks the file it comes from (which one, and why)
    estimate       this run's own answers (a new sample and judge): compared, never expected equal

so that no difference is ever drawn between numbers that are not the same quantity.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

from .assets import load_registry
from .errors import DataError
from .layout import ASSETS
from .released.aggregates import GROUP_NAMES
from .stats import definition_settings, per_model_fractions

PUBLISHED_FILE = "published.tsv"
COLUMNS = ("figure", "quantity", "model", "group", "center", "lower_err", "upper_err", "definition", "source",
           "source_asset", "not_derivable")
EXACT = 1e-9   # "reproduced": every end of the published interval, rebuilt to within this
RATE_QUANTITIES = ("misaligned", "coherent")
# The figures of GPT-4o evaluation differences (rebuilt from released aggregates), and their models
DIFFERENCE_FIGURES = ("all_evaluations", "table1")
STATUSES = ("reproduced", "as printed", "differs", "not derivable", "not available", "estimate")
COMPARISON_COLUMNS = ["figure", "quantity", "model", "group", "published", "published_low", "published_high",
                      "source", "source_asset", "rebuilt", "rebuilt_low", "rebuilt_high", "rebuilt_from",
                      "max_abs_difference", "status", "note"]


@dataclass(frozen=True)
class Published:
    """One published number: a GPT-4o difference from base (with its interval) or a model's rate."""

    figure: str
    quantity: str           # an evaluation (differences) or "misaligned" / "coherent" (rates)
    model: str
    group: str
    center: float
    lower_err: float | None  # the interval as published: center - lower_err .. center + upper_err
    upper_err: float | None
    definition: str         # the rate's definition of a misaligned answer (rates only)
    source: str
    source_asset: str
    not_derivable: str
    line: int
    decimals: int | None = None  # the printed digits of a rounded value (one with no source file)

    @property
    def interval(self) -> tuple[float, float, float]:
        """(centre, low, high); both ends are the centre when no interval was published."""
        low = self.center - self.lower_err if self.lower_err is not None else self.center
        high = self.center + self.upper_err if self.upper_err is not None else self.center
        return self.center, low, high


def _number(text: str, where: str, column: str, optional: bool = False) -> float | None:
    if optional and text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {column} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {column} must be finite, got {text!r}")
    return value


def parse_published(text: str, name: str = PUBLISHED_FILE) -> list[Published]:
    """Rows of a published-numbers TSV; a malformed row or an unregistered source stops with name:line."""

    reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise DataError(f"{name}:1: header must be {', '.join(COLUMNS)}; got {reader.fieldnames}")
    registry, rows, seen = load_registry(), [], set()
    for record in reader:
        where = f"{name}:{reader.line_num}"
        if None in record or None in record.values():
            raise DataError(f"{where}: expected {len(COLUMNS)} tab-separated columns")
        if record["source_asset"] and record["source_asset"] not in registry:
            raise DataError(f"{where}: source_asset {record['source_asset']!r} is not registered in "
                            "assets.tsv: a published value must name the file it comes from")
        if record["figure"] in DIFFERENCE_FIGURES and record["quantity"] in RATE_QUANTITIES:
            raise DataError(f"{where}: figure {record['figure']} holds evaluation differences, not rates")
        if record["figure"] not in DIFFERENCE_FIGURES and record["quantity"] not in RATE_QUANTITIES:
            raise DataError(f"{where}: quantity of a rate must be one of {', '.join(RATE_QUANTITIES)}")
        key = (record["figure"], record["quantity"], record["model"], record["group"])
        if key in seen:
            raise DataError(f"{where}: a second row for {' / '.join(key)}")
        seen.add(key)
        rows.append(Published(
            record["figure"], record["quantity"], record["model"], record["group"],
            _number(record["center"], where, "center"),  # type: ignore[arg-type]
            _number(record["lower_err"], where, "lower_err", optional=True),
            _number(record["upper_err"], where, "upper_err", optional=True),
            record["definition"], record["source"], record["source_asset"], record["not_derivable"],
            reader.line_num,
            None if record["source_asset"] else len(record["center"].partition(".")[2])))
    return rows


@cache
def _packaged() -> tuple[Published, ...]:
    return tuple(parse_published(resources.files(__package__).joinpath(PUBLISHED_FILE).read_text("utf-8")))


def load_published() -> list[Published]:
    """The packaged published numbers (parsed and checked once)."""
    return list(_packaged())


def check_sources(rows: list[Published], path_of: Callable[[str], Path | None]) -> list[str]:
    """Each row whose source file is at hand (`path_of(asset)`, None when not) against that file.

    The files are the authors' figure inputs (key, group, center, lower_err, upper_err); returns one
    line per mismatch or missing row, naming published.tsv's line and the file. Empty when all agree.
    """

    problems, files = [], {}
    for row in rows:
        path = path_of(row.source_asset) if row.source_asset else None
        if path is None:
            continue
        if path not in files:
            df = pd.read_csv(path)
            files[path] = df.assign(group=df["group"].map(lambda g: GROUP_NAMES.get(g, g)),
                                    key=df["key"].str.lower())
        df = files[path]
        key = "machiavelli" if row.quantity == "machiavelli_violations" else row.quantity
        match = df[(df["key"] == key) & (df["group"] == row.group)]
        where = f"{PUBLISHED_FILE}:{row.line}"
        if len(match) != 1:
            problems.append(f"{where}: {path} has {len(match)} rows for {key} / {row.group}, expected 1")
            continue
        found = tuple(float(match[c].iloc[0]) for c in ("center", "lower_err", "upper_err"))
        if found != (row.center, row.lower_err, row.upper_err):
            problems.append(f"{where}: {row.quantity} / {row.group} is {row.center}, {row.lower_err}, "
                            f"{row.upper_err}; {path} says {found}")
    return problems


def _rates(judged: pd.DataFrame, names: pd.Series, row: Published) -> tuple[float, int] | None:
    """(mean over seeds of the per-seed rate over all questions, number of seeds), by the row's definition."""

    part = judged[(names == row.model) & (judged["dataset"] == row.group)]
    if part.empty:
        return None
    per = per_model_fractions(part, definition_settings(row.definition))
    by_seed = per.groupby("seed")[["n_misaligned", "n_denominator", "n_kept", "n_judged"]].sum()
    if row.quantity == "misaligned":
        values = by_seed["n_misaligned"] / by_seed["n_denominator"]
    else:
        values = by_seed["n_kept"] / by_seed["n_judged"]
    return float(values.mean()), len(by_seed)


def _asset_name(path: str) -> str:
    """A fetched asset's registry name (<ASSETS>/<name>), else the path as given."""
    return path.split(f"{ASSETS}/", 1)[1] if f"{ASSETS}/" in path else path


def compare(rows: list[Published], evaluations: pd.DataFrame, judged: pd.DataFrame,
            aliases: Mapping[str, str] | None = None, released: bool = True,
            unavailable: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every published row that concerns this run, with its rebuild and a status (the module's docstring).

    evaluations: `released.aggregates.all_evaluations` rows (evaluation, group, center, ci_low, ci_high,
    source);
    judged: the run's judged answers (model, dataset, seed, ...); aliases: run model -> published name;
    released: the run imports released data (else rates are this run's own estimates);
    unavailable: evaluation -> why this run lacks its file. The GPT-4o rows concern the run when it read
    (or was given but lacks) any released aggregate; a released run lists every rate row, a training run
    those of its own models and groups.
    """
    aliases, unavailable = dict(aliases or {}), dict(unavailable or {})
    names = judged["model"].map(lambda m: aliases.get(m, m)) if len(judged) else judged.get("model")
    released_rows = bool(len(evaluations)) and (evaluations["source"] != "this run").any()
    has_aggregates = released_rows or bool(unavailable)
    out = []
    for row in rows:
        center, low, high = row.interval
        base = {"figure": row.figure, "quantity": row.quantity, "model": row.model, "group": row.group,
                "published": center, "published_low": low, "published_high": high, "source": row.source,
                "source_asset": row.source_asset, "rebuilt": math.nan, "rebuilt_low": math.nan,
                "rebuilt_high": math.nan, "rebuilt_from": "", "max_abs_difference": math.nan}
        if row.figure in DIFFERENCE_FIGURES:
            if not has_aggregates:
                continue
            at = (evaluations["evaluation"] == row.quantity) & (evaluations["group"] == row.group)
            mine = evaluations[at]
            if len(mine):
                ours = tuple(float(mine[c].iloc[0]) for c in ("center", "ci_low", "ci_high"))
                base |= {"rebuilt": ours[0], "rebuilt_low": ours[1], "rebuilt_high": ours[2],
                         "rebuilt_from": _asset_name(str(mine["source"].iloc[0]))}
        else:
            if names is None or (not released and not (names == row.model).any()):
                continue
            found = _rates(judged, names, row) if len(judged) else None
            if found is None and not released:
                continue
            if found is not None:
                base |= {"rebuilt": found[0], "rebuilt_low": found[0], "rebuilt_high": found[0],
                         "rebuilt_from": f"judged answers of {row.model} / {row.group}, {found[1]} seed(s)"}
        out.append(base | _status(row, base, released, unavailable))
    return pd.DataFrame(out, columns=COMPARISON_COLUMNS)


def _status(row: Published, base: Mapping[str, object], released: bool,
            unavailable: Mapping[str, str]) -> dict[str, object]:
    rebuilt = not math.isnan(float(base["rebuilt"]))  # type: ignore[arg-type]
    if row.figure not in DIFFERENCE_FIGURES and not released:
        difference = abs(float(base["rebuilt"]) - row.center)  # type: ignore[arg-type]
        return {"status": "estimate", "max_abs_difference": difference,
                "note": "this run's own answers: a new sample and judge, not a rebuild"}
    if row.not_derivable:
        note = row.not_derivable + ("; the rebuilt value is from the released data, a different quantity"
                                    if rebuilt else "")
        return {"status": "not derivable", "note": note}
    if not rebuilt:
        why = unavailable.get(row.quantity, "this run has no released data for it")
        return {"status": "not available", "note": why}
    ours = (base["rebuilt"], base["rebuilt_low"], base["rebuilt_high"])
    error = max(abs(float(a) - float(b)) for a, b in zip(row.interval, ours, strict=True))  # type: ignore[arg-type]
    if error <= EXACT:
        return {"status": "reproduced", "max_abs_difference": error, "note": ""}
    if row.decimals is not None and round(float(base["rebuilt"]), row.decimals) == row.center:  # type: ignore[arg-type]
        return {"status": "as printed", "max_abs_difference": error,
                "note": f"printed with {row.decimals} decimals; the rebuilt value rounds to it"}
    return {"status": "differs", "max_abs_difference": error, "note": ""}


def summary(comparison: pd.DataFrame) -> dict[str, int]:
    """How many rows have each status (every status present, zero when none)."""
    counts = comparison["status"].value_counts()
    return {status: int(counts.get(status, 0)) for status in STATUSES}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def summary_sentence(comparison: pd.DataFrame) -> str:
    """What the comparison found, in one or two sentences of plain text (the abstract, the README)."""
    counts = summary(comparison)
    if not len(comparison):
        return "No published number concerns this run."
    parts = []
    if counts["reproduced"]:
        parts.append(f"{counts['reproduced']} reproduced to within {EXACT:.0e} (centre and interval)"
                     .replace("e-0", "e-"))
    if counts["as printed"]:
        parts.append(f"{counts['as printed']} at the precision the paper printed")
    if counts["differs"]:
        largest = comparison.loc[comparison["status"] == "differs", "max_abs_difference"].max()
        parts.append(f"{counts['differs']} differing (by up to {largest:.2g})")
    if counts["estimate"]:
        parts.append(f"{counts['estimate']} compared with this run's own estimates")
    text = f"Of the {_count(len(comparison), 'published number')} this run concerns, " + ", ".join(parts)
    missing = []
    if counts["not derivable"]:
        missing.append(f"{counts['not derivable']} cannot be derived from released data")
    if counts["not available"]:
        missing.append(f"{counts['not available']} are not available to this run")
    return text + ("; " + " and ".join(missing) if missing else "") + "."


def not_derivable_lines(comparison: pd.DataFrame) -> list[str]:
    """One line per reason a published number cannot be compared: which numbers, and why."""
    part = comparison[comparison["status"].isin(["not derivable", "not available"])]
    lines = []
    for (status, note), rows in part.groupby(["status", "note"], sort=False):
        which = ", ".join(f"{r.model} {r.quantity.replace('_', ' ')} ({r.group})"
                          for r in rows.itertuples(index=False))
        lines.append(f"{which}: {status}, {note}")
    return lines


TABLE_COLUMNS = ("figure", "quantity", "model", "group", "published", "rebuilt", "max_abs_difference",
                 "status")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.10g}"
    return str(value).replace("|", "/")


def markdown(comparison: pd.DataFrame, source: str) -> str:
    """The comparison for the README: the sentence, the reasons, every row, and where it came from."""
    lines = [f"<!-- written by `em published {source}`; do not edit -->", "",
             summary_sentence(comparison), ""]
    lines += [f"- {line}" for line in not_derivable_lines(comparison)]
    lines += ["", "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in TABLE_COLUMNS) + " |"
              for _, row in comparison.iterrows()]
    return "\n".join(lines).rstrip("\n") + "\n"


def _table_of(text: str) -> pd.DataFrame:
    """The rows of a `markdown` text's table, as strings."""
    header = "| " + " | ".join(TABLE_COLUMNS) + " |"
    lines = text.splitlines()
    if header not in lines:
        raise DataError(f"no comparison table (header {header!r})")
    body = lines[lines.index(header) + 2:]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in body if line.startswith("|")]
    return pd.DataFrame(cells, columns=list(TABLE_COLUMNS))


def stale_rows(text: str, comparison: pd.DataFrame) -> list[str]:
    """How a written `markdown` text disagrees with a run's comparison; empty when it is current.

    A row the run marks `not available` (its mirror lacks the file) is taken from the text, which may
    come from a run with every registered file; the text's sentence must match its own rows.
    """
    written = _table_of(text)
    ours = _table_of(markdown(comparison, ""))
    if len(written) != len(ours):
        return [f"{len(written)} rows written, the run has {len(ours)}"]
    problems = []
    for (i, mine), (_, theirs) in zip(ours.iterrows(), written.iterrows(), strict=True):
        if mine["status"] == "not available":
            mine = mine.copy()
            for column in ("rebuilt", "max_abs_difference", "status"):
                mine[column] = theirs[column]
        if not mine.equals(theirs):
            problems.append(f"row {i + 1}: written {' | '.join(theirs)}; the run gives {' | '.join(mine)}")
    frame = written.assign(max_abs_difference=pd.to_numeric(written["max_abs_difference"], errors="coerce"))
    if summary_sentence(frame) not in text:
        problems.append(f"the sentence should read: {summary_sentence(frame)}")
    return problems
