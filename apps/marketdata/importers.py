"""Candle imports: validated Kite-format CSV files written to the Candle table as upserts.

Each file is one transaction, all or nothing: it is read and validated whole
(`candle_csv`) before anything is written, and a database error rolls back its
instrument and its bars together. A bar is keyed by (instrument, interval,
time); importing a file again changes nothing and counts its rows unchanged,
while a bar whose values differ is updated (values and source) and counted
as changed.

Write paths, by database:

- PostgreSQL, file range with no stored bars (a first import): COPY straight
  into the Candle table, inside a savepoint. If a writer beside us stored one
  of these bars after the check, the unique index stops the COPY and the
  savepoint falls back to the upsert below. For an instrument this very
  transaction created, neither check nor savepoint is needed.
- PostgreSQL, otherwise: COPY into a temporary staging table, then ONE
  `INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE values differ` of
  the staged rows that a join finds missing or different, whose
  `RETURNING (xmax = 0)` tells inserted rows from updated ones.
- SQLite (the embedded default): `executemany` of the same upsert in
  batches, new rows counted from the bars in the file's time range before
  and after.

`make bench` (benchmarks/candle_import.py) measures the PostgreSQL paths
beside a raw COPY and Django's bulk_create.

An instrument the database does not know (by exchange + tradingsymbol) is
created from the file name as provisional, for `sync_instruments` to complete.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from django.db import IntegrityError, connection, transaction

from apps.marketdata.candle_csv import CandleFile, CandleFileError, is_index_symbol, read_candle_file, symbol_from_path
from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource
from tradingsite.exceptions import ApplicationError

SQLITE_BATCH_ROWS = 500
COPY_CHUNK_BYTES = 1 << 20
STAGING_TABLE = "candle_import_staging"
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "oi")

logger = logging.getLogger(__name__)


class CandleFileRejected(ApplicationError):
    """A file that failed validation; nothing of it was written. `details` name the file, line and reason."""

    default_code = "candle_file_invalid"

    @classmethod
    def from_error(cls, error: CandleFileError) -> CandleFileRejected:
        details = {"file": error.source, "line": error.line, "reason": error.reason}
        return cls(str(error), details=details)


@dataclass(frozen=True)
class ImportResult:
    """What one file did: `rows` it holds (exact repeats not counted), how many were new, changed, unchanged."""

    file: str
    instrument: str
    interval: str
    rows: int
    new: int
    changed: int
    duplicates: int
    instrument_created: bool

    @property
    def unchanged(self) -> int:
        return self.rows - self.new - self.changed


def candles_import(
    *,
    path: Path,
    interval: str,
    symbol: str | None = None,
    exchange: str = "NSE",
    source: str = SeriesSource.CSV,
) -> ImportResult:
    """Import one file; the symbol defaults to the file name's stem (`M&M.csv` -> `M&M`)."""
    _check_interval(interval)
    try:
        candles = read_candle_file(path)
        symbol = symbol or symbol_from_path(path)
    except CandleFileError as exc:
        raise CandleFileRejected.from_error(exc) from None
    return candles_write(candles=candles, symbol=symbol, interval=interval, exchange=exchange, source=source)


def candles_import_files(
    *,
    paths: Sequence[Path],
    interval: str,
    symbol: str | None = None,
    exchange: str = "NSE",
    source: str = SeriesSource.CSV,
) -> Iterator[ImportResult | CandleFileRejected]:
    """Import files one by one, yielding each file's result or rejection; a rejection does not stop the rest.

    The next file is read while this one commits: the commit waits on the
    server (the foreign-key checks deferred to it, the WAL flush) with the GIL
    released, so the read costs nothing (-15% on the NIFTY 50 files). Reading
    any earlier would make every round trip of the writer wait for the GIL.
    """
    _check_interval(interval)
    if symbol is not None and len(paths) != 1:
        raise ApplicationError(f"a symbol ({symbol}) can only be given for one file, got {len(paths)}")
    remaining = iter(paths)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="candle-read") as reader:

        def read_next() -> Future[tuple[CandleFile, str]] | None:
            path = next(remaining, None)
            return None if path is None else reader.submit(_read, path, symbol)

        reading = read_next()
        while reading is not None:
            current, reading = reading, None
            try:
                candles, file_symbol = current.result()
            except CandleFileError as exc:
                reading = read_next()
                yield CandleFileRejected.from_error(exc)
                continue
            with transaction.atomic():
                result = _store(
                    candles=candles, symbol=file_symbol, interval=interval, exchange=exchange, source=source
                )
                reading = read_next()  # just before the commit, which it overlaps
            yield result


