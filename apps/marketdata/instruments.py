"""Instrument sync: Kite's instrument list upserted into the Instrument table.

The list comes from Kite's `/instruments` (through the one Kite client factory)
or from a CSV dump in the same format. Rows are matched on instrument_token,
then on exchange + tradingsymbol, so an instrument that the CSV candle importer
created from a file name (provisional, no token) is completed in place and
keeps its candles. The whole list is written in one transaction, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.brokers.services import kite_client
from apps.marketdata.instrument_rows import InstrumentDataError, InstrumentRow, parse_instrument_csv, rows_from_kite
from apps.marketdata.models import Instrument, SeriesSource

SYNCED_FIELDS = (
    "instrument_token",
    "exchange_token",
    "exchange",
    "tradingsymbol",
    "name",
    "segment",
    "instrument_type",
    "tick_size",
    "lot_size",
    "provisional",
    "source",
)
CHECKED_LENGTHS = ("exchange", "tradingsymbol", "name", "segment", "instrument_type")


@dataclass(frozen=True)
class SyncResult:
    created: int
    updated: int
    unchanged: int
    completed: int  # provisional instruments that got their token (counted in `updated` too)


def instrument_rows_from_file(path: Path, *, exchange: str | None = None) -> list[InstrumentRow]:
    """Rows of a CSV in Kite's format, only `exchange`'s when given."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InstrumentDataError(f"{path}: cannot be read: {exc}") from exc
    rows = parse_instrument_csv(text, source=path.name)
    return [row for row in rows if exchange is None or row.exchange == exchange]


def instrument_rows_from_kite(*, exchange: str | None = None, client: Any = None) -> list[InstrumentRow]:
    """Rows of Kite's `/instruments` (or `/instruments/{exchange}`) through the real client."""
    kite = client or kite_client()
    records = kite.instruments(exchange) if exchange else kite.instruments()
    return rows_from_kite(records, source=f"Kite /instruments{'/' + exchange if exchange else ''}")


def _check_lengths(rows: Sequence[InstrumentRow]) -> None:
    limits = {name: getattr(Instrument._meta.get_field(name), "max_length", None) for name in CHECKED_LENGTHS}
    for row in rows:
        for name, limit in limits.items():
            if limit is not None and len(getattr(row, name)) > limit:
                raise InstrumentDataError(f"{row.where}: {name} {getattr(row, name)!r} is longer than {limit}")


def _values(row: InstrumentRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in SYNCED_FIELDS if hasattr(row, name)}
    return {**values, "provisional": False, "source": SeriesSource.KITE}


def _match(row: InstrumentRow, by_token: dict[int, Instrument], by_symbol: dict[tuple[str, str], Instrument]) -> Any:
    token_match = by_token.get(row.instrument_token)
    symbol_match = by_symbol.get((row.exchange, row.tradingsymbol))
    if token_match and symbol_match and token_match.pk != symbol_match.pk:
        raise InstrumentDataError(
            f"{row.where}: token {row.instrument_token} belongs to {token_match} but {symbol_match} "
            "already has that symbol; resolve the two instruments by hand"
        )
    return token_match or symbol_match


@transaction.atomic
def instruments_sync(*, rows: Sequence[InstrumentRow]) -> SyncResult:
    """Upsert every row; counts of created, updated and unchanged instruments."""
    _check_lengths(rows)
    existing = list(Instrument.objects.select_for_update())
    by_token = {i.instrument_token: i for i in existing if i.instrument_token is not None}
    by_symbol = {(i.exchange, i.tradingsymbol): i for i in existing}
    created: list[Instrument] = []
    changed: list[Instrument] = []
    completed = unchanged = 0
    now = timezone.now()
    for row in rows:
        values = _values(row)
        instrument = _match(row, by_token, by_symbol)
        if instrument is None:
            created.append(Instrument(**values))
            continue
        if all(getattr(instrument, name) == value for name, value in values.items()):
            unchanged += 1
            continue
        completed += instrument.provisional
        for name, value in values.items():
            setattr(instrument, name, value)
        instrument.updated_at = now
        changed.append(instrument)
    Instrument.objects.bulk_create(created, batch_size=500)
    Instrument.objects.bulk_update(changed, [*SYNCED_FIELDS, "updated_at"], batch_size=500)
    return SyncResult(created=len(created), updated=len(changed), unchanged=unchanged, completed=completed)
