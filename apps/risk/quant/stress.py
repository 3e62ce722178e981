"""Stress tests on the current book: what the positions lose on days a VaR model calls impossible (pure numpy).

VaR says what an ordinary bad day costs; a stress test asks what the book loses in a crash, a flash crash,
with volatility tripled, in a liquidity crisis, on a six-sigma day, on the worst days actually found in
the data, and in famous shocks older than the data, applied through each position's beta to the NIFTY 50.
docs/risk-stress.md defines every kind and its parameters.

Exposures are rupees of market value per symbol: long positive, short negative, so a short gains in a
crash. Every result carries the P&L per position and the warnings (a missing bar, a beta that fell back
to 1.0) so that no number is shown without what it assumed. No Django: the caller gathers the candles.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BUILTIN_SCENARIOS",
    "KINDS",
    "MIN_SIGMA_OBS",
    "SIGMA_MODES",
    "BetaFallbackWarning",
    "Scenario",
    "StressContext",
    "StressInputError",
    "StressResult",
    "betas",
    "historical_scenarios",
    "scenario_validate",
    "stress_all",
    "stress_run",
    "worst_index_days",
]

KINDS = ("shock", "flash", "vol_multiplier", "liquidity", "sigma", "historical", "index_beta")
SIGMA_MODES = ("position", "portfolio")
MIN_SIGMA_OBS = 20  # daily returns below which a symbol's own volatility is too noisy to stress with

FloatArray = NDArray[np.float64]


class StressInputError(ValueError):
    """A bad scenario or input; `param` names the culprit so the admin can attach the error to that field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BetaFallbackWarning(UserWarning):
    """Some columns had too little history for a beta, and 1.0 (the market's own) was used instead."""


# ----------------------------------------------------------------------------------------------------------
# Scenario parameters: one table drives validation, so the admin and the engine cannot disagree.

_Check = Callable[[str, Any], None]


