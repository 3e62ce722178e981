"""The replay feed: stored candles republished as if live, through the same bar events as the ticker.

Bars go out one time step at a time (all instruments of that minute
together), `speed` times faster than real time (60: a market minute per
second; 0: as fast as Redis takes them). Each step is published in one
pipeline, so a consumer never sees half a minute's bars of a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from apps.marketdata.events import BarEvent, publish_bars
from apps.marketdata.models import Candle, Instrument
from tradingsite.redis_client import get_redis

INTERVAL_SECONDS = {
    "minute": 60,
    "3minute": 180,
    "5minute": 300,
    "10minute": 600,
    "15minute": 900,
    "30minute": 1800,
    "60minute": 3600,
    "day": 86400,
}


@dataclass
class ReplayResult:
    steps: int = 0
    bars: int = 0
    first: datetime | None = None
    last: datetime | None = None


def _bar_steps(
    instruments: list[Instrument], interval: str, start: datetime, end: datetime
) -> Iterator[tuple[datetime, list[BarEvent]]]:
    by_id = {i.pk: i for i in instruments}
    rows = (
        Candle.objects.filter(instrument_id__in=by_id, interval=interval, time__gte=start, time__lte=end)
        .order_by("time", "instrument_id")
        .values_list("instrument_id", "time", "open", "high", "low", "close", "volume")
        .iterator(chunk_size=5000)
    )
    for at, group in groupby(rows, key=lambda r: r[1]):
        yield (
            at,
            [
                BarEvent(
                    exchange=by_id[iid].exchange,
                    symbol=by_id[iid].tradingsymbol,
                    interval=interval,
                    time=t,
                    open=o,
                    high=h,
                    low=lo,
                    close=c,
                    volume=v,
                    source="replay",
                    token=by_id[iid].instrument_token,
                )
                for iid, t, o, h, lo, c, v in group
            ],
        )


def replay_bars(
    *,
    instruments: Iterable[Instrument],
    interval: str,
    start: datetime,
    end: datetime,
    speed: float = 60.0,
    on_step: Callable[[datetime, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Publish stored bars from `start` to `end` (inclusive) in time order; returns what was sent."""
    if speed < 0:
        raise ValueError(f"speed must be 0 (no waiting) or positive, got {speed}")
    if interval not in INTERVAL_SECONDS:
        raise ValueError(f"unknown interval {interval!r}")
    pause = INTERVAL_SECONDS[interval] / speed if speed else 0.0
    redis = get_redis()
    result = ReplayResult()
    for at, bars in _bar_steps(list(instruments), interval, start, end):
        if result.steps and pause:
            sleep(pause)
        publish_bars(redis, bars)
        result.steps += 1
        result.bars += len(bars)
        result.first = result.first or at
        result.last = at
        if on_step:
            on_step(at, len(bars))
    return result
