"""The built-in strategies. Importing this module registers them (see `strategy.get_strategy`).

    sma_crossover            SMA fast/slow crossover (here)
    ema_crossover            EMA fast/slow crossover                   (library_trend)
    supertrend               the Supertrend direction                  (library_trend)
    rsi_reversion            Wilder RSI mean reversion                 (library_reversion)
    bollinger_breakout       close beyond a Bollinger band             (library_breakout)
    donchian_breakout        close beyond the previous n-bar channel   (library_breakout)
    opening_range_breakout   intraday opening-range breakout, MIS      (library_intraday)

Each rule, its parameters and its warm-up/lookback are in docs/strategies.md.
"""

from __future__ import annotations

import numpy as np

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.library_breakout import BollingerBreakout, DonchianBreakout
from apps.strategies.engine.library_intraday import OpeningRangeBreakout
from apps.strategies.engine.library_reversion import RsiReversion
from apps.strategies.engine.library_rules import armed_regime, cache_for, crossover_regime
from apps.strategies.engine.library_trend import EmaCrossover, SupertrendStrategy
from apps.strategies.engine.params import Param, ParamSchema, Rule
from apps.strategies.engine.strategy import Array, IndicatorCache, Strategy, register

__all__ = [
    "BollingerBreakout",
    "DonchianBreakout",
    "EmaCrossover",
    "OpeningRangeBreakout",
    "RsiReversion",
    "SmaCrossover",
    "SupertrendStrategy",
    "armed_regime",
    "crossover_regime",
]

_cache = cache_for  # the name this module has always had (the other built-ins import nothing from here)


@register
class SmaCrossover(Strategy):
    name = "sma_crossover"
    title = "SMA crossover"
    description = "Long (or short) while the fast simple moving average is strictly above the slow one."
    schema = ParamSchema(
        Param("fast", int, 10, minimum=1, maximum=10_000, help="fast moving-average window (bars)"),
        Param("slow", int, 30, minimum=2, maximum=10_000, help="slow moving-average window (bars)"),
        Param("field", str, "close", choices=("open", "high", "low", "close"), help="price the averages read"),
        Param("long_short", bool, False, help="short while the fast average is at or below the slow one"),
        rules=(Rule(("fast", "slow"), lambda p: p["fast"] < p["slow"], "fast ({fast}) must be below slow ({slow})"),),
    )

    def warmup(self) -> int:
        return int(self.params["slow"]) - 1

    def _sums(self, bars: Bars, cache: IndicatorCache | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = _cache(bars, cache)
        f, s, field = self.params["fast"], self.params["slow"], self.params["field"]
        fast_sum, fast_ok = c.get(("sma_sum", field, f), lambda: ind.sma_sum(bars, f, field))
        slow_sum, slow_ok = c.get(("sma_sum", field, s), lambda: ind.sma_sum(bars, s, field))
        return fast_sum, fast_ok, slow_sum, slow_ok

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        fast_sum, fast_ok, slow_sum, slow_ok = self._sums(bars, cache)
        f, s = self.params["fast"], self.params["slow"]
        # exact: integer paise sums; the same rule as crossover_regime, in one compiled pass
        return ind.sums_regime(fast_sum, fast_ok, slow_sum, slow_ok, f, s, bool(self.params["long_short"]))

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        fast_sum, fast_ok, slow_sum, slow_ok = self._sums(bars, cache)
        f, s = self.params["fast"], self.params["slow"]
        return {
            f"sma_{f}": np.where(fast_ok, fast_sum / (100.0 * f), np.nan),
            f"sma_{s}": np.where(slow_ok, slow_sum / (100.0 * s), np.nan),
        }
