"""`seed_demo`: the NIFTY 50 universe and synthetic candles, so a machine with no internet has data.

Synthetic rows are marked `source=synthetic` and never written into a series
that already holds real data (CSV import, Kite, ticker) for that instrument and
interval: demo data must never be mistaken for the market.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from django.db import transaction
from django.utils import timezone

from apps.marketdata import synthetic
from apps.marketdata.calendar_db import trading_calendar
from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource, Universe, UniverseMembership
from apps.marketdata.nifty50 import CONSTITUENTS, UNIVERSE_NAME

IST = ZoneInfo("Asia/Kolkata")
MEMBERSHIP_START = date(2020, 10, 1)  # the start of the shared daily data
DEFAULT_SEED = 20_240_604
BATCH = 5000


@dataclass
class DemoResult:
    instruments_created: int = 0
    memberships_created: int = 0
    daily_rows: int = 0
    minute_rows: int = 0
    skipped_real: list[str] = field(default_factory=list)
    already_seeded: bool = False


def nifty50_universe_ensure() -> tuple[Universe, int, int]:
    """The NIFTY 50 universe with one membership per constituent; returns (universe, new instruments, new members)."""
    universe, _ = Universe.objects.get_or_create(
        name=UNIVERSE_NAME, defaults={"description": "NIFTY 50 constituents (late-2025 list)."}
    )
    created_instruments = created_members = 0
    for c in CONSTITUENTS:
        instrument, made = Instrument.objects.get_or_create(
            exchange="NSE",
            tradingsymbol=c.symbol,
            defaults={
                "name": c.name,
                "provisional": True,
                "source": SeriesSource.SYNTHETIC,
                "has_derivatives": True,
            },
        )
        created_instruments += made
        _, joined = UniverseMembership.objects.get_or_create(
            universe=universe, instrument=instrument, start_date=MEMBERSHIP_START
        )
        created_members += joined
    return universe, created_instruments, created_members


def regular_sessions(end: date, count: int) -> list[date]:
    """The last `count` NSE days with a regular session up to `end` (special sessions are too short to demo)."""
    calendar = trading_calendar()
    days: list[date] = []
    d = end
    while len(days) < count:
        if calendar.has_regular_session(d):
            days.append(d)
        d -= timedelta(days=1)
    return sorted(days)


def _rows(instruments: list[Instrument], times: list[datetime], bars: synthetic.Bars, interval: str) -> list[Candle]:
    rows = []
    for j, instrument in enumerate(instruments):
        for i, at in enumerate(times):
            rows.append(
                Candle(
                    instrument=instrument,
                    interval=interval,
                    time=at,
                    open=Decimal(f"{bars.open[i, j]:.2f}"),
                    high=Decimal(f"{bars.high[i, j]:.2f}"),
                    low=Decimal(f"{bars.low[i, j]:.2f}"),
                    close=Decimal(f"{bars.close[i, j]:.2f}"),
                    volume=int(bars.volume[i, j]),
                    source=SeriesSource.SYNTHETIC,
                )
            )
    return rows


def _daily_from_minutes(minutes: synthetic.Bars, n_days: int) -> synthetic.Bars:
    """Each session's daily bar is exactly the aggregate of its minute bars."""
    shape = (n_days, synthetic.SESSION_MINUTES, -1)
    o, h, lo, c = (a.reshape(shape) for a in (minutes.open, minutes.high, minutes.low, minutes.close))
    v = minutes.volume.reshape(shape)
    return synthetic.Bars(o[:, 0], h.max(axis=1), lo.min(axis=1), c[:, -1], v.sum(axis=1))


def _stack(a: synthetic.Bars, b: synthetic.Bars) -> synthetic.Bars:
    return synthetic.Bars(
        *(
            np.vstack([x, y])
            for x, y in zip(
                (a.open, a.high, a.low, a.close, a.volume), (b.open, b.high, b.low, b.close, b.volume), strict=True
            )
        )
    )


def _has_real(instrument: Instrument) -> bool:
    return Candle.objects.filter(instrument=instrument).exclude(source=SeriesSource.SYNTHETIC).exists()


@transaction.atomic
def demo_seed(
    *,
    seed: int = DEFAULT_SEED,
    daily_days: int = 300,  # a year of returns for VaR (250) and some left over
    minute_days: int = 3,
    end: date | None = None,
    reset: bool = False,
) -> DemoResult:
    """Create the universe and, unless already there, synthetic daily and minute candles ending on `end`."""
    if minute_days < 1 or daily_days <= minute_days:
        raise ValueError("need minute_days >= 1 and daily_days > minute_days")
    result = DemoResult()
    universe, result.instruments_created, result.memberships_created = nifty50_universe_ensure()
    if reset:
        Candle.objects.filter(source=SeriesSource.SYNTHETIC).delete()
    elif Candle.objects.filter(source=SeriesSource.SYNTHETIC).exists():
        result.already_seeded = True
        return result
    by_symbol = {i.tradingsymbol: i for i in universe.instruments.all()}
    chosen = [c for c in CONSTITUENTS if not _has_real(by_symbol[c.symbol])]
    result.skipped_real = [c.symbol for c in CONSTITUENTS if c not in chosen]
    if not chosen:
        return result
    end = end or (timezone.localdate(timezone.now(), IST) - timedelta(days=1))
    days = regular_sessions(end, daily_days)
    sectors = [c.sector for c in chosen]
    history = synthetic.daily_bars(
        seed=seed,
        n_days=daily_days - minute_days,
        start_prices=[float(c.reference_price) for c in chosen],
        sectors=sectors,
    )
    minutes = synthetic.minute_bars(
        seed=seed + 1, n_days=minute_days, start_prices=list(history.close[-1]), sectors=sectors
    )
    daily = _stack(history, _daily_from_minutes(minutes, minute_days))
    instruments = [by_symbol[c.symbol] for c in chosen]
    day_times = [datetime.combine(d, time(0, 0), IST) for d in days]
    minute_times = [
        datetime.combine(d, time(9, 15), IST) + timedelta(minutes=m)
        for d in days[-minute_days:]
        for m in range(synthetic.SESSION_MINUTES)
    ]
    daily_rows = _rows(instruments, day_times, daily, Interval.DAY)
    minute_rows = _rows(instruments, minute_times, minutes, Interval.MINUTE)
    Candle.objects.bulk_create(daily_rows, batch_size=BATCH)
    Candle.objects.bulk_create(minute_rows, batch_size=BATCH)
    result.daily_rows, result.minute_rows = len(daily_rows), len(minute_rows)
    return result
