"""When an open order fills, and at what price: the paper broker's matching. Pure, no Django.

Prices are last traded prices (a tick, or a bar's close); fills are whole (no partial fills, no depth).
docs/paper-broker.md states the rules; `advance` applies them to one Kite-shaped order record.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from apps.brokers.paper.records import cancelled, filled, with_status
from apps.brokers.paper.rules import AUTO_PROTECTION, BUY, MARKET, OPEN, SELL, SL_M, TRIGGER_PENDING, PaperConfig
from apps.marketdata.calendar import round_to_tick


def protection_percent(record: dict[str, Any], config: PaperConfig) -> Decimal:
    value = Decimal(record["market_protection"])
    return config.auto_market_protection_percent if value == AUTO_PROTECTION else value


def market_fill_price(side: str, ltp: Decimal, tick: Decimal, *, slippage_ticks: int, protection: Decimal) -> Decimal:
    """`ltp` moved `slippage_ticks` against the trader, onto the tick, but never past the protection band."""
    slip = tick * slippage_ticks
    if side == BUY:
        cap = max(round_to_tick(ltp * (100 + protection) / 100, tick, "down"), round_to_tick(ltp, tick, "up"))
        return min(round_to_tick(ltp + slip, tick, "up"), cap)
    floor = min(round_to_tick(ltp * (100 - protection) / 100, tick, "up"), round_to_tick(ltp, tick, "down"))
    return max(round_to_tick(ltp - slip, tick, "down"), floor, tick)


def limit_fill_price(
    side: str, limit: Decimal, ltp: Decimal, tick: Decimal, *, slippage_ticks: int, arriving: bool
) -> Decimal | None:
    """None while the price has not reached the limit.

    An arriving order (placed, modified, released or just triggered) that is marketable takes the market
    as a market order would, slippage included, but never beyond its limit. A resting order that the price
    crosses later fills at its limit: it was in the queue at that price when the market came to it.
    """
    if (side == BUY and ltp > limit) or (side == SELL and ltp < limit):
        return None
    if not arriving:
        return limit
    slip = tick * slippage_ticks
    if side == BUY:
        return min(round_to_tick(ltp + slip, tick, "up"), limit)
    return max(round_to_tick(ltp - slip, tick, "down"), limit)


def is_triggered(side: str, trigger: Decimal, ltp: Decimal) -> bool:
    """A buy stop triggers at or above its trigger, a sell stop at or below."""
    return ltp >= trigger if side == BUY else ltp <= trigger


def advance(
    record: dict[str, Any], ltp: Decimal, at: datetime, tick: Decimal, config: PaperConfig, *, arriving: bool
) -> list[dict[str, Any]]:
    """The snapshots an OPEN or TRIGGER PENDING order goes through at price `ltp` (empty: nothing happens)."""
    steps: list[dict[str, Any]] = []
    side, order_type = record["transaction_type"], record["order_type"]
    if record["status"] == TRIGGER_PENDING:
        if not is_triggered(side, record["trigger_price"], ltp):
            return steps
        record = with_status(record, OPEN, at)
        steps.append(record)
        arriving = True
    if record["status"] != OPEN:
        return steps
    if order_type in (MARKET, SL_M):
        protection = protection_percent(record, config)
        fill: Decimal | None = market_fill_price(
            side, ltp, tick, slippage_ticks=config.slippage_ticks, protection=protection
        )
    else:
        fill = limit_fill_price(
            side, record["price"], ltp, tick, slippage_ticks=config.slippage_ticks, arriving=arriving
        )
    if fill is not None:
        steps.append(filled(record, fill, at))
    elif arriving and record["validity"] == "IOC":
        steps.append(cancelled(record, at, "IOC order cancelled: not marketable on arrival."))
    return steps
