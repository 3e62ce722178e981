"""Candle import: `import_candles` of the NIFTY 50 daily files beside a raw COPY floor and Django's bulk_create.

Why: loading history is the first thing an operator does and the thing they
redo after every data fix, so its speed decides whether re-importing is a
habit or a chore. Each series reads all of ../shared/data/nifty50-daily (51
files, ~50k rows) and writes them one file per transaction, as the command
does:

- raw COPY: each file's bytes COPYed into a bare table with no index and no
  constraint: what PostgreSQL cannot go below;
- COPY into Candle: the same rows COPYed into the real Candle table (its
  primary key, unique bar index, CHECK and foreign key),
  no validation: the floor of the table we write to;
- import_candles, first import: `candles_import_files` (the command's
  service) into an empty database, instruments created provisionally;
- import_candles, re-import: the same again over the stored rows, all
  unchanged (the staging-table upsert path);
- bulk_create: csv.DictReader, Decimals and `Candle.objects.bulk_create`,
  what a plain Django importer would do.

Every series runs BENCH_REPEATS times (default 5) in a rotating order, on a
fresh, migrated database `trading_bench_import` created on the server of
DATABASE_URL (when it is a PostgreSQL URL) or of
postgres://postgres@127.0.0.1:5432/trading_bench, and dropped at the end; the
best run counts. When PostgreSQL cannot be reached the benchmark says so and
reports nothing rather than failing.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2  # type: ignore[import-untyped]

from benchmarks._pg import close_django, configure_environment, ensure_database, execute, server_url, with_database
from benchmarks._stack import redacted
from benchmarks.stats import Report, ratio
from tradingsite.config import BASE_DIR

BENCH_DATABASE = "trading_bench_import"
DATA_DIR = BASE_DIR.parent / "shared" / "data" / "nifty50-daily"
DEFAULT_REPEATS = 5
GOAL_VS_COPY = 0.5
GOAL_VS_BULK_CREATE = 5.0
RAW_TABLE = "bench_candle_raw"
COPY_CHUNK_BYTES = 1 << 20

RAW = "raw COPY, bare table (floor)"
TABLE = "COPY into Candle (table floor)"
OURS = "import_candles, first import"
AGAIN = "import_candles, re-import"
BULK = "bulk_create"


def run() -> Report:
    repeats = _repeats()
    if not DATA_DIR.is_dir():
        return _skipped(f"{DATA_DIR} is absent")
    server = server_url()
    try:
        admin = ensure_database(server)
        execute(admin, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)", f"CREATE DATABASE {BENCH_DATABASE}")
    except psycopg2.OperationalError as exc:
        reason = f"PostgreSQL unreachable at {redacted(server)}: {str(exc).strip().splitlines()[0]}"
        print(f"candle_import: skipped, {reason}", file=sys.stderr)
        return _skipped(reason)
    var_dir = Path(tempfile.mkdtemp(prefix="candle_import-"))
    try:
        configure_environment(with_database(server, BENCH_DATABASE), var_dir)
        files = sorted(DATA_DIR.glob("*.csv"))
        timings, rows = _measure(files, repeats)
        machine = _machine()
    finally:
        close_django()
        execute(admin, f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        shutil.rmtree(var_dir, ignore_errors=True)
    return build_report(timings, rows=rows, files=len(files), repeats=repeats, server=redacted(server), machine=machine)


# --- the database server ------------------------------------------------------------


def _repeats() -> int:
    raw = os.environ.get("BENCH_REPEATS", "").strip()
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise SystemExit(f"configuration error: BENCH_REPEATS must be an integer >= 1, got {raw!r}")
    return int(raw) if raw else DEFAULT_REPEATS


# --- the series ---------------------------------------------------------------------


def _measure(files: list[Path], repeats: int) -> tuple[dict[str, list[float]], int]:
    """Each round runs every series once, in an order rotated by one per round; each series starts from empty tables."""
    expected = sum(len(f.read_text().splitlines()) - 1 for f in files)
    groups: list[list[tuple[str, Callable[[list[Path]], None], bool]]] = [
        [(RAW, _raw_copy, True)],
        [(TABLE, _copy_into_candles, True)],
        [(OURS, _ours, True), (AGAIN, _ours, False)],
        [(BULK, _bulk_create, True)],
    ]
    timings: dict[str, list[float]] = {label: [] for group in groups for label, _, _ in group}
    for round_ in range(repeats):
        shift = round_ % len(groups)
        for group in groups[shift:] + groups[:shift]:
            for label, series, from_empty in group:
                if from_empty:
                    _reset()
                started = time.perf_counter()
                series(files)
                timings[label].append(time.perf_counter() - started)
                _check_rows(label, expected)
    _reset()
    return timings, expected


def _reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {RAW_TABLE} (time timestamptz, open numeric, high numeric, low numeric, "
            "close numeric, volume bigint, oi bigint)"
        )
        cursor.execute(f"TRUNCATE {RAW_TABLE}, marketdata_candle, marketdata_instrument CASCADE")


def _check_rows(label: str, expected: int) -> None:
    """A series that wrote fewer rows than the files hold measured something else: stop rather than report it."""
    from django.db import connection

    table = RAW_TABLE if label == RAW else "marketdata_candle"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - constant table names
        (count,) = cursor.fetchone()
    if count != expected:
        raise RuntimeError(f"{label}: {count} rows stored, the files hold {expected}")


def _raw_copy(files: list[Path]) -> None:
    from django.db import connection, transaction

    for path in files:
        with transaction.atomic(), connection.cursor() as cursor, path.open() as handle:
            sql = f"COPY {RAW_TABLE} FROM STDIN WITH (FORMAT csv, HEADER true)"
            cursor.cursor.copy_expert(sql, handle, size=COPY_CHUNK_BYTES)


def _copy_into_candles(files: list[Path]) -> None:
    from io import StringIO

    from django.db import connection, transaction

    from apps.marketdata.models import Instrument

    columns = "instrument_id, interval, time, open, high, low, close, volume, oi, source"
    for path in files:
        with transaction.atomic(), connection.cursor() as cursor:
            instrument, _ = Instrument.objects.get_or_create(tradingsymbol=path.stem, defaults={"provisional": True})
            prefix = f"{instrument.pk},day,"
            text = "".join(prefix + line + ",csv\n" for line in path.read_text().splitlines()[1:])
            sql = f"COPY marketdata_candle ({columns}) FROM STDIN WITH (FORMAT csv)"
            cursor.cursor.copy_expert(sql, StringIO(text), size=COPY_CHUNK_BYTES)


def _ours(files: list[Path]) -> None:
    from apps.marketdata.importers import CandleFileRejected, candles_import_files

    for outcome in candles_import_files(paths=files, interval="day"):
        if isinstance(outcome, CandleFileRejected):
            raise RuntimeError(outcome.message)


def _bulk_create(files: list[Path]) -> None:
    import csv
    from datetime import datetime
    from decimal import Decimal

    from django.db import transaction

    from apps.marketdata.models import Candle, Instrument

    for path in files:
        with transaction.atomic(), path.open(newline="") as handle:
            instrument, _ = Instrument.objects.get_or_create(tradingsymbol=path.stem, defaults={"provisional": True})
            candles = [
                Candle(
                    instrument=instrument,
                    interval="day",
                    time=datetime.fromisoformat(row["timestamp"]),
                    open=Decimal(row["open"]),
                    high=Decimal(row["high"]),
                    low=Decimal(row["low"]),
                    close=Decimal(row["close"]),
                    volume=int(row["volume"]),
                    oi=int(row["oi"]),
                    source="csv",
                )
                for row in csv.DictReader(handle)
            ]
            Candle.objects.bulk_create(candles)


def _machine() -> dict[str, Any]:
    from importlib.metadata import version

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (server_version,) = cursor.fetchone()
    return {"postgresql": server_version, "psycopg2": version("psycopg2-binary"), "django": version("django")}


# --- the report ---------------------------------------------------------------------


def build_report(
    timings: dict[str, list[float]], *, rows: int, files: int, repeats: int, server: str, machine: dict[str, Any]
) -> Report:
    best = {label: min(samples) for label, samples in timings.items()}
    rate = {label: rows / seconds for label, seconds in best.items()}
    vs_copy = _rounded(ratio(rate[OURS], rate[RAW]))
    vs_bulk = _rounded(ratio(rate[OURS], rate[BULK]))
    table = [
        [label, rows, f"{best[label]:.3f}", f"{rate[label]:,.0f}", _times(_rounded(ratio(rate[label], rate[RAW])))]
        for label in timings
    ]
    vs_table = _rounded(ratio(rate[OURS], rate[TABLE]))
    table_vs_copy = _rounded(ratio(rate[TABLE], rate[RAW]))
    notes = [
        f"ours / raw COPY = {_times(vs_copy)} (goal >= {GOAL_VS_COPY}x: {_verdict(vs_copy, GOAL_VS_COPY)})",
        f"ours / bulk_create = {_times(vs_bulk)} (goal >= {GOAL_VS_BULK_CREATE}x: "
        f"{_verdict(vs_bulk, GOAL_VS_BULK_CREATE)})",
        f"ours / COPY into Candle = {_times(vs_table)}: 1.00x would mean validation and upsert bookkeeping "
        "cost nothing on top of what writing to the Candle table costs",
        f"COPY into Candle / raw COPY = {_times(table_vs_copy)}: the table's primary key, unique bar index, "
        "CHECK and per-row foreign-key trigger, which no importer of this table avoids",
    ]
    return Report(
        title=(
            f"candle_import: {rows} daily rows in {files} files "
            f"into PostgreSQL {machine['postgresql']}, one transaction per file, best of {repeats}"
        ),
        headers=["series", "rows", "best s", "rows/s", "vs raw COPY"],
        rows=table,
        data={
            "config": {"repeats": repeats, "rows": rows, "files": files, "data": str(DATA_DIR), "server": server},
            "seconds": {label: [round(s, 4) for s in samples] for label, samples in timings.items()},
            "best_rows_per_second": {label: round(value) for label, value in rate.items()},
            "ratios": {
                "ours_vs_raw_copy": vs_copy,
                "ours_vs_bulk_create": vs_bulk,
                "ours_vs_copy_into_candle": vs_table,
                "copy_into_candle_vs_raw_copy": table_vs_copy,
            },
            "goals": {"ours_vs_raw_copy": GOAL_VS_COPY, "ours_vs_bulk_create": GOAL_VS_BULK_CREATE},
        },
        machine=machine,
        notes=notes,
    )


def _skipped(reason: str) -> Report:
    return Report(
        title=f"candle_import: skipped ({reason})",
        headers=["series", "rows", "best s", "rows/s", "vs raw COPY"],
        rows=[],
        data={"skipped": reason},
        notes=[reason],
    )


def _verdict(value: float | None, goal: float) -> str:
    return "n/a" if value is None else ("met" if value >= goal else "missed")


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
