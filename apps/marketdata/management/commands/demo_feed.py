"""`manage.py demo_feed`: with no live ticker, replay the latest stored minute session in a loop.

Paper trading needs prices that move: MARKET orders fill at the latest price, LIMIT and stop orders wait for
the feed to cross them, and P&L is marked to it. `make run` starts this when the Kite ticker is off
(`TICKER_ENABLED=false`, `DEMO_FEED=true`, the defaults), so a fresh machine shows orders filling. Every bar
it publishes is marked `source=replay`, as the `replay` command's are; a real feed (the ticker) replaces it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.marketdata import selectors
from apps.marketdata.calendar import IST
from apps.marketdata.models import Candle, Interval
from apps.marketdata.replay import replay_bars
from tradingsite.exceptions import NotFound

WAIT_FOR_DATA_SECONDS = 10


def latest_session(interval: str) -> tuple[datetime, datetime] | None:
    """The first and last bar time of the most recent day with `interval` candles."""
    last = Candle.objects.filter(interval=interval).order_by("-time").values_list("time", flat=True).first()
    if last is None:
        return None
    day_start = last.astimezone(IST).replace(hour=0, minute=0, second=0, microsecond=0)
    return day_start, day_start + timedelta(days=1) - timedelta(microseconds=1)


class Command(BaseCommand):
    help = "Replay the latest stored minute session over and over as a demo price feed (what make run starts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--speed", type=float, default=30.0, help="times real time (30: a bar every 2 s)")
        parser.add_argument("--universe", default="NIFTY 50", help="universe to replay ('NIFTY 50')")
        parser.add_argument("--loops", type=int, default=0, help="stop after this many sessions (0: forever)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["speed"] <= 0:
            raise CommandError(f"--speed must be positive, got {options['speed']}")
        loops = 0
        try:
            while not options["loops"] or loops < options["loops"]:
                session = latest_session(Interval.MINUTE)
                try:
                    instruments = selectors.universe_members(universe=options["universe"])
                except NotFound:
                    instruments = []
                if session is None or not instruments:
                    self.stderr.write("demo_feed: no minute candles or universe yet; waiting")
                    time.sleep(WAIT_FOR_DATA_SECONDS)
                    continue
                result = replay_bars(
                    instruments=instruments,
                    interval=Interval.MINUTE,
                    start=session[0],
                    end=session[1],
                    speed=options["speed"],
                )
                loops += 1
                self.stdout.write(f"demo_feed: replayed {result.bars} bars of {session[0]:%Y-%m-%d} (loop {loops})")
        except redis.ConnectionError as exc:
            raise CommandError(f"cannot reach Redis ({exc}); is the stack running?") from None
        except KeyboardInterrupt:
            return
