"""The fake Kite server speaks Kite's wire format to the real kiteconnect client."""

from __future__ import annotations

from datetime import datetime

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

from tests.support.fake_kite import FakeKite, synthetic_candles


@pytest.fixture
def kite(fake_kite: FakeKite) -> KiteConnect:
    client = KiteConnect(api_key="fake-key", root=fake_kite.url, timeout=5)
    client.set_access_token("fake-token")
    return client


def test_mock_bodies_and_instrument_dumps_reach_the_client(kite: KiteConnect, fake_kite: FakeKite) -> None:
    assert kite.ltp("NSE:INFY")["NSE:INFY"]["last_price"] == 1074.35
    assert kite.ohlc("NSE:INFY")["NSE:INFY"]["ohlc"]["open"] == 1085.8
    assert kite.profile()["user_id"] == "AB1234"
    nse = kite.instruments("NSE")
    assert len(nse) == 99 and {r["exchange"] for r in nse} == {"NSE"}
    assert {r["exchange"] for r in kite.instruments("BSE")} == {"BSE"}
    assert len(kite.instruments()) == 99
    ltp = next(r for r in fake_kite.requests if r.path == "/quote/ltp")
    assert ltp.query == {"i": "NSE:INFY"} and ltp.headers["Authorization"] == "token fake-key:fake-token"


def test_historical_candles_cover_the_requested_range_on_session_minutes(kite: KiteConnect) -> None:
    rows = kite.historical_data(408065, datetime(2024, 1, 5, 9, 15), datetime(2024, 1, 8, 9, 16), "minute", oi=True)
    times = [r["date"].strftime("%a %H:%M") for r in rows]
    assert len(rows) == 375 + 2  # Friday's whole session, Monday's first two minutes; no weekend
    assert times[0] == "Fri 09:15" and times[374] == "Fri 15:29" and times[-1] == "Mon 09:16"
    assert all(r["low"] <= min(r["open"], r["close"]) <= max(r["open"], r["close"]) <= r["high"] for r in rows)
    assert all("oi" in r for r in rows)
    assert "oi" not in kite.historical_data(408065, "2024-01-05", "2024-01-05", "day")[0]


def test_ranges_over_the_interval_limit_are_refused_with_an_input_exception(kite: KiteConnect) -> None:
    kite.historical_data(1, datetime(2024, 1, 1), datetime(2024, 2, 29, 23, 59, 59), "minute")  # 60 days
    with pytest.raises(kite_errors.InputException, match="interval exceeds max limit: 60 days") as refused:
        kite.historical_data(1, datetime(2024, 1, 1), datetime(2024, 3, 1), "minute")  # 61 days
    assert refused.value.code == 400
    with pytest.raises(kite_errors.InputException, match="400 days"):
        kite.historical_data(1, "2023-01-01", "2024-02-05", "60minute")


def test_more_than_three_historical_requests_in_a_second_get_429(kite: KiteConnect, fake_kite: FakeKite) -> None:
    fake_kite.candles = synthetic_candles(bars_per_day=1)
    for _ in range(3):
        kite.historical_data(1, "2024-01-01", "2024-01-02", "day")
    with pytest.raises(kite_errors.NetworkException, match="Too many requests") as limited:
        kite.historical_data(1, "2024-01-01", "2024-01-02", "day")
    assert limited.value.code == 429
    assert [r.status for r in fake_kite.historical_requests()] == [200, 200, 200, 429]


def test_errors_overrides_and_unknown_routes(kite: KiteConnect, fake_kite: FakeKite) -> None:
    fake_kite.set_response(
        "GET", "/quote/ltp", 503, {"status": "error", "message": "down", "error_type": "NetworkException"}
    )
    with pytest.raises(kite_errors.NetworkException, match="down"):
        kite.ltp("NSE:INFY")
    with pytest.raises(kite_errors.GeneralException, match="Route not found"):
        kite.holdings()
    anonymous = KiteConnect(api_key="fake-key", root=fake_kite.url)
    with pytest.raises(kite_errors.TokenException):
        anonymous.profile()
    assert [r.status for r in fake_kite.requests] == [503, 404, 403]
