"""Order tasks: thin, take ids, safe to run twice (the state machine decides what happens)."""

from __future__ import annotations

from apps.orders import placement
from workers.registry import queue_task


@queue_task(name="orders.execute", time_limit=60)
def execute(order_id: int) -> None:
    """Send a QUEUED order once; a redelivered or duplicate message finds it past QUEUED and does nothing."""
    placement.order_execute(order_id=order_id)


@queue_task(name="orders.sweep", time_limit=60)
def sweep() -> None:
    """The database is the outbox: re-enqueue QUEUED orders whose message was lost."""
    placement.orders_sweep()
