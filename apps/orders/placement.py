"""Placing orders: validate, check risk, commit, enqueue after commit; execute once, never twice.

The database is the outbox. `order_place` commits the order as QUEUED and only
then asks Celery to run `orders.execute` with the id; a lost message is found
again by `orders_sweep`. `order_execute` moves QUEUED -> SUBMITTING in the same
transaction that reads the kill switch, commits, and only then calls the
broker, so a redelivered message or a second worker finds SUBMITTING and does
not place again. An ambiguous outcome becomes UNKNOWN and is resolved from the
broker's order book by tag, never by sending again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.brokers import services as brokers
from apps.brokers.base import (
    BrokerAmbiguous,
    BrokerAuthError,
    BrokerRejected,
    BrokerThrottled,
    OrderRequest,
)
from apps.orders.identifiers import tag_for, validate_client_order_id
from apps.orders.lifecycle import Status
from apps.orders.models import EventSource, KillSwitch, Order, OrderEvent, OrderType, Product, Side
from apps.orders.services import OrderStateConflict, order_transition
from apps.risk import services as risk
from tradingsite.exceptions import ApplicationError

if TYPE_CHECKING:  # annotations only: other apps' rows arrive as arguments
    from apps.brokers.models import BrokerAccount
    from apps.marketdata.models import Instrument

log = logging.getLogger(__name__)

SQUARE_OFF = "square_off"  # OrderInput.purpose of the kill switch's closing orders: they alone pass the switch
AUTO_MARKET_PROTECTION = Decimal(-1)  # Kite's "automatic" market protection
QUEUED_GRACE = timedelta(seconds=5)  # a QUEUED order older than this has lost its message
# SUBMITTING older than settings.ORDERS_SUBMITTING_GRACE_SECONDS (read per sweep): beyond the orders profile's
# hard time limit, so its worker died. Shorter only where every broker call is bounded far below it (chaos run).


class Placer(Protocol):
    """The one Broker method execution needs (every Broker is one)."""

    def place(self, request: OrderRequest) -> str: ...


class OrderInvalid(ApplicationError):
    default_code = "order_invalid"


def kill_switch_on(*, account_id: int) -> bool:
    return KillSwitch.objects.filter(Q(scope="global") | Q(scope=f"account:{account_id}"), active=True).exists()


@dataclass(frozen=True)
class OrderInput:
    account: BrokerAccount
    instrument: Instrument
    side: str
    quantity: int
    product: str
    order_type: str
    client_order_id: str
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    validity: str = "DAY"
    variety: str = "regular"
    market_protection: Decimal | None = None
    strategy: str = ""
    signal_id: int | None = None  # the strategy Signal this order carries out
    # Only apps.orders.control sets SQUARE_OFF: closing orders reduce risk, so the kill switch lets them out.
    purpose: str = ""


def _validate(o: OrderInput) -> None:
    try:
        validate_client_order_id(o.client_order_id)
    except ValueError as exc:
        raise OrderInvalid(str(exc), details={"field": "client_order_id"}) from None
    for name, value, choices in (
        ("side", o.side, Side.values),
        ("product", o.product, Product.values),
        ("order_type", o.order_type, OrderType.values),
    ):
        if value not in choices:
            raise OrderInvalid(f"{name} must be one of {', '.join(choices)}", details={"field": name})
    if o.order_type in {"LIMIT", "SL"} and o.price is None:
        raise OrderInvalid(f"a {o.order_type} order needs a price", details={"field": "price"})
    if o.order_type in {"SL", "SL-M"} and o.trigger_price is None:
        raise OrderInvalid(f"an {o.order_type} order needs a trigger_price", details={"field": "trigger_price"})
    if not o.account.enabled:
        raise OrderInvalid(
            f"account {o.account.name} is disabled: {o.account.disabled_reason}", code="account_disabled"
        )


def _pre_trade(o: OrderInput) -> list[risk.CheckFailure]:
    return risk.pre_trade_check(
        request=risk.PreTradeRequest(
            account_id=o.account.pk,
            account_kind=o.account.kind,
            strategy=o.strategy,
            instrument=o.instrument,
            side=o.side,
            quantity=o.quantity,
            order_type=o.order_type,
            price=o.price,
            trigger_price=o.trigger_price,
            variety=o.variety,
            kill_switch_on=o.purpose != SQUARE_OFF and kill_switch_on(account_id=o.account.pk),
        )
    )


def order_place(*, order: OrderInput, source: EventSource = EventSource.API) -> Order:
    """Create the order, run the pre-trade checks, and enqueue its execution after commit.

    A client_order_id seen before returns that order unchanged: placing is idempotent per id.
    """
    _validate(order)
    existing = Order.objects.filter(client_order_id=order.client_order_id).first()
    if existing is not None:
        return existing
    failures = _pre_trade(order)
    with transaction.atomic():
        created = Order.objects.create(
            client_order_id=order.client_order_id,
            tag=tag_for(order.client_order_id),
            account=order.account,
            instrument=order.instrument,
            side=order.side,
            quantity=order.quantity,
            product=order.product,
            order_type=order.order_type,
            variety=order.variety,
            validity=order.validity,
            price=order.price,
            trigger_price=order.trigger_price,
            market_protection=_protection(order),
            algo_id=order.account.algo_id,
            strategy=order.strategy,
            signal_id=order.signal_id,
        )
        if failures:
            reasons = "; ".join(f.message for f in failures)
            risk.pre_trade_rejection_record(order_id=created.pk, account_id=order.account.pk, failures=failures)
            return order_transition(
                order_id=created.pk,
                to=Status.RISK_REJECTED,
                source=EventSource.RISK,
                message=reasons[:255],
                payload={"failures": [{"code": f.code, "message": f.message} for f in failures]},
                status_message=reasons,
            )
        queued = order_transition(
            order_id=created.pk,
            to=Status.QUEUED,
            source=source,
            message="passed risk checks",
            payload={"purpose": order.purpose} if order.purpose else None,
        )
        transaction.on_commit(lambda: _enqueue(created.pk))
    return queued


def _protection(o: OrderInput) -> Decimal | None:
    """MARKET and SL-M orders without a market protection get Kite's automatic one (-1); Kite refuses none or 0."""
    if o.market_protection is None and o.order_type in {"MARKET", "SL-M"}:
        return AUTO_MARKET_PROTECTION
    return o.market_protection


