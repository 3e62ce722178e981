"""Backtest run inputs: everything `run_submit` is given, checked, normalised and with its bars loaded.

Every check names what is wrong (`ApplicationError` with a machine-readable code and the parameter or field
in `details`), and nothing is written before all of them pass: `run_validate` returns a `Spec` that
`apps.strategies.runs.run_submit` stores. The rules are in docs/backtest-research.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from apps.strategies import data
from apps.strategies.engine.backtest import Settings, SettingsError
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.params import ParamError, Params
from apps.strategies.engine.research import OBJECTIVES, ResearchError, walk_forward_folds
from apps.strategies.engine.strategy import Strategy, UnknownStrategy, get_strategy
from apps.strategies.models import BacktestRun, RunKind, RunStatus
from tradingsite.exceptions import ApplicationError, NotFound

__all__ = ["MAX_GRID_SETS", "MAX_RANGE_VALUES", "Spec", "range_values", "run_validate"]

MAX_GRID_SETS = 100_000
MAX_RANGE_VALUES = 10_000
MC_DEFAULTS: dict[str, Any] = {"simulations": 10_000, "method": "bootstrap", "ruin_threshold": 0.5, "seed": 0}
WF_DEFAULTS: dict[str, Any] = {"folds": 4, "mode": "rolling", "objective": "sharpe"}


def _invalid(code: str, key: str, name: str, message: str) -> ApplicationError:
    return ApplicationError(f"{name}: {message}", code=code, details={key: name})


@dataclass
class Spec:
    """A validated submission: what the run row stores and what its key hashes."""

    kind: str
    strategy: Strategy
    params: dict[str, Any]
    grid: dict[str, list[Any]]
    options: dict[str, Any]
    symbols: list[str]
    interval: str
    start: date
    end: date
    source: BacktestRun | None = None
    bars: Bars | None = None
    param_sets: list[Params] = field(default_factory=list)
    folds: list[dict[str, Any]] = field(default_factory=list)

    def key_payload(self, code: str, hashed: str) -> dict[str, Any]:
        options = {k: v for k, v in self.options.items() if k != "universe"}
        return {
            "kind": self.kind,
            "strategy": self.strategy.name,
            "params": self.params,
            "grid": self.grid,
            "options": options,
            "symbols": self.symbols,
            "interval": self.interval,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "code_version": code,
            "data_hash": hashed,
            "source": self.source.cache_key if self.source is not None else None,
        }


def _strategy(name: str, params: Mapping[str, Any] | None) -> Strategy:
    try:
        return get_strategy(name, params or {})
    except UnknownStrategy as exc:
        raise _invalid("unknown_strategy", "field", "strategy", str(exc)) from None
    except ParamError as exc:
        raise _invalid("invalid_params", "param", exc.param, exc.message) from None


def _settings(raw: Mapping[str, Any] | None) -> Settings:
    if raw is not None and not isinstance(raw, Mapping):
        raise _invalid("invalid_settings", "field", "settings", "must be an object of field: value")
    try:
        return Settings.from_dict(raw or {})
    except SettingsError as exc:
        raise _invalid("invalid_settings", "field", exc.field, exc.message) from None


def range_values(name: str, raw: Any) -> list[Any]:
    """A list of values, or {"start", "stop", "step"} with the stop INCLUDED (fast 5..50 step 5: 10 values)."""
    if isinstance(raw, list | tuple):
        values = list(raw)
    elif isinstance(raw, Mapping):
        unknown = sorted(set(raw) - {"start", "stop", "step"})
        if unknown or not {"start", "stop"} <= set(raw):
            raise _invalid(
                "invalid_grid", "param", name, 'a range is {"start": a, "stop": b, "step": s} (stop included)'
            )
        start, stop, step = raw["start"], raw["stop"], raw.get("step", 1)
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (start, stop, step)):
            raise _invalid("invalid_grid", "param", name, "start, stop and step must be numbers")
        if not step > 0 or stop < start:
            raise _invalid("invalid_grid", "param", name, "step must be positive and stop at least start")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_RANGE_VALUES:
            raise _invalid("invalid_grid", "param", name, f"{count} values; at most {MAX_RANGE_VALUES}")
        whole = all(isinstance(x, int) for x in (start, stop, step))
        values = [start + k * step if whole else round(start + k * step, 10) for k in range(count)]
    else:
        raise _invalid("invalid_grid", "param", name, "must be a list of values or a {start, stop, step} range")
    if not values:
        raise _invalid("invalid_grid", "param", name, "the range is empty")
    if len(values) > MAX_RANGE_VALUES:
        raise _invalid("invalid_grid", "param", name, f"{len(values)} values; at most {MAX_RANGE_VALUES}")
    return values


def _grid(strategy: Strategy, raw: Mapping[str, Any] | None, where: str) -> tuple[dict[str, list[Any]], str | None]:
    """Ranges (name -> values) and an objective, from `{"fast": [...]}` or `{"ranges": {...}, "objective": ...}`."""
    if raw is None:
        return {}, None
    if not isinstance(raw, Mapping):
        raise _invalid("invalid_grid", "field", where, "must be an object of parameter: range")
    objective = None
    if "ranges" in raw:
        unknown = sorted(set(raw) - {"ranges", "objective"})
        if unknown:
            raise _invalid("invalid_grid", "field", f"{where}.{unknown[0]}", "unknown key; known: ranges, objective")
        objective = raw.get("objective")
        raw = raw["ranges"]
        if not isinstance(raw, Mapping):
            raise _invalid("invalid_grid", "field", f"{where}.ranges", "must be an object of parameter: range")
    ranges = {str(name): range_values(str(name), values) for name, values in raw.items()}
    try:
        for name, values in ranges.items():
            param = strategy.schema.params.get(name)
            if param is None:
                raise ParamError(name, f"unknown parameter; known: {', '.join(strategy.schema.params)}")
            ranges[name] = [param.coerce(v) for v in values]
    except ParamError as exc:
        raise _invalid("invalid_params", "param", exc.param, exc.message) from None
    return ranges, objective


def _param_sets(strategy: Strategy, ranges: Mapping[str, list[Any]], base: Params) -> list[Params]:
    try:
        sets = strategy.schema.grid(ranges, base=base) if ranges else [base]
    except ParamError as exc:
        raise _invalid("invalid_params", "param", exc.param, exc.message) from None
    if len(sets) > MAX_GRID_SETS:
        raise _invalid("invalid_grid", "field", "grid", f"{len(sets)} parameter sets; at most {MAX_GRID_SETS}")
    return sets


def _objective(value: Any, where: str) -> str:
    objective = "sharpe" if value is None else value
    if objective not in OBJECTIVES:
        raise _invalid("invalid_options", "field", where, f"must be one of {', '.join(OBJECTIVES)}, got {value!r}")
    return str(objective)


def _options(raw: Mapping[str, Any] | None, where: str, known: Sequence[str]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _invalid("invalid_options", "field", where, "must be an object of option: value")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise _invalid(
            "invalid_options", "field", f"{where}.{unknown[0]}", f"unknown option; known: {', '.join(known)}"
        )
    return dict(raw)


def _mc_options(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    given = _options(raw, "monte_carlo", tuple(MC_DEFAULTS))
    out = {**MC_DEFAULTS, **given}
    sims, method, ruin, seed = out["simulations"], out["method"], out["ruin_threshold"], out["seed"]
    if isinstance(sims, bool) or not isinstance(sims, int) or not 100 <= sims <= 1_000_000:
        raise _invalid("invalid_options", "field", "monte_carlo.simulations", f"must be 100..1,000,000, got {sims!r}")
    if method not in ("bootstrap", "shuffle"):
        raise _invalid(
            "invalid_options", "field", "monte_carlo.method", f"must be bootstrap or shuffle, got {method!r}"
        )
    if isinstance(ruin, bool) or not isinstance(ruin, int | float) or not 0 < ruin <= 1:
        raise _invalid(
            "invalid_options", "field", "monte_carlo.ruin_threshold", f"must be a fraction in (0, 1], got {ruin!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _invalid("invalid_options", "field", "monte_carlo.seed", f"must be a whole number >= 0, got {seed!r}")
    out["ruin_threshold"] = float(ruin)
    return out


def _wf_options(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    known = ("folds", "mode", "train_fraction", "train_bars", "objective", "grid")
    given = _options(raw, "walk_forward", known)
    out = {**WF_DEFAULTS, **{k: v for k, v in given.items() if k != "grid"}}
    if "train_fraction" not in out and "train_bars" not in out:
        out["train_fraction"] = 0.75
    out["objective"] = _objective(out["objective"], "walk_forward.objective")
    return out


def _walk_forward_folds(spec: Spec, bars: Bars) -> list[dict[str, Any]]:
    o = spec.options
    try:
        folds = walk_forward_folds(
            bars.n_times,
            folds=o["folds"],
            mode=o["mode"],
            train_fraction=o.get("train_fraction"),
            train_bars=o.get("train_bars"),
        )
    except ResearchError as exc:
        raise _invalid("invalid_options", "field", f"walk_forward.{exc.field}", exc.message) from None
    warmup = max(get_strategy(spec.strategy.name, p).warmup() for p in spec.param_sets)
    shortest = min(f.train_bars for f in folds)
    if shortest <= warmup + 1:
        name = "train_bars" if "train_bars" in o else "train_fraction"
        raise _invalid(
            "invalid_options",
            "field",
            f"walk_forward.{name}",
            f"an in-sample window of {shortest} bars is too short for a warm-up of {warmup} bars",
        )
    return [f.as_dict() for f in folds]


def _source_run(source_run_id: int | None) -> BacktestRun | None:
    if source_run_id is None:
        return None
    source = BacktestRun.objects.filter(pk=source_run_id).first()
    if source is None:
        raise NotFound(f"no backtest run {source_run_id}", code="unknown_source_run", details={"field": "source_run"})
    if source.status != RunStatus.DONE:
        raise _invalid("invalid_source_run", "field", "source_run", f"run {source.pk} is {source.status}, not done")
    if len(source.trades) < 2:
        raise _invalid("invalid_source_run", "field", "source_run", f"run {source.pk} has fewer than 2 trades")
    return source


def _check_range(start: Any, end: Any) -> None:
    if not isinstance(start, date) or not isinstance(end, date):
        raise _invalid("bad_range", "field", "start", "start and end must be dates")
    if end < start:
        raise _invalid("bad_range", "field", "end", f"the range ends ({end}) before it starts ({start})")


def _kind_options(
    kind: str,
    strat: Strategy,
    options: dict[str, Any],
    *,
    grid: Mapping[str, Any] | None,
    walk_forward: Mapping[str, Any] | None,
    monte_carlo: Mapping[str, Any] | None,
) -> dict[str, list[Any]]:
    """The kind's own options (added to `options`) and its grid ranges."""
    ranges: dict[str, list[Any]] = {}
    if kind == RunKind.GRID:
        ranges, objective = _grid(strat, grid, "grid")
        if not ranges:
            raise _invalid("invalid_grid", "field", "grid", "a grid run needs parameter ranges")
        options["objective"] = _objective(objective, "grid.objective")
    elif kind == RunKind.WALK_FORWARD:
        options.update(_wf_options(walk_forward))
        raw_grid = (walk_forward or {}).get("grid", grid)
        ranges, _ = _grid(strat, raw_grid, "walk_forward.grid")
    elif kind == RunKind.MONTE_CARLO:
        options["monte_carlo"] = _mc_options(monte_carlo)
    return ranges


