"""Breakouts on windowed indicators: past a Bollinger band, past the previous n-bar Donchian channel.

Both indicators are functions of their last n bars (exact paise sums, exact maxima), and the position's
memory is bounded by `max_hold`, so a window of `lookback()` bars gives the whole history's target
bit for bit.
"""

from __future__ import annotations

import numpy as np

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.library_rules import armed_regime, cache_for
from apps.strategies.engine.params import Param, ParamSchema
from apps.strategies.engine.strategy import Array, IndicatorCache, Strategy, register

__all__ = ["BollingerBreakout", "DonchianBreakout"]


@register
class BollingerBreakout(Strategy):
    name = "bollinger_breakout"
    title = "Bollinger breakout"
    description = (
        "Long once the close is above the upper Bollinger band, out when it falls below the middle or `max_hold` "
        "bars after the last close above the band; short mirrors it below the lower band with long_short."
    )
    schema = ParamSchema(
        Param("n", int, 20, minimum=2, maximum=1000, help="bars of the mean and the (population) deviation"),
        Param("k", float, 2.0, minimum=0.1, maximum=10.0, help="band width in standard deviations"),
        Param("max_hold", int, 30, minimum=1, maximum=10_000, help="bars an entry stays armed after its last signal"),
        Param("long_short", bool, False, help="also short below the lower band"),
    )

    def warmup(self) -> int:
        return int(self.params["n"]) - 1

    def lookback(self) -> int:
        return self.warmup() + int(self.params["max_hold"])

    def _parts(self, c: IndicatorCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = int(self.params["n"])
        out: tuple[np.ndarray, np.ndarray, np.ndarray] = c.get(
            ("bollinger_parts", "close", n), lambda: ind.bollinger_parts(c.bars, n)
        )
        return out

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        s1, var_n2, full = self._parts(cache_for(bars, cache))
        n, k = int(self.params["n"]), float(self.params["k"])
        # close vs mean +- k * std, scaled by 100 n: n * close - sum  vs  k * sqrt(n^2 var), in paise
        dev = n * bars.paise("close") - s1  # exact
        width = k * np.sqrt(var_n2.astype(np.float64))
        defined = full & bars.valid()
        short = bool(self.params["long_short"])
        return armed_regime(
            defined & (dev > width),
            defined & (dev < 0),
            defined,
            max_hold=int(self.params["max_hold"]),
            short_entry=defined & (dev < -width) if short else None,
            short_exit=defined & (dev > 0) if short else None,
        )

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        n, k = int(self.params["n"]), float(self.params["k"])
        c = cache_for(bars, cache)
        mid, upper, lower = c.get(("bollinger", "close", n, k), lambda: ind.bollinger(bars, n, k))
        return {"bb_middle": mid, "bb_upper": upper, "bb_lower": lower}


@register
class DonchianBreakout(Strategy):
    name = "donchian_breakout"
    title = "Donchian breakout"
    description = (
        "Long on a close above the highest high of the previous `entry` bars, out on a close below the lowest low "
        "of the previous `exit` bars or `max_hold` bars after the last breakout; short mirrors it with long_short."
    )
    schema = ParamSchema(
        Param("entry", int, 20, minimum=1, maximum=1000, help="bars of the entry channel (n)"),
        Param("exit", int, 10, minimum=1, maximum=1000, help="bars of the exit channel (m)"),
        Param("max_hold", int, 60, minimum=1, maximum=10_000, help="bars an entry stays armed after its last signal"),
        Param("long_short", bool, False, help="also short on a close below the entry channel's low"),
    )

    def warmup(self) -> int:
        return max(int(self.params["entry"]), int(self.params["exit"]))  # channels of the PREVIOUS bars

    def lookback(self) -> int:
        return self.warmup() + int(self.params["max_hold"])

    def _channel(self, c: IndicatorCache, n: int) -> tuple[Array, Array]:
        out: tuple[Array, Array] = c.get(("donchian", "high/low", n), lambda: ind.donchian(c.bars, n))
        return out

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        c = cache_for(bars, cache)
        entry_high, entry_low = self._channel(c, int(self.params["entry"]))
        exit_high, exit_low = self._channel(c, int(self.params["exit"]))
        close = bars.close
        defined = bars.valid() & ~np.isnan(entry_high) & ~np.isnan(exit_high)
        short = bool(self.params["long_short"])
        return armed_regime(
            defined & (close > entry_high),
            defined & (close < exit_low),
            defined,
            max_hold=int(self.params["max_hold"]),
            short_entry=defined & (close < entry_low) if short else None,
            short_exit=defined & (close > exit_high) if short else None,
        )

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        c = cache_for(bars, cache)
        n, m = int(self.params["entry"]), int(self.params["exit"])
        entry_high, entry_low = self._channel(c, n)
        exit_high, exit_low = self._channel(c, m)
        return {
            f"donchian_high_{n}": entry_high,
            f"donchian_low_{n}": entry_low,
            f"donchian_high_{m}": exit_high,
            f"donchian_low_{m}": exit_low,
        }
