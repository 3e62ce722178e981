"""What the backtests tasks compute: a single run, a grid chunk, a walk-forward fold, the chord bodies, Monte Carlo.

Each function takes an id, re-reads its row and checks its state first (a redelivered message finds its
chunk or run already advanced and does nothing), computes with the pure engine, and stores through the
compare-and-set helpers of `apps.strategies.runs`.

Bars come from the database (`data.bars_load`), checked against the hash the run was submitted with (a
run never mixes data from before and after a re-import), and are kept per worker process for the next
chunk of the same run: a grid of 8 chunks on a pool of 2 reads them twice, not 8 times.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from apps.strategies import data, runs
from apps.strategies.engine.backtest import BacktestResult, Settings, run_backtest, run_grid
from apps.strategies.engine.bars import IST, Bars
from apps.strategies.engine.metrics import compute_metrics, periods_per_year, years_between
from apps.strategies.engine.packing import pack_series, unpack_series
from apps.strategies.engine.params import Params
from apps.strategies.engine.research import (
    Fold,
    choose_best,
    merge_dealt,
    monte_carlo,
    stitch,
    trade_returns,
    trade_stats,
)
from apps.strategies.engine.strategy import get_strategy
from apps.strategies.models import BacktestChunk, BacktestRun, RunStatus
from tradingsite.exceptions import ApplicationError

log = logging.getLogger(__name__)

BARS_CACHE_SIZE = 4
PROGRESS_EVERY_SECONDS = 0.5
_BARS: OrderedDict[tuple[Any, ...], Bars] = OrderedDict()


class DataChanged(ApplicationError):
    """The bars in the database are not the ones the run was submitted with (re-imported since)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_bars(run: BacktestRun) -> Bars:
    """The run's bars, from this process's cache or the database; `DataChanged` if they differ from submit."""
    key = (tuple(run.symbols), run.interval, run.start, run.end, run.data_hash)
    bars = _BARS.get(key)
    if bars is not None:
        _BARS.move_to_end(key)
        return bars
    bars = data.bars_load(symbols=run.symbols, interval=run.interval, start=run.start, end=run.end)
    hashed = runs.data_hash(bars)
    if run.data_hash and hashed != run.data_hash:
        raise DataChanged(
            f"the {run.interval} bars of {len(run.symbols)} symbols from {run.start} to {run.end} changed since "
            f"run {run.pk} was submitted (data hash {hashed[:12]}, expected {run.data_hash[:12]}): submit it again",
            code="data_changed",
        )
    _BARS[key] = bars
    while len(_BARS) > BARS_CACHE_SIZE:
        _BARS.popitem(last=False)
    return bars


def _settings(run: BacktestRun) -> Settings:
    return Settings.from_dict(run.options.get("settings") or {})


def _param_sets(run: BacktestRun) -> list[Params]:
    strategy = get_strategy(run.strategy, run.parameters)
    return strategy.schema.grid(run.grid, base=strategy.params) if run.grid else [strategy.params]


def _equity_blob(result: BacktestResult) -> bytes:
    return pack_series(result.times.astype("datetime64[us]").astype(np.int64), result.equity)


