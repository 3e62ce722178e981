"""Synthetic NSE-like candles for the demo: correlated across symbols, fat-tailed, seeded.

The model (documented in docs/demo-data.md): log returns of each symbol are

    r[i, t] = beta[i] * m[t] + s[sector(i), t] + e[i, t]

a market factor m (daily sd 0.95%, about 15% a year like the NIFTY 50), one
factor per sector (daily sd 0.6%) and an idiosyncratic part (daily sd 1.2%);
each drawn from a Student-t with 5 degrees of freedom scaled to unit variance,
so large moves happen about as often as on NSE. Betas are uniform in
[0.7, 1.3]. That gives single stocks about 25-30% annual volatility and
pairwise correlations around 0.3-0.5 (higher within a sector). Minute bars
use the same model with the daily sd divided by sqrt(375) (the minutes of a
session) and a U-shaped intraday volume profile. Prices are on the 0.05 tick,
with low <= open, close <= high by construction. Everything comes from one
`numpy.random.default_rng(seed)`, so a seed gives the same data every time.
No Django import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

MARKET_SD = 0.0095
SECTOR_SD = 0.006
IDIO_SD = 0.012
T_DOF = 5
SESSION_MINUTES = 375  # 09:15 to 15:30
DAILY_TRADED_VALUE = 4e9  # rupees a day per stock, the centre of the volume model
TICK = 0.05


@dataclass(frozen=True)
class Bars:
    """OHLCV arrays shaped (time, symbol), float64 prices on the tick, int64 volume."""

    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.int64]


def _t_draws(rng: np.random.Generator, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(T_DOF, size=shape) * np.sqrt((T_DOF - 2) / T_DOF)


def factor_returns(rng: np.random.Generator, n_steps: int, sectors: list[str], scale: float) -> NDArray[np.float64]:
    """Correlated log returns (n_steps, n_symbols) from the market/sector/idiosyncratic model."""
    n = len(sectors)
    names = sorted(set(sectors))
    sector_index = np.array([names.index(s) for s in sectors])
    beta = rng.uniform(0.7, 1.3, size=n)
    market = _t_draws(rng, (n_steps, 1)) * MARKET_SD * scale
    sector = _t_draws(rng, (n_steps, len(names)))[:, sector_index] * SECTOR_SD * scale
    idio = _t_draws(rng, (n_steps, n)) * IDIO_SD * scale
    return market * beta + sector + idio


def _on_tick(prices: NDArray[np.float64], how: str) -> NDArray[np.float64]:
    ticks = prices / TICK
    rounded = np.ceil(ticks) if how == "up" else np.floor(ticks) if how == "down" else np.round(ticks)
    return np.maximum(rounded * TICK, TICK).round(2)


def bars_from_returns(
    rng: np.random.Generator, start: NDArray[np.float64], returns: NDArray[np.float64], sd: float
) -> Bars:
    """OHLC from a path of closes: each bar opens at the previous close (plus a small gap)."""
    closes = start * np.exp(np.cumsum(returns, axis=0))
    prev = np.vstack([start[None, :], closes[:-1]])
    opens = prev * np.exp(rng.normal(0, 0.15 * sd, size=returns.shape))
    wick_up = np.exp(np.abs(rng.normal(0, 0.5 * sd, size=returns.shape)))
    wick_down = np.exp(-np.abs(rng.normal(0, 0.5 * sd, size=returns.shape)))
    o, c = _on_tick(opens, "nearest"), _on_tick(closes, "nearest")
    high = _on_tick(np.maximum(o, c) * wick_up, "up")
    low = _on_tick(np.minimum(o, c) * wick_down, "down")
    volume = (DAILY_TRADED_VALUE / start) * rng.lognormal(0, 0.35, size=returns.shape)
    return Bars(o, np.maximum(high, np.maximum(o, c)), np.minimum(low, np.minimum(o, c)), c, volume.astype(np.int64))


def daily_bars(*, seed: int, n_days: int, start_prices: list[float], sectors: list[str]) -> Bars:
    rng = np.random.default_rng(seed)
    returns = factor_returns(rng, n_days, sectors, scale=1.0)
    daily_sd = float(np.sqrt(MARKET_SD**2 + SECTOR_SD**2 + IDIO_SD**2))
    return bars_from_returns(rng, np.asarray(start_prices, dtype=float), returns, daily_sd)


def intraday_profile(minutes: int = SESSION_MINUTES) -> NDArray[np.float64]:
    """U-shaped share of the day's volume per minute (heavier at the open and the close); sums to 1."""
    x = np.linspace(-1.0, 1.0, minutes)
    shape = 1.0 + 2.5 * x**2
    return shape / shape.sum()


def minute_bars(*, seed: int, n_days: int, start_prices: list[float], sectors: list[str]) -> Bars:
    """`n_days` sessions of 375 one-minute bars each, stacked in time: shape (n_days * 375, n_symbols)."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(SESSION_MINUTES)
    returns = factor_returns(rng, n_days * SESSION_MINUTES, sectors, scale=scale)
    minute_sd = float(np.sqrt(MARKET_SD**2 + SECTOR_SD**2 + IDIO_SD**2)) * scale
    bars = bars_from_returns(rng, np.asarray(start_prices, dtype=float), returns, minute_sd)
    profile = np.tile(intraday_profile(), n_days)[:, None] * SESSION_MINUTES
    return Bars(bars.open, bars.high, bars.low, bars.close, (bars.volume / SESSION_MINUTES * profile).astype(np.int64))
