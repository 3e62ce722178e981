"""Backtest run services: validation that names the field, caching, chunking, and the work each task does
(called here as functions, in this process; tests/strategies/test_runs_workers.py goes through real workers)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.marketdata.importers import candles_import
from apps.marketdata.models import Candle
from apps.strategies import run_exec, runs
from apps.strategies.engine.backtest import Settings, run_backtest, run_grid
from apps.strategies.engine.bars import Bars, read_csv_dir
from apps.strategies.engine.packing import unpack_series
from apps.strategies.engine.research import choose_best, merge_dealt, walk_forward_folds
from apps.strategies.engine.strategy import Strategy, get_strategy
from apps.strategies.models import BacktestChunk, BacktestRun, RunStatus
from tradingsite.exceptions import ApplicationError, NotFound

pytestmark = pytest.mark.django_db

SYMBOLS = ["RELIANCE", "INFY", "TCS", "HDFCBANK"]
START, END = date(2021, 1, 1), date(2023, 12, 31)
NO_COSTS = {"costs": False}


def sma_10_30() -> Strategy:
    return get_strategy("sma_crossover", {"fast": 10, "slow": 30})


@pytest.fixture
def daily(shared_data: Path) -> Path:
    for symbol in SYMBOLS:
        candles_import(path=shared_data / "nifty50-daily" / f"{symbol}.csv", interval="day")
    return shared_data / "nifty50-daily"


def csv_bars(daily: Path, symbols: list[str] = SYMBOLS, start: date = START, end: date = END) -> Bars:
    """The same bars read straight from the CSV files (not the database), cut to the run's dates."""
    bars = read_csv_dir(daily, symbols)
    days = np.array([t.date() for t in bars.times_ist()])
    rows = np.nonzero((days >= start) & (days <= end))[0]
    return bars.slice(int(rows[0]), int(rows[-1]) + 1)


def submit(**overrides: Any) -> tuple[BacktestRun, bool]:
    args: dict[str, Any] = {
        "kind": "single",
        "strategy": "sma_crossover",
        "params": {"fast": 10, "slow": 30},
        "symbols": SYMBOLS,
        "start": START,
        "end": END,
        "settings": NO_COSTS,
    }
    args.update(overrides)
    return runs.run_submit(**args)


def execute(run: BacktestRun) -> BacktestRun:
    """What the workers do, in order, in this process: the chunks, then the chord body (or the one task)."""
    if run.kind == "single":
        run_exec.single_execute(run_id=run.pk)
    elif run.kind == "monte_carlo":
        run_exec.monte_carlo_execute(run_id=run.pk)
    else:
        part: Callable[..., Any] = run_exec.grid_chunk_execute if run.kind == "grid" else run_exec.fold_execute
        finish: Callable[..., Any] = (
            run_exec.grid_finish_execute if run.kind == "grid" else run_exec.walk_forward_finish_execute
        )
        for chunk in runs.run_chunks(run.pk):
            part(chunk_id=chunk.pk)
        finish(run_id=run.pk)
    run.refresh_from_db()
    return run


