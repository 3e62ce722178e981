"""NSE session rules as dated data, and the timed windows a rule set gives a day.

Pure (no Django); `apps.marketdata.calendar` is the API, this module its rules and arithmetic.
A SEBI or NSE change to the timetable is a new `RuleSet` appended to `RULE_SETS` with its
`effective_from` date (usually `dataclasses.replace` of the previous one): dates before it keep
the old rules, so backtests and replays of old days stay right. A rule set whose times overlap
or run backwards is refused when it is defined.

The versions known (IST):

1. `vwap_close` (until 2026-08-02): pre-open call auction 09:00-09:08 order entry (random close in
   the last minute, from 09:07), matching and buffer to 09:15; continuous trading 09:15-15:30 for
   every stock; the closing price is the VWAP of the last 30 minutes; post-close session 15:40-16:00
   at the closing price.
2. `closing_auction` (from 2026-08-03, SEBI's Closing Auction Session circular): for stocks with
   listed derivatives (every NIFTY 50 stock) continuous trading ends at 15:15 and the Closing Auction
   Session runs 15:15-15:35: order entry to 15:30 with a random close from 15:28, only LIMIT and
   MARKET orders within +/-3% of the reference price (VWAP of 15:00-15:15 trades; the last traded
   price, else the previous close, when there were none), then matching at the equilibrium price,
   which becomes the closing price. Stocks without derivatives trade continuously to 15:30 and keep
   the VWAP close. The post-close session moves to 15:50-16:00.
3. `closing_auction_pre_open_aligned` (from 2026-09-07): the pre-open call auction adopts the CAS
   mechanics: at the equilibrium price market orders are matched before limit orders (the old
   pre-open matched limit orders first) and the indicative price, cumulative buy/sell quantities
   and imbalance are disseminated as in CAS. The pre-open timetable (09:00-09:08, random close from
   09:07, matching and buffer to 09:15) and its order types (LIMIT, MARKET) are unchanged here;
   check NSE's SOP for the final sub-period timings and edit this entry if they differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")

# Kite's order types.
LIMIT, MARKET, SL, SL_M = "LIMIT", "MARKET", "SL", "SL-M"
NO_ORDERS: frozenset[str] = frozenset()
CONTINUOUS_ORDER_TYPES = frozenset({LIMIT, MARKET, SL, SL_M})
AUCTION_ORDER_TYPES = frozenset({LIMIT, MARKET})
POST_CLOSE_ORDER_TYPES = frozenset({LIMIT, MARKET})  # executed only at the closing price

RoundingMode = Literal["nearest", "down", "up"]
_ROUNDING = {"nearest": ROUND_HALF_UP, "down": ROUND_FLOOR, "up": ROUND_CEILING}


class Phase(StrEnum):
    PRE_OPEN_ORDER_ENTRY = "pre_open_order_entry"
    PRE_OPEN_MATCHING = "pre_open_matching"  # matching, trade confirmation and the buffer to the open
    CONTINUOUS = "continuous"
    CLOSING_AUCTION = "closing_auction"  # CAS order entry
    CLOSING_AUCTION_MATCHING = "closing_auction_matching"
    POST_CLOSE = "post_close"
    CLOSED = "closed"


class DayKind(StrEnum):
    REGULAR = "regular"
    SPECIAL = "special"  # a session on a day that is otherwise closed: weekend, Muhurat, budget day
    CLOSED = "closed"


def as_ist(at: datetime) -> datetime:
    """`at` on the exchange clock; a naive datetime is refused rather than guessed."""
    if not isinstance(at, datetime):
        raise TypeError(f"expected a timezone-aware datetime, got {type(at).__name__} {at!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            f"naive datetime {at.isoformat()}: pass a timezone-aware datetime (NSE's clock is Asia/Kolkata)"
        )
    return at.astimezone(IST)


def round_to_tick(price: Decimal, tick_size: Decimal, mode: RoundingMode = "nearest") -> Decimal:
    """`price` on the instrument's tick grid: nearest (halves up), down (floor) or up (ceiling)."""
    for name, value in (("price", price), ("tick_size", tick_size)):
        if not isinstance(value, Decimal):
            raise TypeError(f"round_to_tick: {name} must be a Decimal (never float), got {type(value).__name__}")
        if not value.is_finite():
            raise ValueError(f"round_to_tick: {name} must be finite, got {value}")
    if tick_size <= 0:
        raise ValueError(f"round_to_tick: tick_size must be positive, got {tick_size}")
    rounding = _ROUNDING.get(mode)
    if rounding is None:
        raise ValueError(f"round_to_tick: mode must be one of {sorted(_ROUNDING)}, not {mode!r}")
    ticks = (price / tick_size).to_integral_value(rounding=rounding)
    return (ticks * tick_size).quantize(tick_size)


