"""PaperBroker against the real Redis: fills, slippage, Kite's refusals, shared state across processes, updates."""

from __future__ import annotations

import json
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.brokers.base import KITE_OPEN_STATUSES, Broker, BrokerAmbiguous, BrokerRejected, OrderRequest
from apps.brokers.paper import PaperBroker, calendar_session, redis_price_source
from apps.brokers.paper.rules import CIRCUIT, MARKETS_CLOSED, NO_PROTECTION, PaperConfig, PaperInstrument
from apps.marketdata import events
from apps.marketdata.calendar import IST, shipped_calendar
from tradingsite.redis_client import get_redis

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=IST)  # a Monday, continuous trading
INFY = PaperInstrument("NSE", "INFY", Decimal("0.05"), instrument_token=408065)
PENNY = PaperInstrument("NSE", "PENNY", Decimal("0.01"), instrument_token=1001)
LOTS = PaperInstrument("NSE", "LOTS", Decimal("0.05"), lot_size=50, instrument_token=1002)
AUCTIONED = PaperInstrument("NSE", "RELIANCE", Decimal("0.10"), instrument_token=738561, has_derivatives=True)
INSTRUMENTS = {(i.exchange, i.tradingsymbol): i for i in (INFY, PENNY, LOTS, AUCTIONED)}
MP = Decimal(5)  # market protection, percent


class Prices(dict[str, Decimal]):
    """A price source the test moves by hand."""

    def __call__(self, key: str) -> Decimal | None:
        return self.get(key)


def lookup(exchange: str, tradingsymbol: str) -> PaperInstrument | None:
    return INSTRUMENTS.get((exchange, tradingsymbol))


def make_paper(client: redis.Redis, account: str, prices: Prices, **kwargs: Any) -> PaperBroker:
    kwargs.setdefault("clock", lambda: NOW)
    return PaperBroker(client, account=account, instruments=lookup, price_source=prices, **kwargs)


def order(**overrides: Any) -> OrderRequest:
    base = OrderRequest(
        tag="T1",
        exchange="NSE",
        tradingsymbol="INFY",
        transaction_type="BUY",
        quantity=10,
        product="CNC",
        order_type="MARKET",
        market_protection=MP,
    )
    return replace(base, **overrides)


@pytest.fixture
def prices() -> Prices:
    return Prices({"NSE:INFY": Decimal("1500.00"), "NSE:PENNY": Decimal("100.00"), "NSE:LOTS": Decimal("200.00")})


@pytest.fixture
def new_broker(prices: Prices) -> Iterator[Callable[..., PaperBroker]]:
    """Brokers on the test session's Redis, each on an account of its own, wiped afterwards."""
    made: list[PaperBroker] = []

    def make(**kwargs: Any) -> PaperBroker:
        broker = make_paper(get_redis(), f"test-{uuid.uuid4().hex[:16]}", kwargs.pop("prices", prices), **kwargs)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.reset()


@pytest.fixture
def broker(new_broker: Callable[..., PaperBroker]) -> PaperBroker:
    return new_broker()


def the_order(broker: PaperBroker, order_id: str) -> dict[str, Any]:
    (found,) = [o for o in broker.orders() if o.order_id == order_id]
    return found.raw


def test_it_is_a_broker(broker: PaperBroker) -> None:
    as_protocol: Broker = broker
    assert as_protocol.ltp(["NSE:INFY", "NSE:NOPE"]) == {"NSE:INFY": Decimal("1500.00")}


# --- market orders ----------------------------------------------------------------------------------------------


def test_market_buy_and_sell_fill_one_tick_against_the_trader(broker: PaperBroker) -> None:
    buy = broker.place(order())
    sell = broker.place(order(transaction_type="SELL", quantity=4, tag="T2"))
    assert [(o.order_id, o.status, o.average_price, o.filled_quantity) for o in broker.orders()] == [
        (buy, "COMPLETE", Decimal("1500.05"), 10),
        (sell, "COMPLETE", Decimal("1499.95"), 4),
    ]
    trades = broker.trades()
    assert [(t.order_id, t.transaction_type, t.quantity, t.average_price) for t in trades] == [
        (buy, "BUY", 10, Decimal("1500.05")),
        (sell, "SELL", 4, Decimal("1499.95")),
    ]
    assert trades[0].fill_timestamp == NOW and trades[0].trade_id != trades[1].trade_id


