"""The order state machine: allowed moves only, compare-and-set, one event per change."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections

from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Instrument
from apps.orders.identifiers import tag_for, validate_client_order_id
from apps.orders.lifecycle import TERMINAL, TRANSITIONS, IllegalTransition, Status, can_transition, sources_of
from apps.orders.models import EventSource, Order, OrderEvent
from apps.orders.services import OrderStateConflict, order_transition


def test_nothing_leaves_a_terminal_status_and_every_status_is_covered() -> None:
    assert set(TRANSITIONS) == set(Status)
    for terminal in TERMINAL:
        assert not any(can_transition(terminal, to) for to in Status)
    assert not can_transition(Status.UNKNOWN, Status.SUBMITTING)  # never re-sent
    assert not can_transition(Status.UNKNOWN, Status.QUEUED)
    assert sources_of(Status.SUBMITTING) == {Status.QUEUED}


def test_tags_are_kite_shaped_stable_and_distinct() -> None:
    tag = tag_for("strategy-7:2024-06-07T09:15:RELIANCE")
    assert tag == tag_for("strategy-7:2024-06-07T09:15:RELIANCE")
    assert len(tag) == 20 and tag.isalnum()
    assert len({tag_for(f"c{i}") for i in range(10_000)}) == 10_000
    with pytest.raises(ValueError, match="client_order_id must be"):
        validate_client_order_id("has space")


@pytest.fixture
def order(db: None) -> Order:
    account = BrokerAccount.objects.create(name="paper-1", kind=BrokerAccount.Kind.PAPER)
    instrument = Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065)
    return Order.objects.create(
        client_order_id="c-1",
        tag=tag_for("c-1"),
        account=account,
        instrument=instrument,
        side="BUY",
        quantity=10,
        product="CNC",
        order_type="LIMIT",
        price=Decimal("1500.05"),
    )


def test_a_legal_path_records_one_event_per_change(order: Order) -> None:
    order_transition(order_id=order.pk, to=Status.QUEUED, source=EventSource.RISK)
    order_transition(order_id=order.pk, to=Status.SUBMITTING, source=EventSource.TASK)
    done = order_transition(
        order_id=order.pk, to=Status.OPEN, source=EventSource.TASK, broker_order_id="240607000001", message="placed"
    )
    assert (done.status, done.broker_order_id) == ("OPEN", "240607000001")
    steps = list(OrderEvent.objects.filter(order=order).values_list("from_status", "to_status", "source"))
    assert steps == [("NEW", "QUEUED", "risk"), ("QUEUED", "SUBMITTING", "task"), ("SUBMITTING", "OPEN", "task")]


def test_an_illegal_transition_raises_and_changes_nothing(order: Order) -> None:
    with pytest.raises(OrderStateConflict, match="is NEW: it cannot go to OPEN") as info:
        order_transition(order_id=order.pk, to=Status.OPEN, source=EventSource.TASK)
    assert info.value.details["illegal"] is True and info.value.http_status == 409
    order_transition(order_id=order.pk, to=Status.RISK_REJECTED, source=EventSource.RISK)
    with pytest.raises(OrderStateConflict, match="is RISK_REJECTED: it cannot go to QUEUED"):
        order_transition(order_id=order.pk, to=Status.QUEUED, source=EventSource.OPERATOR)
    order.refresh_from_db()
    assert order.status == "RISK_REJECTED" and OrderEvent.objects.filter(order=order).count() == 1


def test_an_expected_status_that_does_not_hold_is_a_conflict(order: Order) -> None:
    order_transition(order_id=order.pk, to=Status.QUEUED, source=EventSource.RISK)
    with pytest.raises(OrderStateConflict, match="is QUEUED, not OPEN: it moved meanwhile"):
        order_transition(order_id=order.pk, to=Status.CANCELLED, source=EventSource.OPERATOR, expected=Status.OPEN)
    with pytest.raises(IllegalTransition, match="from NEW to OPEN"):
        order_transition(order_id=order.pk, to=Status.OPEN, source=EventSource.TASK, expected=Status.NEW)


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_one_order_one_wins_one_event() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent transactions are PostgreSQL's; SQLite serialises writers")
    account = BrokerAccount.objects.create(name="paper-race", kind=BrokerAccount.Kind.PAPER)
    instrument = Instrument.objects.create(tradingsymbol="TCS")
    order = Order.objects.create(
        client_order_id="race",
        tag=tag_for("race"),
        account=account,
        instrument=instrument,
        side="BUY",
        quantity=1,
        product="CNC",
        order_type="MARKET",
        status="QUEUED",
    )
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def worker() -> None:
        barrier.wait()
        try:
            order_transition(order_id=order.pk, to=Status.SUBMITTING, source=EventSource.TASK)
            outcomes.append("won")
        except OrderStateConflict:
            outcomes.append("conflict")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
    assert OrderEvent.objects.filter(order=order, to_status="SUBMITTING").count() == 1
