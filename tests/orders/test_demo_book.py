"""`manage.py demo_book`: a small book bought through the OMS on the paper account; once only with --if-empty."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Candle, Instrument
from apps.orders.models import Order
from tests.orders.desk import IST

pytestmark = pytest.mark.django_db


def _daily(symbol: str, closes: list[str]) -> Instrument:
    instrument = Instrument.objects.create(tradingsymbol=symbol)
    for day, close in enumerate(closes, start=3):
        c = Decimal(close)
        Candle.objects.create(instrument=instrument, interval="day", time=datetime(2024, 6, day, 9, 15, tzinfo=IST),
                              open=c, high=c, low=c, close=c, volume=1000)  # fmt: skip
    return instrument


def _run(*args: str) -> str:
    out = StringIO()
    call_command("demo_book", *args, stdout=out)
    return out.getvalue()


def test_buys_about_80000_rupees_of_each_stock_with_candles_just_above_its_last_close(settings) -> None:
    settings.PAPER_MARKET_HOURS = False
    account = BrokerAccount.objects.create(name="paper", kind="paper")
    _daily("RELIANCE", ["2900", "2951.30"])
    _daily("INFY", ["1500", "1499.95"])
    out = _run("--if-empty")
    assert "no daily candles for TCS; skipped" in out
    orders = {o.instrument.tradingsymbol: o for o in Order.objects.filter(account=account)}
    assert set(orders) == {"RELIANCE", "INFY"}
    reliance, infy = orders["RELIANCE"], orders["INFY"]
    assert reliance.status == "QUEUED", reliance.status_message
    assert reliance.strategy == "demo" and reliance.order_type == "LIMIT"
    assert reliance.quantity == 27 and reliance.price == Decimal(
        "3039.85"
    )  # 80,000 // 2951.30; 2951.30 x 1.03 up to the tick
    assert infy.quantity == 53 and infy.price == Decimal("1544.95")
    assert "has demo-book orders already; nothing placed" in _run("--if-empty")
    assert Order.objects.count() == 2


def test_no_paper_account_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="no paper account"):
        _run()
