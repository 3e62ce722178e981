"""Backtest runs: submit (validate everything, cache, fan out), read, and the state changes the tasks make.

A run is one of four kinds (docs/backtest-research.md):

- `single`: one backtest, one `backtests.run_single` task;
- `grid`: every valid combination of parameter ranges, cut into chunks of about a second of work or more
  (`engine.research.chunk_work`), one `backtests.grid_chunk` per chunk in a Celery chord whose body
  (`backtests.grid_finish`) ranks the rows and re-runs the best set for its equity curve and trades;
- `walk_forward`: one `backtests.walk_forward_fold` per fold (in-sample grid, the best set by the objective,
  its out-of-sample backtest), the chord body stitches the out-of-sample equity;
- `monte_carlo`: one `backtests.monte_carlo` task resampling the trades of a source run (or of a single
  backtest it runs first).

Everything is validated before a row is written; a DONE run with the same `cache_key` (a hash of the kind,
strategy, parameters, grid, options, symbols, interval, range, the engine's code version and the bars
themselves) is returned as it is. Status changes are compare-and-set (`UPDATE ... WHERE status IN ...`):
queued -> running -> done | failed; a redelivered task finds its chunk or run advanced and does nothing.
The execution side (what each task computes) is in `apps.strategies.run_exec`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import F, FloatField, Value
from django.db.models.functions import Cast, Least
from django.utils import timezone

from apps.strategies import data
from apps.strategies.engine.backtest import Settings, SettingsError
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.params import ParamError, Params
from apps.strategies.engine.research import (
    DEFAULT_THROUGHPUT,
    OBJECTIVES,
    ResearchError,
    chunk_work,
    walk_forward_folds,
)
from apps.strategies.engine.strategy import Strategy, UnknownStrategy, get_strategy
from apps.strategies.models import BacktestChunk, BacktestRun, RunKind, RunStatus
from tradingsite.exceptions import ApplicationError, NotFound

__all__ = [
    "CHORD_POLL_SECONDS",
    "MAX_GRID_SETS",
    "chunk_complete",
    "chunk_fail",
    "code_version",
    "data_hash",
    "grid_throughput",
    "run_chunks",
    "run_complete",
    "run_fail",
    "run_get",
    "run_start",
    "run_submit",
]

ENGINE_DIR = Path(__file__).resolve().parent / "engine"
# What a stored result depends on besides its inputs: the engine, the charge schedule it reads, and this
# module and run_exec (walk-forward slicing, trade returns for Monte Carlo).
CODE_FILES = (
    *sorted(ENGINE_DIR.glob("*.py")),
    Path(__file__).resolve().parents[1] / "orders" / "charges.py",
    Path(__file__).resolve(),
    Path(__file__).resolve().parent / "run_exec.py",
)
MAX_GRID_SETS = 100_000
MAX_RANGE_VALUES = 10_000
CHORD_POLL_SECONDS = 0.25  # how often celery.chord_unlock asks the database backend whether the header is done
CHUNK_SECONDS = 1.0  # target work per chunk
POOL_PROCESSES = 2  # the backtests worker profile's concurrency: chunks come in multiples of it
THROUGHPUT_SAMPLE = 20  # finished grid chunks behind the measured throughput
MC_DEFAULTS: dict[str, Any] = {"simulations": 10_000, "method": "bootstrap", "ruin_threshold": 0.5, "seed": 0}
WF_DEFAULTS: dict[str, Any] = {"folds": 4, "mode": "rolling", "objective": "sharpe"}


def _invalid(code: str, key: str, name: str, message: str) -> ApplicationError:
    return ApplicationError(f"{name}: {message}", code=code, details={key: name})


# --- fingerprints ---------------------------------------------------------------------------------------------


@functools.cache
def code_version() -> str:
    """sha256 of the engine's source files (and the few others a result depends on); once per process."""
    digest = hashlib.sha256()
    for path in CODE_FILES:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def data_hash(bars: Bars) -> str:
    """sha256 of what a backtest reads: symbols, interval, bar times and every price and volume."""
    digest = hashlib.sha256()
    digest.update(json.dumps([bars.interval, list(bars.symbols)]).encode())
    digest.update(np.ascontiguousarray(bars.times.astype(np.int64)).tobytes())
    for name in ("open", "high", "low", "close", "volume"):
        values = bars[name]
        digest.update(np.ascontiguousarray(np.where(np.isnan(values), np.nan, values)).tobytes())
    return digest.hexdigest()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# --- validation -----------------------------------------------------------------------------------------------


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


