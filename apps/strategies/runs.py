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
The checks of the input are in `apps.strategies.run_inputs`, what each task computes in
`apps.strategies.run_exec`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import F, FloatField, Value
from django.db.models.functions import Cast, Least
from django.utils import timezone

from apps.strategies.engine.bars import Bars
from apps.strategies.engine.research import DEFAULT_THROUGHPUT, chunk_work
from apps.strategies.models import BacktestChunk, BacktestRun, RunKind, RunStatus
from apps.strategies.run_inputs import MAX_GRID_SETS, Spec, run_validate
from tradingsite.exceptions import NotFound

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
    "run_validate",
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
CHORD_POLL_SECONDS = 0.25  # how often celery.chord_unlock asks the database backend whether the header is done
CHUNK_SECONDS = 1.0  # target work per chunk
POOL_PROCESSES = 2  # the backtests worker profile's concurrency: chunks come in multiples of it
THROUGHPUT_SAMPLE = 50  # recent finished grid chunks behind the measured throughput
# Only chunks this long count: in a shorter one the fixed cost (claim, bars, storing rows) is most of the time,
# and it would make the next grid's chunks far too small.
MIN_TIMED_CHUNK_SECONDS = 0.5


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


# --- submit, read ---------------------------------------------------------------------------------------------


def grid_throughput() -> float:
    """Combination-bars per second of recent grid chunks (median of those that took half a second or more, at
    least 3 of them), or the engine's estimate (research.DEFAULT_THROUGHPUT)."""
    rows = (
        BacktestChunk.objects.filter(status=RunStatus.DONE, run__kind=RunKind.GRID, started_at__isnull=False)
        .exclude(finished_at__isnull=True)
        .order_by("-id")
        .values_list("work__combination_bars", "started_at", "finished_at")[:THROUGHPUT_SAMPLE]
    )  # only the one number of `work`: its parameter sets are megabytes
    rates = []
    for bars, started, finished in rows:
        seconds = (finished - started).total_seconds() if finished and started else 0.0
        if seconds >= MIN_TIMED_CHUNK_SECONDS and isinstance(bars, int | float) and bars > 0:
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
    stored: Sequence[str] = (),
) -> bool:
    """queued|running -> done with what came out; False when another task finished or failed it first.

    `stored` names keys of `results` read back from the database's JSON (a grid's rows): they need no check.
    """
    checked = {k: v if k in stored else json_safe(v) for k, v in results.items()}
    return bool(
        BacktestRun.objects.filter(pk=run_id, status__in=ACTIVE).update(
            status=RunStatus.DONE,
            progress=1.0,
            metrics=json_safe(metrics),
            equity=equity,
            trades=json_safe(trades),
            results=checked,
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
    """JSON the database accepts: NaN and infinities become null (PostgreSQL's jsonb refuses them), numpy
    scalars plain numbers, dates ISO strings. A grid's table is 100,000 numbers: one strict encoding (C speed)
    proves most values clean as they are; only a value that fails it takes the round trip that replaces them."""
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return json.loads(json.dumps(value, default=_plain), parse_constant=lambda _: None)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