@dataclass(frozen=True)
class PriceBand:
    """An auction's allowed prices: +/- `percent` around a reference price."""

    percent: Decimal
    reference: str

    def limits(self, reference_price: Decimal, tick_size: Decimal) -> tuple[Decimal, Decimal]:
        """The lowest and highest orderable prices, rounded inwards onto the tick grid."""
        delta = reference_price * self.percent / 100
        return (
            round_to_tick(reference_price - delta, tick_size, "up"),
            round_to_tick(reference_price + delta, tick_size, "down"),
        )


@dataclass(frozen=True)
class PreOpenRules:
    order_entry_start: time
    order_entry_end: time  # nominal end; the real one is random in [random_close_from, order_entry_end)
    random_close_from: time
    order_types: frozenset[str]
    market_orders_first: bool  # at the equilibrium price, are market orders matched before limit orders?
    mechanics: str


@dataclass(frozen=True)
class ClosingAuctionRules:
    """SEBI's Closing Auction Session, for stocks with listed derivatives."""

    start: time  # continuous trading of eligible stocks ends here
    order_entry_end: time
    random_close_from: time
    end: time  # matching done, closing price known
    order_types: frozenset[str]
    price_band: PriceBand
    market_orders_first: bool


@dataclass(frozen=True)
class RuleSet:
    effective_from: date
    name: str
    source: str
    pre_open: PreOpenRules
    continuous_open: time
    continuous_close: time  # for stocks without a closing auction
    closing_auction: ClosingAuctionRules | None
    post_close: tuple[time, time] | None
    closing_price: str

    def __post_init__(self) -> None:
        """Refuse a timetable whose phases overlap or run backwards: phases are looked up in order."""
        pre, auction = self.pre_open, self.closing_auction
        _in_order(self.name, "pre-open", pre.order_entry_start, pre.random_close_from, pre.order_entry_end)
        _in_order(self.name, "opening", pre.order_entry_end, self.continuous_open)
        _in_order(self.name, "continuous trading", self.continuous_open, self.continuous_close, strict=True)
        last = self.continuous_close
        if auction is not None:
            _in_order(self.name, "closing auction start", self.continuous_open, auction.start, strict=True)
            _in_order(self.name, "closing auction start", auction.start, self.continuous_close)
            steps = (auction.start, auction.random_close_from, auction.order_entry_end, auction.end)
            _in_order(self.name, "closing auction", *steps)
            last = max(last, auction.end)
        if self.post_close is not None:
            _in_order(self.name, "post-close", last, self.post_close[0])
            _in_order(self.name, "post-close", *self.post_close, strict=True)


def _in_order(name: str, what: str, *times: time, strict: bool = False) -> None:
    pairs = pairwise(times)
    if any(b < a or (strict and b == a) for a, b in pairs):
        raise ValueError(f"rule set {name!r}: {what} times out of order: {', '.join(str(t) for t in times)}")


_CALL_AUCTION_PRE_OPEN = PreOpenRules(
    order_entry_start=time(9, 0),
    order_entry_end=time(9, 8),
    random_close_from=time(9, 7),
    order_types=AUCTION_ORDER_TYPES,
    market_orders_first=False,
    mechanics="call auction: equilibrium price maximising matched quantity; limit orders matched before market orders",
)

VWAP_CLOSE = RuleSet(
    effective_from=date.min,
    name="vwap_close",
    source="NSE equity market timings (pre-open since 2010, random close in the last minute)",
    pre_open=_CALL_AUCTION_PRE_OPEN,
    continuous_open=time(9, 15),
    continuous_close=time(15, 30),
    closing_auction=None,
    post_close=(time(15, 40), time(16, 0)),
    closing_price="VWAP of the last 30 minutes of continuous trading",
)

CLOSING_AUCTION = replace(
    VWAP_CLOSE,
    effective_from=date(2026, 8, 3),
    name="closing_auction",
    source="SEBI circular on the Closing Auction Session (CAS) in the equity cash segment",
    closing_auction=ClosingAuctionRules(
        start=time(15, 15),
        order_entry_end=time(15, 30),
        random_close_from=time(15, 28),
        end=time(15, 35),
        order_types=AUCTION_ORDER_TYPES,
        price_band=PriceBand(
            percent=Decimal(3),
            reference="VWAP of 15:00-15:15 trades; else the last traded price; else the previous close",
        ),
        market_orders_first=True,
    ),
    post_close=(time(15, 50), time(16, 0)),
    closing_price="stocks with derivatives: CAS equilibrium price; others: VWAP of the last 30 minutes",
)

