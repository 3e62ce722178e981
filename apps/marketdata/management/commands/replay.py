from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata import selectors
from apps.marketdata.calendar_rules import IST, parse_moment
from apps.marketdata.models import Interval
from apps.marketdata.nifty50 import UNIVERSE_NAME
from apps.marketdata.replay import replay_bars
from tradingsite.exceptions import NotFound


def _moment(text: str, *, end: bool) -> datetime:
    try:
        return parse_moment(text, end_of_day=end)
    except ValueError:
        raise CommandError(
            f"--{'to' if end else 'from'}: expected YYYY-MM-DD or an ISO datetime, got {text!r}"
        ) from None


class Command(BaseCommand):
    help = (
        "Republish stored candles as if live: each bar as a bar-close event on the Redis stream marketdata:bars "
        "and the latest price per instrument in marketdata:ltp (format: docs/feeds.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD or ISO datetime (IST if naive)")
        parser.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD or ISO datetime, inclusive")
        parser.add_argument("--speed", type=float, default=60.0, help="times real time; 0 = no waiting (60)")
        parser.add_argument("--interval", choices=Interval.values, default=Interval.MINUTE)
        parser.add_argument("--universe", default=UNIVERSE_NAME, help=f"universe to replay ({UNIVERSE_NAME!r})")
        parser.add_argument("--symbols", help="comma-separated symbols instead of a universe")

    def handle(self, *args: Any, **options: Any) -> None:
        start, end = _moment(options["start"], end=False), _moment(options["end"], end=True)
        if end < start:
            raise CommandError("--to is before --from")
        try:
            if options["symbols"]:
                instruments = [selectors.instrument_get(symbol=s.strip()) for s in options["symbols"].split(",")]
            else:
                instruments = selectors.universe_members(universe=options["universe"])
        except NotFound as exc:
            raise CommandError(exc.message) from None
        tty = sys.stderr.isatty()

        def progress(at: datetime, n: int) -> None:
            line = f"replayed {at.astimezone(IST):%Y-%m-%d %H:%M} IST ({n} bars)"
            sys.stderr.write(f"\r{line}" if tty else f"{line}\n")

        try:
            result = replay_bars(
                instruments=instruments,
                interval=options["interval"],
                start=start,
                end=end,
                speed=options["speed"],
                on_step=progress if options["verbosity"] >= 1 else None,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except redis.ConnectionError as exc:
            raise CommandError(
                f"cannot reach Redis ({exc}); is the stack running (make run) or REDIS_URL set?"
            ) from None
        except KeyboardInterrupt:
            self.stderr.write("\nreplay interrupted")
            return
        if tty:
            sys.stderr.write("\n")
        span = " .. ".join(f"{t.astimezone(IST):%Y-%m-%d %H:%M}" for t in (result.first, result.last) if t)
        self.stdout.write(f"replay: {result.bars} bars in {result.steps} steps ({span or 'nothing stored'} IST)")
