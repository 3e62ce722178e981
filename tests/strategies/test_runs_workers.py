"""Backtest runs through REAL worker processes: chords on the backtests queue, celery.chord_unlock on the
default queue polling the database result backend, the finishing bodies, the cache, a failed chunk."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.db import transaction

from apps.marketdata.importers import candles_import
from apps.strategies import runs
from apps.strategies.engine.backtest import Settings, run_backtest
from apps.strategies.engine.bars import Bars, read_csv_dir
from apps.strategies.engine.packing import unpack_series
from apps.strategies.engine.research import merge_dealt
from apps.strategies.engine.strategy import get_strategy
from apps.strategies.models import BacktestChunk, BacktestRun, RunStatus
from workers.queues import Queue
from workers.supervision import ManagedProcess, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

SYMBOLS = ["RELIANCE", "INFY", "TCS", "HDFCBANK", "ITC", "SBIN"]
START, END = date(2020, 10, 1), date(2024, 9, 30)
RUN_SECONDS = 180


@pytest.fixture
def daily(shared_data: Path) -> Path:
    for symbol in SYMBOLS:
        candles_import(path=shared_data / "nifty50-daily" / f"{symbol}.csv", interval="day")
    return shared_data / "nifty50-daily"


def csv_bars(daily: Path) -> Bars:
    return read_csv_dir(daily, SYMBOLS)  # the whole files: the runs below cover all their dates


def submit(**overrides: Any) -> tuple[BacktestRun, bool]:
    args: dict[str, Any] = {
        "kind": "grid",
        "strategy": "sma_crossover",
        "symbols": SYMBOLS,
        "start": START,
        "end": END,
        "grid": {"fast": {"start": 5, "stop": 50, "step": 5}, "slow": {"start": 20, "stop": 200, "step": 10}},
    }
    args.update(overrides)
    return runs.run_submit(**args)


def finished(run: BacktestRun) -> BacktestRun:
    def ended() -> bool:
        run.refresh_from_db()
        return run.status in (RunStatus.DONE, RunStatus.FAILED)

    wait_until(ended, timeout=RUN_SECONDS, interval=0.1, what=f"backtest run {run.pk} ({run.kind}) to end")
    return run


def test_grid_chord_completes_and_its_best_row_is_an_in_process_backtest(
    live_workers: dict[Queue, ManagedProcess], daily: Path
) -> None:
    run, cached = submit()
    assert not cached and run.chunks_total >= 2
    run = finished(run)
    assert run.status == RunStatus.DONE, run.error
    assert run.chunks_done == run.chunks_total and run.progress == 1.0
    chunks = runs.run_chunks(run.pk)
    assert all(c.status == RunStatus.DONE and c.worker and c.finished_at for c in chunks)
    rows = run.results["rows"]
    assert len(rows) == 174 and run.results["axes"]["fast"] == list(range(5, 55, 5))  # fast < slow: 174 pairs
    best = run.results["best"]
    expected = run_backtest(get_strategy("sma_crossover", best["params"]), csv_bars(daily), Settings())
    assert best["metrics"] == pytest.approx(expected.metrics)
    assert max(r["metrics"]["sharpe"] for r in rows) == best["metrics"]["sharpe"]
    assert run.trades == expected.trades_json()
    assert np.array_equal(unpack_series(run.equity)[1], expected.equity)
    # A second identical submit is the same run, with no new work.
    again, cached = submit()
    assert cached and again.pk == run.pk and BacktestRun.objects.count() == 1


def test_walk_forward_and_monte_carlo_complete(live_workers: dict[Queue, ManagedProcess], daily: Path) -> None:
    options = {"folds": 4, "mode": "anchored", "train_fraction": 0.7, "grid": {"fast": [5, 10, 20], "slow": [50, 100]}}
    wf, _ = submit(kind="walk_forward", grid=None, walk_forward=options)
    mc, _ = submit(kind="monte_carlo", grid=None, params={"fast": 10, "slow": 30}, monte_carlo={"simulations": 5000})
    wf, mc = finished(wf), finished(mc)
    assert wf.status == RunStatus.DONE, wf.error
    assert wf.chunks_done == 4 and [f["index"] for f in wf.results["folds"]] == [0, 1, 2, 3]
    for fold in wf.results["folds"]:
        assert fold["train"][0] == wf.results["folds"][0]["train"][0]  # anchored
        assert fold["train"][1] < fold["test"][0]
    times, equity = unpack_series(wf.equity)
    assert len(times) == len(equity) > 200 and equity[0] == pytest.approx(1_000_000.0 * len(SYMBOLS))
    assert wf.metrics["final_equity"] == pytest.approx(equity[-1])

    assert mc.status == RunStatus.DONE, mc.error
    out = mc.results
    assert out["simulations"] == 5000 and out["method"] == "bootstrap"
    assert 0.0 <= out["probability_of_ruin"] <= 1.0
    for name in ("max_drawdown", "final_equity"):
        pct = [out[name]["percentiles"][q] for q in ("5", "25", "50", "75", "95")]
        assert pct == sorted(pct) and pct[0] < pct[-1]
    assert 0.0 < out["max_drawdown"]["percentiles"]["50"] < 1.0
    assert out["trades"] == len(mc.trades) > 50


def test_a_failed_chunk_fails_the_run_and_the_rest_stays_readable(
    live_workers: dict[Queue, ManagedProcess], daily: Path
) -> None:
    with transaction.atomic():  # the tasks are sent when this block commits: spoil one chunk first
        run, _ = submit(grid={"fast": [5, 10, 15, 20], "slow": [30, 60]}, settings={"costs": False})
        bad = BacktestChunk.objects.get(run=run, index=1)
        bad.work = {**bad.work, "param_sets": [{"fast": 90, "slow": 30}]}
        bad.save(update_fields=["work"])
    run = finished(run)
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("chunk 1 failed: ParamError: fast: fast (90) must be below slow (30)")
    chunks = runs.run_chunks(run.pk)
    assert chunks[1].status == RunStatus.FAILED and "below slow" in chunks[1].error
    good = [c for c in chunks if c.index != 1]
    assert all(c.status == RunStatus.DONE and c.results for c in good)
    kept = merge_dealt([None if c.index == 1 else c.results for c in chunks])
    assert run.results["rows"] == kept and kept
    assert run.results["best"] is not None and run.chunks_done == run.chunks_total
