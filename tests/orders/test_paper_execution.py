"""Orders of a paper account go to the real PaperBroker (state in Redis) through broker_for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from apps.brokers.models import BrokerAccount
from apps.brokers.paper_glue import paper_broker_for
from apps.brokers.services import broker_for
from apps.marketdata import events
from apps.marketdata.models import Instrument
from apps.orders.placement import OrderInput, order_execute, order_place
from tradingsite.redis_client import get_redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def paper(settings) -> Iterator[tuple[BrokerAccount, Instrument]]:
    settings.PAPER_MARKET_HOURS = False
    account = BrokerAccount.objects.create(name="paper desk", kind="paper")
    infy = Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065)
    events.set_latest_prices(
        get_redis(),
        {
            "NSE:INFY": events.LatestPrice(
                Decimal("1500"), datetime(2024, 6, 7, 10, tzinfo=ZoneInfo("Asia/Kolkata")), 408065, "replay"
            )
        },
    )
    yield account, infy
    paper_broker_for(account).reset()


def _order(account: BrokerAccount, infy: Instrument, cid: str, **kw: object) -> int:
    fields = {"side": "BUY", "quantity": 10, "product": "CNC", "order_type": "LIMIT", "price": Decimal("1500.05")}
    fields.update(kw)
    return order_place(order=OrderInput(account=account, instrument=infy, client_order_id=cid, **fields)).pk  # type: ignore[arg-type]


def test_a_marketable_limit_order_is_placed_once_and_filled_on_the_paper_book(paper) -> None:
    account, infy = paper
    order = order_execute(order_id=_order(account, infy, "p-1"))
    assert order.status == "OPEN" and order.broker_order_id
    book = broker_for(account)
    [record] = [o for o in book.orders() if o.order_id == order.broker_order_id]
    assert record.tag == order.tag and record.status == "COMPLETE" and record.filled_quantity == 10
    assert record.average_price == Decimal("1500.05")  # the market (1500) plus one tick of slippage, within the limit
    assert [t.order_id for t in book.trades()] == [order.broker_order_id]


def test_the_paper_broker_refusal_becomes_rejected_with_its_message(paper) -> None:
    account, infy = paper
    order = order_execute(
        order_id=_order(account, infy, "p-2", order_type="MARKET", price=None, market_protection=Decimal(0))
    )
    assert order.status == "REJECTED" and "without market protection" in order.status_message
    assert broker_for(account).orders() == []
