"""The rules the built-in strategies share: a crossover regime, an armed (bounded hysteresis) regime.

Both turn boolean conditions into targets that are a function of a BOUNDED trailing window, which is
what lets live evaluation (the last `lookback()` bars) and the backtest (the whole history) agree.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from apps.strategies.engine.bars import Bars
from apps.strategies.engine.strategy import Array, IndicatorCache

__all__ = ["armed_regime", "cache_for", "crossover_regime", "last_event"]

Mask = NDArray[np.bool_]


def cache_for(bars: Bars, cache: IndicatorCache | None) -> IndicatorCache:
    """The caller's cache when it belongs to these bars, else a fresh one (a cache never crosses Bars)."""
    return cache if cache is not None and cache.bars is bars else IndicatorCache(bars)


def crossover_regime(above: np.ndarray, defined: np.ndarray, *, long_short: bool) -> Array:
    """Targets of a crossover: +1 where `above`, 0 (or -1 with `long_short`) where not, NaN where undefined.

    The crossover rule (documented in docs/strategies.md): the fast line crosses above when it is
    STRICTLY above the slow one after being at or below it, and crosses below when it is at or below
    after being strictly above. A tie is "not above". The engine acts on the change of this regime.
    """
    out = np.where(above, 1.0, -1.0 if long_short else 0.0)
    out[~defined] = np.nan
    return out


def last_event(event: Mask) -> NDArray[np.int64]:
    """(T, N): the row of the latest bar at or before each row where `event` held; -1 if none."""
    rows = np.arange(event.shape[0], dtype=np.int64).reshape((-1,) + (1,) * (event.ndim - 1))
    out: NDArray[np.int64] = np.maximum.accumulate(np.where(event, rows, -1), axis=0)
    return out


def _armed(entry: Mask, exit_: Mask, max_hold: int) -> Mask:
    """In the position at t: an entry within the last `max_hold` bars and no exit since it."""
    rows = np.arange(entry.shape[0], dtype=np.int64).reshape((-1,) + (1,) * (entry.ndim - 1))
    last_in = last_event(entry)
    armed: Mask = (last_in > last_event(exit_)) & (rows - last_in < max_hold)
    return armed


def armed_regime(
    long_entry: Mask,
    long_exit: Mask,
    defined: Mask,
    *,
    max_hold: int,
    short_entry: Mask | None = None,
    short_exit: Mask | None = None,
) -> Array:
    """Enter at one level, exit at another, with the memory bounded by `max_hold` bars.

    Long at bar t when the latest bar meeting `long_entry` is less than `max_hold` bars back and no bar
    since it (t included) met `long_exit`; an exit on the same bar as an entry wins. Every bar that
    meets the entry condition re-arms it, so a position lasts while the condition keeps recurring and
    ends `max_hold` bars after the last one at the latest. Short mirrors it when `short_entry` and
    `short_exit` are given (long and short entries that fire together cancel out: flat). The target at t
    needs only the conditions of its last `max_hold` bars: lookback = the conditions' own + max_hold.
    """
    if max_hold < 1:
        raise ValueError(f"max_hold must be at least 1, got {max_hold}")
    out = _armed(long_entry, long_exit, max_hold).astype(np.float64)
    if short_entry is not None and short_exit is not None:
        out -= _armed(short_entry, short_exit, max_hold)
    out[~defined] = np.nan
    return out