def _iso(times: NDArray[np.datetime64], row: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(int(times[row].astype("datetime64[us]").astype(np.int64)) / 1e6, tz=IST).isoformat()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# --- single ---------------------------------------------------------------------------------------------------


def _progress(run_id: int) -> Callable[[int, int], None]:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if total and now - last[0] >= PROGRESS_EVERY_SECONDS:
            last[0] = now
            runs.run_progress(run_id, done / total)

    return report


def _guarded(run_id: int, work: Callable[[BacktestRun], str]) -> str:
    """Run `work` on a queued or running run; a failure fails the run with the reason (and is not retried)."""
    run = BacktestRun.objects.filter(pk=run_id).first()
    if run is None or run.status not in runs.ACTIVE:
        return run.status if run is not None else "missing"
    runs.run_start(run_id)
    try:
        return work(run)
    except Exception as exc:  # any failure of the computation is the run's outcome, stored on it
        log.exception("backtest run %s failed", run_id)
        runs.run_fail(run_id, _reason(exc))
        return RunStatus.FAILED


def single_execute(*, run_id: int) -> str:
    def work(run: BacktestRun) -> str:
        bars = run_bars(run)
        strategy = get_strategy(run.strategy, run.parameters)
        result = run_backtest(strategy, bars, _settings(run), progress=_progress(run_id))
        runs.run_complete(
            run_id, metrics=result.metrics, equity=_equity_blob(result), trades=result.trades_json(), results={}
        )
        return RunStatus.DONE

    return _guarded(run_id, work)


# --- chunks ---------------------------------------------------------------------------------------------------


def _chunk(chunk_id: int, compute: Callable[[BacktestChunk], Any]) -> dict[str, Any]:
    """Claim, compute, store; a chunk that raises is marked failed with the reason and the chord goes on."""
    chunk = runs.chunk_claim(chunk_id, worker_name())
    if chunk is None:
        status = BacktestChunk.objects.filter(pk=chunk_id).values_list("status", flat=True).first()
        return {"chunk": chunk_id, "status": status or "missing"}
    try:
        results = compute(chunk)
    except Exception as exc:  # recorded on the chunk's row; raising would skip the chord body
        log.exception("backtest chunk %s (run %s, index %s) failed", chunk_id, chunk.run_id, chunk.index)
        runs.chunk_fail(chunk, _reason(exc))
        return {"chunk": chunk_id, "status": RunStatus.FAILED}
    runs.chunk_complete(chunk, results)
    return {"chunk": chunk_id, "status": RunStatus.DONE}


def _grid_rows(chunk: BacktestChunk) -> list[dict[str, Any]]:
    run = chunk.run
    sets = chunk.work["param_sets"]
    metrics = run_grid(run.strategy, sets, run_bars(run), _settings(run))
    return [{"params": p, "metrics": m} for p, m in zip(sets, metrics, strict=True)]


def grid_chunk_execute(*, chunk_id: int) -> dict[str, Any]:
    return _chunk(chunk_id, _grid_rows)


def _failure(chunks: list[BacktestChunk]) -> str | None:
    bad = [c for c in chunks if c.status != RunStatus.DONE]
    if not bad:
        return None
    first = bad[0]
    reason = first.error if first.status == RunStatus.FAILED else "it did not finish"
    more = f" (and {len(bad) - 1} more chunk(s))" if len(bad) > 1 else ""
    return f"chunk {first.index} failed: {reason}{more}"


def grid_finish_execute(*, run_id: int) -> str:
    """The chord body: rank every row, back-test the best set for its curve and trades; or fail naming a chunk."""

    def work(run: BacktestRun) -> str:
        chunks = list(run.chunks.defer("work").order_by("index"))
        rows = merge_dealt([c.results if c.status == RunStatus.DONE else None for c in chunks])  # grid order
        objective = run.options.get("objective", "sharpe")
        results: dict[str, Any] = {"objective": objective, "axes": run.grid, "rows": rows, "best": None}
        if rows:
            results["best"] = rows[choose_best([r["metrics"] for r in rows], objective)]
        failure = _failure(chunks)
        if failure is not None:
            runs.run_fail(run_id, failure, results=results)
            return RunStatus.FAILED
        best = get_strategy(run.strategy, results["best"]["params"])
        result = run_backtest(best, run_bars(run), _settings(run))
        runs.run_complete(
            run_id,
            metrics=result.metrics,
            equity=_equity_blob(result),
            trades=result.trades_json(),
            results=results,
            stored=("rows", "best"),
        )
        return RunStatus.DONE

    return _guarded(run_id, work)


# --- walk-forward ---------------------------------------------------------------------------------------------


def _fold(chunk: BacktestChunk) -> dict[str, Any]:
    """In sample: the grid on the training rows, the best set by the objective. Out of sample: that set on
    the test rows, its indicators warmed on the bars just before them (the past, never the future)."""
    run = chunk.run
    bars, settings, objective = run_bars(run), _settings(run), run.options.get("objective", "sharpe")
    fold = Fold(**chunk.work["fold"])
    sets = _param_sets(run)
    in_sample = run_grid(run.strategy, sets, bars.slice(fold.train_start, fold.train_stop), settings)
    best = choose_best(in_sample, objective)
    strategy = get_strategy(run.strategy, sets[best])
    lead = min(strategy.warmup(), fold.test_start)
    window = bars.slice(fold.test_start - lead, fold.test_stop)
    result = run_backtest(strategy, window, settings)
    equity = result.equity[lead:]
    trades = result.trades_json()
    tested = bars.slice(fold.test_start, fold.test_stop)
    exposed = round(result.metrics["exposure"] * int(window.valid().sum()))
    stats = trade_stats(trades, exposed=exposed, valid=int(tested.valid().sum()))
    oos = compute_metrics(
        equity,
        initial=float(equity[0]),
        periods=periods_per_year(bars.interval),
        years=years_between(tested.times),
        stats=stats,
    )
    return {
        "index": fold.index,
        "train": [_iso(bars.times, fold.train_start), _iso(bars.times, fold.train_stop - 1)],
        "test": [_iso(bars.times, fold.test_start), _iso(bars.times, fold.test_stop - 1)],
        "params": sets[best].as_dict(),
        "in_sample": in_sample[best],
        "out_of_sample": oos,
        "stats": stats.tolist(),
        "equity": {"times": tested.times.astype(np.int64).tolist(), "values": equity.tolist()},
        "trades": trades,
    }


def fold_execute(*, chunk_id: int) -> dict[str, Any]:
    return _chunk(chunk_id, _fold)


def walk_forward_finish_execute(*, run_id: int) -> str:
    """The chord body: the folds' table, the stitched out-of-sample equity and its metrics."""

    def work(run: BacktestRun) -> str:
        chunks = list(run.chunks.defer("work").order_by("index"))
        done = [c.results for c in chunks if c.status == RunStatus.DONE]
        folds = [{k: f[k] for k in ("index", "train", "test", "params", "in_sample", "out_of_sample")} for f in done]
        results: dict[str, Any] = {
            "mode": run.options.get("mode"),
            "objective": run.options.get("objective"),
            "folds": folds,
            "oos_metrics": {},
        }
        failure = _failure(chunks)
        if failure is not None:
            runs.run_fail(run_id, failure, results=results)
            return RunStatus.FAILED
        segments = [(np.array(f["equity"]["times"], np.int64), np.array(f["equity"]["values"])) for f in done]
        times, equity = stitch(segments, float(segments[0][1][0]))
        stats = np.sum([np.array(f["stats"], np.int64) for f in done], axis=0)
        trades = [t for f in done for t in f["trades"]]
        oos = compute_metrics(
            equity,
            initial=float(equity[0]),
            periods=periods_per_year(run.interval),
            years=years_between(times.astype("datetime64[us]")),
            stats=stats,
        )
        results["oos_metrics"] = oos
        runs.run_complete(run_id, metrics=oos, equity=pack_series(times, equity), trades=trades, results=results)
        return RunStatus.DONE

    return _guarded(run_id, work)


# --- Monte Carlo ----------------------------------------------------------------------------------------------


def monte_carlo_execute(*, run_id: int) -> str:
    """Resample the source run's trades (or those of a backtest run here first) into distributions."""

    def work(run: BacktestRun) -> str:
        options = run.options["monte_carlo"]
        if run.source_run is not None:
            source = run.source_run
            trades, metrics, blob = source.trades, source.metrics, bytes(source.equity) if source.equity else None
        else:
            result = run_backtest(get_strategy(run.strategy, run.parameters), run_bars(run), _settings(run))
            trades, metrics, blob = result.trades_json(), result.metrics, _equity_blob(result)
        times, equity = unpack_series(blob)
        if len(trades) < 2:
            raise ApplicationError(f"{len(trades)} trade(s): Monte Carlo needs at least 2", code="not_enough_trades")
        out = monte_carlo(
            trade_returns(trades, times, equity),
            simulations=int(options["simulations"]),
            method=options["method"],
            start_equity=float(equity[0]),
            ruin_threshold=float(options["ruin_threshold"]),
            seed=int(options["seed"]),
        )
        runs.run_complete(run_id, metrics=metrics, equity=blob, trades=trades, results=out)
        return RunStatus.DONE

    return _guarded(run_id, work)


# --- a chord that failed outright -----------------------------------------------------------------------------


def run_abort_execute(*, run_id: int, task_id: str = "") -> str:
    """The chord's header failed (a chunk killed by the hard time limit or a lost worker): fail what is left."""
    unfinished = BacktestChunk.objects.filter(run_id=run_id, status__in=runs.ACTIVE)
    for chunk in unfinished:
        runs.chunk_fail(chunk, f"did not finish (killed: time limit or lost worker; task {task_id or '?'})")
    chunks = list(BacktestChunk.objects.filter(run_id=run_id).order_by("index"))
    runs.run_fail(run_id, _failure(chunks) or "the chord failed")
    return RunStatus.FAILED
