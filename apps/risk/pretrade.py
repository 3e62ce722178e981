"""Pre-trade checks as pure functions: each returns a failure with a machine-readable code, or None.

All checks run (not just up to the first failure) so the order records every reason it was refused. No Django
import: `apps.risk.services` gathers the facts (limits, the account's book, the session, the latest price) and
hands them here, so every check is a few comparisons and can be tested without a database.

Checks that limit how much risk the book holds (position value, concentration, gross exposure, the daily loss
limit) refuse only orders that ADD risk: an order that brings a symbol's position closer to zero always passes
them, so a desk past a limit can still get out. Order-level checks (lot, tick, fat-finger band, order value and
quantity) apply to every order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Limits:
    """The effective limits of one order (see apps.risk.models for scopes); None means no limit."""

    max_order_value: Decimal | None = None
    max_quantity: int | None = None
    max_position_value: Decimal | None = None
    max_concentration_pct: Decimal | None = None
    concentration_floor: Decimal | None = None
    max_gross_exposure: Decimal | None = None
    max_open_orders: int | None = None
    daily_loss_limit: Decimal | None = None
    orders_per_second: int | None = None
    orders_per_day: int | None = None
    price_band_pct: Decimal | None = None
    var_limit: Decimal | None = None


# What the global row holds after migration 0002; used only if that row was deleted, so an order is never unlimited.
DEFAULT_LIMITS = Limits(
    max_order_value=Decimal("5000000"),
    max_quantity=100000,
    max_position_value=Decimal("10000000"),
    max_concentration_pct=Decimal("40"),
    concentration_floor=Decimal("2500000"),
    max_gross_exposure=Decimal("50000000"),
    max_open_orders=200,
    daily_loss_limit=Decimal("500000"),
    orders_per_second=10,
    orders_per_day=5000,
    price_band_pct=Decimal("5"),
    var_limit=Decimal("1000000"),
)
DEFAULT_MAX_ORDER_VALUE = DEFAULT_LIMITS.max_order_value


@dataclass(frozen=True)
class RateState:
    """The account's order counts as the Redis limiter saw them; `admitted` when this order took a slot."""

    admitted: bool
    last_second: int
    today: int


@dataclass(frozen=True)
class OrderFacts:
    side: str
    quantity: int
    order_type: str
    price: Decimal | None
    trigger_price: Decimal | None
    lot_size: int
    tick_size: Decimal
    reference_price: Decimal | None  # the latest price: values MARKET orders and centres the fat-finger band
    kill_switch_on: bool
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    market_open: bool = True
    market_note: str = ""  # why the market does not take this order now
    tradable: bool = True
    tradable_note: str = ""
    band: tuple[Decimal, Decimal] | None = None  # the session's own price band (auctions), if any
    position_quantity: int = 0  # net, this symbol, every product, before the order
    gross_exposure: Decimal = Decimal(0)  # sum of |quantity x last price| over the account's symbols, before
    open_orders: int = 0  # the account's unfinished orders, not counting this one
    day_pnl: Decimal = Decimal(0)  # realised + unrealised - charges today
    rate: RateState | None = None  # None until the rate limiter has been asked

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "BUY" else -self.quantity

    @property
    def position_after(self) -> int:
        return self.position_quantity + self.signed_quantity

    @property
    def adds_risk(self) -> bool:
        return abs(self.position_after) > abs(self.position_quantity)

    @property
    def valuation_price(self) -> Decimal | None:
        """The price the order is valued at: its own limit price, else the latest price."""
        return self.price if self.order_type in {"LIMIT", "SL"} and self.price is not None else self.reference_price


@dataclass(frozen=True)
class CheckFailure:
    code: str
    message: str


Check = Callable[[OrderFacts], CheckFailure | None]


def kill_switch(o: OrderFacts) -> CheckFailure | None:
    return CheckFailure("kill_switch", "the kill switch is on: no order leaves") if o.kill_switch_on else None


def market_open(o: OrderFacts) -> CheckFailure | None:
    return None if o.market_open else CheckFailure("market_closed", o.market_note or "the market is closed")


def tradable(o: OrderFacts) -> CheckFailure | None:
    return None if o.tradable else CheckFailure("not_tradable", o.tradable_note or "the instrument is not tradable")


def lot_multiple(o: OrderFacts) -> CheckFailure | None:
    if o.quantity <= 0 or o.quantity % o.lot_size:
        return CheckFailure(
            "lot_size", f"quantity {o.quantity} is not a positive multiple of the lot size {o.lot_size}"
        )
    return None


def on_tick(o: OrderFacts) -> CheckFailure | None:
    for name, value in (("price", o.price), ("trigger_price", o.trigger_price)):
        if value is not None and (value <= 0 or value % o.tick_size):
            return CheckFailure("tick_size", f"{name} {value} is not a positive multiple of the tick {o.tick_size}")
    return None


