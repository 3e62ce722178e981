"""Pre-trade checks as pure functions: each returns a failure with a machine-readable code, or None.

All checks run (not just up to the first failure) so the order records every
reason it was refused. The Risk issue adds the rest (exposure, concentration,
loss limits, SEBI's orders per second); these are the ones no order may skip.
No Django import: the caller gathers the facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

DEFAULT_MAX_ORDER_VALUE = Decimal("5000000")  # rupees; the Risk issue moves limits into an editable model


@dataclass(frozen=True)
class OrderFacts:
    side: str
    quantity: int
    order_type: str
    price: Decimal | None
    trigger_price: Decimal | None
    lot_size: int
    tick_size: Decimal
    reference_price: Decimal | None  # the latest price, for MARKET order value
    kill_switch_on: bool
    max_order_value: Decimal = DEFAULT_MAX_ORDER_VALUE


@dataclass(frozen=True)
class CheckFailure:
    code: str
    message: str


Check = Callable[[OrderFacts], CheckFailure | None]


def kill_switch(o: OrderFacts) -> CheckFailure | None:
    return CheckFailure("kill_switch", "the kill switch is on: no order leaves") if o.kill_switch_on else None


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


def order_value(o: OrderFacts) -> CheckFailure | None:
    price = o.price if o.order_type in {"LIMIT", "SL"} else o.reference_price
    if price is None:
        return CheckFailure("no_price", "no price to value a market order: no latest price for this instrument")
    value = price * o.quantity
    if value > o.max_order_value:
        return CheckFailure("max_order_value", f"order value {value} exceeds the limit {o.max_order_value}")
    return None


CHECKS: tuple[Check, ...] = (kill_switch, lot_multiple, on_tick, order_value)


def run_checks(order: OrderFacts, checks: tuple[Check, ...] = CHECKS) -> list[CheckFailure]:
    return [failure for check in checks if (failure := check(order)) is not None]