def run_validate(
    *,
    kind: str,
    strategy: str,
    params: Mapping[str, Any] | None = None,
    symbols: Sequence[str] | None = None,
    universe: str | None = None,
    interval: str = "day",
    start: date,
    end: date,
    settings: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
    walk_forward: Mapping[str, Any] | None = None,
    monte_carlo: Mapping[str, Any] | None = None,
    source_run_id: int | None = None,
) -> Spec:
    """Every input checked, the bars loaded: a `Spec` ready to store, or an ApplicationError naming the field."""
    if kind not in RunKind.values:
        raise _invalid("invalid_kind", "field", "kind", f"must be one of {', '.join(RunKind.values)}, got {kind!r}")
    source = _source_run(source_run_id) if kind == RunKind.MONTE_CARLO else None
    if source is not None:  # the trades come from there: so do the strategy, data and settings
        params, symbols, universe = source.parameters, source.symbols, None
        strategy, interval, start, end = source.strategy, source.interval, source.start, source.end
        settings = source.options.get("settings", {})
    elif source_run_id is not None:
        raise _invalid("invalid_source_run", "field", "source_run", "only a monte_carlo run has a source run")
    _check_range(start, end)
    strat = _strategy(strategy, params)
    if strat.intervals is not None and interval not in strat.intervals:
        raise _invalid("invalid_interval", "field", "interval", f"{strategy} runs on {', '.join(strat.intervals)}")
    options: dict[str, Any] = {"settings": _settings(settings).as_dict()}
    ranges = _kind_options(kind, strat, options, grid=grid, walk_forward=walk_forward, monte_carlo=monte_carlo)
    names = data.resolve_symbols(symbols=symbols, universe=universe)
    if universe:
        options["universe"] = universe
    spec = Spec(kind, strat, strat.params.as_dict(), ranges, options, names, interval, start, end, source)
    if kind in (RunKind.GRID, RunKind.WALK_FORWARD):
        spec.param_sets = _param_sets(strat, ranges, strat.params)
    if source is None:
        spec.bars = data.bars_load(symbols=names, interval=interval, start=start, end=end)
    if kind == RunKind.WALK_FORWARD:
        assert spec.bars is not None
        spec.folds = _walk_forward_folds(spec, spec.bars)
    return spec
