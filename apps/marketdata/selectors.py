"""Reads of market data: instruments, universes, candles, aligned arrays for risk and backtests, coverage.

`aligned_bars` is what the VaR engine and the backtester read: one float64
array per field shaped (time, symbol), NaN where a symbol has no bar. On
PostgreSQL each instrument's series comes back as packed binary (int8send /
float8send aggregated per instrument), so 50 symbols x 1000 bars cost one
query and a few numpy copies instead of 250,000 Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone
from numpy.typing import NDArray

from apps.marketdata import events
from apps.marketdata.calendar_db import instrument_profile, trading_calendar
from apps.marketdata.models import Candle, Instrument, Interval, Universe
from tradingsite.exceptions import NotFound
from tradingsite.redis_client import get_redis

__all__ = [
    "AlignedBars",
    "aligned_bars",
    "candle_coverage",
    "candle_range",
    "instrument_get",
    "instrument_list",
    "instrument_profile",
    "interval_names",
    "latest_prices",
    "trading_calendar",
    "universe_get",
    "universe_members",
]

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
PRICE_SCALE = 10_000  # NUMERIC(14, 4) times this is an exact integer
POSTGRES_EPOCH_MICROS = 946_684_800_000_000  # timestamptz_send counts microseconds from 2000-01-01 UTC


def _packed_series_sql(fields: Sequence[str]) -> str:
    """One row per instrument: its bar times and each field as packed big-endian int8.

    Cheap on purpose: `timestamptz_send` is the stored integer itself, and a price scaled to an
    integer converts much faster than NUMERIC -> float8 (which PostgreSQL does through text).
    No ORDER BY inside the aggregates (it sorts every group again): every aggregate of a group
    reads the rows in the same order, so times and values stay paired, and numpy aligns by time.
    """
    packed = [
        f"string_agg(int8send({f}), ''::bytea)"
        if f == "volume"
        else f"string_agg(int8send(({f} * {PRICE_SCALE})::int8), ''::bytea)"
        for f in fields
    ]
    # Constant field and table names only; the values are query parameters.
    return (
        f"SELECT instrument_id, string_agg(timestamptz_send(time), ''::bytea), {', '.join(packed)} "  # noqa: S608
        f"FROM {Candle._meta.db_table} WHERE instrument_id = ANY(%s) AND interval = %s "
        "AND time >= %s AND time <= %s GROUP BY instrument_id"
    )


@dataclass(frozen=True)
class AlignedBars:
    """`data[field]` is (len(times), len(symbols)) float64, NaN where a symbol has no bar at that time."""

    interval: str
    times: NDArray[np.datetime64]  # UTC, microseconds
    symbols: list[str]
    data: dict[str, NDArray[np.float64]]

    def __getitem__(self, field: str) -> NDArray[np.float64]:
        return self.data[field]


def instrument_list(
    *, exchange: str | None = None, search: str | None = None, universe: str | None = None
) -> QuerySet[Instrument]:
    qs = Instrument.objects.all()
    if exchange:
        qs = qs.filter(exchange=exchange.upper())
    if search:
        qs = qs.filter(Q(tradingsymbol__icontains=search) | Q(name__icontains=search))
    if universe:
        qs = qs.filter(memberships__universe__name=universe).distinct()
    return qs.order_by("exchange", "tradingsymbol")


def instrument_get(*, symbol: str, exchange: str = "NSE") -> Instrument:
    try:
        return Instrument.objects.get(exchange=exchange.upper(), tradingsymbol=symbol.upper())
    except Instrument.DoesNotExist:
        raise NotFound(f"no instrument {exchange.upper()}:{symbol.upper()}", code="unknown_instrument") from None


def interval_names() -> tuple[str, ...]:
    """Kite's candle intervals, shortest first ("minute", ..., "day")."""
    return tuple(Interval.values)


def universe_get(*, name: str) -> Universe:
    row = Universe.objects.filter(name=name).first()
    if row is None:
        raise NotFound(f"no universe named {name!r}", code="unknown_universe")
    return row


def universe_members(*, universe: str, on: date | None = None) -> list[Instrument]:
    """The universe's instruments on a date (today by default), by dated membership."""
    if not Universe.objects.filter(name=universe).exists():
        raise NotFound(f"no universe named {universe!r}", code="unknown_universe")
    day = on or timezone.localdate()
    live = Q(memberships__universe__name=universe, memberships__start_date__lte=day) & (
        Q(memberships__end_date__isnull=True) | Q(memberships__end_date__gte=day)
    )
    return list(Instrument.objects.filter(live).distinct().order_by("tradingsymbol"))