def _read(path: Path, symbol: str | None) -> tuple[CandleFile, str]:
    return read_candle_file(path), symbol or symbol_from_path(path)


def candles_write(
    *, candles: CandleFile, symbol: str, interval: str, exchange: str = "NSE", source: str = SeriesSource.CSV
) -> ImportResult:
    """Write one validated file in one transaction: its instrument (created if unknown) and its bars."""
    _check_interval(interval)
    with transaction.atomic():
        return _store(candles=candles, symbol=symbol, interval=interval, exchange=exchange, source=source)


def _store(*, candles: CandleFile, symbol: str, interval: str, exchange: str, source: str) -> ImportResult:
    """candles_write's work, inside the caller's transaction."""
    instrument, created = _instrument_for(exchange=exchange, symbol=symbol, source=source)
    write = _write_postgresql if connection.vendor == "postgresql" else _write_batched
    new, changed = write(
        instrument_id=instrument.pk, interval=interval, source=source, candles=candles, new_instrument=created
    )
    return ImportResult(
        file=candles.source,
        instrument=str(instrument),
        interval=interval,
        rows=len(candles),
        new=new,
        changed=changed,
        duplicates=candles.duplicates,
        instrument_created=created,
    )


def _check_interval(interval: str) -> None:
    if interval not in Interval.values:
        raise ApplicationError(
            f"unknown interval {interval!r}; one of {', '.join(Interval.values)}", code="invalid_interval"
        )


def _instrument_for(*, exchange: str, symbol: str, source: str) -> tuple[Instrument, bool]:
    """The known instrument, or a provisional one named after the file (an `_INDEX` name is an index)."""
    index = is_index_symbol(symbol)
    return Instrument.objects.get_or_create(
        exchange=exchange,
        tradingsymbol=symbol,
        defaults={
            "provisional": True,
            "source": source,
            "instrument_type": "INDEX" if index else "EQ",
            "segment": "INDICES" if index else exchange,
            "tick_size": Decimal("0.05"),
            "lot_size": 1,
        },
    )


# --- PostgreSQL -------------------------------------------------------------------


def _write_postgresql(
    *, instrument_id: int, interval: str, source: str, candles: CandleFile, new_instrument: bool
) -> tuple[int, int]:
    if new_instrument:
        # Created in this transaction: no bar refers to it, and no one else can see it to add one.
        _copy_into_candles(instrument_id=instrument_id, interval=interval, source=source, candles=candles)
        return len(candles), 0
    if not _bars_stored(instrument_id, interval, candles.times[0], candles.times[-1]):
        try:
            with transaction.atomic():
                _copy_into_candles(instrument_id=instrument_id, interval=interval, source=source, candles=candles)
            return len(candles), 0
        except IntegrityError as exc:
            # A writer beside us stored some of these bars since the check: the upsert reconciles them.
            logger.info("%s: bars appeared during the COPY (%s); upserting instead", candles.source, exc)
    return _upsert_via_staging(instrument_id=instrument_id, interval=interval, source=source, candles=candles)


def _bars_stored(instrument_id: int, interval: str, first: datetime, last: datetime) -> bool:
    bars = Candle.objects.filter(instrument_id=instrument_id, interval=interval, time__range=(first, last))
    return bars.exists()


def _copy_into_candles(*, instrument_id: int, interval: str, source: str, candles: CandleFile) -> None:
    prefix, suffix = f"{instrument_id},{interval},", f",{source}\n"
    text = prefix + (suffix + prefix).join(candles.lines) + suffix
    columns = ", ".join(_quoted(c) for c in ("instrument_id", "interval", "time", *VALUE_COLUMNS, "source"))
    _copy(f"COPY {_quoted(Candle._meta.db_table)} ({columns}) FROM STDIN WITH (FORMAT csv)", text)


def _upsert_via_staging(*, instrument_id: int, interval: str, source: str, candles: CandleFile) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} (time timestamptz, open numeric, "
            "high numeric, low numeric, close numeric, volume bigint, oi bigint) ON COMMIT DELETE ROWS"
        )
        # Empty already after a commit; this clears what an enclosing transaction's earlier import left.
        cursor.execute(f"DELETE FROM {STAGING_TABLE}")  # noqa: S608 - a constant name
        _copy(f"COPY {STAGING_TABLE} FROM STDIN WITH (FORMAT csv)", "\n".join(candles.lines) + "\n")
        bars: dict[str, Any] = {"instrument": instrument_id, "interval": interval, "source": source}
        cursor.execute(_upsert_sql(), {**bars, "first": candles.times[0], "last": candles.times[-1]})
        new, changed = cursor.fetchone()
    return int(new), int(changed)


