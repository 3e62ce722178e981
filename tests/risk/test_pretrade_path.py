"""Every pre-trade check enforced in the order path: the order is RISK_REJECTED with the failure's code on its
event, in the API's `failures`, and as a breach for the risk officer; nothing is enqueued or sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Instrument
from apps.orders.models import Fill, KillSwitch, Order, OrderEvent, Position
from apps.orders.placement import OrderInput, order_place
from apps.risk import services
from apps.risk.limits import limit_create, limit_update
from apps.risk.models import RestrictedInstrument, RiskBreach, RiskLimit
from tests.orders.desk import IST, Desk, make_desk, set_price

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def desk(settings) -> Iterator[Desk]:
    settings.PAPER_MARKET_HOURS = False
    desk = make_desk()
    yield desk
    desk.reset()


def place(desk: Desk, **kw: Any) -> Order:
    fields: dict[str, Any] = {
        "account": desk.account,
        "instrument": desk.infy,
        "client_order_id": f"t-{uuid.uuid4().hex[:12]}",
        "side": "BUY",
        "quantity": 10,
        "product": "CNC",
        "order_type": "LIMIT",
        "price": D("1500.05"),
    }
    fields.update(kw)
    return order_place(order=OrderInput(**fields))


def codes(order: Order) -> list[str]:
    event = OrderEvent.objects.get(order=order, to_status="RISK_REJECTED")
    return [f["code"] for f in event.payload["failures"]]


def assert_refused(desk: Desk, order: Order, code: str) -> None:
    assert order.status == "RISK_REJECTED", order.status
    assert code in codes(order)
    body = desk.client().get(f"/api/v1/orders/{order.pk}/").json()
    assert code in [f["code"] for f in body["failures"]] and body["status"] == "RISK_REJECTED"
    breach = RiskBreach.objects.get(order=order)
    assert breach.kind == "pre_trade" and code in breach.codes and breach.account_id == desk.account.pk


def account_limits(desk: Desk, **values: object) -> RiskLimit:
    return limit_create(scope="account", account_id=desk.account.pk, values=values, changed_by="t", source="test")


def test_a_plain_order_passes_and_takes_no_breach(desk) -> None:
    order = place(desk)
    assert order.status == "QUEUED" and not RiskBreach.objects.exists()


def test_kill_switch(desk) -> None:
    KillSwitch.objects.create(scope="global", active=True)
    assert_refused(desk, place(desk), "kill_switch")


def test_instrument_restricted_or_not_an_equity(desk) -> None:
    RestrictedInstrument.objects.create(instrument=desk.infy, reason="results day")
    assert_refused(desk, place(desk), "not_tradable")
    future = Instrument.objects.create(tradingsymbol="NIFTY24JUNFUT", instrument_type="FUT", lot_size=25)
    set_price("NIFTY24JUNFUT", "23000", token=1)
    assert_refused(desk, place(desk, instrument=future, quantity=25, price=D("23000")), "not_tradable")


def test_lot_tick_and_fat_finger_band(desk) -> None:
    assert_refused(desk, place(desk, price=D("1500.03")), "tick_size")
    assert_refused(desk, place(desk, price=D("1600")), "price_band")  # 6.7% from 1500, band 5%
    lot = Instrument.objects.create(tradingsymbol="LOTS", lot_size=5)
    set_price("LOTS", "100", token=2)
    assert_refused(desk, place(desk, instrument=lot, quantity=3, price=D("100")), "lot_size")


def test_order_value_and_quantity_per_account_and_per_strategy(desk) -> None:
    account_limits(desk, max_order_value="10000")
    assert_refused(desk, place(desk), "max_order_value")  # 10 x 1500.05
    assert place(desk, quantity=6).status == "QUEUED"
    limit_create(scope="strategy", strategy="alpha", values={"max_quantity": 5}, changed_by="t", source="test")
    assert_refused(desk, place(desk, quantity=6, strategy="alpha"), "max_quantity")
    assert place(desk, quantity=6, strategy="beta").status == "QUEUED"


def _hold(desk: Desk, quantity: int, average: str = "1500", instrument: Instrument | None = None) -> None:
    Position.objects.create(
        account=desk.account, instrument=instrument or desk.infy, product="CNC", net_quantity=quantity,
        average_price=D(average),
    )  # fmt: skip


def test_position_value_concentration_and_gross_exposure_only_when_adding_risk(desk) -> None:
    _hold(desk, 100)  # 150,000 of INFY
    account_limits(desk, max_position_value="160000", max_gross_exposure="1000000", max_concentration_pct="100")
    assert_refused(desk, place(desk), "max_position_value")  # 110 x 1500 = 165,000
    assert place(desk, side="SELL", quantity=10, price=D("1500")).status == "QUEUED"
    limit_update(limit_id=RiskLimit.objects.get(scope="account").pk, changes={"max_position_value": None,
                 "max_concentration_pct": "40", "concentration_floor": "0"}, changed_by="t", source="test")  # fmt: skip
    other = Instrument.objects.create(tradingsymbol="TCS", instrument_token=2953217)
    set_price("TCS", "3000", token=2953217)
    _hold(desk, 100, "3000", instrument=other)  # 300,000 of TCS: INFY is 150k of 450k = 33%
    assert_refused(desk, place(desk, quantity=60), "concentration")  # 240k of 540k = 44%
    assert place(desk, quantity=10).status == "QUEUED"  # 165k of 465k = 35%
    limit_update(limit_id=RiskLimit.objects.get(scope="account").pk, changes={"max_gross_exposure": "460000"},
                 changed_by="t", source="test")  # fmt: skip
    assert_refused(desk, place(desk, quantity=10), "gross_exposure")  # 465,000


def test_open_orders(desk) -> None:
    account_limits(desk, max_open_orders=2)
    place(desk), place(desk)
    assert_refused(desk, place(desk), "max_open_orders")


def test_daily_loss_blocks_adding_risk_but_lets_reducing_orders_through(desk) -> None:
    """Bought 100 today at 1600, the market is at 1500: down 10,000 plus charges."""
    bought = place(desk, quantity=100, price=D("1500"))
    Order.objects.filter(pk=bought.pk).update(status="COMPLETE")
    Fill.objects.create(order=bought, trade_id="T-loss", quantity=100, price=D("1600"), filled_at=timezone.now(),
                        charges_total=D("25"))  # fmt: skip
    _hold(desk, 100, "1600")
    account_limits(desk, daily_loss_limit="10000")
    assert services.order_facts(request=_request(desk)).day_pnl == D("-10025")
    assert_refused(desk, place(desk), "daily_loss")
    assert place(desk, side="SELL", quantity=50, price=D("1500")).status == "QUEUED"


def _request(desk: Desk, **kw: Any) -> services.PreTradeRequest:
    fields: dict[str, Any] = {
        "account_id": desk.account.pk, "account_kind": "paper", "strategy": "", "instrument": desk.infy,
        "side": "BUY", "quantity": 10, "order_type": "LIMIT", "price": D("1500.05"), "trigger_price": None,
        "kill_switch_on": False,
    }  # fmt: skip
    fields.update(kw)
    return services.PreTradeRequest(**fields)


def test_orders_per_second_and_per_day_and_a_refused_order_takes_no_slot(desk) -> None:
    account_limits(desk, orders_per_second=2, orders_per_day=3)
    assert_refused(desk, place(desk, price=D("1500.03")), "tick_size")  # refused: reads the limiter, takes nothing
    assert [place(desk).status for _ in range(2)] == ["QUEUED", "QUEUED"]
    assert_refused(desk, place(desk), "orders_per_second")
    RiskLimit.objects.filter(scope="account").update(orders_per_second=100)
    assert place(desk).status == "QUEUED"  # the third of the day
    assert_refused(desk, place(desk), "orders_per_day")


@pytest.mark.parametrize(
    "case",
    [
        (datetime(2024, 6, 10, 10, 0, tzinfo=IST), "regular", True),  # a Monday in the continuous session
        (datetime(2024, 6, 9, 10, 0, tzinfo=IST), "regular", False),  # a Sunday
        (datetime(2024, 6, 10, 16, 0, tzinfo=IST), "regular", False),  # after the close
        (datetime(2024, 6, 9, 10, 0, tzinfo=IST), "amo", True),  # an after-market order while shut
        (datetime(2024, 6, 10, 10, 0, tzinfo=IST), "amo", False),  # ... but not while the market is open
    ],
)
def test_the_session_for_kite_accounts(desk, settings, monkeypatch, case) -> None:
    moment, variety, passes = case
    settings.RISK_MARKET_HOURS = True
    monkeypatch.setattr(services, "_now", lambda: moment)
    kite = BrokerAccount.objects.create(name="kite-desk", kind="kite", api_key="k")
    order = place(desk, account=kite, variety=variety)
    if passes:
        assert order.status == "QUEUED"
    else:
        assert order.status == "RISK_REJECTED" and codes(order) == ["market_closed"]


def test_paper_accounts_follow_paper_market_hours(desk, settings, monkeypatch) -> None:
    monkeypatch.setattr(services, "_now", lambda: datetime(2024, 6, 9, 10, 0, tzinfo=IST))  # a Sunday
    assert place(desk).status == "QUEUED"  # PAPER_MARKET_HOURS off (demos at any hour)
    settings.PAPER_MARKET_HOURS = True
    assert_refused(desk, place(desk), "market_closed")


def test_a_kite_account_needs_a_kite_instrument_token(desk, settings) -> None:
    settings.RISK_MARKET_HOURS = False
    kite = BrokerAccount.objects.create(name="kite-desk", kind="kite", api_key="k")
    csv_only = Instrument.objects.create(tradingsymbol="CSVONLY", provisional=True)
    set_price("CSVONLY", "100", token=3)
    order = place(desk, account=kite, instrument=csv_only, price=D("100"))
    assert order.status == "RISK_REJECTED" and codes(order) == ["not_tradable"]
