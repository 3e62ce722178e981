"""The Django side of the NSE calendar: the operators' CalendarDay rows, and instruments' profiles.

- `trading_calendar(exchange="NSE") -> NSECalendar`: the calendar of the CalendarDay rows (the
  shipped CSV loaded by migration 0002, plus whatever operators edited in the admin since).
- `instrument_profile(instrument, on=None) -> InstrumentProfile`: what the calendar needs to know
  about an Instrument row, chiefly whether it has listed derivatives (which puts it in the closing
  auction from 2026-08-03).

Caching: the calendar is built once per process and kept until (a) a CalendarDay row is saved or
deleted in this process (signals), or (b) REFRESH_SECONDS have passed, which is how an admin edit
made in another process (the web server) reaches the ticker and the workers. A calendar read
inside a transaction is never cached: it may include rows that are later rolled back.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.marketdata.calendar import IST, CalendarEntry, DayKind, InstrumentProfile, NSECalendar
from apps.marketdata.models import CalendarDay, Instrument, UniverseMembership
from apps.marketdata.nifty50 import UNIVERSE_NAME as NIFTY_50_UNIVERSE

REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class _Cached:
    calendar: NSECalendar
    generation: int
    loaded_at: float


_lock = threading.Lock()
_cache: dict[str, _Cached] = {}
_generation = 0


def trading_calendar(exchange: str = "NSE") -> NSECalendar:
    """The exchange's calendar from CalendarDay rows, cached per process (see the module docstring)."""
    with _lock:
        cached, generation = _cache.get(exchange), _generation
    now = time.monotonic()
    if cached is not None and cached.generation == generation and now - cached.loaded_at < REFRESH_SECONDS:
        return cached.calendar
    calendar = NSECalendar(_entries(exchange), exchange=exchange)
    if not transaction.get_connection().in_atomic_block:
        with _lock:
            if _generation == generation:
                _cache[exchange] = _Cached(calendar, generation, now)
    return calendar


def calendar_cache_clear() -> None:
    """Forget every cached calendar in this process; the next `trading_calendar()` reads the rows again."""
    global _generation  # noqa: PLW0603 - one process-wide cache generation
    with _lock:
        _generation += 1
        _cache.clear()


@receiver(post_save, sender=CalendarDay, dispatch_uid="marketdata.calendar_db.saved")
@receiver(post_delete, sender=CalendarDay, dispatch_uid="marketdata.calendar_db.deleted")
def _calendar_day_changed(**kwargs: Any) -> None:
    calendar_cache_clear()


def _entries(exchange: str) -> list[CalendarEntry]:
    entries = []
    for row in CalendarDay.objects.filter(exchange=exchange).order_by("date"):
        try:
            entries.append(
                CalendarEntry(
                    date=row.date,
                    kind=DayKind(row.kind),
                    description=row.description,
                    open_time=row.open_time,
                    close_time=row.close_time,
                    source=row.source,
                )
            )
        except ValueError as exc:
            raise ValueError(f"CalendarDay id={row.pk} ({row}): {exc}; fix it in the admin") from exc
    return entries


def instrument_profile(instrument: Instrument, *, on: date | None = None) -> InstrumentProfile:
    """The calendar's view of an Instrument row on the day `on` (default: today in IST).

    `Instrument.has_derivatives` says whether it has listed F&O; an instrument not (yet) flagged
    that is in the NIFTY 50 on that day has them too (every NIFTY 50 stock does), so a CSV-created
    or provisional NIFTY 50 instrument still closes in the auction.
    """
    day = on or datetime.now(IST).date()
    has_derivatives = instrument.has_derivatives or _in_nifty_50(instrument, day)
    return InstrumentProfile(
        tradingsymbol=instrument.tradingsymbol,
        exchange=instrument.exchange,
        tick_size=Decimal(instrument.tick_size),
        has_derivatives=has_derivatives,
    )


def _in_nifty_50(instrument: Instrument, on: date) -> bool:
    return (
        UniverseMembership.objects.filter(universe__name=NIFTY_50_UNIVERSE, instrument=instrument, start_date__lte=on)
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=on))
        .exists()
    )
