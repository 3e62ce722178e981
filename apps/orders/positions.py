"""Fills, their charges, and the positions and P&L derived from them.

A fill is stored once (its broker trade id is unique), whichever path reports it
first: the worker that placed the order, a postback, or reconciliation. Its
charges are the ORDER's charges (Zerodha caps brokerage per executed order)
re-spread over all the order's fills each time one arrives. The position is
then recomputed from every fill of its account, instrument and product under a
row lock, reading the fills only after the lock is held, so two workers
recording fills of one position at once cannot leave a stale total.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from apps.brokers.base import BrokerTrade
from apps.marketdata import selectors as marketdata
from apps.marketdata.calendar import as_ist
from apps.orders import charges as charge_rules
from apps.orders.models import Fill, Order, Position
from apps.orders.pnl import LedgerFill, PositionState, replay

log = logging.getLogger(__name__)

CHARGE_FIELDS = ("brokerage", "stt", "exchange_txn", "sebi", "stamp_duty", "gst")


def fills_record(*, order: Order, trades: Iterable[BrokerTrade]) -> int:
    """Store the order's trades not stored yet; re-spread its charges and recompute its position. Returns new fills."""
    mine = [t for t in trades if t.order_id == order.broker_order_id]
    if not mine:
        return 0
    with transaction.atomic():
        known = set(Fill.objects.filter(trade_id__in=[t.trade_id for t in mine]).values_list("trade_id", flat=True))
        fresh = [
            Fill(
                order=order, trade_id=t.trade_id, quantity=t.quantity, price=t.average_price, filled_at=t.fill_timestamp
            )
            for t in mine
            if t.trade_id not in known
        ]
        if not fresh:
            return 0
        Fill.objects.bulk_create(fresh, ignore_conflicts=True)
        _charges_spread(order)
        position_recompute(account_id=order.account_id, instrument_id=order.instrument_id, product=order.product)
    return len(fresh)


def _charges_spread(order: Order) -> None:
    fills = list(Fill.objects.filter(order=order).order_by("filled_at", "id"))
    try:
        charged = charge_rules.charges_for_order(
            product=order.product,
            side=order.side,
            fills=[(f.quantity, f.price) for f in fills],
            trade_date=as_ist(fills[0].filled_at).date(),
            exchange=order.instrument.exchange,
        )
    except ValueError as exc:  # e.g. NRML, which has no meaning on NSE cash: no charges rather than guessed ones
        log.warning("order %s: no charges computed: %s", order.pk, exc)
        return
    weights = [f.price * f.quantity for f in fills]
    parts = {name: charge_rules.allocate_pro_rata(getattr(charged, name), weights) for name in CHARGE_FIELDS}
    for i, fill in enumerate(fills):
        for name in CHARGE_FIELDS:
            setattr(fill, name, parts[name][i])
        fill.charges_total = sum((parts[name][i] for name in CHARGE_FIELDS), Decimal(0))
    Fill.objects.bulk_update(fills, [*CHARGE_FIELDS, "charges_total"])


def _ledger(fills: Iterable[Any]) -> list[LedgerFill]:
    return [
        LedgerFill(
            side=f.order.side, quantity=f.quantity, price=f.price, charges=f.charges_total, day=_day(f.filled_at)
        )
        for f in fills
    ]


def _day(moment: datetime) -> date:
    return as_ist(moment).date()


def _position_ledger(account_id: int, instrument_id: int, product: str) -> list[LedgerFill]:
    """The position's fills in time order, as plain rows: it is replayed on every fill, so no model objects."""
    rows = (
        Fill.objects.filter(order__account_id=account_id, order__instrument_id=instrument_id, order__product=product)
        .order_by("filled_at", "id")
        .values_list("order__side", "quantity", "price", "charges_total", "filled_at")
    )
    return [
        LedgerFill(side=side, quantity=qty, price=price, charges=charges, day=_day(at))
        for side, qty, price, charges, at in rows
    ]