def _range_values(name: str, raw: Any) -> list[Any]:
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
    ranges = {str(name): _range_values(str(name), values) for name, values in raw.items()}
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


# --- submit, read ---------------------------------------------------------------------------------------------


def grid_throughput() -> float:
    """Combination-bars per second of recent grid chunks (median), or the engine's estimate when none ran."""
    rows = (
        BacktestChunk.objects.filter(status=RunStatus.DONE, run__kind=RunKind.GRID, started_at__isnull=False)
        .exclude(finished_at__isnull=True)
        .order_by("-id")
        .values_list("work", "started_at", "finished_at")[:THROUGHPUT_SAMPLE]
    )
    rates = []
    for work, started, finished in rows:
        seconds = (finished - started).total_seconds() if finished and started else 0.0
        bars = work.get("combination_bars") if isinstance(work, dict) else None
        if seconds > 0 and bars:
            rates.append(bars / seconds)
    return float(np.median(rates)) if len(rates) >= 3 else DEFAULT_THROUGHPUT


def _chunk_rows(spec: Spec) -> list[Any]:
    """What each chunk computes: parameter sets (grid) or a fold (walk-forward); none for the others."""
    if spec.kind == RunKind.GRID:
        assert spec.bars is not None
        per_set = spec.bars.n_times * spec.bars.n_symbols
        chunks = chunk_work(spec.param_sets, per_set, CHUNK_SECONDS, grid_throughput(), parallel=POOL_PROCESSES)
        return [{"param_sets": [p.as_dict() for p in c], "combination_bars": per_set * len(c)} for c in chunks]
    if spec.kind == RunKind.WALK_FORWARD:
        return [{"fold": fold} for fold in spec.folds]
    return []


def run_submit(
    *,
    kind: str,
    strategy: str,
    params: dict[str, Any] | None = None,
    symbols: list[str] | None = None,
    universe: str | None = None,
    interval: str = "day",
    start: date,
    end: date,
    settings: dict[str, Any] | None = None,
    grid: dict[str, Any] | None = None,
    walk_forward: dict[str, Any] | None = None,
    monte_carlo: dict[str, Any] | None = None,
    source_run_id: int | None = None,
    user: Any = None,
) -> tuple[BacktestRun, bool]:
    """Validate, then return the DONE run with the same inputs (cached=True) or store a new one and enqueue it.

    Nothing is written when the input is bad. The tasks are sent once the transaction commits.
    """
    spec = run_validate(
        kind=kind,
        strategy=strategy,
        params=params,
        symbols=symbols,
        universe=universe,
        interval=interval,
        start=start,
        end=end,
        settings=settings,
        grid=grid,
        walk_forward=walk_forward,
        monte_carlo=monte_carlo,
        source_run_id=source_run_id,
    )
    hashed = spec.source.data_hash if spec.source is not None else data_hash(spec.bars) if spec.bars else ""
    code = code_version()
    key = hashlib.sha256(canonical(spec.key_payload(code, hashed)).encode()).hexdigest()
    done = BacktestRun.objects.filter(cache_key=key, status=RunStatus.DONE).order_by("-id").first()
    if done is not None:
        return done, True
    work = _chunk_rows(spec)
    with transaction.atomic():
        run = BacktestRun.objects.create(
            kind=spec.kind,
            strategy=spec.strategy.name,
            parameters=spec.params,
            grid=spec.grid,
            options=spec.options,
            symbols=spec.symbols,
            interval=spec.interval,
            start=spec.start,
            end=spec.end,
            code_version=code,
            data_hash=hashed,
            cache_key=key,
            chunks_total=len(work),
            source_run=spec.source,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        BacktestChunk.objects.bulk_create(BacktestChunk(run=run, index=i, work=w) for i, w in enumerate(work))
        run_id = run.pk
        transaction.on_commit(lambda: enqueue(run_id))
    return run, False


def enqueue(run_id: int) -> None:
    """Send the run's tasks: one task, or a chord of its chunks with the finishing task as its body."""
    from celery import chord, signature

    run = BacktestRun.objects.get(pk=run_id)
    if run.kind == RunKind.SINGLE:
        signature("backtests.run_single", kwargs={"run_id": run_id}).apply_async()
        return
    if run.kind == RunKind.MONTE_CARLO:
        signature("backtests.monte_carlo", kwargs={"run_id": run_id}).apply_async()
        return
    part, finish = (
        ("backtests.grid_chunk", "backtests.grid_finish")
        if run.kind == RunKind.GRID
        else ("backtests.walk_forward_fold", "backtests.walk_forward_finish")
    )
    chunk_ids = list(run.chunks.order_by("index").values_list("pk", flat=True))
    body = signature(finish, kwargs={"run_id": run_id})
    # A header task killed outright (hard time limit, lost worker) fails the chord: the body never runs, so
    # its error callback fails the run instead of leaving it "running".
    body.on_error(signature("backtests.run_abort", kwargs={"run_id": run_id}))
    header = [signature(part, kwargs={"chunk_id": pk}) for pk in chunk_ids]
    chord(header, body).apply_async(interval=CHORD_POLL_SECONDS)


def run_get(run_id: int) -> BacktestRun:
    run = BacktestRun.objects.filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"no backtest run {run_id}", code="unknown_run", details={"run": run_id})
    return run


