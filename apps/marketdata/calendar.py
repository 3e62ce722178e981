"""The NSE trading calendar: which days trade, the sessions of each day, bar boundaries and tick rounding.

Pure (no Django): the ticker, the paper broker, the backtester and notebooks share one notion of
"is the market open", and tests need no database. `calendar_db.trading_calendar()` builds the
calendar from the operators' `CalendarDay` rows; `shipped_calendar()` builds it from the CSV shipped
with the code (`data/nse_calendar.csv`, the same rows the data migration loads).

API (every datetime must be timezone-aware; a naive one raises ValueError; results are in IST):

- `NSECalendar.is_trading_day(d)`: any session that day (a regular day, or a special session such as
  a weekend budget session or a Muhurat hour). `day_kind(d)` says which: REGULAR, SPECIAL or CLOSED;
  `has_regular_session(d)` is False on a holiday that has only a Muhurat session (2024-11-01).
- `session_at(at, instrument)` -> `SessionState`: the phase (PRE_OPEN_ORDER_ENTRY, PRE_OPEN_MATCHING,
  CONTINUOUS, CLOSING_AUCTION, CLOSING_AUCTION_MATCHING, POST_CLOSE, CLOSED), the order types it
  accepts, the auction's price band as data, and whether the day is SPECIAL (`is_special`).
- `is_open(at, instrument=None)`: the exchange accepts orders for that instrument now (pre-open
  order entry, continuous trading, closing-auction order entry, post-close at the closing price);
  without an instrument, for some stock (with derivatives or without): "is the market open".
- `next_open(at)`: start of the next continuous session strictly after `at` (special sessions count).
- `sessions(from_date, to_date, instrument=None)` -> one `DaySchedule` per trading day, with its
  timed `windows`; `schedule(d, instrument=None)` for one day. Without an instrument the windows are
  those of a stock without derivatives (no closing auction).
- `minute_floor(at)`, `bar_bounds(at, minutes)`: IST bars aligned to 09:15 (to the session's open
  on special days when called on the calendar).
- `round_to_tick(price, tick_size, mode)`: Decimal only, with the instrument's own tick size.

The instrument is anything with `tradingsymbol`, `exchange`, `tick_size` and `has_derivatives`
(`InstrumentProfile`); `calendar_db.instrument_profile()` adapts the Instrument model. It matters
because since 2026-08-03 stocks with listed derivatives end continuous trading at 15:15 and close in
SEBI's Closing Auction Session, while the others trade on to 15:30 (see `calendar_rules`).

Random closes: order entry of the pre-open and of the closing auction ends at a random moment after
`random_close_from`; `is_open` reports the window to its nominal end and `SessionState.in_random_close`
tells a cautious caller that an order may already be refused.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from apps.marketdata.calendar_rules import (
    IST,
    NO_ORDERS,
    RULE_SETS,
    DayKind,
    Phase,
    PriceBand,
    RoundingMode,
    RuleSet,
    Window,
    as_ist,
    at_ist,
    regular_windows,
    round_to_tick,
    special_windows,
)

__all__ = [
    "CSV_PATH",
    "IST",
    "RULE_SETS",
    "CalendarEntry",
    "DayKind",
    "DaySchedule",
    "InstrumentLike",
    "InstrumentProfile",
    "NSECalendar",
    "Phase",
    "PriceBand",
    "RoundingMode",
    "RuleSet",
    "SessionState",
    "Window",
    "as_ist",
    "bar_bounds",
    "load_entries_csv",
    "minute_floor",
    "round_to_tick",
    "shipped_calendar",
]

CSV_PATH = Path(__file__).with_name("data") / "nse_calendar.csv"
CSV_COLUMNS = ("date", "kind", "description", "open_time", "close_time", "source")
MAX_DAYS_TO_NEXT_OPEN = 60  # the longest NSE closure is a few days; beyond this the data is missing


class InstrumentLike(Protocol):
    """The little the calendar needs to know about an instrument (no Django model here)."""

    @property
    def tradingsymbol(self) -> str: ...
    @property
    def exchange(self) -> str: ...
    @property
    def tick_size(self) -> Decimal: ...
    @property
    def has_derivatives(self) -> bool: ...


@dataclass(frozen=True)
class InstrumentProfile:
    tradingsymbol: str
    exchange: str
    tick_size: Decimal
    has_derivatives: bool


@dataclass(frozen=True)
class CalendarEntry:
    """A day that differs from the weekly rule (one CalendarDay row).

    A special entry with both times is a short session (pre-open, then continuous trading from
    `open_time` to `close_time`, no closing auction: the exchange's VWAP close applies). A special
    entry with neither time is a full day on the regular timetable of the rules in force.
    """

    date: date
    kind: DayKind
    description: str = ""
    open_time: time | None = None
    close_time: time | None = None
    source: str = ""

    def __post_init__(self) -> None:
        where = f"calendar entry {self.date.isoformat()}"
        if self.kind not in (DayKind.CLOSED, DayKind.SPECIAL):
            raise ValueError(f"{where}: kind must be 'closed' or 'special', not {self.kind!r}")
        if self.kind is DayKind.CLOSED and (self.open_time or self.close_time):
            raise ValueError(f"{where}: a closed day has no open_time/close_time")
        if (self.open_time is None) != (self.close_time is None):
            raise ValueError(f"{where}: a special session needs both open_time and close_time, or neither")
        if self.open_time and self.close_time and self.close_time <= self.open_time:
            raise ValueError(f"{where}: close_time {self.close_time} is not after open_time {self.open_time}")


@dataclass(frozen=True)
class DaySchedule:
    date: date
    kind: DayKind
    description: str
    rules: RuleSet
    windows: tuple[Window, ...]

    @property
    def open(self) -> datetime:
        """Start of continuous trading (what `next_open` returns)."""
        return next(w.start for w in self.windows if w.phase is Phase.CONTINUOUS)

    @property
    def close(self) -> datetime:
        """When the closing price is set: end of continuous trading, or of the closing auction."""
        price_setting = (Phase.CONTINUOUS, Phase.CLOSING_AUCTION_MATCHING)
        return max(w.end for w in self.windows if w.phase in price_setting)

    @property
    def first_start(self) -> datetime:
        return self.windows[0].start

    @property
    def last_end(self) -> datetime:
        return self.windows[-1].end

    def window_at(self, at: datetime) -> Window | None:
        return next((w for w in self.windows if w.contains(at)), None)


@dataclass(frozen=True)
class SessionState:
    at: datetime
    phase: Phase
    day_kind: DayKind
    window: Window | None
    description: str = ""
    rule_set: str | None = None

    @property
    def order_types(self) -> frozenset[str]:
        return self.window.order_types if self.window else NO_ORDERS

    @property
    def accepts_orders(self) -> bool:
        return bool(self.order_types)

    @property
    def price_band(self) -> PriceBand | None:
        return self.window.price_band if self.window else None

    @property
    def in_random_close(self) -> bool:
        cutoff = self.window.random_close_from if self.window else None
        return cutoff is not None and self.at >= cutoff

    @property
    def is_special(self) -> bool:
        return self.day_kind is DayKind.SPECIAL


class NSECalendar:
    """Weekends closed, weekdays regular, except the dated entries; session rules by effective date."""

    def __init__(
        self, entries: Iterable[CalendarEntry], *, rule_sets: Sequence[RuleSet] = RULE_SETS, exchange: str = "NSE"
    ) -> None:
        self.exchange = exchange
        self._entries: dict[date, CalendarEntry] = {}
        for entry in entries:
            if entry.date in self._entries:
                raise ValueError(f"calendar entry {entry.date.isoformat()} appears twice")
            self._entries[entry.date] = entry
        if not rule_sets:
            raise ValueError("NSECalendar needs at least one rule set")
        self._rule_sets = sorted(rule_sets, key=lambda r: r.effective_from)
        # Days are immutable once built; the ticker asks about the same day on every tick.
        self._schedules: dict[tuple[date, bool], DaySchedule | None] = {}

    @property
    def entries(self) -> tuple[CalendarEntry, ...]:
        return tuple(sorted(self._entries.values(), key=lambda e: e.date))

    def entry(self, d: date) -> CalendarEntry | None:
        return self._entries.get(_as_date(d))

    def rules_for(self, d: date) -> RuleSet:
        d = _as_date(d)
        in_force = [r for r in self._rule_sets if r.effective_from <= d]
        return in_force[-1] if in_force else self._rule_sets[0]

    def day_kind(self, d: date) -> DayKind:
        d = _as_date(d)
        entry = self._entries.get(d)
        if entry is not None:
            return entry.kind
        return DayKind.REGULAR if d.weekday() < 5 else DayKind.CLOSED

    def is_trading_day(self, d: date) -> bool:
        return self.day_kind(d) is not DayKind.CLOSED

    def has_regular_session(self, d: date) -> bool:
        return self.day_kind(d) is DayKind.REGULAR

    def schedule(self, d: date, instrument: InstrumentLike | None = None) -> DaySchedule | None:
        """The day's timed windows for `instrument` (None: a stock without derivatives); None if closed."""
        return self._schedule(_as_date(d), has_derivatives=self._has_derivatives(instrument))

    def sessions(self, from_date: date, to_date: date, instrument: InstrumentLike | None = None) -> list[DaySchedule]:
        """The trading days from `from_date` to `to_date` inclusive, with their session times."""
        start, end = _as_date(from_date), _as_date(to_date)
        if end < start:
            raise ValueError(f"sessions: to_date {end} is before from_date {start}")
        days = (start + timedelta(days=n) for n in range((end - start).days + 1))
        return [s for s in (self.schedule(d, instrument) for d in days) if s is not None]

    def session_at(self, at: datetime, instrument: InstrumentLike) -> SessionState:
        """The phase `instrument` is in at `at`, with the order types and auction band that apply."""
        return self._session_at(as_ist(at), has_derivatives=self._has_derivatives(instrument))

    def is_open(self, at: datetime, instrument: InstrumentLike | None = None) -> bool:
        """Does the exchange accept orders for `instrument` now? None: for some stock, with derivatives or not."""
        at = as_ist(at)
        if instrument is not None:
            return self._session_at(at, has_derivatives=self._has_derivatives(instrument)).accepts_orders
        return any(self._session_at(at, has_derivatives=flag).accepts_orders for flag in (False, True))

    def next_open(self, at: datetime) -> datetime:
        """Start of the next continuous session strictly after `at`."""
        at = as_ist(at)
        for n in range(MAX_DAYS_TO_NEXT_OPEN + 1):
            schedule = self.schedule(at.date() + timedelta(days=n))
            if schedule is not None and schedule.open > at:
                return schedule.open
        raise LookupError(f"no {self.exchange} session within {MAX_DAYS_TO_NEXT_OPEN} days after {at.isoformat()}")

    def bar_bounds(self, at: datetime, interval_minutes: int) -> tuple[datetime, datetime]:
        """`bar_bounds` anchored at the day's continuous open (09:15, or a special session's open)."""
        at = as_ist(at)
        schedule = self.schedule(at.date())
        anchor = schedule.open.timetz() if schedule else time(9, 15)
        return bar_bounds(at, interval_minutes, anchor=anchor)

    def _schedule(self, d: date, *, has_derivatives: bool) -> DaySchedule | None:
        key = (d, has_derivatives)
        if key not in self._schedules:
            self._schedules[key] = self._build_schedule(d, has_derivatives=has_derivatives)
        return self._schedules[key]

    def _build_schedule(self, d: date, *, has_derivatives: bool) -> DaySchedule | None:
        kind = self.day_kind(d)
        if kind is DayKind.CLOSED:
            return None
        rules = self.rules_for(d)
        entry = self._entries.get(d)
        if entry is not None and entry.open_time is not None and entry.close_time is not None:
            windows = special_windows(d, rules, entry.open_time, entry.close_time)
        else:
            windows = regular_windows(d, rules, has_derivatives=has_derivatives)
        return DaySchedule(d, kind, entry.description if entry else "", rules, windows)

    def _session_at(self, at: datetime, *, has_derivatives: bool) -> SessionState:
        schedule = self._schedule(at.date(), has_derivatives=has_derivatives)
        if schedule is None:
            entry = self._entries.get(at.date())
            return SessionState(at, Phase.CLOSED, DayKind.CLOSED, None, entry.description if entry else "")
        window = schedule.window_at(at)
        phase = window.phase if window else Phase.CLOSED
        return SessionState(at, phase, schedule.kind, window, schedule.description, schedule.rules.name)

    def _has_derivatives(self, instrument: InstrumentLike | None) -> bool:
        if instrument is None:
            return False
        if instrument.exchange != self.exchange:
            raise ValueError(
                f"{instrument.exchange}:{instrument.tradingsymbol} is not on {self.exchange}, this calendar's exchange"
            )
        return bool(instrument.has_derivatives)


def _as_date(d: date) -> date:
    """A date, or the IST date of an aware datetime (naive datetimes are refused, not guessed)."""
    if isinstance(d, datetime):
        return as_ist(d).date()
    if not isinstance(d, date):
        raise TypeError(f"expected a date, got {type(d).__name__} {d!r}")
    return d


def minute_floor(at: datetime) -> datetime:
    """The IST minute `at` falls in (Kite labels a minute bar by its start)."""
    return as_ist(at).replace(second=0, microsecond=0)


def bar_bounds(at: datetime, interval_minutes: int, *, anchor: time | None = None) -> tuple[datetime, datetime]:
    """`[start, end)` of the `interval_minutes` bar holding `at`, on IST boundaries counted from `anchor` (09:15).

    The last bar of a day may run past the close (15:15-16:15 for 60-minute bars); the feed cuts it there.
    """
    if isinstance(interval_minutes, bool) or not isinstance(interval_minutes, int) or interval_minutes <= 0:
        raise ValueError(f"bar_bounds: interval_minutes must be a positive int, not {interval_minutes!r}")
    at = as_ist(at)
    origin = at_ist(at.date(), anchor or time(9, 15))
    step = timedelta(minutes=interval_minutes)
    start = origin + ((at - origin) // step) * step
    return start, start + step


def load_entries_csv(path: Path = CSV_PATH) -> list[CalendarEntry]:
    """The calendar table shipped with the code (`date,kind,description,open_time,close_time,source`)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(CSV_COLUMNS)}, got {reader.fieldnames}")
        entries = []
        for line, row in enumerate(reader, start=2):
            try:
                entries.append(_entry_from_row(row))
            except ValueError as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from exc
    return entries


def _entry_from_row(row: dict[str, str]) -> CalendarEntry:
    def optional_time(text: str) -> time | None:
        return time.fromisoformat(text) if text.strip() else None

    return CalendarEntry(
        date=date.fromisoformat(row["date"]),
        kind=DayKind(row["kind"]),
        description=row["description"],
        open_time=optional_time(row["open_time"]),
        close_time=optional_time(row["close_time"]),
        source=row["source"],
    )


def shipped_calendar() -> NSECalendar:
    """The calendar of the shipped CSV alone (no operator edits): for backtests and notebooks without a database."""
    return NSECalendar(load_entries_csv())
