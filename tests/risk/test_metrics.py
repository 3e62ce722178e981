"""Portfolio metrics against hand computations on small series, and betas of NIFTY stocks to the index."""

from __future__ import annotations

import csv
import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from apps.risk.quant.metrics import max_drawdown, portfolio_metrics

SERIES = [0.012, -0.008, 0.004, -0.015, 0.02, 0.007, -0.003, 0.011, -0.006, 0.009]


def test_volatility_sharpe_sortino_and_growth_match_a_hand_computation():
    rf_annual, periods = 0.065, 252
    rf = (1 + rf_annual) ** (1 / periods) - 1
    excess = [r - rf for r in SERIES]
    mean_excess = sum(excess) / len(excess)
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in excess) / len(excess))
    growth = 1.0
    for r in SERIES:
        growth *= 1 + r

    m = portfolio_metrics(returns=SERIES, risk_free_annual=rf_annual, periods_per_year=periods)
    assert m.observations == 10
    assert m.volatility == pytest.approx(statistics.stdev(SERIES) * math.sqrt(periods), rel=1e-12)
    assert m.sharpe == pytest.approx(mean_excess / statistics.stdev(excess) * math.sqrt(periods), rel=1e-12)
    assert m.sortino == pytest.approx(mean_excess / downside * math.sqrt(periods), rel=1e-12)
    assert m.total_return == pytest.approx(growth - 1, rel=1e-12)
    assert m.annual_return == pytest.approx(growth ** (periods / 10) - 1, rel=1e-12)
    assert m.beta is None


def test_monthly_periods_scale_by_twelve():
    m = portfolio_metrics(returns=SERIES, periods_per_year=12)
    assert m.volatility == pytest.approx(statistics.stdev(SERIES) * math.sqrt(12), rel=1e-12)
    assert m.sharpe == pytest.approx(statistics.mean(SERIES) / statistics.stdev(SERIES) * math.sqrt(12), rel=1e-12)


@pytest.mark.parametrize(
    ("returns", "depth", "peak", "trough", "duration"),
    [
        # wealth 1, 1.1, 0.99, 0.891, 0.93555, 1.122661, ...: 19% down from 1.1, back above it at index 5
        ([0.10, -0.10, -0.10, 0.05, 0.20, 0.01], 0.19, 1, 3, 4),
        # wealth 1, 1.05, 0.84, 0.924: never recovers, so the duration runs to the end (index 3)
        ([0.05, -0.20, 0.10], 0.20, 1, 2, 2),
        # a loss on the first period is measured from the start
        ([-0.10, 0.20], 0.10, 0, 1, 2),
        # two drawdowns, 10% then 25%: the second counts, from the last day at the peak, unrecovered at the end
        ([-0.10, 0.20, 0.0, -0.25, 0.10], 0.25, 3, 4, 2),
        ([0.01, 0.02, 0.0, 0.03], 0.0, 0, 0, 0),
    ],
)
def test_max_drawdown_and_its_duration(returns, depth, peak, trough, duration):
    m = portfolio_metrics(returns=returns)
    assert m.max_drawdown == pytest.approx(depth, abs=1e-12)
    assert (m.drawdown_peak_index, m.drawdown_trough_index, m.max_drawdown_duration_days) == (peak, trough, duration)


def test_drawdown_says_whether_it_recovered():
    assert max_drawdown([0.10, -0.10, -0.10, 0.05, 0.20]).recovered
    assert not max_drawdown([0.05, -0.20, 0.10]).recovered


def test_ratios_are_none_when_undefined():
    flat = portfolio_metrics(returns=[0.001] * 20)
    assert flat.sharpe is None
    assert flat.volatility == pytest.approx(0.0, abs=1e-12)
    assert portfolio_metrics(returns=[0.01, 0.02, 0.005]).sortino is None  # never below the risk-free rate
    assert portfolio_metrics(returns=[0.01, -0.02], index_returns=[0.01, np.nan]).beta is None


def test_bad_returns_are_refused():
    with pytest.raises(ValueError):
        portfolio_metrics(returns=[0.01, np.nan, 0.02])
    with pytest.raises(ValueError):
        portfolio_metrics(returns=[0.01])
    with pytest.raises(ValueError):
        portfolio_metrics(returns=[0.01, 0.02], index_returns=[0.01])


def _closes(shared_data: Path, symbol: str) -> dict[str, float]:
    with (shared_data / "nifty50-daily" / f"{symbol}.csv").open(newline="") as handle:
        return {row["timestamp"][:10]: float(row["close"]) for row in csv.DictReader(handle)}


@pytest.mark.parametrize("symbol", ["RELIANCE", "HDFCBANK", "ITC", "TATASTEEL"])
def test_beta_of_a_nifty_stock_to_the_index_file(shared_data, symbol):
    stock, index = _closes(shared_data, symbol), _closes(shared_data, "NIFTY50_INDEX")
    assert set(stock) != set(index)  # the index file lacks some special sessions: rows do not line up
    days = sorted(set(stock) & set(index))
    pairs = list(itertools.pairwise(days))
    r = np.array([stock[t] / stock[b] - 1 for b, t in pairs])
    m = np.array([index[t] / index[b] - 1 for b, t in pairs])
    hand = np.cov(r, m)[0, 1] / np.cov(r, m)[1, 1]
    assert portfolio_metrics(returns=r, index_returns=m).beta == pytest.approx(hand, rel=1e-12)
    assert 0.2 < hand < 2.5

    # On the stock's own calendar the index has gaps (NaN): beta must use only the days it has.
    own = sorted(stock)
    r_own = np.array([stock[t] / stock[b] - 1 for b, t in itertools.pairwise(own)])
    m_own = np.array(
        [index[t] / index[b] - 1 if b in index and t in index else np.nan for b, t in itertools.pairwise(own)]
    )
    ok = np.isfinite(m_own)
    assert not ok.all()
    expected = np.cov(r_own[ok], m_own[ok])[0, 1] / np.var(m_own[ok], ddof=1)
    assert portfolio_metrics(returns=r_own, index_returns=m_own).beta == pytest.approx(expected, rel=1e-12)
