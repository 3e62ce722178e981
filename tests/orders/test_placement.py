"""Placement: risk checks, enqueue after commit, exactly one send per order, outcomes mapped as the issue says."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.brokers.base import BrokerAmbiguous, BrokerAuthError, BrokerRejected, OrderRequest
from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Instrument
from apps.orders import placement
from apps.orders.models import KillSwitch, Order, OrderEvent
from apps.orders.placement import OrderInput, OrderInvalid, order_execute, order_place, orders_sweep

pytestmark = pytest.mark.django_db


@dataclass
class ScriptedBroker:
    """A test double of the Broker interface: records every placement, raises what the test scripts."""

    raises: Exception | None = None
    placed: list[OrderRequest] = field(default_factory=list)

    def place(self, request: OrderRequest) -> str:
        self.placed.append(request)
        if self.raises is not None:
            raise self.raises
        return f"24060700000{len(self.placed):05d}"


@pytest.fixture(autouse=True)
def _any_hour(settings) -> None:
    settings.PAPER_MARKET_HOURS = False  # the session check has its own tests (tests/risk); these run at any hour


@pytest.fixture
def account() -> BrokerAccount:
    return BrokerAccount.objects.create(name="paper-t", kind="paper", algo_id="ALGO1")


@pytest.fixture
def infy() -> Instrument:
    return Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065, lot_size=1)


def _input(account: BrokerAccount, infy: Instrument, cid: str = "c-1", **kw: object) -> OrderInput:
    fields = {"side": "BUY", "quantity": 10, "product": "CNC", "order_type": "LIMIT", "price": Decimal("1500.05")}
    fields.update(kw)
    return OrderInput(account=account, instrument=infy, client_order_id=cid, **fields)  # type: ignore[arg-type]


def _place(account: BrokerAccount, infy: Instrument, cid: str = "c-1", **kw: object) -> Order:
    return order_place(order=_input(account, infy, cid, **kw))


def test_a_passing_order_is_queued_and_enqueued_only_after_commit(
    account, infy, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        order = _place(account, infy)
    assert order.status == "QUEUED" and len(callbacks) == 1
    assert order.tag == placement.tag_for("c-1") and order.algo_id == "ALGO1"
    assert _place(account, infy).pk == order.pk  # the same client_order_id: the same order, no new row
    assert Order.objects.count() == 1


def test_failing_checks_are_all_recorded_and_nothing_is_enqueued(
    account, infy, django_capture_on_commit_callbacks
) -> None:
    KillSwitch.objects.create(scope="global", active=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        order = _place(account, infy, quantity=10, price=Decimal("1500.03"))
    assert order.status == "RISK_REJECTED" and callbacks == []
    event = OrderEvent.objects.get(order=order, to_status="RISK_REJECTED")
    assert [f["code"] for f in event.payload["failures"]] == ["kill_switch", "tick_size"]


def test_bad_input_names_the_field(account, infy) -> None:
    with pytest.raises(OrderInvalid, match="needs a trigger_price") as info:
        _place(account, infy, order_type="SL")
    assert info.value.details == {"field": "trigger_price"}
    with pytest.raises(OrderInvalid, match="side must be one of"):
        _place(account, infy, side="HOLD")


def test_execute_sends_once_and_a_second_message_does_nothing(account, infy) -> None:
    order = _place(account, infy)
    broker = ScriptedBroker()
    done = order_execute(order_id=order.pk, broker=broker)
    assert done.status == "OPEN" and done.broker_order_id == "2406070000000001"
    assert order_execute(order_id=order.pk, broker=broker).status == "OPEN"
    assert len(broker.placed) == 1 and broker.placed[0].tag == order.tag and broker.placed[0].algo_id == "ALGO1"


@pytest.mark.parametrize(
    ("error", "status"),
    [(BrokerRejected("Insufficient funds"), "REJECTED"), (BrokerAmbiguous("read timed out"), "UNKNOWN")],
)
def test_broker_outcomes_and_an_ambiguous_order_is_never_resent(account, infy, error, status) -> None:
    order = _place(account, infy)
    broker = ScriptedBroker(raises=error)
    assert order_execute(order_id=order.pk, broker=broker).status == status
    order_execute(order_id=order.pk, broker=broker)
    assert len(broker.placed) == 1


def test_an_invalid_session_disables_the_account_and_holds_the_order_unsent(account, infy) -> None:
    order = _place(account, infy)
    broker = ScriptedBroker(raises=BrokerAuthError("Incorrect api_key or access_token"))
    assert order_execute(order_id=order.pk, broker=broker).status == "QUEUED"
    account.refresh_from_db()
    assert not account.enabled and "session invalid" in account.disabled_reason
    order_execute(order_id=order.pk, broker=ScriptedBroker())
    assert Order.objects.get(pk=order.pk).status == "QUEUED"  # held until an operator acts


def test_the_kill_switch_read_in_the_claiming_transaction_cancels_instead_of_sending(account, infy) -> None:
    order = _place(account, infy)
    KillSwitch.objects.create(scope=f"account:{account.pk}", account=account, active=True)
    broker = ScriptedBroker()
    assert order_execute(order_id=order.pk, broker=broker).status == "CANCELLED" and broker.placed == []


def test_the_sweep_requeues_lost_messages_and_marks_dead_submissions_unknown(account, infy, monkeypatch) -> None:
    lost = _place(account, infy, cid="lost")
    stuck = _place(account, infy, cid="stuck")
    fresh = _place(account, infy, cid="fresh")
    Order.objects.filter(pk=stuck.pk).update(status="SUBMITTING")
    Order.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(seconds=30))
    Order.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(minutes=10))
    requeued: list[int] = []
    monkeypatch.setattr(placement, "_enqueue", requeued.append)
    assert orders_sweep() == {"requeued": 1, "unknown": 1}
    assert requeued == [lost.pk]
    assert Order.objects.get(pk=stuck.pk).status == "UNKNOWN"
    assert Order.objects.get(pk=fresh.pk).status == "QUEUED"
