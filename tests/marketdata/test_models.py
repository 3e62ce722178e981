"""Model-level rules of market data that the database or the admin enforce."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.marketdata.models import CalendarDay, Candle, Instrument, Interval, SeriesSource

pytestmark = pytest.mark.django_db


def test_a_special_session_needs_both_times_and_a_closure_neither() -> None:
    with pytest.raises(ValidationError, match="needs both"):
        CalendarDay(date=date(2030, 1, 5), kind=CalendarDay.Kind.SPECIAL_SESSION, open_time=time(9, 15)).clean()
    with pytest.raises(ValidationError, match="no session times"):
        CalendarDay(date=date(2030, 1, 7), kind=CalendarDay.Kind.CLOSED, close_time=time(15, 30)).clean()
    CalendarDay(date=date(2030, 1, 7), kind=CalendarDay.Kind.CLOSED).clean()


@pytest.mark.parametrize(
    ("o", "h", "lo", "c", "v"),
    [("10", "9", "8", "9", 1), ("11", "10", "8", "9", 1), ("9", "10", "8", "7", 1), ("9", "10", "8", "9", -1)],
    ids=["high-below-open", "open-above-high", "close-below-low", "negative-volume"],
)
def test_the_database_refuses_inconsistent_bars(o: str, h: str, lo: str, c: str, v: int) -> None:
    inst = Instrument.objects.create(tradingsymbol="X")
    with pytest.raises(IntegrityError), transaction.atomic():
        Candle.objects.create(
            instrument=inst,
            interval=Interval.DAY,
            time=datetime(2024, 1, 1, tzinfo=ZoneInfo("Asia/Kolkata")),
            open=Decimal(o),
            high=Decimal(h),
            low=Decimal(lo),
            close=Decimal(c),
            volume=v,
            source=SeriesSource.CSV,
        )


def test_one_bar_per_instrument_interval_and_time() -> None:
    inst = Instrument.objects.create(tradingsymbol="X")
    at = datetime(2024, 1, 1, tzinfo=ZoneInfo("Asia/Kolkata"))
    fields = {"open": 1, "high": 1, "low": 1, "close": 1, "source": SeriesSource.CSV}
    Candle.objects.create(instrument=inst, interval=Interval.DAY, time=at, **fields)
    Candle.objects.create(instrument=inst, interval=Interval.MINUTE, time=at, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Candle.objects.create(instrument=inst, interval=Interval.DAY, time=at, **fields)