def test_slippage_is_configurable_and_rounded_onto_the_instruments_tick(
    new_broker: Callable[..., PaperBroker], prices: Prices
) -> None:
    prices["NSE:INFY"] = Decimal("1500.02")  # off the 0.05 grid
    broker = new_broker(config=PaperConfig(slippage_ticks=3))
    buy = broker.place(order())
    sell = broker.place(order(transaction_type="SELL"))
    penny = broker.place(order(tradingsymbol="PENNY"))
    fills = {t.order_id: t.average_price for t in broker.trades()}
    assert fills == {buy: Decimal("1500.20"), sell: Decimal("1499.85"), penny: Decimal("100.03")}


def test_market_protection_caps_the_fill(new_broker: Callable[..., PaperBroker], prices: Prices) -> None:
    prices["NSE:PENNY"] = Decimal("100.00")
    broker = new_broker(config=PaperConfig(slippage_ticks=500))
    buy = broker.place(order(tradingsymbol="PENNY", market_protection=Decimal(1)))
    sell = broker.place(order(tradingsymbol="PENNY", transaction_type="SELL", market_protection=Decimal(-1)))
    fills = {t.order_id: t.average_price for t in broker.trades()}
    assert fills == {buy: Decimal("101.00"), sell: Decimal("97.00")}  # 1%; -1 is the automatic 3%


def test_no_price_rejects_a_market_order_in_the_book(new_broker: Callable[..., PaperBroker]) -> None:
    broker = new_broker(prices=Prices())
    order_id = broker.place(order())
    record = the_order(broker, order_id)
    assert (
        record["status"] == "REJECTED"
        and "Last traded price of NSE:INFY is not available" in (record["status_message"])
    )
    assert record["exchange_order_id"] is None and broker.trades() == []


# --- limit and stop orders --------------------------------------------------------------------------------------


def test_a_limit_rests_then_fills_at_its_limit_when_the_price_crosses(broker: PaperBroker) -> None:
    order_id = broker.place(order(order_type="LIMIT", price=Decimal("1490.00"), market_protection=None))
    assert the_order(broker, order_id)["status"] == "OPEN"
    later = datetime(2026, 5, 4, 10, 5, tzinfo=IST)
    assert broker.process_prices({"NSE:INFY": Decimal("1490.05")}, later) == []
    assert broker.process_prices({"NSE:INFY": Decimal("1487.00")}, later) == [order_id]
    (trade,) = broker.trades()
    assert (trade.average_price, trade.quantity, trade.fill_timestamp) == (Decimal("1490.00"), 10, later)
    assert broker.process_prices({"NSE:INFY": Decimal("1480.00")}, later) == []
    assert len(broker.trades()) == 1


def test_a_marketable_limit_takes_the_better_market_price_on_arrival(broker: PaperBroker) -> None:
    buy = broker.place(order(order_type="LIMIT", price=Decimal("1510.00"), market_protection=None))
    sell = broker.place(order(order_type="LIMIT", price=Decimal("1490.00"), transaction_type="SELL"))
    tight = broker.place(order(order_type="LIMIT", price=Decimal("1500.00"), market_protection=None))
    fills = {t.order_id: t.average_price for t in broker.trades()}
    assert fills == {buy: Decimal("1500.05"), sell: Decimal("1499.95"), tight: Decimal("1500.00")}


def test_sl_m_waits_for_its_trigger_then_fills_as_a_market_order(broker: PaperBroker) -> None:
    order_id = broker.place(
        order(transaction_type="SELL", order_type="SL-M", trigger_price=Decimal("1480.00"), product="MIS")
    )
    assert the_order(broker, order_id)["status"] == "TRIGGER PENDING"
    assert broker.process_prices({"NSE:INFY": Decimal("1485.00")}, NOW) == []
    assert broker.process_prices({"NSE:INFY": Decimal("1479.00")}, NOW) == [order_id]
    history = broker.order_history(order_id)
    assert [h.status for h in history] == ["TRIGGER PENDING", "OPEN", "COMPLETE"]
    assert history[-1].average_price == Decimal("1478.95")


