"""The built-in strategies. Importing this module registers them (see `strategy.get_strategy`)."""

from __future__ import annotations

import numpy as np

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.params import Param, ParamSchema, Rule
from apps.strategies.engine.strategy import Array, IndicatorCache, Strategy, register

__all__ = ["SmaCrossover"]


def _cache(bars: Bars, cache: IndicatorCache | None) -> IndicatorCache:
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
        above = fast_sum * s > slow_sum * f  # exact: integer paise sums
        return crossover_regime(above, fast_ok & slow_ok, long_short=bool(self.params["long_short"]))

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        fast_sum, fast_ok, slow_sum, slow_ok = self._sums(bars, cache)
        f, s = self.params["fast"], self.params["slow"]
        return {
            f"sma_{f}": np.where(fast_ok, fast_sum / (100.0 * f), np.nan),
            f"sma_{s}": np.where(slow_ok, slow_sum / (100.0 * s), np.nan),
        }