def _number(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> _Check:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise StressInputError(f"{name} must be a finite number, not {value!r}", param=name)
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            bounds = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
            raise StressInputError(f"{name} must be in {bounds}, not {value}", param=name)

    return check


def _integer(lo: int, hi: int) -> _Check:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise StressInputError(f"{name} must be a whole number in [{lo}, {hi}], not {value!r}", param=name)

    return check


def _iso_date(name: str, value: Any) -> None:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        raise StressInputError(f"{name} must be an ISO date like 2024-06-04, not {value!r}", param=name) from None


def _choice(options: Sequence[str]) -> _Check:
    def check(name: str, value: Any) -> None:
        if value not in options:
            raise StressInputError(f"{name} must be one of {', '.join(options)}, not {value!r}", param=name)

    return check


_MOVE = _number(-1.0, 1.0)
_SPECS: dict[str, dict[str, tuple[bool, _Check]]] = {  # kind -> parameter -> (required, check)
    "shock": {"shock": (True, _MOVE)},
    "flash": {"shock": (True, _MOVE)},
    "vol_multiplier": {
        "multiplier": (True, _number(0.0, 100.0, lo_open=True)),
        "confidence": (False, _number(0.5, 1.0, lo_open=True, hi_open=True)),
        "horizon_days": (False, _integer(1, 250)),
    },
    "liquidity": {
        "shock": (False, _MOVE),
        "base_haircut": (True, _number(0.0, 1.0)),
        "max_haircut": (False, _number(0.0, 1.0, lo_open=True)),
    },
    "sigma": {"sigmas": (True, _number(0.0, 100.0, lo_open=True)), "mode": (False, _choice(SIGMA_MODES))},
    "historical": {"date": (True, _iso_date)},
    "index_beta": {"index_move": (True, _MOVE), "date": (False, _iso_date), "min_obs": (False, _integer(2, 100_000))},
}


def scenario_validate(kind: str, params: Mapping[str, Any]) -> None:
    """Refuse an operator's scenario before it is saved, naming the bad parameter (StressInputError.param)."""
    if kind not in _SPECS:
        raise StressInputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", param="kind")
    if not isinstance(params, Mapping):
        raise StressInputError(f"params must be a mapping, not {type(params).__name__}", param="params")
    spec = _SPECS[kind]
    unknown = sorted(str(key) for key in params if key not in spec)
    if unknown:
        allowed = ", ".join(spec)
        raise StressInputError(f"{unknown[0]} is not a {kind} parameter (allowed: {allowed})", param=unknown[0])
    for name, (required, check) in spec.items():
        if name in params:
            check(name, params[name])
        elif required:
            raise StressInputError(f"{name} is required for a {kind} scenario", param=name)


@dataclass(frozen=True)
class Scenario:
    """One named stress; validated on construction so an invalid one can never reach the engine."""

    name: str
    kind: str
    params: Mapping[str, Any]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise StressInputError("a scenario needs a name", param="name")
        scenario_validate(self.kind, self.params)


@dataclass(frozen=True)
class StressContext:
    """The history the Django layer gathers from the candles: returns aligned on dates, and liquidity."""

    symbols: Sequence[str]
    dates: NDArray[np.datetime64]
    returns: FloatArray
    index_returns: FloatArray
    adv_value: FloatArray

    def __post_init__(self) -> None:
        t, n = len(self.dates), len(self.symbols)
        shapes = {"dates": (t,), "returns": (t, n), "index_returns": (t,), "adv_value": (n,)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise StressInputError(
                    f"{name} has shape {np.shape(getattr(self, name))}, expected {shape}", param=name
                )


@dataclass(frozen=True)
class StressResult:
    name: str
    kind: str
    description: str
    pnl: float
    position_pnl: FloatArray
    warnings: tuple[str, ...]
    applied: bool = True  # False when the scenario could not run on this data (a date outside it): pnl is 0
    params: Mapping[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# Statistics on the context's history, NaN-aware (a symbol listed later has NaN before its listing).


def _held(context: StressContext, mask: NDArray[np.bool_], e: FloatArray) -> list[tuple[int, str]]:
    """(column, symbol) of the positions actually held among `mask`: a warning about a symbol not held is noise."""
    return [(int(i), context.symbols[int(i)]) for i in np.flatnonzero(mask & (e != 0))]


def _pairwise_covariance(returns: FloatArray) -> tuple[FloatArray, NDArray[np.int64]]:
    """Sample covariance of each pair over the days both traded; NaN rows of one symbol cost only its pairs."""
    ok = np.isfinite(returns)
    mask = ok.astype(np.float64)
    x = np.where(ok, returns, 0.0)
    n = (mask.T @ mask).astype(np.int64)
    sums = x.T @ mask  # sums[i, j] = sum of x_i over the days j also traded
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = (x.T @ x - sums * sums.T / n) / (n - 1)
    return np.where(n >= 2, cov, 0.0), np.diag(n).copy()


def _stress_covariance(context: StressContext, exposures: FloatArray) -> tuple[FloatArray, list[str]]:
    """Covariance where a thin history is replaced by the median variance of the rest, uncorrelated."""
    cov, counts = _pairwise_covariance(np.asarray(context.returns, dtype=np.float64))
    thin = counts < MIN_SIGMA_OBS
    if not thin.any():
        return cov, []
    healthy = np.diag(cov)[~thin]
    fill = float(np.median(healthy)) if healthy.size else 0.0
    cov[thin, :] = 0.0
    cov[:, thin] = 0.0
    cov[thin, thin] = fill
    notes = [
        f"{symbol} has {counts[i]} daily returns (< {MIN_SIGMA_OBS}): the median volatility of the other symbols "
        "was used, uncorrelated"
        for i, symbol in _held(context, thin, exposures)
    ]
    return cov, notes


def _beta_fit(returns: ArrayLike, index_returns: ArrayLike, min_obs: int) -> tuple[FloatArray, NDArray[np.bool_]]:
    """OLS slope of each column on the index over the days both have a return; 1.0 where that is too few."""
    r = np.asarray(returns, dtype=np.float64)
    m = np.asarray(index_returns, dtype=np.float64)
    if r.ndim != 2 or m.shape != (r.shape[0],):
        raise StressInputError(f"returns {r.shape} and index_returns {m.shape} do not align", param="returns")
    ok = np.isfinite(r) & np.isfinite(m)[:, None]
    n = ok.sum(axis=0)
    safe_n = np.maximum(n, 1)
    mm = np.where(ok, m[:, None], 0.0)
    rr = np.where(ok, r, 0.0)
    dm = np.where(ok, mm - mm.sum(axis=0) / safe_n, 0.0)
    dr = np.where(ok, rr - rr.sum(axis=0) / safe_n, 0.0)
    var_m = (dm * dm).sum(axis=0)
    fallback = (n < min_obs) | (var_m <= 0.0)
    beta = np.where(fallback, 1.0, (dm * dr).sum(axis=0) / np.where(var_m > 0, var_m, 1.0))
    return beta, fallback


def betas(*, returns: ArrayLike, index_returns: ArrayLike, min_obs: int = 60) -> FloatArray:
    """Each column's beta to the index; a column with fewer than `min_obs` shared days gets 1.0, with a warning."""
    beta, fallback = _beta_fit(returns, index_returns, min_obs)
    if fallback.any():
        columns = ", ".join(str(i) for i in np.flatnonzero(fallback))
        warnings.warn(f"beta 1.0 used for column(s) {columns}: fewer than {min_obs} days", BetaFallbackWarning, 2)
    return beta


# ----------------------------------------------------------------------------------------------------------
# One function per kind: (params, exposures, context) -> (P&L per position, warnings, applied).

_Outcome = tuple[FloatArray, list[str], bool]


def _run_shock(params: Mapping[str, Any], e: FloatArray, context: StressContext) -> _Outcome:
    return e * float(params["shock"]), [], True


def _euler(e: FloatArray, cov: FloatArray, scale: float) -> FloatArray:
    """Split a loss of `scale` portfolio sigmas over positions by their marginal contribution (sums exactly)."""
    marginal = cov @ e
    sigma_p = math.sqrt(max(float(e @ marginal), 0.0))
    return np.zeros_like(e) if sigma_p == 0.0 else -scale * e * marginal / sigma_p


def _run_vol_multiplier(params: Mapping[str, Any], e: FloatArray, context: StressContext) -> _Outcome:
    z = NormalDist().inv_cdf(float(params.get("confidence", 0.99)))
    scale = z * float(params["multiplier"]) * math.sqrt(int(params.get("horizon_days", 1)))
    cov, notes = _stress_covariance(context, e)
    return _euler(e, cov, scale), notes, True


def _run_sigma(params: Mapping[str, Any], e: FloatArray, context: StressContext) -> _Outcome:
    k = float(params["sigmas"])
    cov, notes = _stress_covariance(context, e)
    if params.get("mode", "position") == "portfolio":
        return _euler(e, cov, k), notes, True
    return -k * np.sqrt(np.maximum(np.diag(cov), 0.0)) * np.abs(e), notes, True


def _run_liquidity(params: Mapping[str, Any], e: FloatArray, context: StressContext) -> _Outcome:
    base, cap = float(params["base_haircut"]), float(params.get("max_haircut", 1.0))
    adv = np.asarray(context.adv_value, dtype=np.float64)
    known = np.isfinite(adv) & (adv > 0)
    ratio = np.abs(e) / np.where(known, adv, 1.0)
    haircut = np.where(known, np.minimum(base * np.sqrt(ratio), cap), cap)
    notes = [
        f"{symbol} has no traded value to measure liquidity by: the maximum haircut {cap:.2%} applied"
        for _, symbol in _held(context, ~known, e)
    ]
    return e * float(params.get("shock", 0.0)) - np.abs(e) * haircut, notes, True


def _run_historical(params: Mapping[str, Any], e: FloatArray, context: StressContext) -> _Outcome:
    day = str(params["date"])
    rows = np.flatnonzero(np.asarray(context.dates).astype("datetime64[D]") == np.datetime64(day, "D"))
    if rows.size == 0:
        return np.zeros_like(e), [f"{day} is not in the data: scenario not applied"], False
    r = np.asarray(context.returns, dtype=np.float64)[rows[0]]
    notes = [f"{symbol} had no bar on {day}: 0% applied" for _, symbol in _held(context, ~np.isfinite(r), e)]
    return e * np.where(np.isfinite(r), r, 0.0), notes, True


def _run_index_beta(params: Mapping[str, Any], e: FloatArray, context: StressContext) -> _Outcome:
    min_obs = int(params.get("min_obs", 60))
    beta, fallback = _beta_fit(context.returns, context.index_returns, min_obs)
    notes = [
        f"{symbol} has fewer than {min_obs} days alongside the index: beta 1.0 applied"
        for _, symbol in _held(context, fallback, e)
    ]
    return e * beta * float(params["index_move"]), notes, True


_RUNNERS: dict[str, Callable[[Mapping[str, Any], FloatArray, StressContext], _Outcome]] = {
    "shock": _run_shock,
    "flash": _run_shock,
    "vol_multiplier": _run_vol_multiplier,
    "liquidity": _run_liquidity,
    "sigma": _run_sigma,
    "historical": _run_historical,
    "index_beta": _run_index_beta,
}


def _exposures(exposures: ArrayLike, context: StressContext) -> FloatArray:
    e = np.asarray(exposures, dtype=np.float64)
    if e.shape != (len(context.symbols),) or not np.isfinite(e).all():
        raise StressInputError(f"exposures must be {len(context.symbols)} finite rupee values", param="exposures")
    return e


def stress_run(*, scenario: Scenario, exposures: ArrayLike, context: StressContext) -> StressResult:
    """The book's P&L under one scenario; exposures are aligned on `context.symbols`."""
    e = _exposures(exposures, context)
    position_pnl, notes, applied = _RUNNERS[scenario.kind](scenario.params, e, context)
    return StressResult(
        name=scenario.name,
        kind=scenario.kind,
        description=scenario.description,
        pnl=float(position_pnl.sum()),
        position_pnl=position_pnl,
        warnings=tuple(notes),
        applied=applied,
        params=dict(scenario.params),
    )


# ----------------------------------------------------------------------------------------------------------
# The scenarios every run includes.


def worst_index_days(*, dates: ArrayLike, index_returns: ArrayLike, count: int = 5) -> list[tuple[date, float]]:
    """The `count` worst falls of the index in the data, worst first (days it rose are never "worst")."""
    r = np.asarray(index_returns, dtype=np.float64)
    days = np.asarray(dates).astype("datetime64[D]")
    falls = np.flatnonzero(np.isfinite(r) & (r < 0))
    ranked = falls[np.argsort(r[falls], kind="stable")][: max(count, 0)]
    return [(days[i].item(), float(r[i])) for i in ranked]


def historical_scenarios(*, context: StressContext, count: int = 5) -> list[Scenario]:
    """Replays of the worst index days in the data, each symbol moving by its own return of that day."""
    worst = worst_index_days(dates=context.dates, index_returns=context.index_returns, count=count)
    return [
        Scenario(
            name=day.isoformat(),
            kind="historical",
            params={"date": day.isoformat()},
            description=f"Replay of {day.isoformat()}, the NIFTY 50's worst day no. {rank} in the data "
            f"({move:+.2%}): every symbol moves by its own return of that day",
        )
        for rank, (day, move) in enumerate(worst, start=1)
    ]


_FALLS_LIST = "source: learnstockmarket.in's list of NIFTY 50 biggest single-day falls"
BUILTIN_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("market_crash", "shock", {"shock": -0.20}, "Every position falls 20%: a bear-market crash."),
    Scenario("flash_crash", "flash", {"shock": -0.05}, "Every position falls 5% at once, before any hedge."),
    Scenario(
        "vol_x3",
        "vol_multiplier",
        {"multiplier": 3, "confidence": 0.99},
        "One-day 99% delta-normal loss with every volatility tripled (correlations kept).",
    ),
    Scenario(
        "liquidity_crisis",
        "liquidity",
        {"shock": -0.10, "base_haircut": 0.05, "max_haircut": 0.30},
        "Market falls 10% and each position is dumped at a haircut of 5% x sqrt(position / ADV), at most 30%.",
    ),
    Scenario(
        "six_sigma",
        "sigma",
        {"sigmas": 6, "mode": "position"},
        "Every position moves six of its own daily sigmas against the book at once (no diversification).",
    ),
    Scenario(
        "covid_2020_03_23",
        "index_beta",
        {"index_move": -0.1298, "date": "2020-03-23"},
        "COVID-19 lockdown crash: NIFTY 50 fell 1,135.20 points (-12.98%) to 7,610.25 on 23 March 2020 "
        "(source: PTI's closing report of that day), applied through each position's beta.",
    ),
    Scenario(
        "gfc_2008_10_24",
        "index_beta",
        {"index_move": -0.1220, "date": "2008-10-24"},
        "Global financial crisis: NIFTY fell 359.15 points (-12.20%) on 24 October 2008 "
        f"({_FALLS_LIST}), applied through each position's beta.",
    ),
    Scenario(
        "election_2004_05_17",
        "index_beta",
        {"index_move": -0.1224, "date": "2004-05-17"},
        "Election-result crash: NIFTY fell 193.65 points (-12.24%) on 17 May 2004 "
        f"({_FALLS_LIST}), applied through each position's beta.",
    ),
)


def stress_all(
    *, exposures: ArrayLike, context: StressContext, scenarios: Sequence[Scenario] | None = None
) -> list[StressResult]:
    """Built-ins, then replays of the worst days in the data, then the operators' own scenarios."""
    chosen = [*BUILTIN_SCENARIOS, *historical_scenarios(context=context), *(scenarios or ())]
    return [stress_run(scenario=s, exposures=exposures, context=context) for s in chosen]
