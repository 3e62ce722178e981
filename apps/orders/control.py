"""Operator control of orders: cancel one, and the kill switch (with an optional square-off of MIS positions).

Cancelling takes the path the order's status allows and nothing else: an order
never sent (QUEUED) is cancelled in the database by compare-and-set, so a
worker about to claim it finds it CANCELLED; an order live at the broker is
cancelled there and its new state is then read back from the broker, never
assumed; an order whose placement outcome is unknown cannot be cancelled until
reconciliation has found it, because there is nothing yet to cancel.

The kill switch is committed first and only then are orders cancelled: from the
commit on, `placement._claim` reads it in the transaction that would send an
order, so nothing leaves; the cancellations that follow clean up what was
waiting. Square-off orders are the one exception the switch lets out: they
close positions, which is what an operator who pulls the switch wants.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from apps.brokers import selectors as broker_accounts
from apps.brokers import services as brokers
from apps.brokers.base import BrokerAmbiguous, BrokerAuthError, BrokerError, BrokerRejected, BrokerThrottled
from apps.orders.lifecycle import TERMINAL, Status
from apps.orders.models import EventSource, KillSwitch, Order, Position, Product
from apps.orders.placement import AUTO_MARKET_PROTECTION, SQUARE_OFF, OrderInput, order_place
from apps.orders.services import OrderStateConflict, order_transition
from tradingsite.exceptions import ApplicationError, Conflict, NotFound

log = logging.getLogger(__name__)

LIVE_AT_BROKER = frozenset({Status.OPEN, Status.PARTIALLY_FILLED})
OUTCOME_UNKNOWN = frozenset({Status.SUBMITTING, Status.UNKNOWN})


class OrderNotCancellable(Conflict):
    default_code = "order_not_cancellable"


class BrokerCallFailed(ApplicationError):
    """The broker did not answer the cancel clearly; the order's state is read again by reconciliation."""

    http_status = 502
    default_code = "broker_call_failed"


class BrokerUnavailable(ApplicationError):
    """The cancel was certainly not sent (session invalid, our rate limit, no broker for the account)."""

    http_status = 503
    default_code = "broker_unavailable"


def _by(by: str) -> str:
    return f" by {by}" if by else ""


def order_cancel(*, order_id: int, source: EventSource, by: str = "") -> Order:
    """Cancel one order the way its status allows; raises a 409 when it cannot be cancelled (yet)."""
    order = Order.objects.select_related("account").filter(pk=order_id).first()
    if order is None:
        raise NotFound(f"no order {order_id}", code="unknown_order")
    status = Status(order.status)
    if status == Status.QUEUED:
        try:
            return order_transition(
                order_id=order_id,
                to=Status.CANCELLED,
                source=source,
                expected=Status.QUEUED,
                message=f"cancelled before it was sent{_by(by)}",
            )
        except OrderStateConflict:  # a worker claimed it (or cancelled it for the switch) meanwhile
            status = Status(Order.objects.values_list("status", flat=True).get(pk=order_id))
            if status == Status.CANCELLED:
                return Order.objects.get(pk=order_id)
            if status not in LIVE_AT_BROKER:
                raise _not_cancellable(order_id, status) from None
    if status in LIVE_AT_BROKER:
        return _cancel_at_broker(order_id=order_id, source=source, by=by)
    raise _not_cancellable(order_id, status)


def _not_cancellable(order_id: int, status: Status) -> Conflict:
    if status in OUTCOME_UNKNOWN:
        return OrderNotCancellable(
            f"order {order_id} is {status}: the outcome of its placement is not yet known; reconcile first",
            code="order_outcome_unknown",
            details={"status": str(status)},
        )
    return OrderNotCancellable(f"order {order_id} is {status}: it cannot be cancelled", details={"status": str(status)})


