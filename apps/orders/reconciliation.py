"""Reconciliation: the broker's order book and trades are the truth about what happened there.

Run every minute in market hours (beat), when an `orders` worker starts, and by
`manage.py reconcile_orders`. For one account it:

1. applies the broker's state of every order it knows to the OMS order with that broker order id or tag
   (this is how an UNKNOWN order — placement timed out — becomes OPEN/COMPLETE/REJECTED, never re-sent);
2. stores every trade not yet stored as a fill (postbacks can be missed), recomputing positions;
3. records broker orders that match no OMS order as EXTERNAL (placed by hand on Kite, say) — never cancelled;
4. marks UNKNOWN orders that are still not in the broker's book after ORDERS_UNKNOWN_GRACE_SECONDS as REJECTED
   (the placement never arrived: Kite's order book shows an order as soon as it is accepted);
5. compares today's traded quantity per instrument and product with the broker's positions and raises an
   alert on any difference.

Every change is an OrderEvent with source "reconciliation".
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.brokers import selectors as broker_accounts
from apps.brokers import services as brokers
from apps.brokers.base import Broker, BrokerError, BrokerOrder, BrokerTrade
from apps.marketdata import selectors as marketdata
from apps.marketdata.calendar import as_ist
from apps.monitoring import services as monitoring
from apps.orders.identifiers import tag_for
from apps.orders.lifecycle import Status
from apps.orders.models import EventSource, Fill, Order, OrderEvent
from apps.orders.positions import fills_record
from apps.orders.services import OrderStateConflict, order_transition
from apps.orders.sync import order_apply_broker_state, order_for_broker_order
from tradingsite.exceptions import NotFound

log = logging.getLogger(__name__)

SOURCE = EventSource.RECONCILIATION


@dataclass
class ReconcileReport:
    account: str
    broker_orders: int = 0
    updated: int = 0
    resolved_unknown: int = 0
    not_found: int = 0
    fills_added: int = 0
    external: int = 0
    position_mismatches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reconcile_account(*, account_id: int, now: datetime | None = None) -> ReconcileReport:
    """Bring the OMS in line with the broker for one account (see the module docstring)."""
    now = now or timezone.now()
    account = broker_accounts.account_get(account_id=account_id)
    report = ReconcileReport(account=account.name)
    broker = brokers.broker_for(account)
    try:
        broker_orders, trades = broker.orders(), broker.trades()
    except BrokerError as exc:
        report.errors.append(f"could not read the broker's order book: {exc}")
        return report
    report.broker_orders = len(broker_orders)
    trades_by_order: dict[str, list[BrokerTrade]] = defaultdict(list)
    for trade in trades:
        trades_by_order[trade.order_id].append(trade)
    seen_tags: set[str] = set()
    for b in broker_orders:
        if b.tag:
            seen_tags.add(b.tag)
        _reconcile_one(account_id, b, trades_by_order[b.order_id], report)
    _unknown_not_found(account_id, seen_tags, now, report)
    report.position_mismatches = _position_mismatches(account_id, broker, now)
    if report.position_mismatches:
        monitoring.alert_raise(
            kind="position_mismatch",
            source="reconciliation",
            message=f"account {account.name}: positions differ from the broker's: "
            + "; ".join(report.position_mismatches)[:400],
            account=account.name,
            mismatches=report.position_mismatches,
        )
    return report


def _reconcile_one(account_id: int, b: BrokerOrder, trades: list[BrokerTrade], report: ReconcileReport) -> None:
    order = order_for_broker_order(b, account_id=account_id)
    if order is None:
        order = _record_external(account_id, b, report)
        if order is None:
            return
    was = order.status
    if order_apply_broker_state(order_id=order.pk, broker_order=b, source=SOURCE):
        report.updated += 1
        report.resolved_unknown += was == Status.UNKNOWN
    if trades:
        report.fills_added += fills_record(
            order=Order.objects.select_related("instrument").get(pk=order.pk), trades=trades
        )


def _record_external(account_id: int, b: BrokerOrder, report: ReconcileReport) -> Order | None:
    """A broker order the OMS did not create: recorded (EXTERNAL) so its fills count in positions; never cancelled."""
    try:
        instrument = marketdata.instrument_get(symbol=b.tradingsymbol, exchange=b.exchange)
    except NotFound:
        report.errors.append(f"broker order {b.order_id}: unknown instrument {b.exchange}:{b.tradingsymbol}")
        return None
    client_order_id = f"external-{b.order_id}"
    try:
        with transaction.atomic():
            order = Order.objects.create(
                client_order_id=client_order_id,
                tag=tag_for(client_order_id),
                account_id=account_id,
                instrument=instrument,
                side=b.transaction_type,
                quantity=max(b.quantity, 1),
                product=b.product,
                order_type=b.order_type or "MARKET",
                price=b.price,
                trigger_price=b.trigger_price,
                status=Status.EXTERNAL,
                broker_order_id=b.order_id,
                status_message=f"placed outside the OMS; broker status {b.status}",
            )
            OrderEvent.objects.create(
                order=order,
                from_status="",
                to_status=Status.EXTERNAL,
                source=SOURCE,
                message="broker order not placed by the OMS",
                payload={"broker_order_id": b.order_id, "broker_status": b.status, "tag": b.tag},
            )
    except IntegrityError:  # another reconciliation recorded it first
        return Order.objects.filter(broker_order_id=b.order_id).first()
    report.external += 1
    log.warning("account %s: broker order %s was not placed by the OMS; recorded as EXTERNAL", account_id, b.order_id)
    return order


def _unknown_not_found(account_id: int, seen_tags: set[str], now: datetime, report: ReconcileReport) -> None:
    """UNKNOWN for longer than settings.ORDERS_UNKNOWN_GRACE_SECONDS (read per run) and not in the book: REJECTED.

    The grace must outlast any placement still on its way (an UNKNOWN from the sweep can only come after
    ORDERS_SUBMITTING_GRACE_SECONDS), so a late arrival is never declared missing.
    """
    before = now - timedelta(seconds=settings.ORDERS_UNKNOWN_GRACE_SECONDS)
    stale = Order.objects.filter(account_id=account_id, status=Status.UNKNOWN, updated_at__lt=before)
    for order in stale.exclude(tag__in=seen_tags):
        try:
            order_transition(
                order_id=order.pk,
                to=Status.REJECTED,
                source=SOURCE,
                expected=Status.UNKNOWN,
                message="not in the broker's order book by its tag: the placement never arrived",
                status_message="placement never reached the broker (found by reconciliation)",
            )
            report.not_found += 1
        except OrderStateConflict:  # resolved meanwhile by a postback
            continue


def _position_mismatches(account_id: int, broker: Broker, now: datetime) -> list[str]:
    """Today's net traded quantity per (exchange, symbol, product): ours from fills, the broker's from positions."""
    try:
        rows = broker.positions().get("net", [])
    except BrokerError as exc:
        return [f"could not read the broker's positions: {exc}"]
    theirs: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows:
        key = (row["exchange"], row["tradingsymbol"], row["product"])
        theirs[key] += int(row.get("day_buy_quantity") or 0) - int(row.get("day_sell_quantity") or 0)
    ours: dict[tuple[str, str, str], int] = defaultdict(int)
    today = as_ist(now).date()
    fills = Fill.objects.filter(order__account_id=account_id).select_related("order", "order__instrument")
    for fill in fills.filter(filled_at__gte=now - timedelta(days=2)):
        if as_ist(fill.filled_at).date() != today:
            continue
        o = fill.order
        ours[(o.instrument.exchange, o.instrument.tradingsymbol, o.product)] += (
            fill.quantity if o.side == "BUY" else -fill.quantity
        )
    return [
        f"{exchange}:{symbol} {product}: ours {ours.get(k, 0)}, broker {theirs.get(k, 0)}"
        for k in sorted(set(ours) | set(theirs))
        for exchange, symbol, product in [k]
        if ours.get(k, 0) != theirs.get(k, 0)
    ]


def reconcile_all(*, now: datetime | None = None) -> list[ReconcileReport]:
    """Every enabled account; one account's failure is reported, not raised, so the others still run."""
    reports = []
    for account in broker_accounts.accounts_enabled():
        try:
            reports.append(reconcile_account(account_id=account.pk, now=now))
        except (BrokerError, brokers.BrokerNotAvailable, brokers.KiteNotConfigured) as exc:
            reports.append(ReconcileReport(account=account.name, errors=[str(exc)]))
    return reports