def test_sl_triggers_then_rests_as_a_limit_when_the_price_gapped_past_it(broker: PaperBroker) -> None:
    stop = {
        "order_type": "SL",
        "price": Decimal("1512.00"),
        "trigger_price": Decimal("1510.00"),
        "market_protection": None,
    }
    quick, gapped = broker.place(order(**stop)), broker.place(order(**stop, tag="T2"))
    broker.process_prices({"NSE:INFY": Decimal("1511.00")}, NOW)  # both trigger; both marketable
    assert {t.order_id: t.average_price for t in broker.trades()} == {
        quick: Decimal("1511.05"),
        gapped: Decimal("1511.05"),
    }
    late = broker.place(order(**stop, tag="T3"))
    assert broker.process_prices({"NSE:INFY": Decimal("1520.00")}, NOW) == [late]
    assert the_order(broker, late)["status"] == "OPEN"  # triggered, limit 1512 not reachable at 1520
    broker.process_prices({"NSE:INFY": Decimal("1511.50")}, NOW)
    assert the_order(broker, late)["average_price"] == Decimal("1512.00")


def test_ioc_that_cannot_fill_on_arrival_is_cancelled(broker: PaperBroker) -> None:
    order_id = broker.place(order(order_type="LIMIT", price=Decimal("1400.00"), validity="IOC"))
    record = the_order(broker, order_id)
    assert (record["status"], record["cancelled_quantity"]) == ("CANCELLED", 10)


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantity": 0}, "Invalid `quantity`"),
        ({"product": "BO"}, "Invalid `product`"),
        ({"order_type": "STOP"}, "Invalid `order_type`"),
        ({"variety": "co"}, "Invalid `variety`"),
        ({"order_type": "LIMIT"}, "a LIMIT order needs a price"),
        ({"order_type": "SL", "price": Decimal(1500)}, "a SL order needs a trigger price"),
        ({"order_type": "SL-M"}, "a SL-M order needs a trigger price"),
        ({"order_type": "SL", "price": Decimal(1500), "trigger_price": Decimal(1501)}, "must not be above"),
        ({"market_protection": Decimal(0)}, NO_PROTECTION),
        ({"market_protection": None}, NO_PROTECTION),
        ({"order_type": "SL-M", "trigger_price": Decimal(1510), "market_protection": None}, NO_PROTECTION),
        ({"tradingsymbol": "NOSUCH"}, "not a known instrument"),
    ],
)
def test_malformed_requests_raise_like_kites_input_exception(
    broker: PaperBroker, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(BrokerRejected, match=re.escape(message)):
        broker.place(order(**overrides))
    assert broker.orders() == [] and broker.drain_updates() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tradingsymbol": "LOTS", "quantity": 30}, "Quantity should be a multiple of the lot size 50."),
        ({"order_type": "LIMIT", "price": Decimal("1499.97")}, "Tick size for this script is 0.05"),
        ({"order_type": "SL-M", "trigger_price": Decimal("1510.02")}, "Kindly enter trigger price in the multiple"),
        ({"order_type": "LIMIT", "price": Decimal("1800.05")}, CIRCUIT),
        ({"order_type": "LIMIT", "price": Decimal("1199.95"), "transaction_type": "SELL"}, CIRCUIT),
        ({"order_type": "SL-M", "trigger_price": Decimal("1495")}, "should be higher than the last traded price"),
    ],
)
def test_rms_rejections_get_an_order_id_and_show_rejected_in_the_book(
    broker: PaperBroker, overrides: dict[str, Any], message: str
) -> None:
    order_id = broker.place(order(**overrides))
    record = the_order(broker, order_id)
    assert record["status"] == "REJECTED" and message in record["status_message"]
    assert record["status_message_raw"].startswith("RMS:") and record["pending_quantity"] == 0
    assert broker.trades() == [] and [u["status"] for u in broker.drain_updates()] == ["REJECTED"]


