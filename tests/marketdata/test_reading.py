"""Reading market data: aligned arrays, the REST endpoints, latest quotes, the admin pages."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.urls import reverse

from apps.marketdata import events, selectors
from apps.marketdata.demo import demo_seed
from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource
from tradingsite.redis_client import get_redis

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")
END = date(2024, 6, 7)


@pytest.fixture
def demo() -> None:
    demo_seed(daily_days=20, minute_days=1, end=END)


def _bar(instrument: Instrument, day: int, close: str) -> Candle:
    c = Decimal(close)
    return Candle.objects.create(
        instrument=instrument,
        interval=Interval.DAY,
        time=datetime(2024, 6, day, tzinfo=IST),
        open=c,
        high=c + 1,
        low=c - 1,
        close=c,
        volume=100 * day,
        source=SeriesSource.CSV,
    )


def test_aligned_bars_put_each_symbol_on_the_union_of_times_with_nan_gaps() -> None:
    a = Instrument.objects.create(tradingsymbol="AAA")
    b = Instrument.objects.create(tradingsymbol="BBB")
    _bar(a, 3, "10.5"), _bar(a, 4, "11.25"), _bar(a, 6, "12"), _bar(b, 4, "200"), _bar(b, 5, "201.05")
    bars = selectors.aligned_bars(
        instruments=[a, b],
        interval=Interval.DAY,
        start=datetime(2024, 6, 1, tzinfo=IST),
        end=datetime(2024, 6, 30, tzinfo=IST),
    )
    assert bars.symbols == ["AAA", "BBB"]
    expected_days = [datetime(2024, 6, d, tzinfo=IST) for d in (3, 4, 5, 6)]
    assert bars.times.tolist() == [np.datetime64(int(d.timestamp() * 1_000_000), "us").item() for d in expected_days]
    close = bars["close"]
    assert close[:, 0].tolist()[:2] == [10.5, 11.25] and np.isnan(close[2, 0]) and close[3, 0] == 12
    assert np.isnan(close[0, 1]) and close[1:3, 1].tolist() == [200.0, 201.05] and np.isnan(close[3, 1])
    assert bars["volume"][1].tolist() == [400.0, 400.0]


def test_aligned_bars_of_the_demo_universe(demo: None) -> None:
    members = selectors.universe_members(universe="NIFTY 50", on=END)
    bars = selectors.aligned_bars(
        instruments=members,
        interval=Interval.DAY,
        start=datetime(2024, 1, 1, tzinfo=IST),
        end=datetime.combine(END, time.max, IST),
    )
    assert bars["close"].shape == (20, 50) and not np.isnan(bars["close"]).any()
    rel = members[[m.tradingsymbol for m in members].index("RELIANCE")]
    last = Candle.objects.filter(instrument=rel, interval=Interval.DAY).latest("time")
    assert bars["close"][-1, bars.symbols.index("RELIANCE")] == float(last.close)


def test_instruments_api_lists_and_filters(admin_client, demo: None) -> None:
    body = admin_client.get("/api/v1/instruments/", {"q": "relian", "universe": "NIFTY 50"}).json()
    assert body["count"] == 1 and body["results"][0]["tradingsymbol"] == "RELIANCE"
    assert admin_client.get("/api/v1/instruments/", {"limit": 5}).json()["count"] == 50


def test_candles_api_rows_columnar_and_keyset_pages(admin_client, demo: None) -> None:
    params = {"symbol": "INFY", "interval": "minute", "from": END.isoformat(), "limit": 200}
    first = admin_client.get("/api/v1/candles/", params).json()
    assert first["count"] == 200 and first["next"]
    assert first["results"][0]["time"].startswith(f"{END.isoformat()}T09:15:00+05:30")
    second = admin_client.get(first["next"]).json()
    assert second["results"][0]["time"] > first["results"][-1]["time"]
    columnar = admin_client.get("/api/v1/candles/", {**params, "layout": "columnar", "limit": 375}).json()
    assert columnar["next"] is None and len(columnar["columns"]["close"]) == 375
    db = Candle.objects.filter(instrument__tradingsymbol="INFY", interval="minute").order_by("time").last()
    assert Decimal(columnar["columns"]["close"][-1]) == db.close  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"symbol": "INFY", "from": "04/06/2024"}, "from"),
        ({"symbol": "INFY", "to": "yesterday"}, "to"),
        ({"symbol": "INFY", "interval": "2minute"}, "interval"),
        ({"symbol": "INFY", "limit": "0"}, "limit"),
        ({"symbol": "INFY", "layout": "xml"}, "layout"),
        ({"symbol": "INFY", "from": "2024-06-05", "to": "2024-06-01"}, "to"),
        ({}, "symbol"),
    ],
)
def test_candles_api_names_the_parameter_that_does_not_parse(admin_client, params: dict, field: str) -> None:
    response = admin_client.get("/api/v1/candles/", params)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_candles_api_unknown_symbol_is_404(admin_client) -> None:
    response = admin_client.get("/api/v1/candles/", {"symbol": "NOPE"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_instrument"


def test_latest_quotes_come_from_the_feed_hash(admin_client) -> None:
    redis = get_redis()
    redis.delete(events.LATEST_PRICES)
    events.set_latest_prices(
        redis,
        {"NSE:INFY": events.LatestPrice(Decimal("1500.05"), datetime(2024, 6, 7, 10, 0, tzinfo=IST), 408065, "replay")},
    )
    body = admin_client.get("/api/v1/quotes/latest/").json()
    assert body["quotes"]["NSE:INFY"] == {
        "price": "1500.05",
        "time": "2024-06-07T10:00:00+05:30",
        "token": 408065,
        "source": "replay",
    }
    assert admin_client.get("/api/v1/quotes/latest/", {"symbols": "NSE:TCS"}).json() == {"quotes": {}}


def test_admin_pages_show_the_universe_candles_and_coverage(admin_client, demo: None) -> None:
    universe_id = selectors.universe_members(universe="NIFTY 50", on=END)[0].memberships.first().universe_id  # type: ignore[union-attr]
    assert b"RELIANCE" in admin_client.get(reverse("admin:marketdata_universe_change", args=[universe_id])).content
    assert admin_client.get(reverse("admin:marketdata_candle_changelist")).status_code == 200
    page = admin_client.get(reverse("admin:marketdata_coverage"), {"q": "TCS"}).content.decode()
    assert "TCS" in page and "<td>20</td>" in page and "<td>375</td>" in page
    assert admin_client.get(reverse("admin:marketdata_instrument_changelist")).status_code == 200


def test_aligned_bars_reads_only_the_fields_asked_for() -> None:
    a = Instrument.objects.create(tradingsymbol="AAA")
    _bar(a, 3, "10.1234")
    window = {"start": datetime(2024, 6, 1, tzinfo=IST), "end": datetime(2024, 6, 30, tzinfo=IST)}
    bars = selectors.aligned_bars(instruments=[a], interval=Interval.DAY, fields=("close",), **window)
    assert set(bars.data) == {"close"} and bars["close"][0, 0] == 10.1234
    with pytest.raises(ValueError, match="subset of"):
        selectors.aligned_bars(instruments=[a], interval=Interval.DAY, fields=("vwap",), **window)
