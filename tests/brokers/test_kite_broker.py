"""KiteBroker with the REAL kiteconnect client against the fake Kite server (tests/support/fake_kite.py).

What reaches the fake is what would reach Kite: the form the client sent, how many
placements a tag produced, the arrival times the rate limits are judged on.
Redis is the real one (REDIS_URL or the embedded server); each test has its own
API key, so its rate-limit keys are its own.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from django.conf import settings
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

from apps.brokers.base import (
    BrokerAmbiguous,
    BrokerAuthError,
    BrokerError,
    BrokerRejected,
    BrokerThrottled,
    OrderRequest,
)
from apps.brokers.kite import KiteBroker, KiteConfig
from apps.brokers.kite_limits import LIMITS, ORDERS, OTHER, QUOTE, Limit
from apps.brokers.models import BrokerAccount
from apps.brokers.services import BrokerNotAvailable, KiteNotConfigured, broker_for
from apps.marketdata.models import Instrument
from apps.orders.placement import OrderInput, order_execute, order_place
from tests.support.fake_kite import FakeKite, kite_error
from tradingsite.redis_client import get_redis

IST = ZoneInfo("Asia/Kolkata")


@pytest.fixture
def api_key(unique_token: str) -> Iterator[str]:
    key = f"k{unique_token[:15]}"
    yield key
    client = get_redis()
    stale = list(client.scan_iter(match=f"ratelimit:kite:{key}:*"))
    if stale:
        client.delete(*stale)


def _broker(fake: FakeKite, api_key: str, *, timeout: float = 3, redis_client: Any = None, **kw: Any) -> KiteBroker:
    client = KiteConnect(api_key=api_key, access_token="tok-1", root=fake.url, timeout=timeout)
    return KiteBroker(client, redis_client or get_redis(), **kw)


def _request(tag: str = "T1", **kw: Any) -> OrderRequest:
    fields: dict[str, Any] = {
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "transaction_type": "BUY",
        "quantity": 10,
        "product": "CNC",
        "order_type": "LIMIT",
        "price": Decimal("1500.05"),
    }
    fields.update(kw)
    return OrderRequest(tag=tag, **fields)


# --- round trips ------------------------------------------------------------------------------------


def test_place_modify_fill_cancel_round_trip(fake_kite: FakeKite, api_key: str) -> None:
    broker = _broker(fake_kite, api_key)
    order_id = broker.place(_request("Tround1"))
    form = fake_kite.book.form(order_id)
    assert (form["tag"], form["price"], form["quantity"], form["variety"]) == ("Tround1", "1500.05", "10", "regular")
    assert "market_protection" not in form and "trigger_price" not in form and "algo_id" not in form
    [placed] = [o for o in broker.orders() if o.order_id == order_id]
    assert (placed.tag, placed.status, placed.pending_quantity) == ("Tround1", "OPEN", 10)
    assert placed.price == Decimal("1500.05")
    assert placed.order_timestamp is not None and placed.order_timestamp.utcoffset() == IST.utcoffset(datetime.now())

    assert broker.modify(order_id, quantity=6, price=Decimal("1499.5")) == order_id
    fake_kite.fill(order_id, 2, 1499.5)
    history = broker.order_history(order_id)
    assert [h.status for h in history] == [
        *("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "OPEN"),
        *("MODIFY VALIDATION PENDING", "OPEN", "OPEN"),
    ]
    assert (history[-1].quantity, history[-1].filled_quantity, history[-1].pending_quantity) == (6, 2, 4)
    assert history[-1].average_price == Decimal("1499.5") and history[-1].price == Decimal("1499.5")
    [trade] = broker.order_trades(order_id)
    assert trade in broker.trades()
    assert (trade.quantity, trade.average_price, trade.transaction_type) == (2, Decimal("1499.5"), "BUY")
    assert trade.fill_timestamp.tzinfo is not None and abs(trade.fill_timestamp - datetime.now(IST)).seconds < 60

    assert broker.cancel(order_id) == order_id
    assert broker.order_history(order_id)[-1].status == "CANCELLED"
    with pytest.raises(BrokerRejected, match="cannot be cancelled as it is cancelled"):
        broker.cancel(order_id)
    with pytest.raises(BrokerRejected, match="Couldn't find that `order_id`"):
        broker.order_history("999")


def test_zerodha_mock_bodies_parse_into_broker_records(fake_kite: FakeKite, api_key: str) -> None:
    fake_kite.seed_orders()
    broker = _broker(fake_kite, api_key)
    orders = {o.order_id: o for o in broker.orders()}
    assert len(orders) == 11
    iceberg = orders["220524001859672"]
    assert (iceberg.tag, iceberg.status, iceberg.price, iceberg.trigger_price) == (
        "icebergord",
        "REJECTED",
        Decimal("463"),
        None,
    )
    assert iceberg.status_message is not None and iceberg.status_message.startswith("Insufficient funds")
    assert iceberg.order_timestamp == datetime(2022, 5, 24, 12, 26, 52, tzinfo=IST)
    assert iceberg.raw["price"] == Decimal("463") and iceberg.raw["meta"]["iceberg"]["legs"] == 5
    history = broker.order_history("171229000724687")
    assert [h.status for h in history][:4] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "OPEN"]
    assert history[-1].price == Decimal("300.1")

    trades = broker.trades()
    assert [t.trade_id for t in trades] == ["10000000", "40000000", "70000000", "90000000"]
    assert trades[0].average_price == Decimal("420.65") and trades[1].average_price == Decimal("72.755")
    assert trades[0].fill_timestamp == datetime(2021, 5, 31, 9, 16, 39, tzinfo=IST)
    assert [t.trade_id for t in broker.order_trades("200000000000000")] == ["10000000"]

    net = broker.positions()["net"]
    assert net[0]["average_price"] == Decimal("161.05") and net[0]["quantity"] == 1
    assert isinstance(net[0]["quantity"], int)
    assert broker.margins()["equity"]["available"]["cash"] == Decimal("245431.6")
    assert broker.ltp(["NSE:INFY"]) == {"NSE:INFY": Decimal("1074.35")}
    [ltp] = [r for r in fake_kite.requests if r.path == "/quote/ltp"]
    assert ltp.params == (("i", "NSE:INFY"),)


# --- what every order carries -------------------------------------------------------------------------


def test_market_and_sl_m_orders_always_carry_market_protection(fake_kite: FakeKite, api_key: str) -> None:
    raw = KiteConnect(api_key=api_key, access_token="tok-1", root=fake_kite.url)
    with pytest.raises(kite_errors.InputException, match="without market protection"):
        raw.place_order(
            variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
            quantity=1, product="CNC", order_type="MARKET", tag="Tnone",
        )  # fmt: skip
    broker = _broker(fake_kite, api_key)
    default = broker.place(_request("Tmkt1", order_type="MARKET", price=None))
    own = broker.place(_request("Tmkt2", order_type="MARKET", price=None, market_protection=Decimal("5.0")))
    auto = broker.place(
        _request("Tslm1", order_type="SL-M", price=None, trigger_price=Decimal("1490"), market_protection=Decimal(-1))
    )
    limit = broker.place(_request("Tlim1"))
    sent = {i: fake_kite.book.form(i).get("market_protection") for i in (default, own, auto, limit)}
    assert sent == {default: "2", own: "5", auto: "-1", limit: None}
    assert fake_kite.book.form(auto)["trigger_price"] == "1490" and "price" not in fake_kite.book.form(auto)

    custom = _broker(fake_kite, api_key, config=KiteConfig(market_protection=Decimal("2.5")))
    assert fake_kite.book.form(custom.place(_request("Tmkt3", order_type="MARKET")))["market_protection"] == "2.5"
    custom.modify(limit, order_type="MARKET")
    [modify] = fake_kite.order_requests("PUT")
    assert (modify.form["order_type"], modify.form["market_protection"]) == ("MARKET", "2.5")
    with pytest.raises(BrokerRejected, match="market_protection must be"):
        broker.place(_request("Tbad1", order_type="MARKET", market_protection=Decimal(101)))
    with pytest.raises(ValueError, match="market_protection must be"):
        KiteConfig(market_protection=Decimal(0))


def test_algo_id_is_sent_when_configured_and_the_order_s_own_wins(fake_kite: FakeKite, api_key: str) -> None:
    plain = _broker(fake_kite, api_key).place(_request("Talgo0"))
    configured = _broker(fake_kite, api_key, config=KiteConfig(algo_id="ACCT77"))
    from_account = configured.place(_request("Talgo1"))
    from_order = configured.place(_request("Talgo2", algo_id="ORDER9"))
    assert "algo_id" not in fake_kite.book.form(plain)
    assert fake_kite.book.form(from_account)["algo_id"] == "ACCT77"
    assert fake_kite.book.form(from_order)["algo_id"] == "ORDER9"


def test_an_untagged_order_is_refused_before_anything_is_sent(fake_kite: FakeKite, api_key: str) -> None:
    with pytest.raises(BrokerRejected, match="without a tag"):
        _broker(fake_kite, api_key).place(_request(""))
    assert fake_kite.order_requests() == []


# --- failures and what they become ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error", "in_book"),
    [
        ("429", BrokerThrottled, 0),
        ("403_token", BrokerAuthError, 0),
        ("500", BrokerAmbiguous, 0),
        ("drop_after_accept", BrokerAmbiguous, 1),
        ("timeout", BrokerAmbiguous, 1),
    ],
)
def test_placement_faults_map_to_the_oms_outcomes_and_nothing_is_resent(
    fake_kite: FakeKite, api_key: str, mode: str, error: type[BrokerError], in_book: int
) -> None:
    fake_kite.book.place_timeout_seconds = 1.0
    broker = _broker(fake_kite, api_key, timeout=0.3)
    fake_kite.fail_next_place(mode)
    started = time.monotonic()
    with pytest.raises(error) as raised:
        broker.place(_request("Tfault1"))
    assert type(raised.value) is error
    assert fake_kite.placements("Tfault1") == in_book
    time.sleep(max(0.0, started + 1.2 - time.monotonic()) if mode == "timeout" else 0)  # let the late answer land
    assert len(fake_kite.order_requests()) == 1  # the client never retried the POST
    if in_book:
        [found] = [o for o in broker.orders() if o.tag == "Tfault1"]  # how reconciliation finds it
        assert found.status == "OPEN"


def test_the_dropped_connection_is_ambiguous_and_the_book_has_exactly_one_order(
    fake_kite: FakeKite, api_key: str
) -> None:
    broker = _broker(fake_kite, api_key)
    fake_kite.fail_next_place("drop_after_accept")
    with pytest.raises(BrokerAmbiguous, match="placing Tdrop1: the connection to Kite failed"):
        broker.place(_request("Tdrop1"))
    assert [r.status for r in fake_kite.order_requests()] == [-1]
    assert fake_kite.placements("Tdrop1") == 1
    assert broker.place(_request("Tdrop2"))  # the next placement goes through on a fresh connection


@pytest.mark.parametrize(
    ("status", "error_type", "error"),
    [
        (400, "InputException", BrokerRejected),
        (500, "OrderException", BrokerRejected),
        (403, "PermissionException", BrokerRejected),
        (400, "MarginException", BrokerRejected),  # the client has no such class: GeneralException, HTTP 400
        (400, "HoldingException", BrokerRejected),
        (503, "NetworkException", BrokerAmbiguous),
        (502, "DataException", BrokerAmbiguous),
        (504, "GeneralException", BrokerAmbiguous),
        (429, "NetworkException", BrokerThrottled),
        (403, "TokenException", BrokerAuthError),
    ],
)
def test_kite_error_types_map_to_outcomes(
    fake_kite: FakeKite, api_key: str, status: int, error_type: str, error: type[BrokerError]
) -> None:
    fake_kite.set_response("POST", "/orders/regular", status, kite_error(error_type, f"kite says {error_type}"))
    with pytest.raises(error) as raised:
        _broker(fake_kite, api_key).place(_request("Terr1"))
    assert type(raised.value) is error
    if error is BrokerRejected:
        assert str(raised.value) == f"kite says {error_type}"  # Kite's message, for the order's status_message


def test_a_read_that_fails_says_what_failed(fake_kite: FakeKite, api_key: str) -> None:
    fake_kite.set_response("GET", "/orders", 503, kite_error("NetworkException", "backend down"))
    with pytest.raises(BrokerAmbiguous, match=r"reading the order book: .*backend down.*nothing was changed"):
        _broker(fake_kite, api_key).orders()
    fake_kite.set_response("GET", "/trades", 200, {"status": "success", "data": [{"trade_id": "1"}]})
    with pytest.raises(BrokerAmbiguous, match="reading the trade book: unreadable answer"):
        _broker(fake_kite, api_key).trades()


# --- rate limits ------------------------------------------------------------------------------------


def test_threads_sharing_one_key_never_put_more_than_ten_orders_in_any_second(
    fake_kite: FakeKite, api_key: str
) -> None:
    """25 placements from 3 threads, each with its own client and Redis connection; Kite refuses the 11th."""
    errors: list[BaseException] = []

    def run(thread: int, count: int) -> None:
        own_redis = redis.Redis.from_url(settings.REDIS_URL)
        broker = _broker(fake_kite, api_key, redis_client=own_redis)
        try:
            for n in range(count):
                broker.place(_request(f"Trate{thread}x{n}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            own_redis.close()

    threads = [threading.Thread(target=run, args=(t, c)) for t, c in enumerate((9, 8, 8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    placed = fake_kite.order_requests()
    assert len(placed) == 25 and {r.status for r in placed} == {200}  # the fake answers 429 past 10 per second
    arrivals = sorted(r.time for r in placed)
    closest = min(later - earlier for earlier, later in zip(arrivals, arrivals[10:], strict=False))
    assert closest >= 1.0, f"11 placements arrived within {closest:.3f}s"


def _tight(orders: tuple[Limit, ...]) -> dict[str, tuple[Limit, ...]]:
    return {**LIMITS, ORDERS: orders}


def test_a_limit_that_cannot_be_met_in_time_refuses_without_sending(fake_kite: FakeKite, api_key: str) -> None:
    broker = _broker(fake_kite, api_key, limits=_tight((Limit("second", 1, 5.0, max_wait_seconds=0.5),)))
    broker.place(_request("Tslow1"))
    started = time.monotonic()
    with pytest.raises(BrokerThrottled, match=r"placing Tslow2: not sent, Kite's orders limit of 1 per 5s"):
        broker.place(_request("Tslow2"))
    assert time.monotonic() - started < 0.5  # the wait was known to be too long: no sleeping for nothing
    assert [r.form["tag"] for r in fake_kite.order_requests()] == ["Tslow1"]


def test_a_spent_minute_refuses_at_once_and_modify_and_cancel_count_too(fake_kite: FakeKite, api_key: str) -> None:
    limits = _tight((Limit("second", 10, 1.0, max_wait_seconds=1.5), Limit("minute", 3, 60.0, max_wait_seconds=0)))
    broker = _broker(fake_kite, api_key, limits=limits)
    order_id = broker.place(_request("Tmin1"))
    broker.modify(order_id, price=Decimal("1499"))
    broker.cancel(order_id)
    started = time.monotonic()
    with pytest.raises(BrokerThrottled, match="3 per minute"):
        broker.place(_request("Tmin2"))
    assert time.monotonic() - started < 0.5
    assert fake_kite.placements("Tmin2") == 0 and len(broker.orders()) == 1  # reads have their own limit


def test_quotes_are_limited_to_one_per_second(fake_kite: FakeKite, api_key: str) -> None:
    broker = _broker(fake_kite, api_key)
    for _ in range(3):
        broker.ltp(["NSE:INFY"])
    arrivals = [r.time for r in fake_kite.requests if r.path == "/quote/ltp"]
    assert len(arrivals) == 3 and min(b - a for a, b in itertools.pairwise(arrivals)) >= 1.0


def test_the_limits_table_lets_only_the_shortest_window_wait() -> None:
    from apps.brokers.kite_limits import KiteRateGate

    assert [limit.describe() for limit in LIMITS[ORDERS]] == ["10 per second", "400 per minute", "5000 per day"]
    assert [limit.rate for limit in (*LIMITS[QUOTE], *LIMITS[OTHER])] == [1, 10]
    waiting_minute = _tight((Limit("second", 10, 1.0, 1.0), Limit("minute", 400, 60.0, max_wait_seconds=5)))
    with pytest.raises(ValueError, match="only the first limit of orders may wait"):
        KiteRateGate(get_redis(), account="k", limits=waiting_minute)


# --- through the OMS ------------------------------------------------------------------------------


@pytest.fixture
def kite_account(fake_kite: FakeKite, api_key: str, settings: Any) -> BrokerAccount:
    settings.KITE_API_ROOT = fake_kite.url
    settings.TRADING_MODE = "live"
    settings.RISK_MARKET_HOURS = False  # the session check has its own tests; these run at any hour
    return BrokerAccount.objects.create(
        name="kite desk", kind="kite", api_key=api_key, access_token="session-tok", algo_id="ALGO42"
    )


@pytest.fixture
def infy() -> Instrument:
    return Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065, lot_size=1)


def _oms_order(account: BrokerAccount, infy: Instrument, cid: str) -> int:
    order = OrderInput(
        account=account,
        instrument=infy,
        client_order_id=cid,
        side="BUY",
        quantity=10,
        product="CNC",
        order_type="LIMIT",
        price=Decimal("1500.05"),
    )
    return order_place(order=order).pk


@pytest.mark.django_db
def test_broker_for_a_kite_account_uses_its_session_and_algo_id(
    fake_kite: FakeKite, kite_account: BrokerAccount, infy: Instrument
) -> None:
    order = order_execute(order_id=_oms_order(kite_account, infy, "kite-ok-1"))
    assert order.status == "OPEN"
    [post] = fake_kite.order_requests()
    assert post.headers["Authorization"] == f"token {kite_account.api_key}:session-tok"
    assert (post.form["tag"], post.form["algo_id"]) == (order.tag, "ALGO42")
    assert fake_kite.book.with_tag(order.tag)[0]["order_id"] == order.broker_order_id


@pytest.mark.django_db
def test_a_dropped_placement_leaves_the_order_unknown_with_exactly_one_broker_order(
    fake_kite: FakeKite, kite_account: BrokerAccount, infy: Instrument
) -> None:
    from apps.orders.reconciliation import reconcile_account

    fake_kite.fail_next_place("drop_after_accept")
    order = order_execute(order_id=_oms_order(kite_account, infy, "kite-drop-1"))
    assert order.status == "UNKNOWN" and not order.broker_order_id
    assert fake_kite.placements(order.tag) == 1 and len(fake_kite.order_requests()) == 1
    assert order_execute(order_id=order.pk).status == "UNKNOWN"  # a redelivered message sends nothing
    assert len(fake_kite.order_requests()) == 1

    report = reconcile_account(account_id=kite_account.pk)
    order.refresh_from_db()
    assert report.resolved_unknown == 1
    assert order.status == "OPEN" and order.broker_order_id == fake_kite.book.with_tag(order.tag)[0]["order_id"]
    assert len(fake_kite.order_requests()) == 1


@pytest.mark.django_db
def test_kite_accounts_need_live_mode_and_a_session(kite_account: BrokerAccount, settings: Any) -> None:
    settings.TRADING_MODE = "paper"
    with pytest.raises(BrokerNotAvailable, match="TRADING_MODE=paper"):
        broker_for(kite_account)
    settings.TRADING_MODE = "live"
    kite_account.access_token = ""
    with pytest.raises(KiteNotConfigured, match="no access token"):
        broker_for(kite_account)