def test_circuit_limits_can_be_given(new_broker: Callable[..., PaperBroker]) -> None:
    broker = new_broker(circuit_limits=lambda key: (Decimal(1450), Decimal(1550)))
    inside = broker.place(order(order_type="LIMIT", price=Decimal("1450.00")))
    outside = broker.place(order(order_type="LIMIT", price=Decimal("1550.05")))
    assert the_order(broker, inside)["status"] == "OPEN" and the_order(broker, outside)["status"] == "REJECTED"


def test_insufficient_funds_is_kites_rms_message(new_broker: Callable[..., PaperBroker]) -> None:
    broker = new_broker(config=PaperConfig(starting_cash=Decimal(20_000)))
    first = broker.place(order(order_type="LIMIT", price=Decimal("1400.00")))  # blocks 14000 while open
    second = broker.place(order(order_type="LIMIT", price=Decimal("1400.00")))
    record = the_order(broker, second)
    assert the_order(broker, first)["status"] == "OPEN" and record["status"] == "REJECTED"
    assert record["status_message"] == (
        "Insufficient funds. Required margin is 14000.00 but available margin is 6000.00. "
        "Check the orderbook for open orders."
    )
    mis = broker.place(order(order_type="LIMIT", price=Decimal("1400.00"), product="MIS"))  # 20%: 2800
    assert the_order(broker, mis)["status"] == "OPEN"


def test_outside_market_hours_only_amo_is_taken_and_it_waits_for_the_session(
    new_broker: Callable[..., PaperBroker],
) -> None:
    early = datetime(2026, 5, 4, 8, 0, tzinfo=IST)
    broker = new_broker(session=calendar_session(shipped_calendar()), clock=lambda: early)
    with pytest.raises(BrokerRejected, match=re.escape(MARKETS_CLOSED)):
        broker.place(order())
    order_id = broker.place(order(variety="amo"))
    assert the_order(broker, order_id)["status"] == "AMO REQ RECEIVED"
    assert broker.process_prices({"NSE:INFY": Decimal(1500)}, datetime(2026, 5, 4, 8, 30, tzinfo=IST)) == []
    assert broker.process_prices({"NSE:INFY": Decimal(1500)}, datetime(2026, 5, 4, 9, 15, tzinfo=IST)) == [order_id]
    assert [h.status for h in broker.order_history(order_id)] == ["AMO REQ RECEIVED", "OPEN", "COMPLETE"]


def test_amo_is_refused_while_the_market_is_open(new_broker: Callable[..., PaperBroker]) -> None:
    broker = new_broker(session=calendar_session(shipped_calendar()))
    with pytest.raises(BrokerRejected, match="AMO orders cannot be placed while the market is open"):
        broker.place(order(variety="amo"))


def test_the_closing_auction_takes_only_limit_and_market(new_broker: Callable[..., PaperBroker], prices) -> None:
    prices["NSE:RELIANCE"] = Decimal("2900.00")
    auction = datetime(2026, 8, 10, 15, 20, tzinfo=IST)
    broker = new_broker(session=calendar_session(shipped_calendar()), clock=lambda: auction)
    with pytest.raises(BrokerRejected, match="SL-M orders are not allowed in the current market session"):
        broker.place(order(tradingsymbol="RELIANCE", order_type="SL-M", trigger_price=Decimal("2950.00")))
    order_id = broker.place(order(tradingsymbol="RELIANCE", order_type="LIMIT", price=Decimal("2890.00")))
    assert the_order(broker, order_id)["status"] == "OPEN"


# --- cancel, modify, end of day ---------------------------------------------------------------------------------


