"""`manage.py sync_instruments`: Kite's instrument list (or a CSV dump of it) into the Instrument table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kiteconnect.exceptions import KiteException

from apps.brokers.services import KiteNotConfigured
from apps.marketdata.instrument_rows import InstrumentDataError
from apps.marketdata.instruments import instrument_rows_from_file, instrument_rows_from_kite, instruments_sync


class Command(BaseCommand):
    help = (
        "Upsert instruments from Kite's /instruments (KITE_API_KEY, KITE_ACCESS_TOKEN) or from a CSV in Kite's "
        "format; completes provisional instruments created by the candle importer. Nothing is written if any "
        "row is malformed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", type=Path, help="a CSV in Kite's instrument-dump format instead of Kite")
        parser.add_argument("--exchange", default="NSE", help="only this exchange ('all' for every one; NSE)")

    def handle(self, *args: Any, **options: Any) -> None:
        exchange = None if options["exchange"].lower() == "all" else options["exchange"].upper()
        path: Path | None = options["file"]
        try:
            if path is not None:
                rows = instrument_rows_from_file(path, exchange=exchange)
            else:
                rows = instrument_rows_from_kite(exchange=exchange)
            result = instruments_sync(rows=rows)
        except InstrumentDataError as exc:
            raise CommandError(f"rejected, nothing written: {exc}") from exc
        except (KiteNotConfigured, KiteException, requests.RequestException) as exc:
            raise CommandError(f"Kite /instruments failed: {type(exc).__name__}: {exc}") from exc
        source = str(path) if path is not None else "Kite"
        self.stdout.write(
            f"instruments from {source}: {result.created} created, {result.updated} updated "
            f"({result.completed} provisional completed), {result.unchanged} unchanged"
        )
