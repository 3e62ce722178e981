"""Candle load: 50 symbols x 1000 daily bars from PostgreSQL into aligned (time, symbol) numpy arrays.

Why: every VaR run and every backtest starts with this read, so it must cost
close to moving the bytes, not to building Python objects. Three series on
the same rows, measured in turns in one run:

- COPY TO STDOUT (floor): the same rows and columns, as stored, streamed as
  binary by the server into a buffer and parsed by nothing: the least any
  reader can pay;
- aligned_bars: the project's selector (packed float8/int8 per instrument,
  aligned with numpy), all five fields;
- ORM values_list: what a plain Django reader does (Decimals, datetimes, then
  numpy), all five fields.

The goal from the market-data issue: aligned_bars at most 50 ms.
"""

from __future__ import annotations

import io
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2  # type: ignore[import-untyped]

from benchmarks._pg import close_django, configure_environment, ensure_database, execute, server_url, with_database
from benchmarks._stack import redacted
from benchmarks.stats import Report, ratio

BENCH_DATABASE = "trading_bench_load"
SYMBOLS = 50
BARS = 1000
REPEATS = 25
GOAL_MS = 50.0
IST = ZoneInfo("Asia/Kolkata")

FLOOR = "COPY TO STDOUT, binary (floor)"
OURS = "aligned_bars"
ORM = "ORM values_list -> numpy"


def run() -> Report:
    server = server_url()
    try:
        admin = ensure_database(server)
        execute(admin, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)", f"CREATE DATABASE {BENCH_DATABASE}")
    except psycopg2.OperationalError as exc:
        reason = f"PostgreSQL unreachable at {redacted(server)}: {str(exc).strip().splitlines()[0]}"
        print(f"candle_load: skipped, {reason}", file=sys.stderr)
        return Report(title=f"candle_load: skipped ({reason})", headers=["series"], rows=[], data={"skipped": reason})
    var_dir = Path(tempfile.mkdtemp(prefix="candle_load-"))
    try:
        configure_environment(with_database(server, BENCH_DATABASE), var_dir)
        instruments, start, end = _seed()
        timings = _measure(instruments, start, end)
        version = _server_version()
    finally:
        close_django()
        execute(admin, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        shutil.rmtree(var_dir, ignore_errors=True)
    return _report(timings, server=redacted(server), version=version)


def _seed() -> tuple[list[Any], datetime, datetime]:
    """50 instruments with 1000 consecutive weekday bars each, from the synthetic model."""
    from apps.marketdata import synthetic
    from apps.marketdata.demo import _rows
    from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource
    from apps.marketdata.nifty50 import CONSTITUENTS

    chosen = CONSTITUENTS[:SYMBOLS]
    instruments = [
        Instrument.objects.create(tradingsymbol=c.symbol, name=c.name, source=SeriesSource.SYNTHETIC) for c in chosen
    ]
    days: list[date] = []
    d = date(2020, 1, 1)
    while len(days) < BARS:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    bars = synthetic.daily_bars(
        seed=1, n_days=BARS, start_prices=[float(c.reference_price) for c in chosen], sectors=[c.sector for c in chosen]
    )
    times = [datetime(x.year, x.month, x.day, tzinfo=IST) for x in days]
    Candle.objects.bulk_create(_rows(instruments, times, bars, Interval.DAY), batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return instruments, times[0], times[-1]


def _floor(instruments: list[Any], start: datetime, end: datetime) -> int:
    from django.db import connection

    from apps.marketdata.models import Candle

    ids = ",".join(str(i.pk) for i in instruments)
    sql = (
        f"COPY (SELECT instrument_id, time, open, high, low, close, volume FROM {Candle._meta.db_table} "  # noqa: S608
        f"WHERE instrument_id IN ({ids}) AND interval = 'day' "
        f"AND time >= '{start.isoformat()}' AND time <= '{end.isoformat()}') TO STDOUT WITH (FORMAT binary)"
    )
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(sql, buffer)
    return buffer.tell()


def _ours(instruments: list[Any], start: datetime, end: datetime) -> int:
    from apps.marketdata.selectors import aligned_bars

    bars = aligned_bars(instruments=instruments, interval="day", start=start, end=end)
    assert bars["close"].shape == (BARS, SYMBOLS), bars["close"].shape
    return int(bars["close"].size)


def _orm(instruments: list[Any], start: datetime, end: datetime) -> int:
    import numpy as np

    from apps.marketdata.models import Candle

    rows = Candle.objects.filter(
        instrument__in=instruments, interval="day", time__gte=start, time__lte=end
    ).values_list("instrument_id", "time", "open", "high", "low", "close", "volume")
    times = sorted({r[1] for r in rows})
    col = {iid: j for j, iid in enumerate(i.pk for i in instruments)}
    row_of = {t: k for k, t in enumerate(times)}
    out = np.full((5, len(times), len(instruments)), np.nan)
    for iid, t, *values in rows:
        out[:, row_of[t], col[iid]] = np.asarray(values, dtype=np.float64)
    return int(out[3].size)


def _measure(instruments: list[Any], start: datetime, end: datetime) -> dict[str, list[float]]:
    series: list[tuple[str, Callable[[list[Any], datetime, datetime], int]]] = [
        (FLOOR, _floor),
        (OURS, _ours),
        (ORM, _orm),
    ]
    timings: dict[str, list[float]] = {label: [] for label, _ in series}
    for _label, fn in series:  # warm the connection, plans and caches
        fn(instruments, start, end)
    for round_ in range(REPEATS):
        shift = round_ % len(series)
        for label, fn in series[shift:] + series[:shift]:
            started = time.perf_counter()
            fn(instruments, start, end)
            timings[label].append((time.perf_counter() - started) * 1000)
    return timings


def _server_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0]).split()[0]


def _report(timings: dict[str, list[float]], *, server: str, version: str) -> Report:
    median = {label: statistics.median(ms) for label, ms in timings.items()}
    best = {label: min(ms) for label, ms in timings.items()}
    rows: list[list[object]] = []
    for label in (FLOOR, OURS, ORM):
        vs_floor = ratio(median[label], median[FLOOR])
        rows.append([label, f"{median[label]:.1f}", f"{best[label]:.1f}", f"{vs_floor:.1f}x" if vs_floor else "-"])
    ours_ms = median[OURS]
    verdict = "met" if ours_ms <= GOAL_MS else "missed"
    return Report(
        title=(
            f"candle_load: {SYMBOLS} symbols x {BARS} daily bars into aligned numpy arrays, PostgreSQL {version}, "
            f"median of {REPEATS} (goal aligned_bars <= {GOAL_MS:.0f} ms: {verdict} at {ours_ms:.1f} ms; "
            f"ORM path {median[ORM] / ours_ms:.1f}x slower)"
        ),
        headers=["series", "median ms", "best ms", "vs floor"],
        rows=rows,
        data={
            "config": {"symbols": SYMBOLS, "bars": BARS, "repeats": REPEATS, "server": server},
            "milliseconds": {label: [round(v, 3) for v in ms] for label, ms in timings.items()},
            "median_ms": {label: round(v, 3) for label, v in median.items()},
            "ratios": {
                "aligned_bars_vs_floor": round(ours_ms / median[FLOOR], 2),
                "orm_vs_aligned_bars": round(median[ORM] / ours_ms, 2),
            },
            "goal_ms": GOAL_MS,
        },
        machine={"postgresql": version},
    )
