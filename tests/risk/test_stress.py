"""Stress tests: each scenario kind against a hand computation, validation, and a replay of 2024-06-04."""

from __future__ import annotations

import csv
import itertools
import math
from datetime import date
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from apps.risk.quant.stress import (
    BUILTIN_SCENARIOS,
    KINDS,
    BetaFallbackWarning,
    Scenario,
    StressContext,
    StressInputError,
    betas,
    historical_scenarios,
    scenario_validate,
    stress_all,
    stress_run,
    worst_index_days,
)

SYMBOLS = ("AAA", "BBB", "CCC")


def _context(returns, index_returns=None, adv=None, symbols=SYMBOLS) -> StressContext:
    returns = np.asarray(returns, dtype=np.float64)
    t, n = returns.shape
    rng = np.random.default_rng(1)
    return StressContext(
        symbols=symbols,
        dates=np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-01-02") + t),
        returns=returns,
        index_returns=rng.normal(0, 0.01, t) if index_returns is None else np.asarray(index_returns, float),
        adv_value=np.full(n, 1e9) if adv is None else np.asarray(adv, dtype=np.float64),
    )


def _market(t=300, seed=3):
    """Three correlated stocks driven by one index, so betas and covariances are far from trivial."""
    rng = np.random.default_rng(seed)
    index = rng.normal(0.0005, 0.01, t)
    loadings = np.array([0.6, 1.3, -0.4])
    returns = index[:, None] * loadings + rng.normal(0, [0.008, 0.015, 0.01], (t, 3))
    return returns, index


def _run(kind, params, exposures, context):
    return stress_run(scenario=Scenario("s", kind, params), exposures=exposures, context=context)


@pytest.mark.parametrize(("kind", "move"), [("shock", -0.20), ("flash", -0.05), ("shock", 0.10)])
def test_a_uniform_move_hits_longs_and_pays_shorts(kind, move):
    returns, _ = _market()
    exposures = [1_000_000.0, -400_000.0, 0.0]
    result = _run(kind, {"shock": move}, exposures, _context(returns))
    assert list(result.position_pnl) == pytest.approx([1_000_000 * move, -400_000 * move, 0.0])
    assert result.pnl == pytest.approx(600_000 * move)
    assert result.warnings == ()


def _portfolio_sigma(returns, exposures):
    cov = np.cov(returns, rowvar=False)
    e = np.asarray(exposures)
    return math.sqrt(e @ cov @ e), cov @ e


def test_vol_times_three_is_the_delta_normal_loss_with_tripled_sigma():
    returns, _ = _market()
    exposures = np.array([2_000_000.0, 1_000_000.0, -500_000.0])
    sigma, marginal = _portfolio_sigma(returns, exposures)
    z = NormalDist().inv_cdf(0.99)
    result = _run("vol_multiplier", {"multiplier": 3, "confidence": 0.99}, exposures, _context(returns))
    assert result.pnl == pytest.approx(-3 * z * sigma, rel=1e-10)
    assert list(result.position_pnl) == pytest.approx(list(-3 * z * exposures * marginal / sigma), rel=1e-10)
    four_days = _run("vol_multiplier", {"multiplier": 3, "horizon_days": 4}, exposures, _context(returns))
    assert four_days.pnl == pytest.approx(2 * result.pnl, rel=1e-10)  # sqrt(4) days, same default confidence


def test_covariance_uses_each_pair_over_the_days_both_traded():
    returns, _ = _market()
    returns[:80, 0] = np.nan  # AAA listed later
    returns[200:230, 2] = np.nan  # CCC suspended for a while
    exposures = np.array([1_000_000.0, 500_000.0, 700_000.0])
    cov = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            both = np.isfinite(returns[:, i]) & np.isfinite(returns[:, j])
            cov[i, j] = np.cov(returns[both, i], returns[both, j])[0, 1]
    expected = -3 * NormalDist().inv_cdf(0.99) * math.sqrt(exposures @ cov @ exposures)
    result = _run("vol_multiplier", {"multiplier": 3}, exposures, _context(returns))
    assert result.pnl == pytest.approx(expected, rel=1e-10)


def test_six_sigma_moves_every_position_six_of_its_own_sigmas_against_the_book():
    returns, _ = _market()
    exposures = np.array([1_000_000.0, -300_000.0, 200_000.0])
    sigmas = [np.std(returns[:, i], ddof=1) for i in range(3)]
    result = _run("sigma", {"sigmas": 6}, exposures, _context(returns))
    assert list(result.position_pnl) == pytest.approx([-6 * s * abs(e) for s, e in zip(sigmas, exposures, strict=True)])
    assert all(p < 0 for p in result.position_pnl)  # the short loses too: it moves against the book
    portfolio = _run("sigma", {"sigmas": 6, "mode": "portfolio"}, exposures, _context(returns))
    assert portfolio.pnl == pytest.approx(-6 * _portfolio_sigma(returns, exposures)[0], rel=1e-10)
    assert portfolio.pnl > result.pnl  # diversification: never worse than every position at once