def test_cancel_open_orders_only(broker: PaperBroker) -> None:
    resting = broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    done = broker.place(order())
    assert broker.cancel(resting) == resting
    record = the_order(broker, resting)
    assert (record["status"], record["pending_quantity"], record["cancelled_quantity"]) == ("CANCELLED", 10, 10)
    with pytest.raises(BrokerRejected, match=re.escape("Order cannot be cancelled as it is completed.")):
        broker.cancel(done)
    with pytest.raises(BrokerRejected, match=re.escape("Order cannot be cancelled as it is already cancelled.")):
        broker.cancel(resting)
    with pytest.raises(BrokerRejected, match=re.escape("Couldn't find that `order_id`.")):
        broker.cancel("2605040000000000")
    assert broker.process_prices({"NSE:INFY": Decimal(1400)}, NOW) == []


def test_modify_price_quantity_and_trigger_of_open_orders(broker: PaperBroker) -> None:
    order_id = broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    broker.modify(order_id, price=Decimal("1495.00"), quantity=20)
    record = the_order(broker, order_id)
    assert (record["status"], record["price"], record["quantity"], record["modified"]) == (
        "OPEN",
        Decimal("1495.00"),
        20,
        True,
    )
    with pytest.raises(BrokerRejected, match=re.escape("Tick size for this script is 0.05")):
        broker.modify(order_id, price=Decimal("1495.01"))
    assert the_order(broker, order_id)["price"] == Decimal("1495.00")
    broker.modify(order_id, order_type="SL", trigger_price=Decimal("1505.00"), price=Decimal("1506.00"))
    assert the_order(broker, order_id)["status"] == "TRIGGER PENDING"
    broker.modify(order_id, order_type="LIMIT", price=Decimal("1502.00"))  # marketable now: fills
    assert (the_order(broker, order_id)["status"], broker.trades()[0].average_price) == ("COMPLETE", Decimal("1500.05"))
    with pytest.raises(BrokerRejected, match=re.escape("Order cannot be modified as it is completed.")):
        broker.modify(order_id, price=Decimal("1490.00"))


def test_modify_into_a_market_order_needs_protection(broker: PaperBroker) -> None:
    order_id = broker.place(order(order_type="LIMIT", price=Decimal("1490.00"), market_protection=None))
    with pytest.raises(BrokerRejected, match=re.escape(NO_PROTECTION)):
        broker.modify(order_id, order_type="MARKET")
    broker.modify(order_id, order_type="MARKET", market_protection=Decimal(2))
    assert the_order(broker, order_id)["average_price"] == Decimal("1500.05")


def test_cancel_and_modify_check_the_variety(broker: PaperBroker) -> None:
    order_id = broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    with pytest.raises(BrokerRejected, match="Invalid `variety`"):
        broker.cancel(order_id, variety="bo")
    with pytest.raises(BrokerRejected, match="Invalid `variety`"):
        broker.modify(order_id, variety="bo", price=Decimal("1491.00"))
    assert the_order(broker, order_id)["status"] == "OPEN"


def test_prices_must_be_decimals(broker: PaperBroker) -> None:
    broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    with pytest.raises(TypeError, match="the price of NSE:INFY must be a positive Decimal"):
        broker.process_prices({"NSE:INFY": 1480.0}, NOW)  # type: ignore[dict-item]
    assert broker.trades() == []


def test_process_latest_uses_the_price_source(broker: PaperBroker, prices: Prices) -> None:
    order_id = broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    assert broker.process_latest(NOW) == []
    prices["NSE:INFY"] = Decimal("1489.00")
    assert broker.process_latest(NOW) == [order_id]
    assert broker.trades()[0].average_price == Decimal("1490.00")


def test_redis_failing_while_placing_is_ambiguous(prices: Prices) -> None:
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    broker = make_paper(unreachable, "unreachable", prices)
    with pytest.raises(BrokerAmbiguous, match="Redis failed while placing T1"):
        broker.place(order())


def test_end_of_day_cancels_open_day_orders(broker: PaperBroker) -> None:
    resting = broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    assert broker.expire_day_orders(datetime(2026, 5, 4, 15, 31, tzinfo=IST)) == [resting]
    assert the_order(broker, resting)["status"] == "CANCELLED"


# --- ids, updates, shapes ---------------------------------------------------------------------------------------


