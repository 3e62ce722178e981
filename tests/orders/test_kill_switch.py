"""The kill switch: persisted, nothing sent once it is committed, per-account scope, square-off of MIS positions."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from apps.brokers.services import broker_for
from apps.orders.control import kill_switch_set
from apps.orders.models import KillSwitch, Order, OrderEvent, Position
from apps.orders.placement import OrderInput, kill_switch_on, order_execute, order_place
from tests.orders.desk import Desk, ScriptedBroker, make_desk

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(settings) -> Iterator[Desk]:
    settings.PAPER_MARKET_HOURS = False
    settings.RISK_MARKET_HOURS = False  # a Kite account's order too; the session check is tested in tests/risk
    desk = make_desk()
    yield desk
    desk.reset()


def _queued(desk: Desk, cid: str, account=None, **kw: object) -> Order:
    fields: dict[str, object] = {
        "side": "BUY",
        "quantity": 5,
        "product": "MIS",
        "order_type": "LIMIT",
        "price": Decimal("1500.05"),
    }
    fields.update(kw)
    order = order_place(
        order=OrderInput(account=account or desk.account, instrument=desk.infy, client_order_id=cid, **fields)  # type: ignore[arg-type]
    )
    assert order.status == "QUEUED"
    return order


def test_orders_waiting_to_be_sent_are_never_sent_once_the_switch_is_committed(desk) -> None:
    waiting = [_queued(desk, f"w-{i}").pk for i in range(4)]  # enqueued, not yet executed
    result = kill_switch_set(active=True, reason="runaway strategy", by="ops")
    assert result.changed and sorted(result.cancelled) == waiting and result.not_cancelled == {}
    broker = ScriptedBroker()
    for order_id in waiting:  # the messages arrive after the switch
        assert order_execute(order_id=order_id, broker=broker).status == "CANCELLED"
    assert broker.placed == []
    assert all(
        OrderEvent.objects.filter(order_id=i, to_status="CANCELLED", source="operator").exists() for i in waiting
    )


def test_the_claim_reads_the_switch_even_for_an_order_the_sweep_missed(desk) -> None:
    """An order placed the instant before the switch was read still cannot leave: the claim cancels it."""
    order = _queued(desk, "late")
    KillSwitch.objects.create(scope="global", active=True)  # committed, but no cancellation pass ran
    broker = ScriptedBroker()
    assert order_execute(order_id=order.pk, broker=broker).status == "CANCELLED" and broker.placed == []
    refused = order_place(
        order=OrderInput(
            account=desk.account,
            instrument=desk.infy,
            client_order_id="after",
            side="BUY",
            quantity=1,
            product="MIS",
            order_type="LIMIT",
            price=Decimal("1500"),
        )
    )
    assert refused.status == "RISK_REJECTED" and "kill switch" in refused.status_message


def test_the_switch_is_a_persisted_row_that_a_fresh_query_finds(desk) -> None:
    kill_switch_set(active=True, account_id=desk.account.pk, reason="broker outage", by="ops")
    row = KillSwitch.objects.get(scope=f"account:{desk.account.pk}")
    assert (
        row.active and row.reason == "broker outage" and row.changed_by == "ops" and row.account_id == desk.account.pk
    )
    assert kill_switch_on(account_id=desk.account.pk) and not kill_switch_on(account_id=desk.other_account.pk)
    assert not kill_switch_set(active=True, account_id=desk.account.pk).changed  # compare-and-set: already on
    assert kill_switch_set(active=False, account_id=desk.account.pk, by="ops").changed
    assert not KillSwitch.objects.get(scope=f"account:{desk.account.pk}").active
    assert not kill_switch_set(active=False, account_id=desk.account.pk).changed


def test_an_account_switch_leaves_other_accounts_alone(desk) -> None:
    mine = _queued(desk, "mine")
    theirs = _queued(desk, "theirs", account=desk.other_account)
    result = kill_switch_set(active=True, account_id=desk.account.pk)
    assert result.cancelled == [mine.pk]
    broker = ScriptedBroker()
    assert order_execute(order_id=mine.pk, broker=broker).status == "CANCELLED"
    assert order_execute(order_id=theirs.pk, broker=broker).status == "OPEN"
    assert [r.tag for r in broker.placed] == [theirs.tag]


def test_open_orders_are_cancelled_at_the_broker_and_unresolved_ones_reported(desk) -> None:
    resting = order_execute(order_id=_queued(desk, "rest", price=Decimal("1450")).pk)
    assert resting.status == "OPEN"
    unknown = _queued(desk, "unk")
    Order.objects.filter(pk=unknown.pk).update(status="UNKNOWN")
    result = kill_switch_set(active=True)
    assert result.cancelled == [resting.pk]
    assert "reconcile first" in result.not_cancelled[unknown.pk]
    assert Order.objects.get(pk=resting.pk).status == "CANCELLED"
    assert [o.status for o in broker_for(desk.account).orders()] == ["CANCELLED"]


def _position(desk: Desk, net: int, product: str = "MIS", account=None) -> Position:
    return Position.objects.create(
        account=account or desk.account,
        instrument=desk.infy,
        product=product,
        net_quantity=net,
        average_price=Decimal("1490"),
    )


def test_square_off_closes_open_mis_positions_in_scope_and_passes_the_switch(desk) -> None:
    long_mis = _position(desk, 10)
    _position(desk, 7, product="CNC")  # delivery: not squared off
    _position(desk, -3, account=desk.other_account)  # another account: out of scope
    result = kill_switch_set(active=True, account_id=desk.account.pk, square_off=True, by="ops")
    [order] = Order.objects.filter(pk__in=result.square_off_orders)
    assert (order.side, order.quantity, order.product, order.order_type) == ("SELL", 10, "MIS", "MARKET")
    assert (
        order.status == "QUEUED" and order.market_protection == Decimal(-1) and order.account_id == long_mis.account_id
    )
    broker = ScriptedBroker()
    assert order_execute(order_id=order.pk, broker=broker).status == "OPEN"
    assert len(broker.placed) == 1 and broker.placed[0].transaction_type == "SELL"
    # An ordinary order on the same account still cannot leave.
    assert _queued_or_rejected(desk) == "RISK_REJECTED"


def _queued_or_rejected(desk: Desk) -> str:
    order = order_place(
        order=OrderInput(
            account=desk.account,
            instrument=desk.infy,
            client_order_id="ordinary",
            side="BUY",
            quantity=1,
            product="MIS",
            order_type="LIMIT",
            price=Decimal("1500"),
        )
    )
    return str(order.status)


def test_a_short_is_bought_back_and_a_second_square_off_does_not_overshoot(desk) -> None:
    _position(desk, -4)
    first = kill_switch_set(active=True, square_off=True)
    [order] = Order.objects.filter(pk__in=first.square_off_orders)
    assert (order.side, order.quantity) == ("BUY", 4)
    second = kill_switch_set(active=True, square_off=True)  # before the first one filled
    assert second.square_off_orders == [] and "still live" in next(iter(second.square_off_skipped.values()))
    assert Order.objects.filter(client_order_id__startswith="sqoff-").count() == 1
    assert Order.objects.get(pk=order.pk).status == "QUEUED"  # the switch leaves its own closing orders alone


def test_square_off_on_the_paper_broker_fills_at_market(desk) -> None:
    _position(desk, 10)
    result = kill_switch_set(active=True, square_off=True)
    [order_id] = result.square_off_orders
    assert order_execute(order_id=order_id).status == "OPEN"
    [record] = broker_for(desk.account).orders()
    assert record.status == "COMPLETE" and record.transaction_type == "SELL" and record.filled_quantity == 10


def test_square_off_needs_switching_on(desk) -> None:
    from tradingsite.exceptions import ApplicationError

    with pytest.raises(ApplicationError, match="square_off only goes with"):
        kill_switch_set(active=False, square_off=True)


def test_the_admin_lists_every_scope_and_switches_by_action(desk, admin_client) -> None:
    queued = _queued(desk, "adm")
    page = admin_client.get("/admin/orders/killswitch/")
    assert page.status_code == 200
    scopes = set(KillSwitch.objects.values_list("scope", flat=True))
    assert scopes == {"global", f"account:{desk.account.pk}", f"account:{desk.other_account.pk}"}
    row = KillSwitch.objects.get(scope=f"account:{desk.account.pk}")
    response = admin_client.post(
        "/admin/orders/killswitch/", {"action": "switch_on", "_selected_action": [row.pk]}, follow=True
    )
    [said] = [str(m) for m in response.context["messages"]]
    assert said.startswith(f"account:{desk.account.pk}: ON; cancelled 1")
    assert KillSwitch.objects.get(pk=row.pk).active and Order.objects.get(pk=queued.pk).status == "CANCELLED"
    admin_client.post("/admin/orders/killswitch/", {"action": "switch_off", "_selected_action": [row.pk]})
    assert not KillSwitch.objects.get(pk=row.pk).active
    assert not KillSwitch.objects.get(scope="global").active


def test_an_order_whose_broker_cannot_be_reached_is_reported_and_the_rest_still_cancelled(desk) -> None:
    from apps.brokers.models import BrokerAccount

    kite = BrokerAccount.objects.create(name="kite-desk", kind="kite", api_key="k")  # no broker in paper mode
    stuck = _queued(desk, "kite-1", account=kite)
    Order.objects.filter(pk=stuck.pk).update(status="OPEN", broker_order_id="250101000000001")
    waiting = _queued(desk, "paper-1")
    result = kill_switch_set(active=True)
    assert result.cancelled == [waiting.pk] and "not sent to the broker" in result.not_cancelled[stuck.pk]
    assert KillSwitch.objects.get(scope="global").active