def test_a_thin_history_borrows_the_median_volatility_and_says_so():
    returns, _ = _market()
    returns[:-10, 1] = np.nan  # BBB has only ten days
    exposures = np.array([100_000.0, 100_000.0, 100_000.0])
    result = _run("sigma", {"sigmas": 6}, exposures, _context(returns))
    fill = np.median([np.var(returns[:, 0], ddof=1), np.var(returns[:, 2], ddof=1)])
    assert result.position_pnl[1] == pytest.approx(-6 * math.sqrt(fill) * 100_000)
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("BBB has 10 daily returns")


def test_liquidity_crisis_haircut_grows_with_the_square_root_of_size_over_adv():
    returns, _ = _market()
    exposures = np.array([1e6, -4e6, 2e7])
    adv = np.array([1e8, 1e8, 1e7])
    params = {"shock": -0.10, "base_haircut": 0.05, "max_haircut": 0.03}
    result = _run("liquidity", params, exposures, _context(returns, adv=adv))
    haircuts = [0.05 * math.sqrt(0.01), 0.05 * math.sqrt(0.04), 0.03]  # the last one is capped
    expected = [e * -0.10 - abs(e) * h for e, h in zip(exposures, haircuts, strict=True)]
    assert list(result.position_pnl) == pytest.approx(expected)
    assert result.position_pnl[1] == pytest.approx(400_000 - 40_000)  # the short gains on the fall, pays to exit

    no_volume = _run("liquidity", params, exposures, _context(returns, adv=[1e8, 0.0, np.nan]))
    assert no_volume.position_pnl[1] == pytest.approx(400_000 - 4e6 * 0.03)
    assert [w.split()[0] for w in no_volume.warnings] == ["BBB", "CCC"]


def test_historical_replay_applies_that_days_returns_and_zero_where_there_was_no_bar():
    returns, _ = _market()
    returns[5, 2] = np.nan
    context = _context(returns)
    day = str(context.dates[5])
    exposures = np.array([1e6, -2e6, 3e6])
    result = _run("historical", {"date": day}, exposures, context)
    assert list(result.position_pnl) == pytest.approx([1e6 * returns[5, 0], -2e6 * returns[5, 1], 0.0])
    assert result.warnings == (f"CCC had no bar on {day}: 0% applied",)
    assert result.applied

    outside = _run("historical", {"date": "2019-01-01"}, exposures, context)
    assert not outside.applied
    assert outside.pnl == 0.0
    assert "not in the data" in outside.warnings[0]


def test_index_beta_applies_each_positions_own_beta():
    returns, index = _market()
    returns[:250, 2] = np.nan  # CCC: 50 days, fewer than the 60 needed
    exposures = np.array([1e6, 1e6, 1e6])
    result = _run("index_beta", {"index_move": -0.1298, "date": "2020-03-23"}, exposures, _context(returns, index))
    hand = [np.cov(returns[:, i], index)[0, 1] / np.var(index, ddof=1) for i in range(2)]
    assert list(result.position_pnl) == pytest.approx([1e6 * b * -0.1298 for b in [*hand, 1.0]], rel=1e-10)
    assert result.warnings == ("CCC has fewer than 60 days alongside the index: beta 1.0 applied",)
    enough = _run("index_beta", {"index_move": -0.1298, "min_obs": 40}, exposures, _context(returns, index))
    both = np.isfinite(returns[:, 2])
    assert enough.position_pnl[2] == pytest.approx(
        1e6 * -0.1298 * np.cov(returns[both, 2], index[both])[0, 1] / np.var(index[both], ddof=1), rel=1e-10
    )


def test_betas_skip_nan_days_and_warn_when_falling_back():
    returns, index = _market()
    index = index.copy()
    index[10:20] = np.nan
    ok = np.isfinite(index)
    with pytest.warns(BetaFallbackWarning):
        values = betas(returns=returns, index_returns=index, min_obs=1000)
    assert list(values) == [1.0, 1.0, 1.0]
    values = betas(returns=returns, index_returns=index)
    hand = [np.cov(returns[ok, i], index[ok])[0, 1] / np.var(index[ok], ddof=1) for i in range(3)]
    assert list(values) == pytest.approx(hand, rel=1e-10)