def _cancel_at_broker(*, order_id: int, source: EventSource, by: str) -> Order:
    """Ask the broker, then read the order back from it: what the broker says decides the status."""
    order = Order.objects.select_related("account").get(pk=order_id)
    status = Status(order.status)
    # The request itself is an event (a move to the same status), so the audit trail shows who asked.
    order_transition(order_id=order_id, to=status, source=source, expected=status, message=f"cancel requested{_by(by)}")
    try:
        brokers.broker_for(order.account).cancel(order.broker_order_id or "", variety=order.variety)
    except BrokerRejected as exc:  # already complete (or cancelled) at the broker: its state says which
        refreshed = _refresh(order_id, source)
        if refreshed.status == Status.CANCELLED:
            return refreshed
        _note(order_id, source, f"cancel refused by the broker: {exc}")
        raise OrderNotCancellable(
            f"the broker refused to cancel order {order_id}: {exc}",
            details={"status": refreshed.status, "broker_message": str(exc)},
        ) from None
    except BrokerAmbiguous as exc:
        _note(order_id, source, f"cancel outcome unknown: {exc}")
        raise BrokerCallFailed(
            f"cancelling order {order_id}: the broker did not answer clearly ({exc}); reconciliation will tell",
            details={"status": order.status},
        ) from None
    except (BrokerAuthError, BrokerThrottled, brokers.BrokerNotAvailable, brokers.KiteNotConfigured) as exc:
        _note(order_id, source, f"cancel not sent: {exc}")
        raise BrokerUnavailable(
            f"cancelling order {order_id}: not sent to the broker ({exc}); try again", details={"status": order.status}
        ) from None
    return _refresh(order_id, source)


def _refresh(order_id: int, source: EventSource) -> Order:
    """The order as its broker now reports it; as recorded when the broker cannot be read (sync catches up)."""
    from apps.orders.sync import order_refresh

    try:
        return order_refresh(order_id=order_id, source=source)
    except BrokerError as exc:
        _note(order_id, source, f"could not read the order back from the broker: {exc}")
        return Order.objects.get(pk=order_id)


def _note(order_id: int, source: EventSource, message: str) -> None:
    """Record a same-status event unless the order has meanwhile reached a status it cannot stay in."""
    status = Status(Order.objects.values_list("status", flat=True).get(pk=order_id))
    if status in TERMINAL:
        return
    try:
        order_transition(order_id=order_id, to=status, source=source, expected=status, message=message)
    except OrderStateConflict:
        log.info("order %s moved while noting %r", order_id, message)


@dataclass
class KillSwitchResult:
    scope: str
    active: bool
    changed: bool  # False when it already was in the asked state (the cancellations still ran)
    cancelled: list[int] = field(default_factory=list)
    not_cancelled: dict[int, str] = field(default_factory=dict)  # order id -> why (outcome unknown, broker error)
    square_off_orders: list[int] = field(default_factory=list)
    square_off_skipped: dict[str, str] = field(default_factory=dict)  # "EXCHANGE:SYMBOL" -> why


def _scope(account_id: int | None) -> str:
    return "global" if account_id is None else f"account:{account_id}"


@transaction.atomic
def _switch(*, active: bool, account_id: int | None, reason: str, by: str) -> bool:
    """Persist the switch by compare-and-set; returns whether it changed."""
    scope = _scope(account_id)
    KillSwitch.objects.get_or_create(scope=scope, defaults={"account_id": account_id, "active": False})
    changed = KillSwitch.objects.filter(scope=scope, active=not active).update(
        active=active, reason=reason[:200], changed_by=by[:150], changed_at=timezone.now()
    )
    if changed:
        log.warning("kill switch %s turned %s by %s: %s", scope, "ON" if active else "off", by or "?", reason)
    return bool(changed)


