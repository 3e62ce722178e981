"""The orders API: placing, listing, reading and cancelling orders of granted accounts; positions; portfolio."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest

from apps.brokers.models import BrokerAccount
from apps.brokers.services import broker_for
from apps.orders.models import Fill, KillSwitch, Order, OrderEvent, Position
from apps.orders.placement import order_execute
from tests.orders.desk import IST, Desk, make_desk, order_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/orders/"


@pytest.fixture
def desk(settings) -> Iterator[Desk]:
    settings.PAPER_MARKET_HOURS = False
    desk = make_desk()
    yield desk
    desk.reset()


def _place(desk: Desk, user=None, **overrides):
    return desk.client(user).post(
        URL, order_body(desk, **overrides), format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
    )


def test_placing_answers_201_with_the_queued_order_and_money_as_strings(desk) -> None:
    response = _place(desk, strategy="breakout")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "QUEUED" and body["price"] == "1500.0500" and body["strategy"] == "breakout"
    assert body["account"] == desk.account.pk and body["symbol"] == "INFY" and body["exchange"] == "NSE"
    assert body["failures"] == [] and [e["to_status"] for e in body["events"]] == ["QUEUED"]
    assert body["events"][0]["source"] == "api"
    assert Order.objects.get(pk=body["id"]).instrument_id == desk.infy.pk


def test_an_instrument_id_works_instead_of_a_symbol(desk) -> None:
    response = _place(desk, symbol=None, instrument=desk.infy.pk)
    assert response.status_code == 201 and response.json()["symbol"] == "INFY"


def test_a_risk_rejected_order_is_still_201_with_its_failures(desk) -> None:
    response = _place(desk, price="1500.03")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "RISK_REJECTED" and [f["code"] for f in body["failures"]] == ["tick_size"]


def test_server_owned_and_unknown_fields_are_refused_by_name(desk) -> None:
    response = _place(desk, status="COMPLETE", filled_quantity=10, tag="X", colour="red")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"status", "filled_quantity", "tag", "colour"}
    assert not Order.objects.exists()


def test_symbol_or_instrument_exactly_one(desk) -> None:
    response = _place(desk, instrument=desk.infy.pk)
    assert response.status_code == 400 and "symbol" in response.json()["error"]["details"]


def test_an_unknown_symbol_is_a_404_naming_it(desk) -> None:
    response = _place(desk, symbol="NOPE")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_instrument"


def test_no_placing_on_an_account_not_granted(desk) -> None:
    response = _place(desk, account=desk.other_account.pk)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_account"
    assert "not granted" in response.json()["error"]["message"]
    assert not Order.objects.exists()


def test_a_client_order_id_of_another_account_is_not_handed_out(desk) -> None:
    assert _place(desk, user=desk.other, account=desk.other_account.pk, client_order_id="shared-1").status_code == 201
    response = _place(desk, client_order_id="shared-1")
    assert response.status_code == 409 and response.json()["error"]["code"] == "client_order_id_taken"
    assert "paper-other" not in response.content.decode()


def test_a_user_sees_only_orders_of_granted_accounts(desk) -> None:
    mine = _place(desk).json()
    theirs = _place(desk, user=desk.other, account=desk.other_account.pk).json()
    listed = desk.client().get(URL).json()["results"]
    assert [o["id"] for o in listed] == [mine["id"]]
    assert desk.client().get(f"{URL}{theirs['id']}/").status_code == 404
    assert desk.client().post(f"{URL}{theirs['id']}/cancel/").status_code == 404
    assert Order.objects.get(pk=theirs["id"]).status == "QUEUED"


def test_a_user_without_any_grant_sees_nothing(desk, django_user_model) -> None:
    _place(desk)
    nobody = django_user_model.objects.create_user("nobody")
    client = desk.client(nobody)
    assert client.get(URL).json()["results"] == []
    assert client.get("/api/v1/positions/").json()["results"] == []
    assert client.get("/api/v1/portfolio/").json()["accounts"] == []
    assert _place(desk, user=nobody).status_code == 404


def test_a_superuser_sees_every_account(desk, django_user_model) -> None:
    _place(desk)
    _place(desk, user=desk.other, account=desk.other_account.pk)
    boss = django_user_model.objects.create_superuser("boss", password=None)
    assert len(desk.client(boss).get(URL).json()["results"]) == 2


def test_the_list_filters_and_pages_by_keyset(desk) -> None:
    ids = [_place(desk).json()["id"] for _ in range(3)]
    rejected = _place(desk, price="1500.03").json()["id"]
    client = desk.client()
    assert [o["id"] for o in client.get(URL, {"status": "RISK_REJECTED"}).json()["results"]] == [rejected]
    assert client.get(URL, {"symbol": "TCS"}).json()["results"] == []
    assert len(client.get(URL, {"account": desk.account.pk, "symbol": "infy"}).json()["results"]) == 4
    page = client.get(URL, {"status": "QUEUED", "limit": 2}).json()
    assert [o["id"] for o in page["results"]] == [ids[2], ids[1]] and "before=" in page["next"]
    rest = client.get(page["next"]).json()
    assert [o["id"] for o in rest["results"]] == [ids[0]] and rest["next"] is None
    assert client.get(URL, {"limit": 0}).status_code == 400


def test_detail_has_events_and_fills(desk) -> None:
    order = Order.objects.get(pk=_place(desk).json()["id"])
    Fill.objects.create(order=order, trade_id="T1", quantity=4, price=Decimal("1500"), filled_at=datetime.now(IST))
    body = desk.client().get(f"{URL}{order.pk}/").json()
    assert [f["trade_id"] for f in body["fills"]] == ["T1"] and body["fills"][0]["price"] == "1500.0000"
    assert body["events"][0]["to_status"] == "QUEUED"


def test_cancelling_a_queued_order_never_sends_it(desk) -> None:
    order_id = _place(desk).json()["id"]
    response = desk.client().post(f"{URL}{order_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    event = OrderEvent.objects.filter(order_id=order_id).last()
    assert event is not None and event.source == "api" and "trader" in event.message
    assert order_execute(order_id=order_id).status == "CANCELLED"
    assert broker_for(desk.account).orders() == []


def test_cancelling_an_open_paper_order_cancels_it_at_the_broker(desk) -> None:
    order_id = _place(desk, price="1450").json()["id"]  # a buy limit below the market rests in the book
    assert order_execute(order_id=order_id).status == "OPEN"
    response = desk.client().post(f"{URL}{order_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    [record] = broker_for(desk.account).orders()
    assert record.status == "CANCELLED"
    messages = [e["message"] for e in response.json()["events"]]
    assert any(m.startswith("cancel requested by trader") for m in messages)


def test_an_order_that_filled_at_the_broker_meanwhile_is_read_back_not_cancelled(desk) -> None:
    order_id = _place(desk).json()["id"]  # marketable: fills at once on the paper book
    assert order_execute(order_id=order_id).status == "OPEN"  # the OMS has not heard of the fill yet
    response = desk.client().post(f"{URL}{order_id}/cancel/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "order_not_cancellable"
    assert response.json()["error"]["details"]["status"] == "COMPLETE"
    order = Order.objects.get(pk=order_id)
    assert order.status == "COMPLETE" and order.filled_quantity == 10 and order.fills.count() == 1


def test_a_cancel_that_cannot_reach_the_broker_is_a_503_and_changes_nothing(desk) -> None:
    kite = BrokerAccount.objects.create(name="kite-desk", kind="kite", api_key="k")
    kite.users.add(desk.user)
    order_id = _place(desk, account=kite.pk).json()["id"]
    Order.objects.filter(pk=order_id).update(status="OPEN", broker_order_id="250101000000001")
    response = desk.client().post(f"{URL}{order_id}/cancel/")
    assert response.status_code == 503 and response.json()["error"]["code"] == "broker_unavailable"
    assert Order.objects.get(pk=order_id).status == "OPEN"
    messages = list(OrderEvent.objects.filter(order_id=order_id).values_list("message", flat=True))
    assert messages[-2].startswith("cancel requested by trader") and messages[-1].startswith("cancel not sent")


def test_a_finished_or_unresolved_order_cannot_be_cancelled(desk) -> None:
    done = _place(desk).json()["id"]
    Order.objects.filter(pk=done).update(status="COMPLETE")
    unknown = _place(desk).json()["id"]
    Order.objects.filter(pk=unknown).update(status="UNKNOWN")
    first = desk.client().post(f"{URL}{done}/cancel/")
    assert first.status_code == 409 and first.json()["error"]["code"] == "order_not_cancellable"
    second = desk.client().post(f"{URL}{unknown}/cancel/")
    assert second.status_code == 409 and second.json()["error"]["code"] == "order_outcome_unknown"
    assert "reconcile first" in second.json()["error"]["message"]


def test_positions_carry_last_price_and_pnl(desk) -> None:
    Position.objects.create(
        account=desk.account,
        instrument=desk.infy,
        product="MIS",
        net_quantity=10,
        average_price=Decimal("1480"),
        realised_pnl=Decimal("250"),
        charges=Decimal("12.5"),
    )
    Position.objects.create(account=desk.other_account, instrument=desk.infy, product="CNC", net_quantity=5)
    [row] = desk.client().get("/api/v1/positions/").json()["results"]
    assert row["last_price"] == "1500.0000" and row["unrealised_pnl"] == "200.0000"
    assert row["realised_pnl"] == "250.0000" and row["charges"] == "12.5000" and row["net_pnl"] == "437.5000"


def test_a_position_without_a_price_has_no_unrealised_figure(desk) -> None:
    from apps.marketdata.models import Instrument

    tcs = Instrument.objects.create(tradingsymbol="ZZNOPRICE", instrument_token=1)
    Position.objects.create(account=desk.account, instrument=tcs, product="CNC", net_quantity=3)
    [row] = desk.client().get("/api/v1/positions/", {"open": "true"}).json()["results"]
    assert row["last_price"] is None and row["unrealised_pnl"] is None and row["net_pnl"] is None


def test_portfolio_totals_exposure_pnl_and_cash(desk) -> None:
    Position.objects.create(
        account=desk.account, instrument=desk.infy, product="MIS", net_quantity=-10, average_price=Decimal("1510")
    )
    kite = BrokerAccount.objects.create(name="kite-desk", kind="kite")
    kite.users.add(desk.user)
    order = Order.objects.get(pk=_place(desk, strategy="s1").json()["id"])
    for trade_id, qty in (("B1", 10),):
        Fill.objects.create(
            order=order, trade_id=trade_id, quantity=qty, price=Decimal("1490"), filled_at=datetime.now(IST)
        )
    body = desk.client().get("/api/v1/portfolio/").json()
    paper, kite_row = sorted(body["accounts"], key=lambda r: r["kind"])[::-1]
    assert paper["account_name"] == "paper-desk" and paper["cash"] == "1000000.0000" and paper["cash_error"] is None
    assert paper["gross_exposure"] == "15000.0000" and paper["net_exposure"] == "-15000.0000"
    assert paper["unrealised_pnl"] == "100.0000"  # short 10 at 1510, now 1500
    assert kite_row["cash"] is None and kite_row["cash_error"]
    assert body["total"]["cash"] == "1000000.0000" and "kite-desk" in body["total"]["cash_error"]
    assert [r["key"] for r in body["by_strategy"]] == ["s1"]
    assert body["by_strategy"][0]["unrealised"] == "100.0000"  # long 10 at 1490 by its fills, now 1500
    assert len(body["by_day"]) == 1


def test_kill_switch_api_is_for_staff(desk, django_user_model) -> None:
    denied = desk.client().post("/api/v1/kill-switch/", {"active": True}, format="json")
    assert denied.status_code == 403 and not KillSwitch.objects.exists()
    staff = django_user_model.objects.create_user("ops", is_staff=True)
    queued = _place(desk).json()["id"]
    on = desk.client(staff).post(
        "/api/v1/kill-switch/", {"active": True, "account": desk.account.pk, "reason": "drill"}, format="json"
    )
    assert on.status_code == 200, on.content
    assert on.json()["scope"] == f"account:{desk.account.pk}" and on.json()["cancelled"] == [queued]
    [state] = desk.client().get("/api/v1/kill-switch/").json()["results"]
    assert state["active"] is True and state["reason"] == "drill" and state["changed_by"] == "ops"
    assert desk.client(desk.other).get("/api/v1/kill-switch/").json()["results"] == []
    unknown = desk.client(staff).post("/api/v1/kill-switch/", {"active": True, "account": 99999}, format="json")
    assert unknown.status_code == 404


def test_the_schema_documents_the_orders_api(admin_client) -> None:
    schema = admin_client.get("/api/schema/").content.decode()
    for path in ("/api/v1/orders/", "/api/v1/orders/{order_id}/cancel/", "/api/v1/portfolio/", "/api/v1/kill-switch/"):
        assert path in schema
    assert "Idempotency-Key" in schema


def test_admin_cancels_selected_orders_and_shows_position_pnl(desk, admin_client) -> None:
    queued = _place(desk).json()["id"]
    done = _place(desk).json()["id"]
    Order.objects.filter(pk=done).update(status="COMPLETE")
    response = admin_client.post(
        "/admin/orders/order/", {"action": "cancel_orders", "_selected_action": [queued, done]}, follow=True
    )
    said = [str(m) for m in response.context["messages"]]
    assert said[0] == f"order {queued}: CANCELLED" and said[1].startswith(f"order {done}: not cancelled")
    assert Order.objects.get(pk=queued).status == "CANCELLED"
    Position.objects.create(
        account=desk.account, instrument=desk.infy, product="MIS", net_quantity=10, average_price=Decimal("1480")
    )
    page = admin_client.get("/admin/orders/position/").content.decode()
    assert "200.00" in page and "1500" in page  # unrealised (1500 - 1480) x 10 at the latest price