# --- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code", "key", "name"),
    [
        ({"strategy": "nope"}, "unknown_strategy", "field", "strategy"),
        ({"params": {"fast": "ten"}}, "invalid_params", "param", "fast"),
        ({"params": {"fast": 40, "slow": 30}}, "invalid_params", "param", "fast"),
        ({"params": {"fats": 3}}, "invalid_params", "param", "fats"),
        ({"settings": {"cash": -5}}, "invalid_settings", "field", "cash"),
        ({"settings": {"fill": "vwap"}}, "invalid_settings", "field", "fill"),
        ({"settings": {"cahs": 5}}, "invalid_settings", "field", "cahs"),
        ({"start": END, "end": START}, "bad_range", "field", "end"),
        ({"kind": "optimise"}, "invalid_kind", "field", "kind"),
        ({"kind": "grid"}, "invalid_grid", "field", "grid"),
        ({"kind": "grid", "grid": {"fast": [5, -1]}}, "invalid_params", "param", "fast"),
        ({"kind": "grid", "grid": {"fast": {"start": 5, "stop": 2}}}, "invalid_grid", "param", "fast"),
        ({"kind": "grid", "grid": {"fast": {"start": 5}}}, "invalid_grid", "param", "fast"),
        ({"kind": "grid", "grid": {"speed": [5]}}, "invalid_params", "param", "speed"),
        ({"kind": "grid", "grid": {"ranges": {"fast": [5]}, "objective": "luck"}}, "invalid_options", "field",
         "grid.objective"),
        ({"kind": "grid", "grid": {"fast": [40], "slow": [20]}}, "invalid_params", "param", "fast"),
        ({"kind": "walk_forward", "walk_forward": {"folds": 0}}, "invalid_options", "field", "walk_forward.folds"),
        ({"kind": "walk_forward", "walk_forward": {"mode": "sliding"}}, "invalid_options", "field",
         "walk_forward.mode"),
        ({"kind": "walk_forward", "walk_forward": {"folds": 200}}, "invalid_options", "field",
         "walk_forward.train_fraction"),
        ({"kind": "walk_forward", "walk_forward": {"train_bars": 20, "grid": {"slow": [30, 60]}}}, "invalid_options",
         "field", "walk_forward.train_bars"),
        ({"kind": "walk_forward", "walk_forward": {"horizon": 3}}, "invalid_options", "field", "walk_forward.horizon"),
        ({"kind": "monte_carlo", "monte_carlo": {"simulations": 5}}, "invalid_options", "field",
         "monte_carlo.simulations"),
        ({"kind": "monte_carlo", "monte_carlo": {"method": "jackknife"}}, "invalid_options", "field",
         "monte_carlo.method"),
        ({"kind": "monte_carlo", "monte_carlo": {"ruin_threshold": 2}}, "invalid_options", "field",
         "monte_carlo.ruin_threshold"),
        ({"kind": "single", "source_run_id": 1}, "invalid_source_run", "field", "source_run"),
        ({"symbols": ["RELIANCE", "NOTASTOCK"]}, "unknown_symbols", "symbols", ["NOTASTOCK"]),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_and_writes_nothing(
    daily: Path, overrides: dict[str, Any], code: str, key: str, name: Any
) -> None:
    with pytest.raises(ApplicationError) as bad:
        submit(**overrides)
    assert bad.value.code == code, bad.value.message
    assert bad.value.details[key] == name
    assert not BacktestRun.objects.exists() and not BacktestChunk.objects.exists()


def test_a_range_without_bars_names_the_symbols(daily: Path, shared_data: Path) -> None:
    with pytest.raises(ApplicationError) as bad:
        submit(start=date(2019, 1, 1), end=date(2019, 6, 30))
    assert bad.value.code == "no_data" and set(bad.value.details["symbols"]) == set(SYMBOLS)
    # JIOFIN is listed in August 2023: a range before that has no bars for it alone.
    candles_import(path=shared_data / "nifty50-daily" / "JIOFIN.csv", interval="day")
    with pytest.raises(ApplicationError) as bad:
        submit(symbols=["RELIANCE", "JIOFIN"], start=date(2022, 1, 1), end=date(2022, 12, 31))
    assert bad.value.details["symbols"] == ["JIOFIN"]
    with pytest.raises(NotFound) as missing:
        submit(kind="monte_carlo", source_run_id=10**6)
    assert missing.value.details == {"field": "source_run"}
    assert not BacktestRun.objects.exists()


# --- single, caching ------------------------------------------------------------------------------------------


def test_single_run_equals_an_in_process_backtest_of_the_csv_files(daily: Path) -> None:
    run, cached = submit()
    assert not cached and run.status == RunStatus.QUEUED and run.chunks_total == 0
    assert run.symbols == SYMBOLS and run.parameters == {"fast": 10, "slow": 30, "field": "close", "long_short": False}
    assert run.options["settings"] == Settings(costs=False).as_dict()
    run = execute(run)
    assert run.status == RunStatus.DONE and run.progress == 1.0 and run.started_at and run.finished_at
    expected = run_backtest(
        get_strategy("sma_crossover", {"fast": 10, "slow": 30}), csv_bars(daily), Settings(costs=False)
    )
    assert run.metrics == pytest.approx(expected.metrics, nan_ok=True)
    times, equity = unpack_series(run.equity)
    assert np.array_equal(times, expected.times.astype(np.int64)) and np.array_equal(equity, expected.equity)
    assert run.trades == expected.trades_json() and len(run.trades) > 10
    assert run.data_hash == runs.data_hash(csv_bars(daily))  # the database holds exactly the files' bars


def test_identical_submit_returns_the_done_run_and_any_change_makes_a_new_one(daily: Path) -> None:
    run, _ = submit()
    again, cached = submit()
    assert again.pk != run.pk and not cached  # not done yet: a new run, nothing is shared with a queued one
    execute(run)
    same, cached = submit()
    assert cached and same.pk == run.pk
    for change in ({"settings": {"costs": True}}, {"params": {"fast": 12, "slow": 30}}, {"end": date(2023, 12, 29)}):
        other, cached = submit(**change)
        assert not cached and other.cache_key != run.cache_key
    # Another data set: one candle re-imported with another close changes the data hash and so the key.
    first = Candle.objects.filter(instrument__tradingsymbol="TCS", interval="day", time__year=2022).order_by("time")
    Candle.objects.filter(pk=first[0].pk).update(close=first[0].close + 1)
    changed, cached = submit()
    assert not cached and changed.data_hash != run.data_hash


def test_code_version_is_a_stable_hash_of_the_engine() -> None:
    version = runs.code_version()
    assert len(version) == 64 and int(version, 16) >= 0 and runs.code_version() == version
    assert any(p.name == "backtest.py" for p in runs.CODE_FILES)


def test_submit_enqueues_only_after_commit(daily: Path, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run, _ = submit(kind="grid", grid={"fast": [5, 10], "slow": [20, 30]})
    assert len(callbacks) == 1 and BacktestRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


# --- grid -----------------------------------------------------------------------------------------------------


def test_grid_ranges_include_the_stop_and_chunks_cover_every_set_in_order(daily: Path) -> None:
    run, _ = submit(kind="grid", grid={"fast": {"start": 5, "stop": 50, "step": 5}, "slow": [20, 40, 60]})
    assert run.grid == {"fast": [5, 10, 15, 20, 25, 30, 35, 40, 45, 50], "slow": [20, 40, 60]}
    chunks = runs.run_chunks(run.pk)
    assert run.chunks_total == len(chunks) >= 2 and len(chunks) % 2 == 0
    sets = merge_dealt([c.work["param_sets"] for c in chunks])
    expected = get_strategy("sma_crossover").schema.grid(run.grid, base=get_strategy("sma_crossover").params)
    assert sets == [p.as_dict() for p in expected]  # fast < slow only, grid order
    assert len(sets) == 3 + 7 + 10  # slow 20: fast 5..15; slow 40: 5..35; slow 60: all ten


def test_grid_run_ranks_rows_and_stores_the_best_sets_backtest(daily: Path) -> None:
    grid = {"ranges": {"fast": [5, 10, 20], "slow": [30, 50, 100]}, "objective": "total_return"}
    run = execute(submit(kind="grid", grid=grid, settings={})[0])
    assert run.status == RunStatus.DONE and run.chunks_done == run.chunks_total >= 2
    results = run.results
    assert results["objective"] == "total_return" and results["axes"] == {"fast": [5, 10, 20], "slow": [30, 50, 100]}
    bars = csv_bars(daily)
    params = [r["params"] for r in results["rows"]]
    expected = run_grid("sma_crossover", params, bars, Settings())
    assert [r["metrics"] for r in results["rows"]] == expected  # JSON keeps floats exactly
    best = choose_best(expected, "total_return")
    assert results["best"]["params"] == params[best]
    single = run_backtest(get_strategy("sma_crossover", params[best]), bars, Settings())
    assert run.metrics == pytest.approx(single.metrics) and run.trades == single.trades_json()
    assert results["best"]["metrics"] == pytest.approx(single.metrics)  # the grid's row is the full backtest's
    assert np.array_equal(unpack_series(run.equity)[1], single.equity)


def test_a_chunk_that_runs_twice_counts_once(daily: Path) -> None:
    run, _ = submit(kind="grid", grid={"fast": [5, 10], "slow": [30, 50]})
    chunk = runs.run_chunks(run.pk)[0]
    first = run_exec.grid_chunk_execute(chunk_id=chunk.pk)
    again = run_exec.grid_chunk_execute(chunk_id=chunk.pk)
    assert first["status"] == again["status"] == RunStatus.DONE
    run.refresh_from_db()
    assert run.chunks_done == 1 and run.status == RunStatus.RUNNING
    assert run.progress == pytest.approx(1 / run.chunks_total)


def test_a_failed_chunk_fails_the_run_and_keeps_the_other_rows(daily: Path) -> None:
    run, _ = submit(kind="grid", grid={"fast": [5, 10, 15, 20], "slow": [30, 50]})
    chunks = runs.run_chunks(run.pk)
    bad = chunks[1]
    bad.work = {**bad.work, "param_sets": [{"fast": 60, "slow": 30}]}  # breaks the fast < slow rule
    bad.save(update_fields=["work"])
    run = execute(run)
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("chunk 1 failed: ParamError: fast: fast (60) must be below slow (30)")
    failed = BacktestChunk.objects.get(pk=bad.pk)
    assert failed.status == RunStatus.FAILED and "below slow" in failed.error
    kept = [r["params"] for r in run.results["rows"]]
    assert kept == merge_dealt([None if c.pk == bad.pk else c.work["param_sets"] for c in chunks]) and kept
    assert run.results["best"]["params"] in kept
    assert runs.run_chunks(run.pk)[0].results[0]["params"] == kept[0]
    # The body ran once; running it again changes nothing.
    assert run_exec.grid_finish_execute(run_id=run.pk) == RunStatus.FAILED
    assert BacktestRun.objects.get(pk=run.pk).error == run.error


def test_a_chord_that_failed_outright_fails_the_run_and_its_unfinished_chunks(daily: Path) -> None:
    run, _ = submit(kind="grid", grid={"fast": [5, 10, 15, 20], "slow": [30, 50]})
    first, second = runs.run_chunks(run.pk)
    run_exec.grid_chunk_execute(chunk_id=first.pk)
    # The second chunk's process was killed (hard time limit): the chord's error callback runs instead of the body.
    assert run_exec.run_abort_execute(run_id=run.pk, task_id="t-1") == RunStatus.FAILED
    run.refresh_from_db()
    second.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error.startswith("chunk 1 failed: did not finish (killed")
    assert second.status == RunStatus.FAILED and "t-1" in second.error
    assert BacktestChunk.objects.get(pk=first.pk).status == RunStatus.DONE
    assert run_exec.grid_finish_execute(run_id=run.pk) == RunStatus.FAILED  # a late body changes nothing


def test_bars_changed_since_submit_fail_the_chunk(daily: Path) -> None:
    run, _ = submit(kind="grid", grid={"fast": [5, 10], "slow": [30, 50]})
    candle = Candle.objects.filter(instrument__tradingsymbol="INFY", interval="day", time__year=2022).first()
    assert candle is not None
    Candle.objects.filter(pk=candle.pk).update(close=(candle.low + candle.high) / 2 + Decimal("0.05"))
    run_exec._BARS.clear()
    run = execute(run)
    assert run.status == RunStatus.FAILED and "changed since run" in run.error


# --- walk-forward ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_walk_forward_chooses_in_sample_and_stitches_out_of_sample(daily: Path, mode: str) -> None:
    options = {"folds": 3, "mode": mode, "train_fraction": 0.6, "objective": "sharpe",
               "grid": {"fast": [5, 10, 20], "slow": [30, 60]}}  # fmt: skip
    run, _ = submit(kind="walk_forward", walk_forward=options, settings={})
    assert run.chunks_total == 3 and run.options["mode"] == mode
    run = execute(run)
    assert run.status == RunStatus.DONE, run.error
    bars = csv_bars(daily)
    folds = walk_forward_folds(bars.n_times, folds=3, mode=mode, train_fraction=0.6)
    sets = get_strategy("sma_crossover").schema.grid({"fast": [5, 10, 20], "slow": [30, 60]})
    assert run.results["mode"] == mode and len(run.results["folds"]) == 3
    times = bars.times_ist()
    for fold, stored in zip(folds, run.results["folds"], strict=True):
        assert stored["train"] == [times[fold.train_start].isoformat(), times[fold.train_stop - 1].isoformat()]
        assert stored["test"] == [times[fold.test_start].isoformat(), times[fold.test_stop - 1].isoformat()]
        assert stored["train"][1] < stored["test"][0]  # in sample ends before out of sample starts
        in_sample = run_grid("sma_crossover", sets, bars.slice(fold.train_start, fold.train_stop), Settings())
        assert stored["params"] == sets[choose_best(in_sample, "sharpe")].as_dict()
        assert stored["in_sample"] == pytest.approx(in_sample[choose_best(in_sample, "sharpe")])
    stitched_times, equity = unpack_series(run.equity)
    assert np.array_equal(stitched_times, bars.times[folds[0].test_start :].astype(np.int64))
    assert equity[0] == pytest.approx(1_000_000.0 * len(SYMBOLS))
    assert run.metrics == run.results["oos_metrics"]
    assert run.metrics["final_equity"] == pytest.approx(equity[-1])
    # Each fold's growth is the growth of that set's own backtest over the test window.
    last = run.results["folds"][-1]
    assert all(t["entry_time"] >= last["test"][0] for t in run.trades[-3:])
    expected_growth = np.prod([1.0 + f["out_of_sample"]["total_return"] for f in run.results["folds"]])
    assert equity[-1] / equity[0] == pytest.approx(expected_growth)


# --- Monte Carlo ----------------------------------------------------------------------------------------------


def test_monte_carlo_of_a_source_run(daily: Path) -> None:
    source = execute(submit()[0])
    mc_options = {"simulations": 2000, "method": "bootstrap", "ruin_threshold": 0.2, "seed": 4}
    run, _ = submit(kind="monte_carlo", source_run_id=source.pk, monte_carlo=mc_options, strategy="ignored")
    assert run.source_run_id == source.pk and run.strategy == "sma_crossover" and run.symbols == source.symbols
    run = execute(run)
    assert run.status == RunStatus.DONE, run.error
    out = run.results
    assert out["method"] == "bootstrap" and out["simulations"] == 2000 and out["trades"] == len(source.trades)
    assert 0.0 <= out["probability_of_ruin"] <= 1.0
    for name in ("max_drawdown", "final_equity"):
        pct = [out[name]["percentiles"][q] for q in ("5", "25", "50", "75", "95")]
        assert pct == sorted(pct) and pct[0] < pct[-1]
        assert sum(out[name]["histogram"]["counts"]) == 2000
    assert out["max_drawdown"]["percentiles"]["5"] >= 0.0 and out["max_drawdown"]["percentiles"]["95"] < 1.0
    assert run.trades == source.trades and run.metrics == source.metrics
    again, cached = submit(kind="monte_carlo", source_run_id=source.pk, monte_carlo=mc_options)
    assert cached and again.pk == run.pk


def test_monte_carlo_without_a_source_runs_the_backtest_first(daily: Path) -> None:
    run = execute(submit(kind="monte_carlo", monte_carlo={"method": "shuffle", "simulations": 500})[0])
    assert run.status == RunStatus.DONE, run.error
    single = run_backtest(
        get_strategy("sma_crossover", {"fast": 10, "slow": 30}), csv_bars(daily), Settings(costs=False)
    )
    assert run.trades == single.trades_json()
    final = run.results["final_equity"]["percentiles"]
    # Shuffling keeps the product of the trades' growth: every path ends at the same equity.
    assert final["5"] == pytest.approx(final["95"], rel=1e-9)
    assert run.results["max_drawdown"]["percentiles"]["5"] < run.results["max_drawdown"]["percentiles"]["95"]


def test_monte_carlo_needs_a_done_source_with_trades(daily: Path) -> None:
    source, _ = submit()
    with pytest.raises(ApplicationError) as bad:
        submit(kind="monte_carlo", source_run_id=source.pk)
    assert bad.value.code == "invalid_source_run" and "queued" in bad.value.message


def test_run_get_and_chunks(daily: Path) -> None:
    run, _ = submit(kind="grid", grid={"fast": [5, 10], "slow": [30, 50]})
    assert runs.run_get(run.pk) == run
    assert [c.index for c in runs.run_chunks(run.pk)] == list(range(run.chunks_total))
    with pytest.raises(NotFound):
        runs.run_get(run.pk + 1000)


def test_grid_throughput_is_measured_from_finished_chunks(daily: Path) -> None:
    assert runs.grid_throughput() == runs.DEFAULT_THROUGHPUT
    run = execute(submit(kind="grid", grid={"fast": [5, 10, 15], "slow": [30, 40, 50]})[0])
    chunks = runs.run_chunks(run.pk)
    per_set = csv_bars(daily).n_times * len(SYMBOLS)
    assert len(chunks) == 2 and all(c.work["combination_bars"] == len(c.work["param_sets"]) * per_set for c in chunks)
    # Too short to time (the fixed cost of a chunk would be most of it): the estimate stands.
    assert runs.grid_throughput() == runs.DEFAULT_THROUGHPUT
    run2 = execute(submit(kind="grid", grid={"fast": [5, 10, 15], "slow": [30, 40, 50]}, settings={"cash": 2e5})[0])
    timed = [*chunks, *runs.run_chunks(run2.pk)]
    for k, chunk in enumerate(timed):  # as if each had taken 1, 2, 3, 4 seconds
        assert chunk.started_at is not None
        chunk.finished_at = chunk.started_at + timedelta(seconds=k + 1)
        chunk.save(update_fields=["finished_at"])
    rates = sorted(c.work["combination_bars"] / (k + 1) for k, c in enumerate(timed))
    assert runs.grid_throughput() == pytest.approx((rates[1] + rates[2]) / 2)


def test_json_safe_replaces_what_jsonb_refuses_and_keeps_clean_values_as_they_are() -> None:
    raw = {"a": float("nan"), "b": [1.0, float("-inf"), np.float64(2.5), np.int64(3)], "c": date(2020, 1, 2)}
    assert runs.json_safe(raw) == {"a": None, "b": [1.0, None, 2.5, 3], "c": "2020-01-02"}
    clean = {"rows": [{"params": {"fast": 5}, "metrics": {"sharpe": 1.25}}]}
    assert runs.json_safe(clean) is clean