def test_ids_are_kite_like_numbers_unique_across_accounts(new_broker: Callable[..., PaperBroker]) -> None:
    one, two = new_broker(), new_broker()
    ids = [b.place(order()) for b in (one, two, one, two)]
    trade_ids = [t.trade_id for b in (one, two) for t in b.trades()]
    assert len(set(ids)) == 4 and len(set(trade_ids)) == 4
    assert all(i.isdigit() and len(i) == 16 and i.startswith("260504") for i in ids + trade_ids)


def test_updates_are_postback_shaped_and_drained_once(
    broker: PaperBroker, new_broker: Callable[..., PaperBroker]
) -> None:
    market = broker.place(order())
    resting = broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    broker.cancel(resting)
    other = new_broker()
    first, second = broker.drain_updates(limit=2), broker.drain_updates()
    assert [(u["order_id"], u["status"]) for u in first + second] == [
        (market, "OPEN"),
        (market, "COMPLETE"),
        (resting, "OPEN"),
        (resting, "CANCELLED"),
    ]
    assert broker.drain_updates() == [] and other.drain_updates() == []
    complete = first[1]
    assert (complete["unfilled_quantity"], complete["filled_quantity"], complete["average_price"]) == (
        0,
        10,
        Decimal("1500.05"),
    )
    assert second[1]["unfilled_quantity"] == 10


def test_updates_drained_from_two_clients_are_each_delivered_once(broker: PaperBroker) -> None:
    for n in range(20):
        broker.place(order(tag=f"T{n}"))
    twin = make_paper(redis.Redis.from_url(settings.REDIS_URL), broker.account, Prices())
    drained = (
        broker.drain_updates(limit=7) + twin.drain_updates(limit=9) + broker.drain_updates() + twin.drain_updates()
    )
    assert len(drained) == 40 and len({(u["order_id"], u["status"]) for u in drained}) == 40


def _kite_mock(shared_data: Path, name: str) -> Any:
    return json.loads((shared_data / "kite-mocks" / name).read_text())


def test_records_have_the_kite_mocks_keys(broker: PaperBroker, shared_data: Path) -> None:
    broker.place(order(tag=""))
    broker.place(order(tag="tagged", transaction_type="SELL", quantity=4))
    mock_order = _kite_mock(shared_data, "orders.json")["data"][0]
    untagged, tagged = (o.raw for o in broker.orders())
    assert list(untagged) == list(mock_order)
    assert set(tagged) == {*mock_order, "tags"} and tagged["tags"] == ["tagged"]
    assert set(broker.trade_records()[0]) == set(_kite_mock(shared_data, "trades.json")["data"][0])
    postback = _kite_mock(shared_data, "postback.json")
    update = broker.drain_updates()[-1]
    assert set(postback) <= set(update) and set(update) - set(postback) <= {"modified", "tags"}
    mock_positions = _kite_mock(shared_data, "positions.json")["data"]
    positions = broker.positions()
    assert set(positions) == set(mock_positions)
    assert set(positions["net"][0]) == set(mock_positions["net"][0])
    mock_equity = _kite_mock(shared_data, "margins.json")["data"]["equity"]
    equity = broker.margins()["equity"]
    assert set(equity) == set(mock_equity)
    assert all(set(equity[part]) == set(mock_equity[part]) for part in ("available", "utilised"))


def test_order_history_states_are_kite_statuses(broker: PaperBroker) -> None:
    order_id = broker.place(order(order_type="LIMIT", price=Decimal("1490.00")))
    broker.cancel(order_id)
    history = broker.order_history(order_id)
    assert [h.status for h in history] == ["OPEN", "CANCELLED"] and history[0].status in KITE_OPEN_STATUSES
    assert history[0].order_timestamp == NOW and history[0].raw["exchange_order_id"] == "1" + order_id
    with pytest.raises(BrokerRejected, match="Couldn't find"):
        broker.order_history("2605040000000000")


# --- positions and margins --------------------------------------------------------------------------------------