def _enqueue(order_id: int) -> None:
    from apps.orders.tasks import execute

    execute.delay(order_id)


def _request(order: Order) -> OrderRequest:
    return OrderRequest(
        tag=order.tag,
        exchange=order.instrument.exchange,
        tradingsymbol=order.instrument.tradingsymbol,
        transaction_type=order.side,
        quantity=order.quantity,
        product=order.product,
        order_type=order.order_type,
        variety=order.variety,
        validity=order.validity,
        price=order.price,
        trigger_price=order.trigger_price,
        market_protection=order.market_protection,
        algo_id=order.algo_id,
    )


def _claim(order_id: int) -> Order | None:
    """QUEUED -> SUBMITTING in the transaction that reads the kill switch; None if it must not be sent now."""
    with transaction.atomic():
        order = Order.objects.select_for_update().select_related("account", "instrument").get(pk=order_id)
        if order.status != Status.QUEUED:
            return None
        if kill_switch_on(account_id=order.account_id) and not _is_square_off(order_id):
            order_transition(
                order_id=order_id,
                to=Status.CANCELLED,
                source=EventSource.TASK,
                expected=Status.QUEUED,
                message="kill switch on: not sent",
            )
            return None
        if not order.account.enabled:
            return None  # held: waits unsent for an operator to re-enable the account or cancel it
        return order_transition(
            order_id=order_id,
            to=Status.SUBMITTING,
            source=EventSource.TASK,
            expected=Status.QUEUED,
            submitted_at=timezone.now(),
        )


def _is_square_off(order_id: int) -> bool:
    """Recorded on its QUEUED event by order_place, which only the kill switch's square-off asks for."""
    return OrderEvent.objects.filter(order_id=order_id, to_status=Status.QUEUED, payload__purpose=SQUARE_OFF).exists()