@transaction.atomic
def position_recompute(*, account_id: int, instrument_id: int, product: str) -> Position:
    """The position as the replay of all its fills, written under the position's row lock."""
    Position.objects.get_or_create(account_id=account_id, instrument_id=instrument_id, product=product)
    position = Position.objects.select_for_update().get(
        account_id=account_id, instrument_id=instrument_id, product=product
    )
    state = replay(_position_ledger(account_id, instrument_id, product))  # read after the lock
    position.net_quantity = state.net_quantity
    position.average_price = state.rounded_average
    position.realised_pnl = state.realised.quantize(charge_rules.PAISA)
    position.charges = state.charges
    position.save(update_fields=["net_quantity", "average_price", "realised_pnl", "charges", "updated_at"])
    return position


def positions_recompute_all(*, account_ids: Sequence[int] | None = None) -> int:
    """Recompute every position from its fills (an operator's repair after a manual data fix)."""
    keys = Fill.objects.values_list("order__account_id", "order__instrument_id", "order__product").distinct()
    if account_ids is not None:
        keys = keys.filter(order__account_id__in=list(account_ids))
    count = 0
    for account_id, instrument_id, product in keys:
        position_recompute(account_id=account_id, instrument_id=instrument_id, product=product)
        count += 1
    return count


@dataclass(frozen=True)
class PnlRow:
    key: str  # the day (ISO date) or the strategy name ("" for manual orders)
    realised: Decimal
    charges: Decimal
    unrealised: Decimal | None  # by strategy only; None where a last price is missing

    @property
    def net(self) -> Decimal:
        return self.realised - self.charges + (self.unrealised or Decimal(0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "realised": self.realised.quantize(charge_rules.PAISA),
            "charges": self.charges.quantize(charge_rules.PAISA),
            "unrealised": None if self.unrealised is None else self.unrealised.quantize(charge_rules.PAISA),
            "net": self.net.quantize(charge_rules.PAISA),
        }


def pnl_breakdown(*, account_ids: Sequence[int], by: str) -> list[PnlRow]:
    """Realised P&L and charges per exchange day (`by="day"`), or per strategy with unrealised (`by="strategy"`).

    Each strategy's fills are replayed as a book of their own, so two strategies trading the same symbol
    each see their own average price; per day, realised gains are dated by the fill that closed them.
    """
    if by not in {"day", "strategy"}:
        raise ValueError(f"by must be 'day' or 'strategy', got {by!r}")
    fills = (
        Fill.objects.filter(order__account_id__in=list(account_ids))
        .select_related("order", "order__instrument")
        .order_by("filled_at", "id")
    )
    books: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for fill in fills:
        o = fill.order
        books[(o.account_id, o.instrument_id, o.product, o.strategy)].append(fill)
    if by == "day":
        return _by_day(books)
    return _by_strategy(books)


def _by_day(books: dict[tuple[Any, ...], list[Any]]) -> list[PnlRow]:
    realised: dict[date, Decimal] = defaultdict(Decimal)
    charged: dict[date, Decimal] = defaultdict(Decimal)
    for fills in books.values():
        state = replay(_ledger(fills))
        for day, amount in state.realised_by_day.items():
            realised[day] += amount
        for day, amount in state.charges_by_day.items():
            charged[day] += amount
    days = sorted(set(realised) | set(charged))
    return [PnlRow(key=d.isoformat(), realised=realised[d], charges=charged[d], unrealised=None) for d in days]


def _by_strategy(books: dict[tuple[Any, ...], list[Any]]) -> list[PnlRow]:
    states: dict[str, list[tuple[PositionState, str]]] = defaultdict(list)
    for (_, _, _, strategy), fills in books.items():
        instrument = fills[0].order.instrument
        states[strategy].append((replay(_ledger(fills)), f"{instrument.exchange}:{instrument.tradingsymbol}"))
    prices = {k: v.price for k, v in marketdata.latest_prices().items()}
    rows = []
    for strategy in sorted(states):
        unrealised: Decimal | None = Decimal(0)
        for state, key in states[strategy]:
            part = state.unrealised(prices.get(key))
            unrealised = None if part is None or unrealised is None else unrealised + part
        rows.append(
            PnlRow(
                key=strategy,
                realised=sum((s.realised for s, _ in states[strategy]), Decimal(0)),
                charges=sum((s.charges for s, _ in states[strategy]), Decimal(0)),
                unrealised=unrealised,
            )
        )
    return rows