def _upsert_sql() -> str:
    """Rows that are missing or differ, upserted; RETURNING tells inserted from updated.

    The join leaves out unchanged rows before the INSERT: ON CONFLICT DO UPDATE
    locks every conflicting row even where its WHERE is false, and those locks
    are writes (a re-import of the NIFTY 50 files takes a third less time
    without them). The ON CONFLICT stays for bars a writer beside us stores
    after the join looked.
    """
    table = _quoted(Candle._meta.db_table)
    columns = ", ".join(_quoted(c) for c in ("instrument_id", "interval", "time", *VALUE_COLUMNS, "source"))
    staged = ", ".join(f"s.{_quoted(c)}" for c in ("time", *VALUE_COLUMNS))
    updates = ", ".join(f"{_quoted(c)} = EXCLUDED.{_quoted(c)}" for c in (*VALUE_COLUMNS, "source"))

    def values(alias: str) -> str:
        return "(" + ", ".join(f"{alias}.{_quoted(c)}" for c in VALUE_COLUMNS) + ")"

    return (
        f"WITH incoming AS (SELECT s.* FROM {STAGING_TABLE} s LEFT JOIN {table} c "  # noqa: S608 - identifiers from the model, values are parameters
        'ON c."instrument_id" = %(instrument)s AND c."interval" = %(interval)s AND c."time" = s."time" '
        'AND c."time" BETWEEN %(first)s AND %(last)s '
        f"WHERE c.{_quoted('id')} IS NULL OR {values('c')} IS DISTINCT FROM {values('s')}), "
        f"written AS (INSERT INTO {table} AS c ({columns}) "
        f"SELECT %(instrument)s, %(interval)s, {staged}, %(source)s FROM incoming s "
        f'ON CONFLICT ("instrument_id", "interval", "time") DO UPDATE SET {updates} '
        f"WHERE {values('c')} IS DISTINCT FROM {values('EXCLUDED')} "
        # xmax is 0 on a freshly inserted row version, the updating transaction's id on an updated one.
        "RETURNING (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
    )


def _copy(sql: str, text: str) -> None:
    """COPY through the psycopg2 cursor under Django's: in Django's transaction, raising Django's errors."""
    with connection.cursor() as cursor, connection.wrap_database_errors:
        raw: Any = cursor.cursor
        raw.copy_expert(sql, io.StringIO(text), size=COPY_CHUNK_BYTES)


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


# --- SQLite -----------------------------------------------------------------------


def _write_batched(
    *, instrument_id: int, interval: str, source: str, candles: CandleFile, new_instrument: bool
) -> tuple[int, int]:
    """executemany of the upsert; rowcount counts inserted and updated rows, the range count tells them apart."""
    in_range = Candle.objects.filter(
        instrument_id=instrument_id, interval=interval, time__range=(candles.times[0], candles.times[-1])
    )
    before = 0 if new_instrument else in_range.count()
    ops = connection.ops
    params = (
        (
            instrument_id,
            interval,
            ops.adapt_datetimefield_value(row.time),
            *(ops.adapt_decimalfield_value(p, 14, 4) for p in (row.open, row.high, row.low, row.close)),
            row.volume,
            row.oi,
            source,
        )
        for row in candles.rows()
    )
    written = 0
    sql = _batched_upsert_sql()
    with connection.cursor() as cursor:
        while batch := list(islice(params, SQLITE_BATCH_ROWS)):
            cursor.executemany(sql, batch)
            written += cursor.rowcount
    new = in_range.count() - before
    return new, written - new


def _batched_upsert_sql() -> str:
    table = _quoted(Candle._meta.db_table)
    columns = ("instrument_id", "interval", "time", *VALUE_COLUMNS, "source")
    updates = ", ".join(f"{_quoted(c)} = excluded.{_quoted(c)}" for c in (*VALUE_COLUMNS, "source"))
    differs = " OR ".join(f"{table}.{_quoted(c)} IS NOT excluded.{_quoted(c)}" for c in VALUE_COLUMNS)
    placeholders = ", ".join(["%s"] * len(columns))
    return (
        f"INSERT INTO {table} ({', '.join(_quoted(c) for c in columns)}) VALUES ({placeholders}) "  # noqa: S608 - identifiers from the model, values are parameters
        f'ON CONFLICT ("instrument_id", "interval", "time") DO UPDATE SET {updates} WHERE {differs}'
    )
