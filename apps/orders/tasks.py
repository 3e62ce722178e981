"""Order tasks: thin, take ids, safe to run twice (the state machine decides what happens)."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready

from apps.brokers import selectors as broker_accounts
from apps.orders import placement, reconciliation, sync
from workers.registry import queue_task

log = logging.getLogger(__name__)


@queue_task(name="orders.execute", time_limit=60)
def execute(order_id: int) -> None:
    """Send a QUEUED order once; a redelivered or duplicate message finds it past QUEUED and does nothing.

    A paper order fills inside the broker call when a price is known; its updates are applied at once so the
    fill is committed before the task ends.
    """
    order = placement.order_execute(order_id=order_id)
    if order.account.kind == order.account.Kind.PAPER:
        sync.account_sync(account_id=order.account_id)


@queue_task(name="orders.sweep", time_limit=60)
def sweep() -> None:
    """The database is the outbox: re-enqueue QUEUED orders whose message was lost."""
    placement.orders_sweep()


@queue_task(name="orders.paper_sync", time_limit=30)
def paper_sync() -> dict[str, int]:
    """Paper accounts: fill resting orders at the feed's latest prices and apply the updates (every few seconds)."""
    totals = {"updates": 0, "changed": 0, "fills": 0}
    for account in broker_accounts.accounts_enabled():
        if account.kind != account.Kind.PAPER:
            continue
        for name, value in sync.account_sync(account_id=account.pk).items():
            totals[name] += value
    return totals


@queue_task(name="orders.reconcile", time_limit=110)
def reconcile(account_id: int | None = None) -> list[dict[str, Any]]:
    """Reconcile one account, or every enabled one (beat: every minute in market hours; and on worker start)."""
    if account_id is not None:
        return [reconciliation.reconcile_account(account_id=account_id).as_dict()]
    return [report.as_dict() for report in reconciliation.reconcile_all()]


@worker_ready.connect
def _reconcile_on_start(sender: Any = None, **_: Any) -> None:
    """An `orders` worker that (re)starts first reconciles: it may have died in the middle of a placement."""
    hostname = getattr(sender, "hostname", "") or ""
    if hostname.startswith("orders@"):
        log.info("%s ready: reconciling every account", hostname)
        reconcile.delay()
