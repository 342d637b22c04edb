"""Build a stage's settings dataclass from its config section, naming any bad key; check its values."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Instantiate dataclass `cls` from `data`; `where` is the config key path used in errors.

    Nested dataclass fields are built recursively. Unknown keys and plainly wrong types stop
    with a ConfigError such as ``train.lora.r: expected int, got str ('8')``.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:  # a value check names the key at the section's usual place (CONFIG_KEY)
        key, message = getattr(cls, "CONFIG_KEY", None), str(exc)
        if key and where != key and message.startswith(key + "."):
            raise ConfigError(where + message[len(key):]) from None
        raise


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} ({value!r})")
    return value


def check_range(where: str, value: float | None, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """Stop with ``where: must be >= low, got value`` unless low <= value <= high (< where open).

    A missing bound is no limit, a None value (an unset optional setting) passes and NaN (YAML .nan) fails
    any bound. Every settings dataclass checks its values with this in __post_init__, so all messages start
    with the key path.
    """
    if value is None:
        return
    too_low = low is not None and not (value > low if low_open else value >= low)
    too_high = high is not None and not (value < high if high_open else value <= high)
    if not (too_low or too_high):
        return
    if low is not None and high is not None:
        wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        wanted = f"{'>' if low_open else '>='} {low:g}"
    else:
        wanted = f"{'<' if high_open else '<='} {high:g}"
    raise ConfigError(f"{where}: must be {wanted}, got {value!r}")


def check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    """Stop with ``where: 'x' is not one of ...`` (and the closest choice, for a typo) unless it is one."""
    if value in choices:
        return
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}{hint}")


def check_device(where: str, value: str) -> None:
    """Stop unless value names a torch device the backends accept: auto, cpu, mps, cuda or cuda:N."""
    if not DEVICE.fullmatch(value):
        raise ConfigError(f"{where}: {value!r} is not auto, cpu, mps, cuda or cuda:N")


def to_json(obj: Any) -> str:
    """Canonical JSON of a dataclass or mapping (the form that manifests and caches hash)."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def merge_configs(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `override` as Snakemake merges --configfile files (snakemake.utils.update_config).

    Mappings merge key by key, at every depth; any other value (a list too) replaces. As in Snakemake, an
    empty mapping leaves a value that is not a mapping as it was. Neither argument is changed.
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key, {})
        if not isinstance(value, Mapping):
            merged[key] = value
        elif isinstance(old, Mapping) or value:
            merged[key] = merge_configs(old if isinstance(old, Mapping) else {}, value)
    return merged