def test_positions_and_margins_follow_the_paper_trades(broker: PaperBroker, prices: Prices) -> None:
    broker.place(order(quantity=10))  # CNC buy at 1500.05
    broker.place(order(quantity=4, transaction_type="SELL"))  # CNC sell at 1499.95
    broker.place(order(tradingsymbol="PENNY", quantity=100, transaction_type="SELL", product="MIS"))  # at 99.99
    prices["NSE:INFY"] = Decimal("1510.00")
    net = {p["tradingsymbol"]: p for p in broker.positions()["net"]}
    infy, penny = net["INFY"], net["PENNY"]
    assert (infy["quantity"], infy["average_price"], infy["last_price"]) == (6, Decimal("1500.05"), Decimal("1510.00"))
    assert infy["realised"] == Decimal("-0.40")  # 4 x (1499.95 - 1500.05)
    assert infy["pnl"] == Decimal("59.30")  # value -9000.70 + 6 x 1510
    assert (penny["quantity"], penny["average_price"], penny["value"]) == (-100, Decimal("99.99"), Decimal("9999.00"))
    equity = broker.margins()["equity"]
    delivery, exposure = Decimal("9000.30"), Decimal("1999.80")  # 6 x 1500.05; 20% of 9999
    assert equity["utilised"]["delivery"] == delivery and equity["utilised"]["exposure"] == exposure
    assert equity["net"] == Decimal(1_000_000) - delivery - exposure + Decimal("-0.40")
    assert broker.positions()["day"][0]["day_buy_quantity"] == 10


def test_the_feeds_latest_prices_are_a_price_source(new_broker: Callable[..., PaperBroker]) -> None:
    client = get_redis()
    symbol = f"PX{uuid.uuid4().hex[:8].upper()}"
    INSTRUMENTS[("NSE", symbol)] = PaperInstrument("NSE", symbol, Decimal("0.05"))
    try:
        events.set_latest_prices(client, {f"NSE:{symbol}": events.LatestPrice(Decimal("250.40"), NOW, None, "test")})
        broker = new_broker(prices=redis_price_source(client))
        order_id = broker.place(order(tradingsymbol=symbol))
        assert the_order(broker, order_id)["average_price"] == Decimal("250.45")
        assert broker.process_latest() == []
    finally:
        client.hdel(events.LATEST_PRICES, f"NSE:{symbol}")
        del INSTRUMENTS[("NSE", symbol)]


# --- several processes ------------------------------------------------------------------------------------------

RESTING = 12
PROCESSES = 4


def _price_in_child(url: str, account: str, barrier: Any, results: Any) -> None:
    """One concurrent client: its own Redis connection, the same paper account, the same crossing price."""
    broker = make_paper(redis.Redis.from_url(url), account, Prices({"NSE:INFY": Decimal(1500)}))
    barrier.wait(timeout=60)
    changed: list[str] = []
    for _ in range(3):
        changed += broker.process_prices({"NSE:INFY": Decimal("1480.00")}, NOW)
    results.put(changed)


def test_processes_pricing_the_same_orders_at_once_fill_each_exactly_once(broker: PaperBroker) -> None:
    # Threads, each with its own Redis connection: the race is between Redis clients (WATCH/MULTI), and
    # forking a pytest process that earlier tests left with threads can hang the children.
    ids = [broker.place(order(order_type="LIMIT", price=Decimal("1490.00"), tag=f"R{n}")) for n in range(RESTING)]
    broker.drain_updates()
    barrier = threading.Barrier(PROCESSES)
    results: queue.Queue[list[str]] = queue.Queue()
    children = [
        threading.Thread(target=_price_in_child, args=(settings.REDIS_URL, broker.account, barrier, results))
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    changed = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert not child.is_alive()
    assert sorted(i for per_child in changed for i in per_child) == sorted(ids)  # each reported by one process
    trades = broker.trades()
    assert sorted(t.order_id for t in trades) == sorted(ids) and len({t.trade_id for t in trades}) == RESTING
    assert all([h.status for h in broker.order_history(i)] == ["OPEN", "COMPLETE"] for i in ids)
    assert sorted(u["order_id"] for u in broker.drain_updates()) == sorted(ids)