def kill_switch_set(
    *, active: bool, account_id: int | None = None, reason: str = "", by: str = "", square_off: bool = False
) -> KillSwitchResult:
    """Turn the kill switch of one account (or of everything) on or off; when on, cancel and optionally square off.

    The switch commits before anything else, so no order is sent after this call starts returning; the
    cancellations and square-off orders are each their own transaction (a failure on one order does not
    undo the switch or the others).
    """
    if account_id is not None:
        broker_accounts.account_get(account_id=account_id)  # 404 for an unknown account
    if square_off and not active:
        raise ApplicationError("square_off only goes with switching the kill switch on", code="invalid_request")
    result = KillSwitchResult(
        scope=_scope(account_id),
        active=active,
        changed=_switch(active=active, account_id=account_id, reason=reason, by=by),
    )
    if not active:
        return result
    # Square-off orders are left to close their positions: cancelling them would leave the risk open.
    orders = (
        Order.objects.filter(status__in=[Status.QUEUED, *LIVE_AT_BROKER, *OUTCOME_UNKNOWN])
        .exclude(events__to_status=Status.QUEUED, events__payload__purpose=SQUARE_OFF)
        .order_by("pk")
    )
    if account_id is not None:
        orders = orders.filter(account_id=account_id)
    for order_id in orders.values_list("pk", flat=True):
        try:
            order_cancel(order_id=order_id, source=EventSource.OPERATOR, by=f"kill switch{_by(by)}")
            result.cancelled.append(order_id)
        except (ApplicationError, BrokerError) as exc:
            result.not_cancelled[order_id] = str(exc)
    if square_off:
        _square_off(account_id=account_id, by=by, result=result)
    return result


def _square_off(*, account_id: int | None, by: str, result: KillSwitchResult) -> None:
    """A MARKET order closing every open MIS position in scope, unless one is already closing it."""
    positions = (
        Position.objects.filter(product=Product.MIS).exclude(net_quantity=0).select_related("account", "instrument")
    )
    if account_id is not None:
        positions = positions.filter(account_id=account_id)
    for position in positions.order_by("pk"):
        key = f"{position.instrument.exchange}:{position.instrument.tradingsymbol}"
        if not position.account.enabled:
            result.square_off_skipped[key] = f"account {position.account.name} is disabled"
            continue
        if _closing_in_flight(position):
            result.square_off_skipped[key] = "a square-off order for it is still live"
            continue
        order = order_place(
            order=OrderInput(
                account=position.account,
                instrument=position.instrument,
                side="SELL" if position.net_quantity > 0 else "BUY",
                quantity=abs(position.net_quantity),
                product=Product.MIS,
                order_type="MARKET",
                market_protection=AUTO_MARKET_PROTECTION,
                client_order_id=f"sqoff-{position.pk}-{uuid.uuid4().hex[:16]}",
                strategy="kill-switch",
                purpose=SQUARE_OFF,
            ),
            source=EventSource.OPERATOR,
        )
        result.square_off_orders.append(order.pk)
        if order.status == Status.RISK_REJECTED:
            result.square_off_skipped[key] = f"order {order.pk} refused by risk checks: {order.status_message}"


def _closing_in_flight(position: Position) -> bool:
    """Positions change only on fills, so a second square-off before the first fills would overshoot."""
    return (
        Order.objects.filter(
            account_id=position.account_id,
            instrument_id=position.instrument_id,
            product=Product.MIS,
            client_order_id__startswith=f"sqoff-{position.pk}-",
        )
        .exclude(status__in=[*TERMINAL])
        .exists()
    )


def kill_switch_states() -> list[KillSwitch]:
    return list(KillSwitch.objects.select_related("account").order_by("scope"))


def kill_switch_rows_ensure() -> None:
    """An (off) row for everything and for every enabled account, so operators can switch any of them in the admin."""
    rows = [KillSwitch(scope="global")] + [
        KillSwitch(scope=_scope(a.pk), account_id=a.pk) for a in broker_accounts.accounts_enabled()
    ]
    KillSwitch.objects.bulk_create(rows, ignore_conflicts=True)
