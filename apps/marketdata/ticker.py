"""The live feed: KiteTicker ticks -> one-minute bars -> Candle rows and bar events, with a stale-feed watchdog.

Threads, and why: the official `kiteconnect.KiteTicker` runs on Twisted's
reactor. We start it with `connect(threaded=True)`, so the reactor runs in a
daemon thread whose only job is socket I/O, ping/pong, reconnects and
parsing packets; its `on_ticks` callback just puts the parsed ticks on a
queue. The MAIN thread owns everything that blocks or touches Django: the
aggregator, database writes, Redis, the watchdog and the `/quote/ltp`
fallback polling (an HTTP call of up to seconds). A slow database or a slow
poll therefore never stalls the socket, and Django's per-thread database
connection is only ever used from one thread. Signals (SIGTERM/SIGINT) reach
the main thread, which stops the loop, closes what is due, and stops the
reactor.

Bars are written first and published after the write commits, so a bar event
always refers to a stored Candle; a bar whose write or publish failed stays
pending and is retried on the next loop.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
import requests
from django.db import DatabaseError, close_old_connections, connection, transaction
from kiteconnect.exceptions import KiteException

from apps.marketdata import events
from apps.marketdata.aggregation import IST, Bar, FeedClock, MinuteAggregator, price_decimal, tick_from_kite
from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource
from apps.monitoring import services as monitoring

log = logging.getLogger(__name__)

MAX_PENDING_BARS = 100_000  # a database down for a whole session is ~20k bars for 50 instruments
LOOP_SECONDS = 0.2
ALERT_STREAM = monitoring.ALERT_STREAM  # where record_alert writes (readers and tests name it here)


def record_alert(redis_client: Any, *, kind: str, message: str, at: datetime, source: str = "ticker") -> None:
    """An operational alert on the `monitoring:alerts` stream (monitoring.services.alert_raise, on our client)."""
    monitoring.alert_raise(kind=kind, message=message, source=source, at=at, client=redis_client)


@dataclass(frozen=True)
class Subscription:
    token: int
    instrument_id: int
    exchange: str
    symbol: str

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}"


def subscriptions_for(instruments: list[Instrument]) -> dict[int, Subscription]:
    """token -> Subscription for the instruments that have a Kite instrument_token (the others cannot stream)."""
    return {
        i.instrument_token: Subscription(i.instrument_token, i.pk, i.exchange, i.tradingsymbol)
        for i in instruments
        if i.instrument_token is not None
    }


def bars_persist(*, bars: list[Bar], subscriptions: Mapping[int, Subscription]) -> int:
    """Upsert closed bars as minute Candles (source ticker); returns the rows written.

    A re-sent bar overwrites its own earlier row. A row from Kite's historical
    API (or an import) for the same minute is the reference and is left alone.
    """
    ids = {subscriptions[b.token].instrument_id for b in bars}
    times = {b.time for b in bars}
    with transaction.atomic():
        kept = set(
            Candle.objects.filter(interval=Interval.MINUTE, instrument_id__in=ids, time__in=times)
            .exclude(source=SeriesSource.TICKER)
            .values_list("instrument_id", "time")
        )
        rows = {  # keyed, so a bar listed twice cannot hit ON CONFLICT twice in one statement
            (iid, b.time): Candle(
                instrument_id=iid,
                interval=Interval.MINUTE,
                time=b.time,
                source=SeriesSource.TICKER,
                open=b.open,
                high=b.high,
                low=b.low,
                close=b.close,
                volume=b.volume,
            )
            for b in bars
            if (iid := subscriptions[b.token].instrument_id, b.time) not in kept
        }
        Candle.objects.bulk_create(
            list(rows.values()),
            update_conflicts=True,
            unique_fields=["instrument", "interval", "time"],
            update_fields=["open", "high", "low", "close", "volume", "source"],
        )
    return len(rows)


def bar_event(bar: Bar, sub: Subscription) -> events.BarEvent:
    ohlc = {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close}
    return events.BarEvent(
        exchange=sub.exchange,
        symbol=sub.symbol,
        interval=Interval.MINUTE.value,
        time=bar.time,
        **ohlc,
        volume=bar.volume,
        source="ticker",
        token=bar.token,
    )


class StaleWatchdog:
    """No tick for `stale_after` seconds while the market is open: stale. A tick again: recovered.

    Time since the last tick is measured on the monotonic clock; the quiet
    time before the market opens does not count (the reference moves to the
    opening), and the market closing ends a stale spell ("market_closed").
    """

    def __init__(self, *, stale_after: float, market_open: Callable[[datetime], bool], started: float) -> None:
        self.stale_after = stale_after
        self.market_open = market_open
        self.stale = False
        self._last_tick = started
        self._was_open = False

    def tick_seen(self, monotonic: float) -> None:
        self._last_tick = monotonic

    def check(self, *, monotonic: float, now: datetime) -> str | None:
        """ "stale", "recovered" or "market_closed" when the state changes, else None."""
        is_open = self.market_open(now)
        if is_open and not self._was_open:
            self._last_tick = max(self._last_tick, monotonic)
        self._was_open = is_open
        quiet = monotonic - self._last_tick
        if not self.stale and is_open and quiet >= self.stale_after:
            self.stale = True
            return "stale"
        if self.stale and (quiet < self.stale_after or not is_open):
            self.stale = False
            return "recovered" if is_open else "market_closed"
        return None


@dataclass
class FeedOptions:
    mode: str = "quote"
    stale_seconds: float = 30.0
    ltp_per_second: float = 1.0
    market_open: Callable[[datetime], bool] = lambda _now: True
    now: Callable[[], datetime] = field(default=lambda: datetime.now(IST))
    monotonic: Callable[[], float] = time.monotonic


class LiveFeed:
    """The main thread's half: drains ticks, builds bars, writes and publishes them, watches for silence."""

    def __init__(
        self,
        *,
        subscriptions: Mapping[int, Subscription],
        redis_client: Any,
        options: FeedOptions,
        ltp_fetch: Callable[[list[str]], Mapping[str, Any]],
    ) -> None:
        self.subs = subscriptions
        self.redis = redis_client
        self.options = options
        self.ticks: queue.Queue[tuple[datetime, float, list[dict[str, Any]]]] = queue.Queue()
        self.aggregator = MinuteAggregator()
        self.clock = FeedClock()
        self.watchdog = StaleWatchdog(
            stale_after=options.stale_seconds, market_open=options.market_open, started=options.monotonic()
        )
        self._ltp_fetch = ltp_fetch
        self._next_poll = 0.0
        self._to_persist: list[Bar] = []
        self._to_publish: list[Bar] = []
        self._latest: dict[str, events.LatestPrice] = {}
        self._dirty: set[str] = set()
        self.unknown_ticks = 0
        self.unpriced_ticks = 0
        self.polls = 0
        self._spell = (0.0, 0)  # when the current stale spell began, and the poll count then

    def on_ticks(self, _ws: Any, ticks: list[dict[str, Any]]) -> None:
        """KiteTicker callback, on the reactor thread: stamp and hand over, nothing else."""
        self.ticks.put((self.options.now(), self.options.monotonic(), ticks))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(timeout=LOOP_SECONDS)
        self.shutdown()

    def step(self, *, timeout: float = 0.0) -> None:
        self._drain(timeout)
        feed_now = self.clock.now(self.options.monotonic())
        if feed_now is not None:
            self._to_persist += self.aggregator.close_due(feed_now)
        self._flush_bars()
        self._watch()
        self._flush_prices()

    def shutdown(self) -> None:
        """Keep every bar whose minute is over; a bar still in its minute is incomplete and is dropped."""
        self._drain(0)
        feed_now = self.clock.now(self.options.monotonic())
        if feed_now is not None:
            self._to_persist += self.aggregator.close_due(feed_now + self.aggregator.grace)
        self._flush_bars()
        self._flush_prices()
        stats, unsent = self.aggregator.stats, len(self._to_persist) + len(self._to_publish)
        log.info(
            "ticker stopped: %d ticks, %d bars closed, %d late ticks dropped, %d volume resets, %d unknown-token "
            "ticks, %d zero-price ticks, %d LTP polls; %d bars still in their minute not kept; "
            "%d closed bars not written/published",
            *(stats.ticks, stats.bars_closed, stats.late_ticks, stats.volume_resets, self.unknown_ticks),
            *(self.unpriced_ticks, self.polls),
            *(len(self.aggregator.open_bars()), unsent),
        )

    def _drain(self, timeout: float) -> None:
        batch: list[tuple[datetime, float, list[dict[str, Any]]]] = []
        try:
            batch.append(self.ticks.get(timeout=timeout) if timeout else self.ticks.get_nowait())
            while len(batch) < 1000:
                batch.append(self.ticks.get_nowait())
        except queue.Empty:
            pass
        for received_at, monotonic, raw_ticks in batch:
            for raw in raw_ticks:
                self._add(raw, received_at, monotonic)

    def _add(self, raw: dict[str, Any], received_at: datetime, monotonic: float) -> None:
        try:
            tick = tick_from_kite(raw, received_at=received_at)
        except ValueError:
            log.exception("dropped a tick that could not be read")
            return
        sub = self.subs.get(tick.token)
        if sub is None:
            self.unknown_ticks += 1
            return
        self.watchdog.tick_seen(monotonic)
        if tick.price <= 0:  # Kite sends 0 for an instrument that has not traded yet today
            self.unpriced_ticks += 1
            return
        self.clock.observe(tick.time, monotonic)
        self._to_persist += self.aggregator.add(tick)
        latest = self._latest.get(sub.key)
        if latest is None or latest.source != "ticker" or tick.time >= latest.time:
            self._latest[sub.key] = events.LatestPrice(tick.price, tick.time, tick.token, "ticker")
            self._dirty.add(sub.key)

    def _flush_bars(self) -> None:
        if self._to_persist:
            close_old_connections()
            try:
                written = bars_persist(bars=self._to_persist, subscriptions=self.subs)
            except DatabaseError:
                log.exception("could not write %d bars; will retry", len(self._to_persist))
                connection.close()
                self._to_persist = self._to_persist[-MAX_PENDING_BARS:]
            else:
                minutes = sorted({f"{b.time:%H:%M}" for b in self._to_persist})
                log.info("stored %d bars (%d new or ticker-owned) of %s", len(self._to_persist), written, minutes)
                self._to_publish += self._to_persist
                self._to_persist = []
        if self._to_publish:
            try:
                bars = [bar_event(b, self.subs[b.token]) for b in self._to_publish]
                events.publish_bars(self.redis, bars, move_latest=False)  # tick prices are fresher
            except redis.RedisError:
                log.exception("could not publish %d bars; will retry", len(self._to_publish))
                self._to_publish = self._to_publish[-MAX_PENDING_BARS:]
            else:
                self._to_publish = []

    def _flush_prices(self) -> None:
        if not self._dirty:
            return
        try:
            events.set_latest_prices(self.redis, {k: self._latest[k] for k in self._dirty if k in self._latest})
        except redis.RedisError:
            log.exception("could not store latest prices; will retry")
            return
        self._dirty.clear()

    def _watch(self) -> None:
        monotonic, now = self.options.monotonic(), self.options.now()
        change = self.watchdog.check(monotonic=monotonic, now=now)
        if change == "stale":
            self._spell = (monotonic, self.polls)
            message = f"no tick for {self.options.stale_seconds:g}s in market hours; polling /quote/ltp"
            record_alert(self.redis, kind="feed_stale", message=message, at=now)
        elif change is not None:
            why = "ticks are back" if change == "recovered" else "the market closed"
            polls, seconds = self.polls - self._spell[1], monotonic - self._spell[0]
            message = f"{why}: polling stopped after {polls} LTP polls in {seconds:.0f}s"
            record_alert(self.redis, kind="feed_recovered", message=message, at=now)
        if self.watchdog.stale and monotonic >= self._next_poll:
            self._poll_ltp()

    def _poll_ltp(self) -> None:
        """One /quote/ltp call for the whole universe; the next one no sooner than 1/rate after this one ENDS."""
        keys = sorted(s.key for s in self.subs.values())
        try:
            data = self._ltp_fetch(keys)
        except (KiteException, requests.RequestException) as exc:
            log.warning("LTP poll failed: %s", exc)
            data = {}
        finally:
            self.polls += 1
            self._next_poll = self.options.monotonic() + 1.0 / self.options.ltp_per_second
        now = self.options.now()
        for key, quote in data.items():
            token = int(quote["instrument_token"])
            self._latest[key] = events.LatestPrice(price_decimal(token, quote["last_price"]), now, token, "ltp")
            self._dirty.add(key)


