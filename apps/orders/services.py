"""Writes of the order-management system. Every status change goes through `order_transition`."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.orders.lifecycle import Status, can_transition, check_transition, sources_of
from apps.orders.models import EventSource, Order, OrderEvent
from tradingsite.exceptions import Conflict, NotFound


class OrderStateConflict(Conflict):
    """The order was not in a status the change may start from (someone else moved it first)."""

    default_code = "order_state_conflict"


@transaction.atomic
def order_transition(
    *,
    order_id: int,
    to: Status,
    source: EventSource,
    expected: Status | frozenset[Status] | None = None,
    message: str = "",
    payload: dict[str, Any] | None = None,
    **fields: Any,
) -> Order:
    """Compare-and-set the order's status (and `fields`) and record the event, in one transaction.

    The change may start from `expected` (or from any status the state machine allows to reach
    `to`); asking for a move the state machine never allows raises `IllegalTransition` at once.
    If the order is not in such a status when locked, nothing changes and `OrderStateConflict`
    (HTTP 409) says where it is: of two workers racing on one order exactly one wins.
    """
    to = Status(to)
    allowed = sources_of(to)
    if expected is not None:
        wanted = frozenset({expected}) if isinstance(expected, Status) else expected
        for frm in wanted:
            check_transition(frm, to)
        allowed = allowed & wanted
    # Lock the row (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers) so the event
    # records the status that was really left, then compare-and-set on it.
    current = Order.objects.select_for_update().filter(pk=order_id).values_list("status", flat=True).first()
    if current is None:
        raise NotFound(f"no order {order_id}", code="unknown_order")
    if Status(current) not in allowed:
        illegal = not can_transition(current, to)
        message_ = (
            f"order {order_id} is {current}: it cannot go to {to}"
            if illegal
            else f"order {order_id} is {current}, not {' or '.join(sorted(allowed))}: it moved meanwhile"
        )
        raise OrderStateConflict(message_, details={"status": current, "to": str(to), "illegal": illegal})
    updated = Order.objects.filter(pk=order_id, status=current).update(
        status=to.value, updated_at=timezone.now(), **fields
    )
    if updated != 1:  # pragma: no cover - impossible under the row lock; kept as the CAS's own guard
        raise OrderStateConflict(f"order {order_id} changed while moving to {to}")
    OrderEvent.objects.create(
        order_id=order_id,
        from_status=current,
        to_status=to.value,
        source=source,
        message=message[:255],
        payload=payload or {},
    )
    return Order.objects.get(pk=order_id)


def order_place_from_task(**fields: Any) -> Order:
    """`placement.order_place` for other apps' tasks (strategy signals): OrderInput fields as keywords.

    Placing is idempotent per `client_order_id`, and runs the same pre-trade checks as the API.
    """
    from apps.orders.placement import OrderInput, order_place  # placement imports this module

    return order_place(order=OrderInput(**fields), source=EventSource.TASK)
