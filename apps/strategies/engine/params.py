"""Typed parameter schemas: defaults, bounds, choices and cross-parameter rules, with errors that name the parameter.

    SCHEMA = ParamSchema(
        Param("fast", int, 10, minimum=1, help="fast moving-average window (bars)"),
        Param("slow", int, 30, minimum=2),
        rules=(Rule(("fast", "slow"), lambda p: p["fast"] < p["slow"], "fast ({fast}) must be below slow ({slow})"),),
    )
    SCHEMA.validate({"fast": 12})      # -> Params(fast=12, slow=30)
    SCHEMA.validate({"fast": 40})      # ParamError: fast: fast (40) must be below slow (30)
    SCHEMA.grid({"fast": [5, 10], "slow": range(20, 40, 10)})  # every valid combination, rules applied

A value is accepted as its declared type only: `10` and `"10"` are an int, `10.5` is not; a bool is never
an int. Unknown names are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Param", "ParamError", "ParamSchema", "Params", "Rule"]


class ParamError(ValueError):
    """A parameter that is missing, unknown, of the wrong type or out of its schema."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class Params(Mapping[str, Any]):
    """Validated parameters: an immutable, hashable mapping in schema order."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, Any]]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return "Params(" + ", ".join(f"{k}={v!r}" for k, v in self._items.items()) + ")"

    def as_dict(self) -> dict[str, Any]:
        return dict(self._items)


@dataclass(frozen=True)
class Param:
    name: str
    kind: type  # int, float, bool or str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def coerce(self, raw: Any) -> Any:
        value = _coerce(self.kind, raw)
        if value is None:
            raise ParamError(self.name, f"must be {_kind_name(self.kind)}, got {raw!r}")
        if self.choices is not None and value not in self.choices:
            raise ParamError(self.name, f"must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(self.name, f"must be at least {self.minimum:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(self.name, f"must be at most {self.maximum:g}, got {value!r}")
        return value

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": _kind_name(self.kind), "default": self.default}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.help:
            out["help"] = self.help
        return out


@dataclass(frozen=True)
class Rule:
    """A rule across parameters: `check(params)` must hold, else `message.format(**params)` names them."""

    params: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], bool]
    message: str


class ParamSchema:
    def __init__(self, *params: Param, rules: Sequence[Rule] = ()) -> None:
        self.params: dict[str, Param] = {p.name: p for p in params}
        if len(self.params) != len(params):
            raise ValueError("parameter names repeat")
        self.rules = tuple(rules)
        for rule in self.rules:
            unknown = set(rule.params) - set(self.params)
            if unknown:
                raise ValueError(f"rule names unknown parameters {sorted(unknown)}")
        self.validate({})  # the defaults themselves must pass

    def defaults(self) -> Params:
        return Params((name, p.default) for name, p in self.params.items())

    def validate(self, raw: Mapping[str, Any] | None) -> Params:
        """Typed, bounded parameters with defaults filled in; `ParamError` names the first bad one."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ParamError("params", f"must be an object of name: value, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(self.params))
        if unknown:
            raise ParamError(unknown[0], f"unknown parameter; known: {', '.join(self.params)}")
        values = Params((name, p.coerce(raw[name]) if name in raw else p.default) for name, p in self.params.items())
        for rule in self.rules:
            if not rule.check(values):
                # Name the parameter the caller set (else the first of the rule's).
                named = next((n for n in rule.params if n in raw), rule.params[0])
                raise ParamError(named, rule.message.format(**values))
        return values

    def grid(self, ranges: Mapping[str, Iterable[Any]], base: Mapping[str, Any] | None = None) -> list[Params]:
        """Every combination of `ranges` (other parameters from `base` or their defaults) that the rules allow.

        Each value is checked against its parameter (a bad value is an error, not skipped); combinations
        that only break a cross-parameter rule (fast >= slow) are left out, as a grid means.
        """
        unknown = sorted(set(ranges) - set(self.params))
        if unknown:
            raise ParamError(unknown[0], f"unknown parameter; known: {', '.join(self.params)}")
        axes: list[tuple[str, list[Any]]] = []
        for name, values in ranges.items():
            listed = [self.params[name].coerce(v) for v in values]
            if not listed:
                raise ParamError(name, "the range is empty")
            axes.append((name, listed))
        fixed = dict(base or {})
        out: list[Params] = []
        for combo in itertools.product(*(values for _, values in axes)):
            candidate = {**fixed, **dict(zip((n for n, _ in axes), combo, strict=True))}
            try:
                out.append(self.validate(candidate))
            except ParamError:
                if not self._breaks_only_rules(candidate):
                    raise
        if not out:
            raise ParamError(axes[0][0] if axes else "params", "no combination of the ranges passes the rules")
        return out

    def describe(self) -> dict[str, Any]:
        """For the API and the admin: the parameters and the rules in words."""
        return {
            "params": [p.describe() for p in self.params.values()],
            "rules": [r.message for r in self.rules],
        }

    def _breaks_only_rules(self, candidate: Mapping[str, Any]) -> bool:
        try:
            for name, p in self.params.items():
                if name in candidate:
                    p.coerce(candidate[name])
        except ParamError:
            return False
        return True


def _kind_name(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, kind.__name__)


def _as_bool(raw: Any) -> Any:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in {"true", "false"}:
        return raw.lower() == "true"
    return None


def _as_int(raw: Any) -> Any:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            return None
    return None


def _as_float(raw: Any) -> Any:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _as_str(raw: Any) -> Any:
    return raw if isinstance(raw, str) else None


_COERCE: dict[type, Callable[[Any], Any]] = {bool: _as_bool, int: _as_int, float: _as_float, str: _as_str}


def _coerce(kind: type, raw: Any) -> Any:
    """The value as `kind`, or None when it is not one (no silent truncation: 10.5 is not an int)."""
    return _COERCE[kind](raw) if kind in _COERCE else None