def test_worst_index_days_are_the_worst_falls_first_and_never_a_rise():
    dates = np.array(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"], dtype="datetime64[D]")
    moves = np.array([-0.01, np.nan, -0.03, 0.02, -0.02])
    assert worst_index_days(dates=dates, index_returns=moves, count=5) == [
        (date(2024, 1, 3), -0.03),
        (date(2024, 1, 5), -0.02),
        (date(2024, 1, 1), -0.01),
    ]
    assert worst_index_days(dates=dates, index_returns=moves, count=1) == [(date(2024, 1, 3), -0.03)]


@pytest.mark.parametrize(
    ("kind", "params", "param"),
    [
        ("crash", {"shock": -0.2}, "kind"),
        ("shock", {}, "shock"),
        ("shock", {"shock": "-0.2"}, "shock"),
        ("shock", {"shock": True}, "shock"),
        ("shock", {"shock": -1.5}, "shock"),
        ("flash", {"shock": float("nan")}, "shock"),
        ("vol_multiplier", {"multiplier": 0}, "multiplier"),
        ("vol_multiplier", {"multiplier": 3, "confidence": 1.0}, "confidence"),
        ("vol_multiplier", {"multiplier": 3, "horizon_days": 2.5}, "horizon_days"),
        ("liquidity", {"shock": -0.1}, "base_haircut"),
        ("liquidity", {"base_haircut": 0.02, "days": 3}, "days"),
        ("sigma", {"sigmas": 6, "mode": "both"}, "mode"),
        ("historical", {"date": "2024-13-01"}, "date"),
        ("historical", {"date": 20240604}, "date"),
        ("index_beta", {"index_move": -0.13, "min_obs": 1}, "min_obs"),
    ],
)
def test_scenario_validate_names_the_bad_parameter(kind, params, param):
    with pytest.raises(StressInputError) as caught:
        scenario_validate(kind, params)
    assert caught.value.param == param
    assert param in str(caught.value)
    with pytest.raises(StressInputError):
        Scenario("operator", kind, params)


def test_builtin_scenarios_cover_every_kind_but_the_replays_and_validate():
    assert {s.kind for s in BUILTIN_SCENARIOS} == set(KINDS) - {"historical"}
    for scenario in BUILTIN_SCENARIOS:
        scenario_validate(scenario.kind, scenario.params)
    covid = next(s for s in BUILTIN_SCENARIOS if s.params.get("date") == "2020-03-23")
    assert covid.params["index_move"] == -0.1298


def test_context_and_exposures_must_line_up():
    returns, index = _market()
    with pytest.raises(StressInputError) as caught:
        _context(returns, index[:-1])
    assert caught.value.param == "index_returns"
    with pytest.raises(StressInputError) as caught:
        _run("shock", {"shock": -0.2}, [1.0, 2.0], _context(returns))
    assert caught.value.param == "exposures"


def test_stress_all_runs_builtins_then_replays_then_the_operators_own():
    returns, index = _market()
    context = _context(returns, index)
    mine = Scenario("rbi_surprise", "shock", {"shock": -0.03}, "operator's own")
    results = stress_all(exposures=[1e6, -5e5, 2e5], context=context, scenarios=[mine])
    replays = historical_scenarios(context=context)
    assert [r.name for r in results] == [s.name for s in (*BUILTIN_SCENARIOS, *replays, mine)]
    assert len(replays) == 5
    assert all(r.pnl == pytest.approx(r.position_pnl.sum()) for r in results)
    assert results[-1].pnl == pytest.approx(-0.03 * (1e6 - 5e5 + 2e5))


def _closes(shared_data: Path, symbol: str) -> dict[str, float]:
    with (shared_data / "nifty50-daily" / f"{symbol}.csv").open(newline="") as handle:
        return {row["timestamp"][:10]: float(row["close"]) for row in csv.DictReader(handle)}


def _daily_returns(closes: dict[str, float], days: list[str]) -> np.ndarray:
    """Return on each day from the previous day of `days`; NaN where either close is missing."""
    out = [np.nan]
    for before, today in itertools.pairwise(days):
        ok = before in closes and today in closes
        out.append(closes[today] / closes[before] - 1 if ok else np.nan)
    return np.array(out)


def test_replay_of_2024_06_04_on_a_nifty_book(shared_data):
    symbols = ("RELIANCE", "HDFCBANK", "SBIN", "NTPC", "JIOFIN", "NESTLEIND")
    closes = {s: _closes(shared_data, s) for s in symbols}
    index = _closes(shared_data, "NIFTY50_INDEX")
    days = sorted(set().union(*(set(c) for c in closes.values())))
    context = StressContext(
        symbols=symbols,
        dates=np.array(days, dtype="datetime64[D]"),
        returns=np.column_stack([_daily_returns(closes[s], days) for s in symbols]),
        index_returns=_daily_returns(index, days),
        adv_value=np.full(len(symbols), 5e9),
    )
    exposures = np.array([2e6, 1.5e6, -1e6, 8e5, 5e5, -3e5])
    hand = sum(
        e * (closes[s]["2024-06-04"] / closes[s]["2024-06-03"] - 1) for s, e in zip(symbols, exposures, strict=True)
    )
    result = stress_run(
        scenario=Scenario("2024-06-04", "historical", {"date": "2024-06-04"}), exposures=exposures, context=context
    )
    assert result.pnl == pytest.approx(hand, rel=1e-12)
    assert result.warnings == ()

    index_days = sorted(index)
    worst = worst_index_days(
        dates=np.array(index_days[1:], dtype="datetime64[D]"),
        index_returns=np.array([index[t] / index[b] - 1 for b, t in itertools.pairwise(index_days)]),
    )
    assert date(2024, 6, 4) in [day for day, _ in worst]
    assert dict(worst)[date(2024, 6, 4)] == pytest.approx(index["2024-06-04"] / index["2024-06-03"] - 1)
    replayed = {r.name: r for r in stress_all(exposures=exposures, context=context)}
    assert replayed["2024-06-04"].pnl == pytest.approx(hand, rel=1e-12)