@dataclass
class TickerConnection:
    """What `connect` needs besides the feed: where and who, and KiteTicker's own reconnect policy."""

    api_key: str
    access_token: str
    root: str
    reconnect_max_tries: int = 300  # KiteTicker's ceiling; with 60 s between tries that is hours
    reconnect_max_delay: int = 60
    gave_up: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)


def connect(feed: LiveFeed, conn: TickerConnection, stop: threading.Event) -> Any:
    """Start the REAL KiteTicker on its reactor thread, subscribed to the feed's instruments in its mode."""
    from kiteconnect import KiteTicker
    from twisted.python import log as twisted_log

    twisted_log.PythonLoggingObserver(loggerName="twisted").start()  # reactor errors into our logs
    if logging.getLogger("twisted").level == logging.NOTSET:
        logging.getLogger("twisted").setLevel(logging.WARNING)  # not every factory start and stop
    kws = KiteTicker(
        conn.api_key,
        conn.access_token,
        root=conn.root,
        reconnect=True,
        reconnect_max_tries=conn.reconnect_max_tries,
        reconnect_max_delay=conn.reconnect_max_delay,
    )
    tokens = sorted(feed.subs)
    mode = feed.options.mode

    def on_connect(ws: Any, _response: Any) -> None:
        if ws.subscribed_tokens:  # a reconnect: KiteTicker re-subscribes by itself on open
            log.info("KiteTicker reconnected to %s; it re-subscribes %d instruments", conn.root, len(tokens))
            return
        ws.subscribe(tokens)
        ws.set_mode(mode, tokens)
        log.info("KiteTicker connected to %s; subscribed %d instruments in %s mode", conn.root, len(tokens), mode)

    def on_reconnect(_ws: Any, attempt: int) -> None:
        log.warning("KiteTicker reconnect attempt %d of %d", attempt, conn.reconnect_max_tries)

    def on_noreconnect(_ws: Any) -> None:
        record_alert(feed.redis, kind="feed_gave_up", message="KiteTicker gave up reconnecting", at=feed.options.now())
        conn.gave_up.set()
        stop.set()

    def on_close(_ws: Any, code: Any, reason: Any) -> None:
        if not stop.is_set():
            log.warning("KiteTicker connection closed (%s %s); it reconnects", code, reason)
        conn.closed.set()

    kws.on_ticks = feed.on_ticks
    kws.on_connect = on_connect
    kws.on_reconnect = on_reconnect
    kws.on_noreconnect = on_noreconnect
    kws.on_close = on_close
    kws.connect(threaded=True)
    return kws


def disconnect(kws: Any, conn: TickerConnection, *, timeout: float = 5.0) -> None:
    """Close the socket (WebSocket close handshake, no reconnect), then stop the reactor; from the main thread."""
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor  # twisted types the module, not the installed reactor
    conn.closed.clear()
    connected = kws.is_connected()
    reactor.callFromThread(kws.close)
    if connected and not conn.closed.wait(timeout / 2):
        log.warning("KiteTicker did not finish the close handshake; stopping anyway")
    reactor.callFromThread(reactor.stop)
    thread = getattr(kws, "websocket_thread", None)
    if thread is not None:
        thread.join(timeout)


def run(feed: LiveFeed, conn: TickerConnection, stop: threading.Event) -> bool:
    """Run until `stop` is set (a signal) or KiteTicker gives up; False when it gave up."""
    kws = connect(feed, conn, stop)
    try:
        feed.run(stop)
    finally:
        disconnect(kws, conn)
    return not conn.gave_up.is_set()
