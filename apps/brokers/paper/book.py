"""Positions and margins of a paper account, computed from its trades and open orders. Pure, no Django.

Kite-shaped (positions.json, margins.json) so the OMS and the operators read paper and live the same way.
Deliberately simple (docs/paper-broker.md): every paper trade of the account counts (no conversion of CNC
positions into holdings), multiplier 1, no charges; CNC buys block their full value, MIS and NRML block
`mis_margin_rate` of the value that increases the position, CNC sells block nothing (holdings are not
checked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from apps.brokers.paper.records import parse_kite_time
from apps.brokers.paper.rules import BUY, MARKET, SL_M, PaperConfig

ZERO = Decimal(0)
PRICE_PLACES = Decimal("0.0001")
MONEY_PLACES = Decimal("0.01")
PositionKey = tuple[str, str, str]  # exchange, tradingsymbol, product
UTILISED_FIELDS = (
    "debits",
    "exposure",
    "m2m_realised",
    "m2m_unrealised",
    "option_premium",
    "payout",
    "span",
    "holding_sales",
    "turnover",
    "liquid_collateral",
    "stock_collateral",
    "delivery",
)


@dataclass
class _Side:
    quantity: int = 0
    value: Decimal = ZERO

    def add(self, quantity: int, price: Decimal) -> None:
        self.quantity += quantity
        self.value += quantity * price

    @property
    def price(self) -> Decimal:
        return (self.value / self.quantity).quantize(PRICE_PLACES) if self.quantity else ZERO


@dataclass
class _Position:
    token: int | None
    buy: _Side
    sell: _Side
    day_buy: _Side
    day_sell: _Side
    overnight_quantity: int = 0

    @property
    def quantity(self) -> int:
        return self.buy.quantity - self.sell.quantity

    @property
    def average_price(self) -> Decimal:
        if self.quantity > 0:
            return self.buy.price
        return self.sell.price if self.quantity < 0 else ZERO

    @property
    def realised(self) -> Decimal:
        """P&L of the quantity bought and sold back, at the average prices of each side."""
        matched = min(self.buy.quantity, self.sell.quantity)
        if not matched:
            return ZERO
        sell = self.sell.value / self.sell.quantity
        buy = self.buy.value / self.buy.quantity
        return (matched * (sell - buy)).quantize(MONEY_PLACES)


def _group(trades: Iterable[dict[str, Any]], today: date, *, day_only: bool) -> dict[PositionKey, _Position]:
    positions: dict[PositionKey, _Position] = {}
    for trade in trades:
        stamp = parse_kite_time(trade["fill_timestamp"])
        is_today = stamp is not None and stamp.date() == today
        if day_only and not is_today:
            continue
        key = (trade["exchange"], trade["tradingsymbol"], trade["product"])
        position = positions.setdefault(key, _Position(trade["instrument_token"], _Side(), _Side(), _Side(), _Side()))
        buy = trade["transaction_type"] == BUY
        quantity, price = int(trade["quantity"]), Decimal(trade["average_price"])
        (position.buy if buy else position.sell).add(quantity, price)
        if is_today:
            (position.day_buy if buy else position.day_sell).add(quantity, price)
        else:
            position.overnight_quantity += quantity if buy else -quantity
    return positions


def _row(key: PositionKey, p: _Position, last_price: Decimal | None) -> dict[str, Any]:
    exchange, symbol, product = key
    last = last_price if last_price is not None else p.average_price
    value = p.sell.value - p.buy.value
    pnl = (value + p.quantity * last).quantize(MONEY_PLACES)
    return {
        "tradingsymbol": symbol,
        "exchange": exchange,
        "instrument_token": p.token,
        "product": product,
        "quantity": p.quantity,
        "overnight_quantity": p.overnight_quantity,
        "multiplier": 1,
        "average_price": p.average_price,
        "close_price": ZERO,
        "last_price": last,
        "value": value,
        "pnl": pnl,
        "m2m": pnl,
        "unrealised": pnl - p.realised,
        "realised": p.realised,
        "buy_quantity": p.buy.quantity,
        "buy_price": p.buy.price,
        "buy_value": p.buy.value,
        "buy_m2m": p.buy.value,
        "sell_quantity": p.sell.quantity,
        "sell_price": p.sell.price,
        "sell_value": p.sell.value,
        "sell_m2m": p.sell.value,
        "day_buy_quantity": p.day_buy.quantity,
        "day_buy_price": p.day_buy.price,
        "day_buy_value": p.day_buy.value,
        "day_sell_quantity": p.day_sell.quantity,
        "day_sell_price": p.day_sell.price,
        "day_sell_value": p.day_sell.value,
    }


def positions(
    trades: list[dict[str, Any]], *, today: date, last_price: Callable[[str], Decimal | None]
) -> dict[str, list[dict[str, Any]]]:
    """Kite's `{"net": [...], "day": [...]}`: net over every trade, day over today's (IST) trades."""
    result: dict[str, list[dict[str, Any]]] = {}
    for name, day_only in (("net", False), ("day", True)):
        grouped = _group(trades, today, day_only=day_only)
        result[name] = [_row(key, p, last_price(f"{key[0]}:{key[1]}")) for key, p in sorted(grouped.items())]
    return result


def order_margin(
    *, product: str, side: str, quantity: int, price: Decimal, position_quantity: int, config: PaperConfig
) -> Decimal:
    """What an order blocks: CNC buys their value; MIS/NRML the margin rate of what grows the position."""
    if product == "CNC":
        return quantity * price if side == BUY else ZERO
    signed = quantity if side == BUY else -quantity
    growth = max(abs(position_quantity + signed) - abs(position_quantity), 0)
    return (growth * price * config.mis_margin_rate).quantize(MONEY_PLACES)


def order_price_estimate(record: dict[str, Any], ltp: Decimal | None) -> Decimal:
    """The price an open order would fill at, for blocking margin: its limit, trigger or the last price."""
    if record["order_type"] == MARKET:
        return ltp or ZERO
    if record["order_type"] == SL_M:
        return Decimal(record["trigger_price"])
    return Decimal(record["price"])


def open_order_blocks(
    open_orders: list[dict[str, Any]],
    net_positions: list[dict[str, Any]],
    *,
    last_price: Callable[[str], Decimal | None],
    config: PaperConfig,
) -> tuple[Decimal, Decimal]:
    """Margin blocked by open orders: (CNC buys' value, MIS/NRML margin), each order against today's position."""
    held = {(p["exchange"], p["tradingsymbol"], p["product"]): p["quantity"] for p in net_positions}
    delivery = exposure = ZERO
    for order in open_orders:
        key = (order["exchange"], order["tradingsymbol"], order["product"])
        price = order_price_estimate(order, last_price(f"{key[0]}:{key[1]}"))
        margin = order_margin(
            product=order["product"],
            side=order["transaction_type"],
            quantity=order["pending_quantity"],
            price=price,
            position_quantity=held.get(key, 0),
            config=config,
        )
        if order["product"] == "CNC":
            delivery += margin
        else:
            exposure += margin
    return delivery, exposure


def margins(
    net_positions: list[dict[str, Any]], *, blocked: tuple[Decimal, Decimal], config: PaperConfig
) -> dict[str, Any]:
    """Kite's margins shape: `equity` from the paper book, `commodity` disabled and empty.

    live_balance (= net) = starting cash - (CNC holdings at cost + MIS/NRML margin + what open orders block)
    + realised P&L. Unrealised P&L is reported but does not move the balance.
    """
    delivery = sum((p["quantity"] * p["average_price"] for p in net_positions if _cnc_long(p)), ZERO)
    exposure = sum(
        (abs(p["quantity"]) * p["average_price"] * config.mis_margin_rate for p in net_positions if _leveraged(p)),
        ZERO,
    ).quantize(MONEY_PLACES)
    delivery, exposure = delivery + blocked[0], exposure + blocked[1]
    realised = sum((p["realised"] for p in net_positions), ZERO)
    unrealised = sum((p["unrealised"] for p in net_positions), ZERO)
    debits = delivery + exposure - realised
    cash = config.starting_cash
    equity = _segment(cash, live_balance=cash - debits)
    equity["utilised"].update(
        debits=debits, exposure=exposure, delivery=delivery, m2m_realised=-realised, m2m_unrealised=-unrealised
    )
    commodity = _segment(ZERO, live_balance=ZERO)
    commodity["enabled"] = False
    return {"equity": equity, "commodity": commodity}


def _cnc_long(position: dict[str, Any]) -> bool:
    return bool(position["product"] == "CNC" and position["quantity"] > 0)


def _leveraged(position: dict[str, Any]) -> bool:
    return bool(position["product"] != "CNC" and position["quantity"] != 0)


def _segment(cash: Decimal, *, live_balance: Decimal) -> dict[str, Any]:
    return {
        "enabled": True,
        "net": live_balance,
        "available": {
            "adhoc_margin": ZERO,
            "cash": cash,
            "opening_balance": cash,
            "live_balance": live_balance,
            "collateral": ZERO,
            "intraday_payin": ZERO,
        },
        "utilised": dict.fromkeys(UTILISED_FIELDS, ZERO),
    }
