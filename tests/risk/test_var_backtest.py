"""VaR backtesting: Kupiec and Christoffersen on textbook sequences, checked against the closed forms by hand."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from apps.risk.quant.backtest import (
    christoffersen_independence,
    kupiec_pof,
    rolling_historical_var,
    var_backtest,
)


def _flags(n: int, at: list[int]) -> list[bool]:
    return [i in at for i in range(n)]


def _log_term(count: int, probability: float) -> float:
    return 0.0 if count == 0 else count * math.log(probability)


def _kupiec_by_hand(n: int, x: int, p: float) -> float:
    """LR_pof = -2 ln[(1-p)^(n-x) p^x / ((1-x/n)^(n-x) (x/n)^x)]."""
    null = _log_term(n - x, 1 - p) + _log_term(x, p)
    fitted = _log_term(n - x, 1 - x / n) + _log_term(x, x / n)
    return -2 * (null - fitted)


def _transitions_by_hand(flags: list[bool]) -> dict[str, int]:
    counts = {"n00": 0, "n01": 0, "n10": 0, "n11": 0}
    for today, tomorrow in itertools.pairwise(flags):
        counts[f"n{int(today)}{int(tomorrow)}"] += 1
    return counts


def _christoffersen_by_hand(c: dict[str, int]) -> float:
    n00, n01, n10, n11 = c["n00"], c["n01"], c["n10"], c["n11"]
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    null = _log_term(n00 + n10, 1 - pi) + _log_term(n01 + n11, pi)
    fitted = _log_term(n00, 1 - pi01) + _log_term(n01, pi01) + _log_term(n10, 1 - pi11) + _log_term(n11, pi11)
    return -2 * (null - fitted)


@pytest.mark.parametrize(("exceptions", "zone"), [(4, "green"), (8, "yellow"), (12, "red")])
def test_kupiec_on_250_days_of_99_percent_var_matches_the_closed_form(exceptions, zone):
    flags = _flags(250, list(range(0, 250, 250 // exceptions))[:exceptions])
    result = kupiec_pof(flags, confidence=0.99)
    lr = _kupiec_by_hand(250, exceptions, 0.01)
    assert result.observations == 250
    assert result.exceptions == exceptions
    assert result.expected_rate == pytest.approx(0.01)
    assert result.observed_rate == pytest.approx(exceptions / 250)
    assert result.lr == pytest.approx(lr, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(lr / 2)), rel=1e-12)
    if zone == "green":  # Basel's green zone: the model is fine
        assert result.p_value > 0.05
    elif zone == "yellow":  # 8 of 250 is already too many for Kupiec at 5%, not yet at 0.1%
        assert 0.001 < result.p_value < 0.05
    else:
        assert result.p_value < 0.001


def test_kupiec_95_percent_region_on_250_days_ends_at_six_exceptions_as_in_kupiecs_table():
    # Kupiec (1995) / Jorion's table for p = 1% and about 250 days: do not reject while N < 7.
    p_values = {x: kupiec_pof(_flags(250, list(range(x))), confidence=0.99).p_value for x in range(1, 9)}
    assert all(p_values[x] > 0.05 for x in range(1, 7))
    assert all(p_values[x] < 0.05 for x in (7, 8))


def test_kupiec_edge_cases_have_no_nan():
    none = kupiec_pof([False] * 250, confidence=0.99)
    assert none.exceptions == 0
    assert none.lr == pytest.approx(-2 * 250 * math.log(0.99))  # the phat terms vanish: 0 * log 0 = 0
    assert 0.0 < none.p_value < 0.05
    every = kupiec_pof([True] * 10, confidence=0.99)
    assert every.lr == pytest.approx(-2 * 10 * math.log(0.01))
    assert math.isfinite(every.p_value)
    assert every.p_value < 1e-15
    with pytest.raises(ValueError):
        kupiec_pof([], confidence=0.99)
    with pytest.raises(ValueError):
        kupiec_pof([True], confidence=1.0)


def test_christoffersen_rejects_clustered_exceptions():
    flags = _flags(250, [100, 101, 102, 103, 104])  # five breaches in a row: the model missed a regime
    result = christoffersen_independence(flags)
    counts = _transitions_by_hand(flags)
    assert (result.n00, result.n01, result.n10, result.n11) == (
        counts["n00"],
        counts["n01"],
        counts["n10"],
        counts["n11"],
    )
    assert (result.n01, result.n11) == (1, 4)
    lr = _christoffersen_by_hand(counts)
    assert result.lr == pytest.approx(lr, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(lr / 2)), rel=1e-12)
    assert result.p_value < 0.001


def test_christoffersen_accepts_spread_out_exceptions():
    flags = _flags(250, [20, 70, 120, 170, 220])  # same count, never two in a row
    result = christoffersen_independence(flags)
    counts = _transitions_by_hand(flags)
    assert result.n11 == 0
    assert result.n01 == counts["n01"] == 5
    assert result.lr == pytest.approx(_christoffersen_by_hand(counts), rel=1e-12)
    assert result.p_value > 0.5


@pytest.mark.parametrize("flags", [[False] * 30, [True] * 30, [True] + [False] * 29, [False] * 29 + [True]])
def test_christoffersen_degenerate_sequences_give_finite_results(flags):
    result = christoffersen_independence(flags)
    assert result.n00 + result.n01 + result.n10 + result.n11 == len(flags) - 1
    assert math.isfinite(result.lr)
    assert result.lr >= 0.0
    assert 0.0 <= result.p_value <= 1.0
    assert result.lr == pytest.approx(_christoffersen_by_hand(_transitions_by_hand(flags)), abs=1e-12)


def test_var_backtest_counts_a_loss_above_var_and_skips_days_without_a_forecast():
    pnl = np.array([-5.0, -11.0, -10.0, 3.0, -12.0, -20.0, 1.0])
    var = np.array([np.nan, 10.0, 10.0, 10.0, 10.0, 25.0, 10.0])
    result = var_backtest(pnl=pnl, var_forecasts=var, confidence=0.95)
    assert result.exception_indices == (1, 4)  # -10 against a VaR of 10 is not a breach; day 0 has no VaR
    assert result.kupiec.observations == 6
    assert result.kupiec.exceptions == 2
    assert result.conditional_coverage_lr == pytest.approx(result.kupiec.lr + result.christoffersen.lr)
    assert result.conditional_coverage_p == pytest.approx(math.exp(-result.conditional_coverage_lr / 2))
    with pytest.raises(ValueError):
        var_backtest(pnl=pnl, var_forecasts=var[:-1], confidence=0.95)


def test_rolling_historical_var_uses_only_the_days_before():
    rng = np.random.default_rng(7)
    pnl = rng.normal(0.0, 1000.0, 140)
    window, confidence = 100, 0.95
    var = rolling_historical_var(portfolio_pnl=pnl, window=window, confidence=confidence)
    assert np.isnan(var[:window]).all()
    k = math.floor((1 - confidence) * (window - 1))  # the empirical quantile, rounded to the worse loss
    for t in range(window, len(pnl)):
        assert var[t] == pytest.approx(-sorted(pnl[t - window : t])[k])
    changed = pnl.copy()
    changed[120] = -1e9  # today's own loss must not move today's forecast
    assert rolling_historical_var(portfolio_pnl=changed, window=window, confidence=confidence)[120] == var[120]


def _closes(shared_data: Path, symbol: str) -> dict[str, float]:
    with (shared_data / "nifty50-daily" / f"{symbol}.csv").open(newline="") as handle:
        return {row["timestamp"][:10]: float(row["close"]) for row in csv.DictReader(handle)}


def test_rolling_backtest_of_an_equal_weight_nifty_book(shared_data):
    symbols = ["RELIANCE", "HDFCBANK", "INFY", "TCS", "ITC"]
    closes = [_closes(shared_data, s) for s in symbols]
    days = sorted(set.intersection(*(set(c) for c in closes)))
    pnl = [sum(100_000.0 * (c[today] / c[before] - 1) for c in closes) for before, today in itertools.pairwise(days)]
    window, confidence = 250, 0.99
    var = rolling_historical_var(portfolio_pnl=np.array(pnl), window=window, confidence=confidence)
    result = var_backtest(pnl=np.array(pnl), var_forecasts=var, confidence=confidence)

    k = math.floor((1 - confidence) * (window - 1))
    hand_var = {t: -sorted(pnl[t - window : t])[k] for t in range(window, len(pnl))}
    hand_exceptions = [t for t, v in hand_var.items() if -pnl[t] > v]
    assert result.kupiec.observations == len(pnl) - window
    assert result.kupiec.exceptions == len(hand_exceptions)
    assert list(result.exception_indices) == hand_exceptions
    assert len(hand_exceptions) > 0
    c = result.christoffersen
    assert c.n00 + c.n01 + c.n10 + c.n11 == result.kupiec.observations - 1
    assert c.n01 + c.n11 == len([t for t in hand_exceptions if t > window])
    assert result.kupiec.lr == pytest.approx(_kupiec_by_hand(len(pnl) - window, len(hand_exceptions), 0.01), rel=1e-9)