def run_chunks(run_id: int) -> list[BacktestChunk]:
    return list(BacktestChunk.objects.filter(run_id=run_get(run_id).pk).order_by("index"))


# --- state changes (compare-and-set) --------------------------------------------------------------------------

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def run_start(run_id: int) -> bool:
    """queued -> running (the first task of the run to start); False when it was not queued."""
    return bool(
        BacktestRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=timezone.now()
        )
    )


def run_progress(run_id: int, fraction: float) -> None:
    BacktestRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(progress=min(max(fraction, 0.0), 0.99))


def run_complete(
    run_id: int,
    *,
    metrics: Mapping[str, Any],
    equity: bytes | None,
    trades: list[dict[str, Any]],
    results: Mapping[str, Any],
) -> bool:
    """queued|running -> done with what came out; False when another task finished or failed it first."""
    return bool(
        BacktestRun.objects.filter(pk=run_id, status__in=ACTIVE).update(
            status=RunStatus.DONE,
            progress=1.0,
            metrics=json_safe(metrics),
            equity=equity,
            trades=json_safe(trades),
            results=json_safe(results),
            error="",
            finished_at=timezone.now(),
        )
    )


def run_fail(run_id: int, error: str, *, results: Mapping[str, Any] | None = None) -> bool:
    """queued|running -> failed with the reason; results gathered so far stay readable."""
    fields: dict[str, Any] = {"status": RunStatus.FAILED, "error": error[:4000], "finished_at": timezone.now()}
    if results is not None:
        fields["results"] = json_safe(results)
    return bool(BacktestRun.objects.filter(pk=run_id, status__in=ACTIVE).update(**fields))


def chunk_claim(chunk_id: int, worker: str) -> BacktestChunk | None:
    """The chunk to compute, or None when it is already done or failed (a redelivered message)."""
    chunk = BacktestChunk.objects.select_related("run").filter(pk=chunk_id).first()
    if chunk is None or chunk.status not in ACTIVE:
        return None
    BacktestChunk.objects.filter(pk=chunk_id, status__in=ACTIVE).update(
        status=RunStatus.RUNNING, started_at=timezone.now(), worker=worker[:200]
    )
    run_start(chunk.run_id)
    return chunk


def chunk_complete(chunk: BacktestChunk, results: Any) -> bool:
    """running -> done with its results, and the run's count moves by one (once, however often it runs)."""
    with transaction.atomic():
        moved = BacktestChunk.objects.filter(pk=chunk.pk, status__in=ACTIVE).update(
            status=RunStatus.DONE, results=json_safe(results), error="", finished_at=timezone.now()
        )
        if moved:
            _count_chunk(chunk.run_id)
    return bool(moved)


def chunk_fail(chunk: BacktestChunk, error: str) -> bool:
    with transaction.atomic():
        moved = BacktestChunk.objects.filter(pk=chunk.pk, status__in=ACTIVE).update(
            status=RunStatus.FAILED, error=error[:4000], finished_at=timezone.now()
        )
        if moved:
            _count_chunk(chunk.run_id)
    return bool(moved)


def _count_chunk(run_id: int) -> None:
    done = F("chunks_done") + 1
    BacktestRun.objects.filter(pk=run_id).update(
        chunks_done=done,
        progress=Least(Cast(done, FloatField()) / Cast(F("chunks_total"), FloatField()), Value(0.99)),
    )


def json_safe(value: Any) -> Any:
    """JSON the database accepts: NaN and infinities become null (PostgreSQL's jsonb refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.floating | np.integer):
        return json_safe(value.item())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