def order_execute(*, order_id: int, broker: Placer | None = None) -> Order:
    """Send a QUEUED order to its broker exactly once; anything else is left to reconciliation.

    The broker is resolved before the order is claimed: an account that cannot trade now (no Kite session,
    a Kite account in paper mode) is disabled with the reason and its order held QUEUED, unsent, for an
    operator, instead of being claimed and left SUBMITTING.
    """
    if broker is None:
        broker = _broker_or_hold(order_id)
        if broker is None:
            return Order.objects.get(pk=order_id)
    order = _claim(order_id)
    if order is None:
        return Order.objects.get(pk=order_id)
    order = Order.objects.select_related("account", "instrument").get(pk=order_id)
    return _outcome(order, broker)


def _broker_or_hold(order_id: int) -> Placer | None:
    order = Order.objects.select_related("account").get(pk=order_id)
    if order.status != Status.QUEUED:
        return None
    try:
        return brokers.broker_for(order.account)
    except (brokers.BrokerNotAvailable, brokers.KiteNotConfigured) as exc:
        brokers.account_disable(account_id=order.account_id, reason=f"cannot trade: {exc}")
        log.warning("account %s disabled (%s); order %s held unsent", order.account_id, exc, order_id)
        return None


def _outcome(order: Order, broker: Placer) -> Order:
    try:
        broker_order_id = broker.place(_request(order))
    except BrokerRejected as exc:
        return _settle(order, Status.REJECTED, message=str(exc), status_message=str(exc))
    except (BrokerAuthError, BrokerThrottled) as exc:
        if isinstance(exc, BrokerAuthError):
            brokers.account_disable(account_id=order.account_id, reason=f"session invalid: {exc}")
            log.warning("account %s disabled: %s; order %s held unsent", order.account_id, exc, order.pk)
        return _settle(order, Status.QUEUED, message=f"not sent: {exc}")
    except BrokerAmbiguous as exc:
        log.warning("order %s: placement outcome unknown (%s); resolving by tag", order.pk, exc)
        return _settle(order, Status.UNKNOWN, message=f"outcome unknown: {exc}")
    settled = _settle(order, Status.OPEN, message="placed", broker_order_id=broker_order_id)
    # If a postback (or reconciliation by tag) got there first and moved it on, keep its word, add the id.
    Order.objects.filter(pk=order.pk, broker_order_id__isnull=True).update(broker_order_id=broker_order_id)
    return settled if settled.broker_order_id else Order.objects.get(pk=order.pk)


def _settle(order: Order, to: Status, **fields: Any) -> Order:
    """SUBMITTING -> `to`; when a postback, reconciliation or the sweep moved the order first, theirs stands."""
    try:
        return order_transition(order_id=order.pk, to=to, source=EventSource.TASK, expected=Status.SUBMITTING, **fields)
    except OrderStateConflict as exc:
        log.info("order %s: not moved to %s by its worker: %s", order.pk, to, exc)
        return Order.objects.get(pk=order.pk)


def orders_due_for_sweep(*, now: Any = None) -> tuple[list[int], list[int]]:
    """QUEUED orders whose message was lost, and SUBMITTING orders whose worker died mid-call."""
    now = now or timezone.now()
    queued = Order.objects.filter(status=Status.QUEUED, updated_at__lt=now - QUEUED_GRACE, account__enabled=True)
    submitting_grace = timedelta(seconds=settings.ORDERS_SUBMITTING_GRACE_SECONDS)
    stuck = Order.objects.filter(status=Status.SUBMITTING, updated_at__lt=now - submitting_grace)
    return list(queued.values_list("pk", flat=True)), list(stuck.values_list("pk", flat=True))


def orders_sweep() -> dict[str, int]:
    """Re-enqueue lost QUEUED orders; mark SUBMITTING orders of dead workers UNKNOWN (never re-sent)."""
    queued, stuck = orders_due_for_sweep()
    for order_id in queued:
        _enqueue(order_id)
    for order_id in stuck:
        try:
            order_transition(
                order_id=order_id,
                to=Status.UNKNOWN,
                source=EventSource.RECONCILIATION,
                expected=Status.SUBMITTING,
                message="worker died while submitting; resolving by tag",
            )
        except OrderStateConflict:  # its worker (or a postback) finished it meanwhile: nothing to do
            continue
    return {"requeued": len(queued), "unknown": len(stuck)}
