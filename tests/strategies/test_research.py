"""Research arithmetic (pure): walk-forward folds, choosing, stitching, Monte Carlo, chunking."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from apps.strategies.engine.bars import IST
from apps.strategies.engine.research import (
    Fold,
    ResearchError,
    choose_best,
    chunk_work,
    merge_dealt,
    monte_carlo,
    stitch,
    trade_returns,
    trade_stats,
    walk_forward_folds,
)

# --- walk-forward folds ---------------------------------------------------------------------------------------


def test_rolling_folds_by_fraction_tile_the_out_of_sample_bars() -> None:
    folds = walk_forward_folds(992, folds=4, mode="rolling", train_fraction=0.75)
    # L = 992 * 0.75 / (0.75 + 4 * 0.25) = 425.14 -> 425; tests (992 - 425) // 4 = 141, the last takes 3 more.
    assert [(f.train_start, f.train_stop, f.test_start, f.test_stop) for f in folds] == [
        (0, 425, 425, 566),
        (141, 566, 566, 707),
        (282, 707, 707, 848),
        (423, 848, 848, 992),
    ]
    assert all(f.train_bars == 425 for f in folds)
    assert [f.index for f in folds] == [0, 1, 2, 3]


def test_anchored_folds_grow_from_the_first_bar() -> None:
    rolling = walk_forward_folds(500, folds=3, mode="rolling", train_bars=200)
    anchored = walk_forward_folds(500, folds=3, mode="anchored", train_bars=200)
    assert [(f.test_start, f.test_stop) for f in anchored] == [(f.test_start, f.test_stop) for f in rolling]
    assert [(f.test_start, f.test_stop) for f in anchored] == [(200, 300), (300, 400), (400, 500)]
    assert [f.train_start for f in anchored] == [0, 0, 0]
    assert [f.train_stop for f in anchored] == [200, 300, 400]
    assert [f.train_start for f in rolling] == [0, 100, 200]
    assert all(f.train_bars == 200 for f in rolling)


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
@pytest.mark.parametrize(("n", "folds", "fraction"), [(992, 4, 0.75), (300, 7, 0.5), (61, 3, 0.9)])
def test_no_fold_sees_its_out_of_sample_bars(mode: str, n: int, folds: int, fraction: float) -> None:
    out = walk_forward_folds(n, folds=folds, mode=mode, train_fraction=fraction)
    assert len(out) == folds
    for f in out:
        assert 0 <= f.train_start < f.train_stop <= f.test_start < f.test_stop <= n
    # The out-of-sample windows follow each other with no gap and no overlap, to the last bar.
    assert all(a.test_stop == b.test_start for a, b in itertools.pairwise(out))
    assert out[-1].test_stop == n


def test_fold_errors_name_the_option() -> None:
    cases = [
        ({"folds": 0}, "folds"),
        ({"folds": 2, "mode": "sliding"}, "mode"),
        ({"folds": 2, "train_fraction": 1.0}, "train_fraction"),
        ({"folds": 2, "train_bars": 100}, "train_bars"),
        ({"folds": 60, "train_bars": 50}, "train_bars"),  # 50 bars left for 60 folds
        ({"folds": 2, "train_bars": 10, "train_fraction": 0.5}, "train_bars"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ResearchError) as bad:
            walk_forward_folds(100, **kwargs)  # type: ignore[arg-type]
        assert bad.value.field == field, kwargs


def test_fold_dict_round_trip() -> None:
    f = Fold(2, 10, 20, 20, 30)
    assert f.as_dict() == {"index": 2, "train_start": 10, "train_stop": 20, "test_start": 20, "test_stop": 30}


# --- choosing and stitching -----------------------------------------------------------------------------------


def test_choose_best_maximises_minimises_and_skips_missing_values() -> None:
    rows = [
        {"sharpe": float("nan"), "max_drawdown": 0.30},
        {"sharpe": 0.8, "max_drawdown": 0.10},
        {"sharpe": 1.2, "max_drawdown": 0.25},
        {"sharpe": 1.2, "max_drawdown": 0.10},
    ]
    assert choose_best(rows, "sharpe") == 2  # the first of the tie
    assert choose_best(rows, "max_drawdown") == 1
    assert choose_best([{"sharpe": float("nan")}, {"sharpe": None}], "sharpe") == 0
    with pytest.raises(ResearchError) as bad:
        choose_best(rows, "luck")
    assert bad.value.field == "objective"


def test_stitch_compounds_each_segment_on_the_last() -> None:
    a = (np.array([1, 2, 3]), np.array([100.0, 110.0, 120.0]))
    b = (np.array([4, 5]), np.array([50.0, 40.0]))
    times, equity = stitch([a, b], 1000.0)
    assert times.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(equity, [1000.0, 1100.0, 1200.0, 1200.0, 960.0])
    with pytest.raises(ResearchError, match="starts before"):
        stitch([b, a], 1000.0)


def test_trade_stats_tally_like_the_kernel() -> None:
    trades = [
        {"quantity": 10, "entry_price": 100.0, "exit_price": 110.0, "pnl": 95.5, "charges": 4.5,
         "exit_reason": "signal"},
        {"quantity": -5, "entry_price": 200.0, "exit_price": 210.0, "pnl": -53.2, "charges": 3.2,
         "exit_reason": "stop_loss"},
        {"quantity": 3, "entry_price": 50.0, "exit_price": 55.0, "pnl": 14.9, "charges": 0.1, "exit_reason": "open"},
    ]  # fmt: skip
    stats = trade_stats(trades, exposed=40, valid=100)
    # traded: 10x100 + 10x110 + 5x200 + 5x210 + 3x50 (the open one's exit is marked, not sold), in paise
    assert stats.tolist() == [(1000 + 1100 + 1000 + 1050 + 150) * 100, 780, 40, 100, 2, 1, 9550, 5320, 1]


def test_trade_returns_are_pnl_over_the_equity_before_entry() -> None:
    day = 86_400_000_000
    base = 1_700_000_000_000_000 - 1_700_000_000_000_000 % day  # a UTC midnight
    times = base + np.arange(4) * day
    equity = np.array([1000.0, 1100.0, 1200.0, 900.0])
    iso = [datetime.fromtimestamp((base + k * day) / 1e6, tz=UTC).astimezone(IST).isoformat() for k in range(4)]
    trades = [{"entry_time": iso[0], "pnl": 10.0}, {"entry_time": iso[2], "pnl": -55.0}]
    # The first enters on the first bar (its own equity stands in); the second on bar 2: equity at bar 1.
    np.testing.assert_allclose(trade_returns(trades, times, equity), [0.01, -0.05])
    with pytest.raises(ResearchError):
        trade_returns(trades, times[:0], equity[:0])


# --- Monte Carlo ----------------------------------------------------------------------------------------------


def _path_drawdown(start: float, returns: np.ndarray) -> float:
    equity = start * np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.concatenate([[start], equity]))[1:]
    return float(np.max(1.0 - equity / peak))


def test_shuffle_keeps_the_final_equity_and_changes_the_drawdowns() -> None:
    rng = np.random.default_rng(7)
    r = rng.normal(0.01, 0.05, size=60)
    out = monte_carlo(r, simulations=2000, method="shuffle", start_equity=1e6, ruin_threshold=0.5, seed=3)
    real_final = 1e6 * float(np.prod(1.0 + r))
    for q, value in out["final_equity"]["percentiles"].items():
        assert math.isclose(value, real_final, rel_tol=1e-9), q
    dd = out["max_drawdown"]["percentiles"]
    assert dd["5"] < dd["95"]  # the order of the trades matters to the drawdown
    # The real order is one path among many: its drawdown is not what every shuffled path has.
    real_dd = _path_drawdown(1e6, r)
    assert not (math.isclose(dd["5"], real_dd) and math.isclose(dd["95"], real_dd))
    assert 0.0 <= out["probability_of_ruin"] <= 1.0


def test_bootstrap_percentiles_match_a_direct_resampling() -> None:
    r = np.array([0.05, -0.02, 0.03, -0.04, 0.01, 0.02, -0.01])
    out = monte_carlo(r, simulations=4000, method="bootstrap", start_equity=100.0, ruin_threshold=0.9, seed=11)
    # The same draws, path by path, by hand.
    rng = np.random.default_rng(11)
    draws = r[rng.integers(0, len(r), size=(4000, len(r)))]
    finals = 100.0 * np.prod(1.0 + draws, axis=1)
    dds = np.array([_path_drawdown(100.0, d) for d in draws])
    for q in (5, 25, 50, 75, 95):
        assert math.isclose(out["final_equity"]["percentiles"][str(q)], float(np.percentile(finals, q)), rel_tol=1e-12)
        assert math.isclose(out["max_drawdown"]["percentiles"][str(q)], float(np.percentile(dds, q)), abs_tol=1e-12)
    pct = [out["final_equity"]["percentiles"][k] for k in ("5", "25", "50", "75", "95")]
    assert pct == sorted(pct) and pct[0] < pct[-1]
    hist = out["final_equity"]["histogram"]
    assert sum(hist["counts"]) == 4000 and len(hist["edges"]) == len(hist["counts"]) + 1
    # Seeded: the same seed gives the same distribution, another seed another one.
    again = monte_carlo(r, simulations=4000, method="bootstrap", start_equity=100.0, ruin_threshold=0.9, seed=11)
    other = monte_carlo(r, simulations=4000, method="bootstrap", start_equity=100.0, ruin_threshold=0.9, seed=12)
    assert again == out and other["final_equity"] != out["final_equity"]


def test_probability_of_ruin_on_a_hand_case() -> None:
    # Two trades, -50% and +100%: every order ends at the start; a path is ruined at 50% down only when the
    # loss comes first (in the other order it falls from 2x to 1x: 50% below its peak, but not below start/2).
    r = np.array([-0.5, 1.0])
    shuffle = monte_carlo(r, simulations=20_000, method="shuffle", start_equity=1.0, ruin_threshold=0.5, seed=1)
    assert abs(shuffle["probability_of_ruin"] - 0.5) < 0.02
    assert shuffle["max_drawdown"]["percentiles"]["50"] == pytest.approx(0.5)
    # Bootstrap: paths (-,-) 0.25, (-,+) 0.25 are ruined, (+,-) ends at 1.0 (not below 0.5), (+,+): P = 0.5.
    boot = monte_carlo(r, simulations=20_000, method="bootstrap", start_equity=1.0, ruin_threshold=0.5, seed=1)
    assert abs(boot["probability_of_ruin"] - 0.5) < 0.02
    # A stricter threshold (ruin only at 80% lost): only (-,-) reaching 0.25 is ruined: P = 0.25.
    strict = monte_carlo(r, simulations=20_000, method="bootstrap", start_equity=1.0, ruin_threshold=0.75, seed=1)
    assert abs(strict["probability_of_ruin"] - 0.25) < 0.02


def test_monte_carlo_errors_name_the_option() -> None:
    for kwargs, field in (
        ({"simulations": 0}, "simulations"),
        ({"method": "jackknife"}, "method"),
        ({"ruin_threshold": 0.0}, "ruin_threshold"),
        ({"start_equity": -1.0}, "start_equity"),
    ):
        with pytest.raises(ResearchError) as bad:
            monte_carlo([0.01, 0.02], **kwargs)
        assert bad.value.field == field
    with pytest.raises(ResearchError) as bad:
        monte_carlo([], simulations=10)
    assert bad.value.field == "trades"
    with pytest.raises(ResearchError):
        monte_carlo([0.1, -1.5], simulations=10)


def test_monte_carlo_in_blocks_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.strategies.engine import research

    r = np.random.default_rng(5).normal(0.0, 0.03, size=50)
    whole = monte_carlo(r, simulations=300, method="shuffle", seed=9)
    monkeypatch.setattr(research, "_MC_BLOCK", 50 * 7)  # 7 paths a block
    blocks = monte_carlo(r, simulations=300, method="shuffle", seed=9)
    assert blocks["final_equity"]["percentiles"] == pytest.approx(whole["final_equity"]["percentiles"])
    assert 0.0 <= blocks["probability_of_ruin"] <= 1.0


# --- chunking -------------------------------------------------------------------------------------------------


def test_chunks_are_about_a_second_and_a_multiple_of_the_pool() -> None:
    sets = list(range(1000))
    # 1000 sets x 50,000 bars at 1e7 bars/s = 5 s: 5 one-second chunks, rounded down to 4 for a pool of 2.
    chunks = chunk_work(sets, 50_000, target_seconds=1.0, throughput=1e7, parallel=2)
    assert [len(c) for c in chunks] == [250, 250, 250, 250]
    assert chunks[1][:3] == [1, 5, 9]  # dealt: each chunk a sample of the whole grid
    assert merge_dealt(chunks) == sets
    # A small grid still uses both processes; a single set makes one chunk.
    small = chunk_work(sets[:9], 1000, throughput=1e9)
    assert [len(c) for c in small] == [5, 4] and merge_dealt(small) == sets[:9]
    assert chunk_work(sets[:1], 1000) == [[0]]
    assert chunk_work([], 1000) == []
    # Bounded by the chord's size.
    assert len(chunk_work(sets, 10**9, throughput=1.0, max_chunks=64)) == 64
    with pytest.raises(ResearchError):
        chunk_work(sets, 0)


def test_merging_dealt_chunks_skips_a_missing_one_and_keeps_the_order() -> None:
    chunks = chunk_work(list(range(11)), 1, throughput=1e-3, parallel=2, max_chunks=4)  # 4 chunks
    assert chunks == [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7]]
    assert merge_dealt([chunks[0], None, chunks[2], chunks[3]]) == [0, 2, 3, 4, 6, 7, 8, 10]
    assert merge_dealt([None, None]) == []
