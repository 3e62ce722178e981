"""Candle coverage for operators: what is stored per series and how many bars the calendar says are missing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from apps.marketdata.calendar_db import trading_calendar
from apps.marketdata.models import Candle, Interval
from apps.marketdata.selectors import candle_coverage

SESSION_MINUTES = 375
INTERVAL_MINUTES = {
    Interval.MINUTE: 1,
    Interval.MINUTE_3: 3,
    Interval.MINUTE_5: 5,
    Interval.MINUTE_10: 10,
    Interval.MINUTE_15: 15,
    Interval.MINUTE_30: 30,
    Interval.MINUTE_60: 60,
}


def trading_days_between(first: date, last: date) -> int:
    """NSE days with a regular session from first to last inclusive."""
    calendar = trading_calendar()
    return sum(1 for n in range((last - first).days + 1) if calendar.has_regular_session(first + timedelta(days=n)))


def expected_bars(interval: str, first: date, last: date) -> int:
    days = trading_days_between(first, last)
    if interval == Interval.DAY:
        return days
    step = INTERVAL_MINUTES[Interval(interval)]
    return days * -(-SESSION_MINUTES // step)


def coverage_rows(*, instrument_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    sources: dict[tuple[int, str], list[str]] = defaultdict(list)
    qs = Candle.objects.all() if instrument_ids is None else Candle.objects.filter(instrument_id__in=instrument_ids)
    for counted in qs.values("instrument_id", "interval", "source").annotate(n=Count("id")).order_by("source"):
        sources[(counted["instrument_id"], counted["interval"])].append(f"{counted['source']} ({counted['n']})")
    rows = []
    for row in candle_coverage(instrument_ids=instrument_ids):
        first, last = timezone.localtime(row["first"]), timezone.localtime(row["last"])
        expected = expected_bars(row["interval"], first.date(), last.date())
        rows.append(
            {
                "symbol": row["instrument__tradingsymbol"],
                "interval": row["interval"],
                "first": first,
                "last": last,
                "count": row["count"],
                "expected": expected,
                "missing": max(expected - row["count"], 0),
                "sources": ", ".join(sources[(row["instrument_id"], row["interval"])]),
            }
        )
    return rows
