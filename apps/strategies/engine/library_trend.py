"""Trend followers on recursive indicators: the EMA crossover and the Supertrend direction.

Their indicators remember every earlier bar through a state seeded at the first bars they see, so
`lookback()` adds `indicators.settle_bars(alpha)` bars for the seed to die out (docs/strategies.md).
"""

from __future__ import annotations

import numpy as np

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.library_rules import cache_for, crossover_regime
from apps.strategies.engine.params import Param, ParamSchema, Rule
from apps.strategies.engine.strategy import Array, IndicatorCache, Strategy, register

__all__ = ["EmaCrossover", "SupertrendStrategy"]


def cached_ema(cache: IndicatorCache, n: int, field: str = "close") -> Array:
    out: Array = cache.get(("ema", field, n), lambda: ind.ema(cache.bars, n, field))
    return out


def cached_atr(cache: IndicatorCache, n: int) -> Array:
    out: Array = cache.get(("atr", "hlc", n), lambda: ind.atr(cache.bars, n))
    return out


@register
class EmaCrossover(Strategy):
    name = "ema_crossover"
    title = "EMA crossover"
    description = (
        "Long (or short) while the fast exponential moving average of the close is strictly above the slow one."
    )
    schema = ParamSchema(
        Param("fast", int, 12, minimum=1, maximum=1000, help="fast EMA period (bars; alpha = 2/(period+1))"),
        Param("slow", int, 26, minimum=2, maximum=1000, help="slow EMA period (bars)"),
        Param("long_short", bool, False, help="short while the fast EMA is at or below the slow one"),
        rules=(Rule(("fast", "slow"), lambda p: p["fast"] < p["slow"], "fast ({fast}) must be below slow ({slow})"),),
    )

    def warmup(self) -> int:
        return int(self.params["slow"]) - 1  # the slow EMA's seed is the mean of its first `slow` bars

    def lookback(self) -> int:
        slow = int(self.params["slow"])
        return self.warmup() + ind.settle_bars(2.0 / (slow + 1.0))

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        c = cache_for(bars, cache)
        fast = cached_ema(c, int(self.params["fast"]))
        slow = cached_ema(c, int(self.params["slow"]))
        defined = ~np.isnan(fast) & ~np.isnan(slow)
        return crossover_regime(fast > slow, defined, long_short=bool(self.params["long_short"]))

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        c = cache_for(bars, cache)
        f, s = int(self.params["fast"]), int(self.params["slow"])
        return {f"ema_{f}": cached_ema(c, f), f"ema_{s}": cached_ema(c, s)}


@register
class SupertrendStrategy(Strategy):
    name = "supertrend"
    title = "Supertrend"
    description = (
        "Long while the Supertrend (Wilder ATR bands around the bar's midpoint) points up; flat, or short, while "
        "it points down."
    )
    schema = ParamSchema(
        Param("period", int, 10, minimum=1, maximum=500, help="ATR period (bars, Wilder smoothing)"),
        Param("multiplier", float, 3.0, minimum=0.1, maximum=20.0, help="band width in ATRs"),
        Param("long_short", bool, False, help="short while the trend points down"),
    )

    # The trend state (final bands, direction) is a hysteresis: a window's state can differ from the
    # whole history's until the close breaks a band or the bands make a new extreme. Measured on the 50
    # NIFTY stocks with an exact ATR: at most 102 bars at 10/3.0, 65 at 7/2.0. This much is added.
    STATE_BARS_PER_ATR = 8

    def warmup(self) -> int:
        return int(self.params["period"]) - 1  # the ATR's first value: the mean of the first `period` TRs

    def lookback(self) -> int:
        period, mult = int(self.params["period"]), float(self.params["multiplier"])
        state = int(np.ceil(self.STATE_BARS_PER_ATR * period * mult))
        return self.warmup() + ind.settle_bars(1.0 / period) + state

    def _line(self, c: IndicatorCache) -> tuple[Array, Array]:
        period, mult = int(self.params["period"]), float(self.params["multiplier"])
        atr = cached_atr(c, period)
        key = ("supertrend", "hlc", period, mult)
        out: tuple[Array, Array] = c.get(key, lambda: ind.supertrend(c.bars, period, mult, atr_values=atr))
        return out

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        _, direction = self._line(cache_for(bars, cache))
        return crossover_regime(direction > 0, ~np.isnan(direction), long_short=bool(self.params["long_short"]))

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        c = cache_for(bars, cache)
        line, direction = self._line(c)
        return {
            "supertrend": line,
            "supertrend_direction": direction,
            f"atr_{self.params['period']}": cached_atr(c, int(self.params["period"])),
        }
