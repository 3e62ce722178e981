"""Applying what a broker says about an order: its status, filled quantity and trades.

Every path that learns something from the broker — the worker right after
placing, a Kite postback, the paper broker's updates, reconciliation — ends
here, so they all obey the same rules:

- nothing leaves a terminal status (a late "OPEN" after "COMPLETE" changes nothing);
- the filled quantity never goes down (an older "partially filled" after a newer one is stale);
- a report identical to what is recorded adds no event (duplicate postbacks are harmless);
- fills are stored by the broker's trade id, once, and the position is recomputed from all fills.

The broker's status maps onto the OMS lifecycle: Kite's open statuses are OPEN, or
PARTIALLY_FILLED once something filled; COMPLETE, CANCELLED and REJECTED are themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q, Sum

from apps.brokers import selectors as broker_accounts
from apps.brokers import services as brokers
from apps.brokers.base import Broker, BrokerError, BrokerOrder, broker_order_from_kite
from apps.orders.lifecycle import TERMINAL, Status, can_transition
from apps.orders.models import EventSource, Order
from apps.orders.positions import fills_record
from apps.orders.services import order_transition

log = logging.getLogger(__name__)

_TERMINAL_AT_BROKER = {"COMPLETE": Status.COMPLETE, "CANCELLED": Status.CANCELLED, "REJECTED": Status.REJECTED}


def status_for(broker_order: BrokerOrder) -> Status:
    """The OMS status of an order in the state the broker reports."""
    if broker_order.status in _TERMINAL_AT_BROKER:
        return _TERMINAL_AT_BROKER[broker_order.status]
    return Status.PARTIALLY_FILLED if broker_order.filled_quantity > 0 else Status.OPEN


def _change(order: Order, b: BrokerOrder) -> tuple[Status, dict[str, Any]] | None:
    """The move (target, fields) this report asks for, or None when it is stale, a duplicate or impossible."""
    current = Status(order.status)
    if current in TERMINAL or b.filled_quantity < order.filled_quantity:
        return None
    target = Status.EXTERNAL if current == Status.EXTERNAL else status_for(b)
    if not can_transition(current, target):
        return None
    same = target == current and b.filled_quantity == order.filled_quantity and b.quantity == order.quantity
    if same and (b.status_message or "") == order.status_message:
        return None
    fields: dict[str, Any] = {
        "filled_quantity": min(b.filled_quantity, max(b.quantity, order.quantity)),
        "average_price": b.average_price or None,
        "status_message": b.status_message or "",
    }
    if b.quantity and b.quantity != order.quantity:  # modified at the broker
        fields["quantity"] = b.quantity
    return target, fields


def order_apply_broker_state(*, order_id: int, broker_order: BrokerOrder, source: EventSource) -> bool:
    """Move the order to what the broker reports, if that is news; returns whether anything changed."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.broker_order_id is None:
            Order.objects.filter(pk=order_id, broker_order_id__isnull=True).update(
                broker_order_id=broker_order.order_id
            )
        elif order.broker_order_id != broker_order.order_id:
            log.warning("order %s is broker order %s, not %s", order_id, order.broker_order_id, broker_order.order_id)
            return False
        move = _change(order, broker_order)
        if move is None:
            return False
        target, fields = move
        order_transition(
            order_id=order_id,
            to=target,
            source=source,
            expected=Status(order.status),
            message=f"broker: {broker_order.status}"[:255],
            payload={
                "broker_status": broker_order.status,
                "broker_order_id": broker_order.order_id,
                "filled_quantity": broker_order.filled_quantity,
                "average_price": str(broker_order.average_price),
            },
            **fields,
        )
        return True


@dataclass
class SyncResult:
    changed: bool = False
    fills_added: int = 0


