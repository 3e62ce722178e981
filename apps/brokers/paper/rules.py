"""What Kite refuses, and how: the paper broker's validation. Pure, no Django.

Two kinds of refusal, as at Kite:
- `check_request` / `check_session` raise `BrokerRejected` (Kite's InputException): a malformed
  request or a closed market. No order id, nothing in the book.
- `rms_rejection` returns a `Rejection` (Kite's RMS): the order gets an id and shows REJECTED in the book
  with Kite's status_message (lot size, tick size, circuit limits, trigger on the wrong side of the
  last price, no price to fill a market order). Funds are checked by the broker (it needs the book).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from apps.brokers.base import BrokerRejected, OrderRequest
from apps.marketdata.calendar import NSECalendar, PriceBand

BUY, SELL = "BUY", "SELL"
MARKET, LIMIT, SL, SL_M = "MARKET", "LIMIT", "SL", "SL-M"
OPEN, TRIGGER_PENDING, AMO_RECEIVED = "OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED"
COMPLETE, CANCELLED, REJECTED = "COMPLETE", "CANCELLED", "REJECTED"
PAPER_OPEN_STATUSES = frozenset({OPEN, TRIGGER_PENDING, AMO_RECEIVED})

VARIETIES = frozenset({"regular", "amo"})  # co, iceberg and auction are not simulated
PRODUCTS = frozenset({"CNC", "MIS", "NRML"})
ORDER_TYPES = frozenset({MARKET, LIMIT, SL, SL_M})
TRANSACTION_TYPES = frozenset({BUY, SELL})
VALIDITIES = frozenset({"DAY", "IOC"})
ALL_ORDER_TYPES = ORDER_TYPES
MONEY_FIELDS = ("price", "trigger_price", "average_price", "market_protection")
TAG_MAX_LENGTH = 20
AUTO_PROTECTION = Decimal(-1)

MARKETS_CLOSED = "Markets are closed right now. Use GTT for placing long standing orders instead."
NO_PROTECTION = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)
CIRCUIT = "Price exceeds circuit limits for the instrument. Place an order within the daily range."


@dataclass(frozen=True)
class PaperInstrument:
    """What the paper broker needs to know about an instrument (also the calendar's `InstrumentLike`)."""

    exchange: str
    tradingsymbol: str
    tick_size: Decimal
    lot_size: int = 1
    instrument_token: int | None = None
    has_derivatives: bool = False

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


@dataclass(frozen=True)
class PaperConfig:
    """Knobs of the simulation; the defaults are what docs/paper-broker.md describes."""

    slippage_ticks: int = 1  # market fills this many ticks against the trader
    circuit_percent: Decimal = Decimal(20)  # band around the last price when no circuit limits are given
    auto_market_protection_percent: Decimal = Decimal(3)  # what market_protection=-1 means
    starting_cash: Decimal = Decimal(1_000_000)
    mis_margin_rate: Decimal = Decimal("0.2")  # MIS blocks 20% of the value (5x leverage)
    check_funds: bool = True
    placed_by: str = "PAPER"
    app_id: int = 0
    # Kite checksums postbacks as sha256(order_id + order_timestamp + api_secret); paper uses this public key.
    postback_secret: str = "paper"  # noqa: S105 - not a secret: a fixed, documented key for paper postbacks

    def __post_init__(self) -> None:
        if isinstance(self.slippage_ticks, bool) or not isinstance(self.slippage_ticks, int) or self.slippage_ticks < 0:
            raise ValueError(f"PaperConfig.slippage_ticks must be a whole number >= 0, got {self.slippage_ticks!r}")
        for name in ("circuit_percent", "auto_market_protection_percent", "starting_cash", "mis_margin_rate"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"PaperConfig.{name} must be a finite Decimal >= 0, got {value!r}")


@dataclass(frozen=True)
class Rejection:
    """An RMS rejection: the order is recorded REJECTED with these messages (Kite's two fields)."""

    message: str
    raw: str


SessionRule = Callable[[datetime, PaperInstrument], frozenset[str]]


def always_open(at: datetime, instrument: PaperInstrument) -> frozenset[str]:
    """A session rule for tests and replays: every order type is accepted at any time."""
    return ALL_ORDER_TYPES


def calendar_session(calendar: NSECalendar) -> SessionRule:
    """Market hours from the NSE calendar: the order types the instrument's session accepts at `at`."""

    def accepted(at: datetime, instrument: PaperInstrument) -> frozenset[str]:
        return calendar.session_at(at, instrument).order_types

    return accepted


def _reject(field: str, why: str) -> BrokerRejected:
    return BrokerRejected(f"Invalid `{field}`: {why}")


def check_request(request: OrderRequest) -> None:
    """Kite's InputException cases: the request alone is malformed. Raises BrokerRejected."""
    for field, allowed in (
        ("variety", VARIETIES),
        ("product", PRODUCTS),
        ("order_type", ORDER_TYPES),
        ("transaction_type", TRANSACTION_TYPES),
        ("validity", VALIDITIES),
    ):
        value = getattr(request, field)
        if value not in allowed:
            raise _reject(field, f"{value!r} is not one of {', '.join(sorted(allowed))}.")
    quantity = request.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise _reject("quantity", f"must be a whole number above 0, got {quantity!r}.")
    if len(request.tag) > TAG_MAX_LENGTH:
        raise _reject("tag", f"at most {TAG_MAX_LENGTH} characters, got {len(request.tag)}.")
    check_prices(request.order_type, request.transaction_type, request.price, request.trigger_price)
    if request.order_type in (MARKET, SL_M):
        check_market_protection(request.market_protection)


def check_variety(variety: str) -> None:
    if variety not in VARIETIES:
        raise _reject("variety", f"{variety!r} is not one of {', '.join(sorted(VARIETIES))}.")


def check_prices(order_type: str, side: str, price: Decimal | None, trigger: Decimal | None) -> None:
    """The prices each order type needs, positive, and a stop-limit's limit on the right side of its trigger."""
    for field, value in (("price", price), ("trigger_price", trigger)):
        if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
            raise _reject(field, f"must be a Decimal >= 0, got {value!r}.")
    if order_type in (LIMIT, SL) and not price:
        raise _reject("price", f"a {order_type} order needs a price above 0.")
    if order_type in (SL, SL_M) and not trigger:
        raise _reject("trigger_price", f"a {order_type} order needs a trigger price above 0.")
    if order_type == SL and price and trigger:
        if side == BUY and trigger > price:
            raise _reject("trigger_price", "for a stoploss buy order it must not be above the price.")
        if side == SELL and trigger < price:
            raise _reject("trigger_price", "for a stoploss sell order it must not be below the price.")


def check_market_protection(value: Decimal | None) -> None:
    """Since April 2026 Kite refuses API market and SL-M orders without protection (0 or missing)."""
    if value is None or value == 0:
        raise BrokerRejected(NO_PROTECTION)
    if not isinstance(value, Decimal) or not (value == AUTO_PROTECTION or 0 < value <= 100):
        raise _reject("market_protection", f"a percentage in (0, 100] or -1 (automatic), got {value!r}.")


def check_session(accepted: frozenset[str], *, variety: str, order_type: str) -> None:
    """Market hours: regular orders need an open session that takes the order type; AMO only when closed."""
    if variety == "amo":
        if accepted:
            raise BrokerRejected("AMO orders cannot be placed while the market is open. Place a regular order.")
        return
    if not accepted:
        raise BrokerRejected(MARKETS_CLOSED)
    if order_type not in accepted:
        raise BrokerRejected(
            f"{order_type} orders are not allowed in the current market session; "
            f"it accepts {', '.join(sorted(accepted))} only."
        )


def circuit_limits(reference: Decimal, tick: Decimal, percent: Decimal) -> tuple[Decimal, Decimal]:
    """The default price band: +/- `percent` of the last price, inwards onto the tick grid."""
    return PriceBand(percent=percent, reference="last traded price").limits(reference, tick)


def rms_rejection(
    request: OrderRequest,
    instrument: PaperInstrument,
    *,
    ltp: Decimal | None,
    limits: tuple[Decimal, Decimal] | None,
) -> Rejection | None:
    """Kite's RMS checks that need the instrument or the market: the order is recorded REJECTED."""
    side, lot, tick = request.transaction_type, instrument.lot_size, instrument.tick_size
    if request.quantity % lot:
        return Rejection(
            f"Quantity should be a multiple of the lot size {lot}.",
            f"RMS:Rule: Quantity {request.quantity} is not a multiple of lot size {lot} for {instrument.key}",
        )
    for field, value in (("price", request.price), ("trigger price", request.trigger_price)):
        if value and value % tick:
            return Rejection(
                f"Tick size for this script is {tick}. Kindly enter {field} in the multiple of tick size "
                "for this script",
                f"RMS:Rule: {field} {value} is not a multiple of tick size {tick} for {instrument.key}",
            )
    if request.order_type == MARKET and request.variety != "amo" and ltp is None:
        return Rejection(
            f"Last traded price of {instrument.key} is not available. Place a limit order instead.",
            f"RMS:Rule: no LTP for {instrument.key}, cannot price a market order",
        )
    rejection = _circuit_rejection(request, limits)
    if rejection is None and request.order_type in (SL, SL_M) and ltp is not None and request.trigger_price:
        rejection = _trigger_rejection(side, request.trigger_price, ltp)
    return rejection


def _circuit_rejection(request: OrderRequest, limits: tuple[Decimal, Decimal] | None) -> Rejection | None:
    if limits is None:
        return None
    low, high = limits
    for value in (request.price, request.trigger_price):
        if value and not low <= value <= high:
            return Rejection(CIRCUIT, f"RMS:Rule: price {value} outside the circuit limits {low}-{high}")
    return None


def _trigger_rejection(side: str, trigger: Decimal, ltp: Decimal) -> Rejection | None:
    if side == BUY and trigger < ltp:
        return Rejection(
            "Trigger price for stoploss buy orders should be higher than the last traded price.",
            f"RMS:Rule: buy trigger {trigger} below LTP {ltp}",
        )
    if side == SELL and trigger > ltp:
        return Rejection(
            "Trigger price for stoploss sell orders should be lower than the last traded price.",
            f"RMS:Rule: sell trigger {trigger} above LTP {ltp}",
        )
    return None


def funds_rejection(required: Decimal, available: Decimal, account: str) -> Rejection:
    """Kite's words for an order that needs more margin than the account has (orders.json has one)."""
    return Rejection(
        f"Insufficient funds. Required margin is {required:.2f} but available margin is {available:.2f}. "
        "Check the orderbook for open orders.",
        f"RMS:Margin Exceeds,Required:{required:.2f}, Available:{available:.2f} for entity "
        f"account-{account} across exchange across segment across product ",
    )