def candle_range(
    *, instrument: Instrument, interval: str, start: datetime | None = None, end: datetime | None = None
) -> QuerySet[Candle]:
    """Bars of one series with `start <= time <= end`, oldest first (the unique index serves it)."""
    qs = Candle.objects.filter(instrument=instrument, interval=interval)
    if start is not None:
        qs = qs.filter(time__gte=start)
    if end is not None:
        qs = qs.filter(time__lte=end)
    return qs.order_by("time")


def _series_postgres(
    ids: list[int], interval: str, start: datetime, end: datetime, fields: Sequence[str]
) -> dict[int, tuple[NDArray[np.int64], list[NDArray[np.float64]]]]:
    with connection.cursor() as cursor:
        cursor.execute(_packed_series_sql(fields), [ids, interval, start, end])
        rows = cursor.fetchall()
    scales = [1.0 if f == "volume" else float(PRICE_SCALE) for f in fields]
    return {
        row[0]: (
            np.frombuffer(row[1], ">i8").astype(np.int64) + POSTGRES_EPOCH_MICROS,
            [np.frombuffer(b, ">i8").astype(np.float64) / scale for b, scale in zip(row[2:], scales, strict=True)],
        )
        for row in rows
    }


def _series_generic(
    ids: list[int], interval: str, start: datetime, end: datetime, fields: Sequence[str]
) -> dict[int, tuple[NDArray[np.int64], list[NDArray[np.float64]]]]:
    rows = (
        Candle.objects.filter(instrument_id__in=ids, interval=interval, time__gte=start, time__lte=end)
        .order_by("instrument_id", "time")
        .values_list("instrument_id", "time", *fields)
    )
    grouped: dict[int, list[tuple[datetime, list[float]]]] = {}
    for iid, at, *values in rows:
        grouped.setdefault(iid, []).append((at, [float(v) for v in values]))
    out = {}
    for iid, series in grouped.items():
        micros = np.array([int(at.timestamp() * 1_000_000) for at, _ in series], dtype=np.int64)
        columns = np.array([values for _, values in series], dtype=np.float64)
        out[iid] = (micros, [columns[:, k] for k in range(len(fields))])
    return out


def aligned_bars(
    *,
    instruments: Sequence[Instrument],
    interval: str,
    start: datetime,
    end: datetime,
    fields: Sequence[str] = PRICE_FIELDS,
) -> AlignedBars:
    """Bars of many instruments on the union of their times: (time, symbol) arrays per field.

    Ask only for the fields you need (VaR reads `("close",)`): each one is a conversion per bar.
    """
    unknown = set(fields) - set(PRICE_FIELDS)
    if unknown or not fields:
        raise ValueError(f"fields must be a non-empty subset of {PRICE_FIELDS}, got {tuple(fields)}")
    ids = [i.pk for i in instruments]
    fetch = _series_postgres if connection.vendor == "postgresql" else _series_generic
    series = fetch(ids, interval, start, end, fields) if ids else {}
    times = np.unique(np.concatenate([s[0] for s in series.values()])) if series else np.empty(0, np.int64)
    data = {f: np.full((len(times), len(ids)), np.nan) for f in fields}
    for j, iid in enumerate(ids):
        if iid not in series:
            continue
        micros, columns = series[iid]
        rows = np.searchsorted(times, micros)
        for f, column in zip(fields, columns, strict=True):
            data[f][rows, j] = column
    return AlignedBars(interval, times.astype("datetime64[us]"), [i.tradingsymbol for i in instruments], data)


def candle_coverage(*, instrument_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Per instrument and interval: first and last bar time and the number of bars."""
    qs = Candle.objects.all()
    if instrument_ids is not None:
        qs = qs.filter(instrument_id__in=instrument_ids)
    rows = (
        qs.values("instrument_id", "instrument__tradingsymbol", "interval")
        .annotate(first=Min("time"), last=Max("time"), count=Count("id"))
        .order_by("instrument__tradingsymbol", "interval")
    )
    return [dict(row) for row in rows]


def latest_prices(*, keys: Sequence[str] | None = None) -> dict[str, events.LatestPrice]:
    """Latest price per "EXCHANGE:SYMBOL" as the feeds left it in Redis; only the named keys when given."""
    if keys:
        return events.latest_prices_for(get_redis(), sorted({k.upper() for k in keys}))
    return events.latest_prices(get_redis())
