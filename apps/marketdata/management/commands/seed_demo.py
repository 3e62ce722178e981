from __future__ import annotations

import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata.demo import DEFAULT_SEED, demo_seed
from apps.marketdata.models import Candle


class Command(BaseCommand):
    help = (
        "Create the NIFTY 50 universe and synthetic, correlated daily and one-minute candles (marked synthetic) "
        "so a machine with no internet has data. See docs/demo-data.md for the model."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
        parser.add_argument("--daily-days", type=int, default=300, help="trading days of daily candles (300)")
        parser.add_argument("--minute-days", type=int, default=3, help="last trading days with minute candles (3)")
        parser.add_argument("--end", type=date.fromisoformat, help="last day (YYYY-MM-DD); default yesterday (IST)")
        parser.add_argument("--reset", action="store_true", help="delete existing synthetic candles first")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing at all if any candle exists (what `make run` uses)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and Candle.objects.exists():
            self.stdout.write("seed_demo: candles exist already; nothing to do")
            return
        started = time.monotonic()
        try:
            result = demo_seed(
                seed=options["seed"],
                daily_days=options["daily_days"],
                minute_days=options["minute_days"],
                end=options["end"],
                reset=options["reset"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"seed_demo: NIFTY 50 universe ({result.instruments_created} instruments and "
            f"{result.memberships_created} memberships created)"
        )
        if result.already_seeded:
            self.stdout.write("seed_demo: synthetic candles exist already; --reset to regenerate")
            return
        if result.skipped_real:
            self.stdout.write(f"seed_demo: kept real data, no synthetic rows for: {', '.join(result.skipped_real)}")
        self.stdout.write(
            f"seed_demo: {result.daily_rows} daily and {result.minute_rows} minute synthetic candles "
            f"in {time.monotonic() - started:.1f}s"
        )
