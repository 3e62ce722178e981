"""Intraday: the opening-range breakout on one-minute bars, squared off the same day (product MIS).

Sessions come from the bar times in IST: a new date is a new session, the range is the bars that start
in [09:15, 09:15 + range_minutes), and nothing is carried from one session into the next. A target at
bar t depends on the bars of t's session up to t only: at most 375 one-minute bars (09:15-15:29), which
is the lookback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from apps.strategies.engine import indicators as ind
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.library_rules import cache_for, last_event
from apps.strategies.engine.params import Param, ParamSchema, Rule
from apps.strategies.engine.strategy import Array, IndicatorCache, Strategy, register

__all__ = ["OpeningRangeBreakout", "minute_of_day"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def minute_of_day(text: str) -> int | None:
    """'15:15' -> 915; None when it is not a 24-hour HH:MM time."""
    match = _HHMM.match(text.strip()) if isinstance(text, str) else None
    return int(match.group(1)) * 60 + int(match.group(2)) if match else None


def _squareoff_in_session(params: Mapping[str, Any]) -> bool:
    minute = minute_of_day(str(params["squareoff"]))
    if minute is None:
        return True  # the format rule reports it
    return ind.NSE_OPEN_MINUTE + int(params["range_minutes"]) < minute <= ind.NSE_CLOSE_MINUTE


@register
class OpeningRangeBreakout(Strategy):
    name = "opening_range_breakout"
    title = "Opening-range breakout (intraday)"
    description = (
        "On minute bars: after the first `range_minutes` of the session, long from a close above the range's high, "
        "short (long_short) or flat from a close below its low; flat from `squareoff` to the end of the session."
    )
    intervals = ("minute",)
    intraday = True
    schema = ParamSchema(
        Param("range_minutes", int, 15, minimum=1, maximum=360, help="minutes from 09:15 IST that make the range"),
        Param("squareoff", str, "15:15", help="IST time (HH:MM) from which the target is flat for the day"),
        Param("long_short", bool, False, help="short from a close below the range (else flat)"),
        rules=(
            Rule(
                ("squareoff",),
                lambda p: minute_of_day(p["squareoff"]) is not None,
                "squareoff must be a time as HH:MM (24-hour, IST), got {squareoff!r}",
            ),
            Rule(
                ("squareoff", "range_minutes"),
                _squareoff_in_session,
                "squareoff ({squareoff}) must fall after the opening range (09:15 + {range_minutes} minutes) "
                "and no later than the 15:30 close",
            ),
        ),
    )

    def warmup(self) -> int:
        return 0

    def lookback(self) -> int:
        return ind.SESSION_MINUTES  # every bar of t's session up to t

    def _range(self, c: IndicatorCache) -> tuple[Array, Array]:
        minutes = int(self.params["range_minutes"])
        out: tuple[Array, Array] = c.get(
            ("opening_range", "high/low", minutes), lambda: ind.opening_range(c.bars, minutes)
        )
        return out

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        high, low = self._range(cache_for(bars, cache))
        day, minute = ind.session_clock(bars.times)
        squareoff = minute_of_day(str(self.params["squareoff"]))
        if squareoff is None:  # the schema refuses it; never guess a time
            raise ValueError(f"squareoff: not a time, {self.params['squareoff']!r}")
        # Trading bars: after the range, and ending (start + 1 minute) before the square-off time.
        active = ((minute >= ind.NSE_OPEN_MINUTE + int(self.params["range_minutes"])) & (minute + 1 < squareoff))[
            :, None
        ]
        start = ind.session_starts(day)[:, None]
        close = bars.close
        last_up = last_event(active & (close > high))
        last_down = last_event(active & (close < low))
        up = (last_up >= start) & (last_up > last_down)
        down = (last_down >= start) & (last_down > last_up)
        out = up.astype(np.float64)
        if self.params["long_short"]:
            out -= down
        out = np.where(active, out, 0.0)
        out[~bars.valid()] = np.nan
        return out

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        high, low = self._range(cache_for(bars, cache))
        return {"range_high": high, "range_low": low}
