"""Live ticks into one-minute bars on the exchange's (IST) minute boundaries. Pure: no Django.

The live feed (`apps.marketdata.ticker`) parses KiteTicker's packets with the
official client, turns each parsed tick into a `Tick` here and feeds a
`MinuteAggregator`; what comes out are closed `Bar`s, ready to persist and
publish. Keeping it free of Django and I/O makes it fast (it sees every tick of
the universe) and testable with scripted tick sequences.

Rules, and why:

- A bar covers [m, m + 1 minute) in Asia/Kolkata; its OHLC are the first,
  highest, lowest and last traded prices of the ticks in it, as `Decimal`.
- Volume is the sum of the increases of Kite's cumulative `volume_traded`
  (day volume). The first tick of an instrument in a session only sets the
  baseline (we cannot know what traded before we connected). A cumulative
  volume that goes DOWN (a new day, a reset on the exchange side) becomes the
  new baseline and adds nothing: a bar never gets negative volume.
- A bar closes when a tick for a later minute arrives for its instrument, or
  when `close_due(now)` finds its minute ended more than `grace` ago, so the
  bar of a quiet instrument is not held back forever.
- A tick for a minute that is already closed (late, or out of order) is
  dropped and counted: re-opening a bar that was already published would
  make the stream disagree with what strategies acted on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
ONE_MINUTE = timedelta(minutes=1)
DEFAULT_GRACE = timedelta(seconds=2)

# Kite's price divisor by exchange segment (the low byte of instrument_token), as in
# kiteconnect.ticker.KiteTicker._parse_binary: cds 10^7, bcd and nco 10^4, everything else 100.
_SEGMENT_DECIMALS = {3: 7, 6: 4, 12: 4}
_DEFAULT_DECIMALS = 2


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade print of one instrument. `volume_traded` is Kite's cumulative day volume (None in LTP mode)."""

    token: int
    price: Decimal
    time: datetime
    volume_traded: int | None = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError(f"tick time must be timezone-aware, got {self.time!r} for token {self.token}")


@dataclass(frozen=True, slots=True)
class Bar:
    token: int
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    ticks: int


def minute_of(moment: datetime) -> datetime:
    """The start of the IST minute that contains `moment`."""
    return moment.astimezone(IST).replace(second=0, microsecond=0)


def price_decimal(token: int, price: float | Decimal | int) -> Decimal:
    """A parsed Kite price as Decimal at the packet's own precision (paise for NSE), no float noise."""
    if isinstance(price, Decimal):
        return price
    places = _SEGMENT_DECIMALS.get(token & 0xFF, _DEFAULT_DECIMALS)
    return Decimal(f"{price:.{places}f}")


def tick_from_kite(raw: Mapping[str, Any], *, received_at: datetime) -> Tick:
    """A tick parsed by `kiteconnect.KiteTicker` (a dict) as a `Tick`.

    Full-mode packets carry `exchange_timestamp`; kiteconnect builds it with
    `datetime.fromtimestamp()`, i.e. a NAIVE datetime in the process's local
    zone (IST only when TZ is Asia/Kolkata, as Django arranges). `astimezone`
    reads a naive datetime as local time, so this recovers the exchange's
    instant whatever the process zone. Quote and LTP packets have no time:
    the arrival time stands in.
    """
    try:
        token = int(raw["instrument_token"])
        price = price_decimal(token, raw["last_price"])
        volume = raw.get("volume_traded")
        volume = None if volume is None else int(volume)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed Kite tick {dict(raw)!r}: {exc!r}") from exc
    stamp = raw.get("exchange_timestamp")
    moment = stamp.astimezone(IST) if isinstance(stamp, datetime) and stamp.timestamp() > 0 else received_at
    return Tick(token, price, moment, volume)


@dataclass(slots=True)
class _OpenBar:
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int = 0
    ticks: int = 1

    def add(self, price: Decimal, volume: int) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += volume
        self.ticks += 1

    def closed(self, token: int) -> Bar:
        return Bar(token, self.time, self.open, self.high, self.low, self.close, self.volume, self.ticks)


@dataclass
class AggregatorStats:
    ticks: int = 0
    late_ticks: int = 0
    volume_resets: int = 0
    bars_closed: int = 0


@dataclass
class MinuteAggregator:
    """Per-instrument open bars. Not thread-safe: one owner feeds it and closes bars."""

    grace: timedelta = DEFAULT_GRACE
    stats: AggregatorStats = field(default_factory=AggregatorStats)
    _open: dict[int, _OpenBar] = field(default_factory=dict)
    _next_minute: dict[int, datetime] = field(default_factory=dict)  # earliest minute still accepted
    _last_volume: dict[int, int] = field(default_factory=dict)

    def add(self, tick: Tick) -> list[Bar]:
        """Feed one tick; returns the bar it closed (a tick for a later minute closes the open one), if any."""
        minute = minute_of(tick.time)
        floor = self._next_minute.get(tick.token)
        if floor is not None and minute < floor:
            self.stats.late_ticks += 1
            return []
        self.stats.ticks += 1
        volume = self._volume_delta(tick)
        closed: list[Bar] = []
        bar = self._open.get(tick.token)
        if bar is not None and bar.time < minute:
            closed.append(self._close(tick.token))
            bar = None
        if bar is None:
            self._open[tick.token] = _OpenBar(minute, tick.price, tick.price, tick.price, tick.price, volume)
            self._next_minute[tick.token] = minute
        else:
            bar.add(tick.price, volume)
        return closed

    def close_due(self, now: datetime) -> list[Bar]:
        """Close every bar whose minute ended more than `grace` before `now` (the timer's half of closing)."""
        cutoff = now - self.grace - ONE_MINUTE
        due = [token for token, bar in self._open.items() if bar.time <= cutoff]
        return [self._close(token) for token in sorted(due)]

    def open_bars(self) -> list[Bar]:
        """The bars still being built (a snapshot; they stay open)."""
        return [bar.closed(token) for token, bar in sorted(self._open.items())]

    def _volume_delta(self, tick: Tick) -> int:
        if tick.volume_traded is None:
            return 0
        previous = self._last_volume.get(tick.token)
        self._last_volume[tick.token] = tick.volume_traded
        if previous is None:
            return 0
        if tick.volume_traded < previous:
            self.stats.volume_resets += 1
            return 0
        return tick.volume_traded - previous

    def _close(self, token: int) -> Bar:
        bar = self._open.pop(token)
        self._next_minute[token] = bar.time + ONE_MINUTE
        self.stats.bars_closed += 1
        return bar.closed(token)


@dataclass
class FeedClock:
    """The feed's own clock: the latest tick time seen, moved on by the local monotonic clock since.

    The timer closes bars on this clock rather than on the machine's wall
    clock, so exchange-stamped ticks (full mode) and a machine clock that is
    a few seconds off cannot close a bar before its ticks have arrived. In
    quote mode tick times are arrival times, so this is the wall clock.
    """

    _anchor: datetime | None = None
    _anchor_monotonic: float = 0.0

    def observe(self, moment: datetime, monotonic: float) -> None:
        current = self.now(monotonic)
        if current is None or moment > current:
            self._anchor, self._anchor_monotonic = moment, monotonic

    def now(self, monotonic: float) -> datetime | None:
        if self._anchor is None:
            return None
        return self._anchor + timedelta(seconds=monotonic - self._anchor_monotonic)