def price_band(o: OrderFacts) -> CheckFailure | None:
    """Fat-finger: a limit or trigger price within the band around the last price (and the session's band)."""
    for name, value in (("price", o.price), ("trigger_price", o.trigger_price)):
        if value is None:
            continue
        if o.band is not None and not o.band[0] <= value <= o.band[1]:
            return CheckFailure("price_band", f"{name} {value} is outside the session's band {o.band[0]}-{o.band[1]}")
        pct = o.limits.price_band_pct
        if pct is not None and o.reference_price:
            off = abs(value - o.reference_price) / o.reference_price * HUNDRED
            if off > pct:
                return CheckFailure(
                    "price_band",
                    f"{name} {value} is {off:.2f}% from the last price {o.reference_price} (band {pct}%)",
                )
    return None


def order_value(o: OrderFacts) -> CheckFailure | None:
    price = o.valuation_price
    if price is None:
        return CheckFailure("no_price", "no price to value a market order: no latest price for this instrument")
    value = price * o.quantity
    limit = o.limits.max_order_value
    if limit is not None and value > limit:
        return CheckFailure("max_order_value", f"order value {value} exceeds the limit {limit}")
    return None


def max_quantity(o: OrderFacts) -> CheckFailure | None:
    limit = o.limits.max_quantity
    if limit is not None and o.quantity > limit:
        return CheckFailure("max_quantity", f"quantity {o.quantity} exceeds the limit {limit}")
    return None


def _mark(o: OrderFacts) -> Decimal | None:
    return o.reference_price if o.reference_price is not None else o.valuation_price


def position_value(o: OrderFacts) -> CheckFailure | None:
    limit, mark = o.limits.max_position_value, _mark(o)
    if limit is None or mark is None or not o.adds_risk:
        return None
    value = abs(o.position_after) * mark
    if value > limit:
        return CheckFailure("max_position_value", f"position value after the order {value} exceeds the limit {limit}")
    return None


def _gross_after(o: OrderFacts, mark: Decimal) -> Decimal:
    return o.gross_exposure - abs(o.position_quantity) * mark + abs(o.position_after) * mark


def concentration(o: OrderFacts) -> CheckFailure | None:
    limit, mark = o.limits.max_concentration_pct, _mark(o)
    if limit is None or mark is None or not o.adds_risk:
        return None
    symbol_value = abs(o.position_after) * mark
    book = max(_gross_after(o, mark), o.limits.concentration_floor or Decimal(0))
    share = symbol_value / book * HUNDRED if book else HUNDRED
    if share > limit:
        return CheckFailure(
            "concentration", f"this symbol would be {share:.1f}% of the book ({symbol_value} of {book}; limit {limit}%)"
        )
    return None


def gross_exposure(o: OrderFacts) -> CheckFailure | None:
    limit, mark = o.limits.max_gross_exposure, _mark(o)
    if limit is None or mark is None or not o.adds_risk:
        return None
    after = _gross_after(o, mark)
    if after > limit:
        return CheckFailure("gross_exposure", f"gross exposure after the order {after} exceeds the limit {limit}")
    return None


def open_orders(o: OrderFacts) -> CheckFailure | None:
    limit = o.limits.max_open_orders
    if limit is not None and o.open_orders >= limit:
        return CheckFailure("max_open_orders", f"{o.open_orders} orders are open already (limit {limit})")
    return None


def daily_loss(o: OrderFacts) -> CheckFailure | None:
    limit = o.limits.daily_loss_limit
    if limit is None or -o.day_pnl < limit or not o.adds_risk:
        return None
    return CheckFailure(
        "daily_loss", f"today's loss {-o.day_pnl} has reached the limit {limit}: only orders that reduce risk pass"
    )


def orders_per_second(o: OrderFacts) -> CheckFailure | None:
    limit = o.limits.orders_per_second
    if o.rate is None or limit is None or o.rate.admitted or o.rate.last_second < limit:
        return None
    return CheckFailure("orders_per_second", f"{o.rate.last_second} orders in the last second (limit {limit}/s)")


def orders_per_day(o: OrderFacts) -> CheckFailure | None:
    limit = o.limits.orders_per_day
    if o.rate is None or limit is None or o.rate.admitted or o.rate.today < limit:
        return None
    return CheckFailure("orders_per_day", f"{o.rate.today} orders today (limit {limit}/day)")


CHECKS: tuple[Check, ...] = (
    kill_switch,
    market_open,
    tradable,
    lot_multiple,
    on_tick,
    price_band,
    order_value,
    max_quantity,
    position_value,
    concentration,
    gross_exposure,
    open_orders,
    daily_loss,
)
RATE_CHECKS: tuple[Check, ...] = (orders_per_second, orders_per_day)


def run_checks(order: OrderFacts, checks: tuple[Check, ...] = CHECKS) -> list[CheckFailure]:
    return [failure for check in checks if (failure := check(order)) is not None]


def with_rate(order: OrderFacts, rate: RateState) -> OrderFacts:
    return replace(order, rate=rate)
