"""Rows the API, kill-switch and command tests share: users, granted paper accounts, an instrument with a price."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from apps.brokers.base import OrderRequest
from apps.brokers.models import BrokerAccount
from apps.brokers.paper_glue import paper_broker_for
from apps.marketdata import events
from apps.marketdata.models import Instrument
from tradingsite.redis_client import get_redis

IST = ZoneInfo("Asia/Kolkata")


@dataclass
class ScriptedBroker:
    """Records every placement (and answers with an id); nothing is sent anywhere."""

    placed: list[OrderRequest] = field(default_factory=list)

    def place(self, request: OrderRequest) -> str:
        self.placed.append(request)
        return f"24060700000{len(self.placed):05d}"


@dataclass
class Desk:
    user: Any
    other: Any
    account: BrokerAccount
    other_account: BrokerAccount
    infy: Instrument

    def client(self, user: Any = None) -> APIClient:
        client = APIClient()
        client.force_authenticate(user or self.user)
        return client

    def reset(self) -> None:
        for account in (self.account, self.other_account):
            paper_broker_for(account).reset()


def set_price(symbol: str, price: str, token: int = 408065) -> None:
    events.set_latest_prices(
        get_redis(),
        {f"NSE:{symbol}": events.LatestPrice(Decimal(price), datetime(2024, 6, 7, 10, tzinfo=IST), token, "test")},
    )


def make_desk() -> Desk:
    """`user` is granted `account`; `other` is granted `other_account`; INFY at 1500 (tick 0.05)."""
    users = get_user_model().objects
    user = users.create_user("trader")
    other = users.create_user("other")
    account = BrokerAccount.objects.create(name="paper-desk", kind="paper")
    other_account = BrokerAccount.objects.create(name="paper-other", kind="paper")
    account.users.add(user)
    other_account.users.add(other)
    infy = Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065, lot_size=1)
    set_price("INFY", "1500")
    desk = Desk(user=user, other=other, account=account, other_account=other_account, infy=infy)
    desk.reset()
    return desk


def order_body(desk: Desk, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "account": desk.account.pk,
        "symbol": "INFY",
        "side": "BUY",
        "quantity": 10,
        "product": "CNC",
        "order_type": "LIMIT",
        "price": "1500.05",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}
