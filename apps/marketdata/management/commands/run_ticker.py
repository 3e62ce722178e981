"""`manage.py run_ticker`: the live KiteTicker feed in the foreground (the Procfile's `ticker` line).

Wiring only: settings, the universe and the market-hours rule go in; the feed
itself is `apps.marketdata.ticker`. SIGTERM/SIGINT stop it cleanly; it exits
non-zero when KiteTicker gives up reconnecting, so a supervisor notices.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from apps.brokers.services import KiteNotConfigured, kite_access_token, kite_client
from apps.marketdata import selectors, ticker
from apps.marketdata.calendar import Phase
from apps.marketdata.calendar_db import instrument_profile, trading_calendar
from apps.marketdata.models import Instrument
from apps.marketdata.nifty50 import UNIVERSE_NAME
from tradingsite.exceptions import NotFound
from tradingsite.redis_client import get_redis

log = logging.getLogger("apps.marketdata.ticker")


def market_hours(instruments: list[Instrument]) -> Callable[[datetime], bool]:
    """When silence is news: continuous trading for any of the instruments, by the NSE calendar.

    Not every phase in which the exchange takes orders: pre-open order entry,
    the closing auction and the post-close session see few or no trades, so
    no tick then is normal. The calendar is fetched on every call so that an
    operator's edit in the admin reaches the running ticker (it is cached).
    """
    kinds = {p.has_derivatives: p for p in (instrument_profile(i) for i in instruments)}
    last = [trading_calendar()]

    def is_open(now: datetime) -> bool:
        try:
            last[0] = trading_calendar()
        except DatabaseError:
            log.warning("could not refresh the NSE calendar; using the one read earlier", exc_info=True)
        return any(last[0].session_at(now, p).phase is Phase.CONTINUOUS for p in kinds.values())

    return is_open


class Command(BaseCommand):
    help = (
        "Run the live KiteTicker feed: ticks of the universe into one-minute bars (Candle, source ticker) and "
        "bar-close events on marketdata:bars, latest prices in marketdata:ltp, a stale-feed watchdog that "
        "alerts and polls /quote/ltp. Runs until SIGTERM/SIGINT (docs/feeds.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--universe", default=UNIVERSE_NAME, help=f"universe to subscribe ({UNIVERSE_NAME!r})")
        parser.add_argument(
            "--mode", choices=["quote", "full"], default="quote", help="KiteTicker mode (quote; full adds timestamps)"
        )
        parser.add_argument(
            "--stale-seconds", type=float, help="no tick this long in market hours: alert (TICKER_STALE_SECONDS)"
        )
        parser.add_argument(
            "--ignore-market-hours", action="store_true", help="watch for silence at any hour (tests, demos)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.KITE_API_KEY:
            raise CommandError("KITE_API_KEY is not set: the ticker needs the Kite Connect app key")
        try:
            access_token = kite_access_token()
            members = [i for i in selectors.universe_members(universe=options["universe"]) if i.instrument_token]
        except (KiteNotConfigured, NotFound) as exc:
            raise CommandError(str(exc)) from None
        subscriptions = ticker.subscriptions_for(members)
        if not subscriptions:
            raise CommandError(
                f"universe {options['universe']!r} has no current member with an instrument_token: sync instruments"
            )
        stale = float(settings.TICKER_STALE_SECONDS if options["stale_seconds"] is None else options["stale_seconds"])
        if stale <= 0:
            raise CommandError(f"--stale-seconds must be positive, got {stale}")
        feed = ticker.LiveFeed(
            subscriptions=subscriptions,
            redis_client=get_redis(),
            options=ticker.FeedOptions(
                mode=options["mode"],
                stale_seconds=stale,
                ltp_per_second=float(settings.KITE_LTP_POLL_PER_SECOND),
                market_open=(lambda _now: True) if options["ignore_market_hours"] else market_hours(members),
            ),
            ltp_fetch=_ltp_fetcher(access_token),
        )
        conn = ticker.TickerConnection(
            api_key=settings.KITE_API_KEY, access_token=access_token, root=settings.KITE_TICKER_ROOT
        )
        if not ticker.run(feed, conn, _stop_on_signals()):
            raise CommandError("KiteTicker gave up reconnecting")


def _ltp_fetcher(access_token: str) -> Callable[[list[str]], Mapping[str, Any]]:
    """/quote/ltp through the real client, built on first use (only a stale feed needs it)."""
    client: list[Any] = []

    def fetch(keys: list[str]) -> Mapping[str, Any]:
        if not client:
            client.append(kite_client(access_token=access_token))
        return client[0].ltp(keys)

    return fetch


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping the ticker", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return stop