CLOSING_AUCTION_PRE_OPEN_ALIGNED = replace(
    CLOSING_AUCTION,
    effective_from=date(2026, 9, 7),
    name="closing_auction_pre_open_aligned",
    source="SEBI CAS circular: pre-open call auction aligned with CAS mechanics",
    pre_open=replace(
        _CALL_AUCTION_PRE_OPEN,
        market_orders_first=True,
        mechanics=(
            "call auction aligned with CAS: market orders matched first at the equilibrium price; "
            "indicative price, cumulative quantities and imbalance disseminated"
        ),
    ),
)

RULE_SETS: tuple[RuleSet, ...] = (VWAP_CLOSE, CLOSING_AUCTION, CLOSING_AUCTION_PRE_OPEN_ALIGNED)


@dataclass(frozen=True)
class Window:
    """One timed phase of a trading day, `start <= at < end`, with what the exchange accepts in it."""

    phase: Phase
    start: datetime
    end: datetime
    order_types: frozenset[str]
    random_close_from: datetime | None = None
    price_band: PriceBand | None = None
    at_closing_price: bool = False

    @property
    def accepts_orders(self) -> bool:
        return bool(self.order_types)

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """`2024-06-04` (the whole IST day: its first or, with `end_of_day`, its last moment) or an ISO
    datetime; a naive datetime is read as IST. Raises ValueError for anything else."""
    text = text.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time.max if end_of_day else time.min, IST)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=IST)


def at_ist(d: date, t: time) -> datetime:
    """`t` (IST wall clock) on day `d`."""
    return datetime.combine(d, t.replace(tzinfo=None), IST)


def regular_windows(d: date, rules: RuleSet, *, has_derivatives: bool) -> tuple[Window, ...]:
    """The regular timetable of `rules` on day `d`; the closing auction only for stocks with derivatives."""
    pre = rules.pre_open
    windows = [
        Window(
            Phase.PRE_OPEN_ORDER_ENTRY,
            at_ist(d, pre.order_entry_start),
            at_ist(d, pre.order_entry_end),
            pre.order_types,
            random_close_from=at_ist(d, pre.random_close_from),
        ),
        Window(Phase.PRE_OPEN_MATCHING, at_ist(d, pre.order_entry_end), at_ist(d, rules.continuous_open), NO_ORDERS),
    ]
    auction = rules.closing_auction if has_derivatives else None
    continuous_end = auction.start if auction else rules.continuous_close
    windows.append(
        Window(Phase.CONTINUOUS, at_ist(d, rules.continuous_open), at_ist(d, continuous_end), CONTINUOUS_ORDER_TYPES)
    )
    if auction is not None:
        windows += [
            Window(
                Phase.CLOSING_AUCTION,
                at_ist(d, auction.start),
                at_ist(d, auction.order_entry_end),
                auction.order_types,
                random_close_from=at_ist(d, auction.random_close_from),
                price_band=auction.price_band,
            ),
            Window(
                Phase.CLOSING_AUCTION_MATCHING, at_ist(d, auction.order_entry_end), at_ist(d, auction.end), NO_ORDERS
            ),
        ]
    if rules.post_close is not None:
        start, end = rules.post_close
        windows.append(
            Window(Phase.POST_CLOSE, at_ist(d, start), at_ist(d, end), POST_CLOSE_ORDER_TYPES, at_closing_price=True)
        )
    return tuple(windows)


def special_windows(d: date, rules: RuleSet, open_time: time, close_time: time) -> tuple[Window, ...]:
    """A short session: the regular pre-open shifted to end at `open_time`, then continuous trading."""
    pre = rules.pre_open
    regular_open = at_ist(d, rules.continuous_open)
    opens, closes = at_ist(d, open_time), at_ist(d, close_time)

    def shifted(t: time) -> datetime:
        return opens - (regular_open - at_ist(d, t))

    return (
        Window(
            Phase.PRE_OPEN_ORDER_ENTRY,
            shifted(pre.order_entry_start),
            shifted(pre.order_entry_end),
            pre.order_types,
            random_close_from=shifted(pre.random_close_from),
        ),
        Window(Phase.PRE_OPEN_MATCHING, shifted(pre.order_entry_end), opens, NO_ORDERS),
        Window(Phase.CONTINUOUS, opens, closes, CONTINUOUS_ORDER_TYPES),
    )
