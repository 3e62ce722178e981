"""Kite historical-data rules as pure computation: request planning and candle records.

Kite refuses a historical request whose range is longer than a per-interval
maximum (InputException "interval exceeds max limit"), so a long range is split
into consecutive chunks of at most that many calendar days, both ends
included. A chunk is asked for from 00:00:00 of its first day to 23:59:59 of
its last (IST wall-clock, which is how Kite reads a naive time), so the span is
always strictly under the limit, whichever way Kite counts it. No Django import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from apps.marketdata.candle_csv import CandleRow

IST = ZoneInfo("Asia/Kolkata")
PRICE_QUANTUM = Decimal("0.0001")  # the Candle table's decimal places

# Kite's maximum range per historical request, in days, by interval.
MAX_DAYS_PER_REQUEST: Mapping[str, int] = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}


class CandleDataError(ValueError):
    """A candle record from Kite that cannot be stored as it is."""


@dataclass(frozen=True, order=True)
class Chunk:
    """One historical request: calendar days `start`..`end`, both included."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def key(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    def request_bounds(self) -> tuple[datetime, datetime]:
        """Naive IST wall-clock bounds, as the kiteconnect client formats them ("%Y-%m-%d %H:%M:%S")."""
        return datetime.combine(self.start, time.min), datetime.combine(self.end, time(23, 59, 59))

    def aware_bounds(self) -> tuple[datetime, datetime]:
        start, end = self.request_bounds()
        return start.replace(tzinfo=IST), end.replace(tzinfo=IST)


def max_days(interval: str) -> int:
    try:
        return MAX_DAYS_PER_REQUEST[interval]
    except KeyError:
        known = ", ".join(MAX_DAYS_PER_REQUEST)
        raise ValueError(f"unknown Kite interval {interval!r}; expected one of: {known}") from None


def plan_chunks(start: date, end: date, interval: str) -> list[Chunk]:
    """Consecutive chunks covering start..end (inclusive), each within Kite's limit for `interval`."""
    if end < start:
        raise ValueError(f"empty range: {start.isoformat()} is after {end.isoformat()}")
    step = timedelta(days=max_days(interval) - 1)
    chunks = []
    cursor = start
    while cursor <= end:
        last = min(cursor + step, end)
        chunks.append(Chunk(cursor, last))
        cursor = last + timedelta(days=1)
    return chunks


# One historical bar is the same record a CSV line is.
Bar = CandleRow


def _price(value: Any, name: str, where: str) -> Decimal:
    try:
        price = Decimal(str(value)).quantize(PRICE_QUANTUM)
    except (InvalidOperation, ValueError):
        raise CandleDataError(f"{where}: {name} {value!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise CandleDataError(f"{where}: {name} {value!r} is not a price")
    return price


def bar_from_kite(record: Mapping[str, Any]) -> Bar:
    """A record of `KiteConnect.historical_data` (date, open, high, low, close, volume[, oi]) as a checked Bar."""
    moment = record.get("date")
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise CandleDataError(f"candle {record!r}: date is not a timezone-aware datetime")
    where = f"candle at {moment.isoformat()}"
    o, h = _price(record.get("open"), "open", where), _price(record.get("high"), "high", where)
    low, c = _price(record.get("low"), "low", where), _price(record.get("close"), "close", where)
    if not low <= min(o, c) <= max(o, c) <= h:
        raise CandleDataError(f"{where}: inconsistent OHLC {o}/{h}/{low}/{c}")
    volume, oi = record.get("volume", 0), record.get("oi", 0) or 0
    if not isinstance(volume, int) or volume < 0 or not isinstance(oi, int) or oi < 0:
        raise CandleDataError(f"{where}: volume {volume!r} / oi {oi!r} must be non-negative integers")
    return Bar(time=moment, open=o, high=h, low=low, close=c, volume=volume, oi=oi)


def bars_from_kite(records: list[Mapping[str, Any]]) -> list[Bar]:
    """Checked bars, one per start time (the last wins if Kite repeats one), in time order."""
    by_time = {bar.time: bar for bar in map(bar_from_kite, records)}
    return [by_time[t] for t in sorted(by_time)]
