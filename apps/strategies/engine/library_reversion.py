"""Mean reversion on Wilder's RSI: buy the oversold, sell when it has recovered, with a bounded memory."""

from __future__ import annotations

import numpy as np

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.library_rules import armed_regime, cache_for
from apps.strategies.engine.params import Param, ParamSchema, Rule
from apps.strategies.engine.strategy import Array, IndicatorCache, Strategy, register

__all__ = ["RsiReversion"]


@register
class RsiReversion(Strategy):
    name = "rsi_reversion"
    title = "RSI mean reversion"
    description = (
        "Long once Wilder's RSI is below `lower`, out when it gets back above `exit` or `max_hold` bars after it "
        "was last below `lower`; short mirrors it above `upper` with long_short."
    )
    schema = ParamSchema(
        Param("period", int, 14, minimum=2, maximum=500, help="RSI period (bars, Wilder smoothing)"),
        Param("lower", float, 30.0, minimum=0.0, maximum=100.0, help="enter long while the RSI is below this"),
        Param("upper", float, 70.0, minimum=0.0, maximum=100.0, help="enter short while the RSI is above this"),
        Param("exit", float, 50.0, minimum=0.0, maximum=100.0, help="leave once the RSI is back beyond this"),
        Param("max_hold", int, 20, minimum=1, maximum=10_000, help="bars an entry stays armed after its last signal"),
        Param("long_short", bool, False, help="also short above `upper`"),
        rules=(
            Rule(("lower", "exit"), lambda p: p["lower"] < p["exit"], "lower ({lower}) must be below exit ({exit})"),
            Rule(("upper", "exit"), lambda p: p["exit"] < p["upper"], "upper ({upper}) must be above exit ({exit})"),
        ),
    )

    def warmup(self) -> int:
        return int(self.params["period"])  # `period` changes need period + 1 bars

    def lookback(self) -> int:
        period = int(self.params["period"])
        return period + ind.settle_bars(1.0 / period) + int(self.params["max_hold"])

    def _rsi(self, bars: Bars, cache: IndicatorCache | None) -> Array:
        period = int(self.params["period"])
        out: Array = cache_for(bars, cache).get(("rsi", "close", period), lambda: ind.rsi(bars, period))
        return out

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        rsi = self._rsi(bars, cache)
        lower, upper, exit_ = (float(self.params[k]) for k in ("lower", "upper", "exit"))
        short = bool(self.params["long_short"])
        return armed_regime(
            rsi < lower,
            rsi > exit_,
            ~np.isnan(rsi),
            max_hold=int(self.params["max_hold"]),
            short_entry=rsi > upper if short else None,
            short_exit=rsi < exit_ if short else None,
        )

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        return {f"rsi_{self.params['period']}": self._rsi(bars, cache)}
