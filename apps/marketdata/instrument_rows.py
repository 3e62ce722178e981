"""Kite's instrument list, parsed and checked: from its CSV dump or from `KiteConnect.instruments()`.

The whole list is checked before anything is written, and the first bad row
rejects it with its line (or record) number and the reason, so a truncated or
hand-edited file can never leave the instrument table half-synced. No Django import.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

REQUIRED_COLUMNS = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)


class InstrumentDataError(ValueError):
    """The instrument list cannot be used; the message names where and why."""


@dataclass(frozen=True)
class InstrumentRow:
    instrument_token: int
    exchange_token: int | None
    exchange: str
    tradingsymbol: str
    name: str
    segment: str
    instrument_type: str
    tick_size: Decimal
    lot_size: int
    where: str  # "instruments_nse.csv line 5": for error messages


def _int(value: Any, column: str, where: str, *, minimum: int) -> int:
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or int(text) < minimum:
        raise InstrumentDataError(f"{where}: {column} {value!r} is not an integer >= {minimum}")
    return int(text)


def _tick_size(value: Any, where: str) -> Decimal:
    try:
        tick = Decimal(str(value).strip())
    except InvalidOperation:
        raise InstrumentDataError(f"{where}: tick_size {value!r} is not a number") from None
    exponent = tick.normalize().as_tuple().exponent
    if not tick.is_finite() or tick <= 0 or not isinstance(exponent, int) or exponent < -4:
        raise InstrumentDataError(f"{where}: tick_size {value!r} must be positive with at most 4 decimals")
    return tick


def _text(fields: Mapping[str, Any], column: str, where: str, *, required: bool = True) -> str:
    value = str(fields.get(column) or "").strip()
    if required and not value:
        raise InstrumentDataError(f"{where}: {column} is empty")
    return value


def instrument_row(fields: Mapping[str, Any], where: str) -> InstrumentRow:
    exchange_token = str(fields.get("exchange_token") or "").strip()
    return InstrumentRow(
        instrument_token=_int(fields.get("instrument_token"), "instrument_token", where, minimum=1),
        exchange_token=_int(exchange_token, "exchange_token", where, minimum=0) if exchange_token else None,
        exchange=_text(fields, "exchange", where),
        tradingsymbol=_text(fields, "tradingsymbol", where),
        name=_text(fields, "name", where, required=False),
        segment=_text(fields, "segment", where),
        instrument_type=_text(fields, "instrument_type", where),
        tick_size=_tick_size(fields.get("tick_size"), where),
        lot_size=_int(fields.get("lot_size"), "lot_size", where, minimum=1),
        where=where,
    )


def _first_seen(rows: Sequence[InstrumentRow], key: Callable[[InstrumentRow], Hashable], what: str) -> None:
    seen: dict[Hashable, str] = {}
    for row in rows:
        value = key(row)
        if value in seen:
            raise InstrumentDataError(f"{row.where}: duplicate {what} {value!r} (first at {seen[value]})")
        seen[value] = row.where


def check_unique(rows: Sequence[InstrumentRow]) -> None:
    """One row per instrument_token and per exchange + tradingsymbol, as the Instrument table demands."""
    _first_seen(rows, lambda row: row.instrument_token, "instrument_token")
    _first_seen(rows, lambda row: f"{row.exchange}:{row.tradingsymbol}", "symbol")


def parse_instrument_csv(text: str, *, source: str) -> list[InstrumentRow]:
    """Rows of a CSV in Kite's instrument-dump format; `source` names the file in errors."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InstrumentDataError(f"{source} line 1: missing columns {', '.join(missing)}")
    rows = []
    for fields in reader:
        where = f"{source} line {reader.line_num}"
        if None in fields or any(fields.get(c) is None for c in REQUIRED_COLUMNS):
            raise InstrumentDataError(f"{where}: expected {len(reader.fieldnames or [])} fields")
        rows.append(instrument_row(fields, where))
    check_unique(rows)
    return rows


def rows_from_kite(records: Iterable[Mapping[str, Any]], *, source: str = "Kite /instruments") -> list[InstrumentRow]:
    """Rows of `KiteConnect.instruments()` records (already split into dicts by the client)."""
    rows = [instrument_row(record, f"{source} record {n}") for n, record in enumerate(records, start=1)]
    check_unique(rows)
    return rows