def order_sync(*, order_id: int, broker: Broker | None, broker_order: BrokerOrder, source: EventSource) -> SyncResult:
    """Apply the broker's view of one order, and fetch its trades if it filled more than the fills stored.

    Without a broker to ask (or when asking fails) the status still applies; the trades are then stored by
    the next reconciliation, which reads them itself.
    """
    result = SyncResult(changed=order_apply_broker_state(order_id=order_id, broker_order=broker_order, source=source))
    order = Order.objects.select_related("instrument").get(pk=order_id)
    stored = order.fills.aggregate(total=Sum("quantity"))["total"] or 0
    if broker is None or not order.broker_order_id or broker_order.filled_quantity <= stored:
        return result
    try:
        trades = broker.order_trades(order.broker_order_id)
    except BrokerError as exc:
        log.warning("order %s: trades not fetched (%s); reconciliation will store them", order_id, exc)
        return result
    result.fills_added = fills_record(order=order, trades=trades)
    return result


def order_for_broker_order(broker_order: BrokerOrder, *, account_id: int | None = None) -> Order | None:
    """The OMS order a broker order is: by broker order id, else by our tag (how UNKNOWN orders are found)."""
    match = Q(broker_order_id=broker_order.order_id)
    if broker_order.tag:
        match |= Q(tag=broker_order.tag)
    orders = Order.objects.filter(match)
    if account_id is not None:
        orders = orders.filter(account_id=account_id)
    return orders.first()


def postback_apply(*, payload: dict[str, Any], source: EventSource = EventSource.POSTBACK) -> Order | None:
    """Apply a (checksum-verified) Kite postback; None when the order is not ours (reconciliation records it)."""
    broker_order = broker_order_from_kite(payload)
    order = order_for_broker_order(broker_order)
    if order is None:
        return None
    try:
        broker: Broker | None = brokers.broker_for(order.account)
    except (brokers.BrokerNotAvailable, brokers.KiteNotConfigured) as exc:
        log.warning("postback for order %s: no broker to fetch its trades from: %s", order.pk, exc)
        broker = None
    order_sync(order_id=order.pk, broker=broker, broker_order=broker_order, source=source)
    return Order.objects.get(pk=order.pk)


def order_refresh(*, order_id: int, source: EventSource = EventSource.TASK) -> Order:
    """Ask the order's broker where the order is now (history, else the order book by tag) and apply it."""
    order = Order.objects.select_related("account").get(pk=order_id)
    broker = brokers.broker_for(order.account)
    latest: BrokerOrder | None = None
    if order.broker_order_id:
        history = broker.order_history(order.broker_order_id)
        latest = history[-1] if history else None
    else:
        latest = next((b for b in broker.orders() if b.tag == order.tag), None)
    if latest is not None:
        order_sync(order_id=order_id, broker=broker, broker_order=latest, source=source)
    return Order.objects.get(pk=order_id)


def account_sync(*, account_id: int, source: EventSource = EventSource.TASK) -> dict[str, int]:
    """Paper accounts: re-price open orders at the latest prices, then apply every update since the last drain.

    Updates are drained from Redis atomically (each goes to one caller); one that is lost after the drain
    (the process died) is found again by reconciliation, which reads the broker's order book itself.
    """
    account = broker_accounts.account_get(account_id=account_id)
    broker = brokers.broker_for(account)
    process_latest = getattr(broker, "process_latest", None)
    drain = getattr(broker, "drain_updates", None)
    if process_latest is None or drain is None:
        return {"updates": 0, "changed": 0, "fills": 0}
    process_latest()
    latest: dict[str, BrokerOrder] = {}
    updates = drain()
    for update in updates:  # oldest first: the last one per order is its newest state
        broker_order = broker_order_from_kite(update)
        latest[broker_order.order_id] = broker_order
    changed = fills = 0
    for broker_order in latest.values():
        order = order_for_broker_order(broker_order, account_id=account_id)
        if order is None:
            continue
        result = order_sync(order_id=order.pk, broker=broker, broker_order=broker_order, source=source)
        changed += result.changed
        fills += result.fills_added
    return {"updates": len(updates), "changed": changed, "fills": fills}
