"""The one interface to the market. The OMS talks only to `Broker`; PaperBroker and KiteBroker implement it.

Records are Kite-shaped (Kite's order statuses and field names), so the OMS
cannot tell a paper fill from a real one. Errors say what the OMS must do, not
what went wrong on the wire:

- `BrokerRejected`: the broker certainly refused the order (Kite InputException / OrderException):
  REJECTED with the broker's message.
- `BrokerAmbiguous`: the order may or may not be at the broker (timeout, dropped connection, HTTP 5xx,
  NetworkException, DataException): UNKNOWN, never sent again, resolved by looking up the tag.
- `BrokerAuthError`: the session is invalid (TokenException): the order certainly did not go; the account
  is disabled and the order waits for an operator.
- `BrokerThrottled`: refused locally by our own rate limiter before anything was sent: safe to try later.

No Django import: implementations get what they need (a Redis client, a Kite client) from the caller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")

# Kite's order statuses (as in its order book and postbacks).
KITE_OPEN_STATUSES = frozenset(
    {
        "OPEN",
        "TRIGGER PENDING",
        "OPEN PENDING",
        "VALIDATION PENDING",
        "PUT ORDER REQ RECEIVED",
        "MODIFY PENDING",
        "MODIFY VALIDATION PENDING",
        "AMO REQ RECEIVED",
    }
)
KITE_TERMINAL_STATUSES = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})


class BrokerError(Exception):
    """Base of what a broker call can tell the OMS."""


class BrokerRejected(BrokerError):
    """The broker refused the request; nothing is live there because of it."""


class BrokerAmbiguous(BrokerError):
    """The outcome is unknown: the broker may have acted. Never repeat a placement after this."""


class BrokerAuthError(BrokerError):
    """The account's session is not valid (expired or revoked token)."""


class BrokerThrottled(BrokerError):
    """Our own rate limiter refused the call; nothing was sent."""


@dataclass(frozen=True)
class OrderRequest:
    tag: str
    exchange: str
    tradingsymbol: str
    transaction_type: str  # BUY | SELL
    quantity: int
    product: str  # CNC | MIS | NRML
    order_type: str  # MARKET | LIMIT | SL | SL-M
    variety: str = "regular"
    validity: str = "DAY"
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    market_protection: Decimal | None = None
    algo_id: str = ""


@dataclass(frozen=True)
class BrokerOrder:
    """One order as the broker's order book shows it (Kite's field names)."""

    order_id: str
    tag: str | None
    status: str
    exchange: str
    tradingsymbol: str
    transaction_type: str
    quantity: int
    filled_quantity: int
    pending_quantity: int
    average_price: Decimal
    product: str
    order_type: str
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    status_message: str | None = None
    order_timestamp: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class BrokerTrade:
    trade_id: str
    order_id: str
    exchange: str
    tradingsymbol: str
    transaction_type: str
    product: str
    quantity: int
    average_price: Decimal
    fill_timestamp: datetime


class Broker(Protocol):
    def place(self, request: OrderRequest) -> str:
        """Place an order; returns the broker's order id."""
        ...

    def modify(
        self,
        order_id: str,
        *,
        variety: str = "regular",
        quantity: int | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        order_type: str | None = None,
        market_protection: Decimal | None = None,
    ) -> str: ...

    def cancel(self, order_id: str, *, variety: str = "regular") -> str: ...

    def orders(self) -> list[BrokerOrder]: ...

    def order_history(self, order_id: str) -> list[BrokerOrder]: ...

    def trades(self) -> list[BrokerTrade]: ...

    def order_trades(self, order_id: str) -> list[BrokerTrade]:
        """The fills of one order (Kite's /orders/{id}/trades): what reconciliation books for it."""
        ...

    def positions(self) -> dict[str, Any]: ...

    def margins(self) -> dict[str, Any]: ...

    def ltp(self, keys: list[str]) -> dict[str, Decimal]:
        """Latest price per "EXCHANGE:SYMBOL"."""
        ...


def postback_checksum(order_id: object, order_timestamp: object, api_secret: str) -> str:
    """Kite's postback signature: sha256(order_id + order_timestamp + api_secret), hex."""
    return hashlib.sha256(f"{order_id}{order_timestamp}{api_secret}".encode()).hexdigest()


def _money(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


def _kite_time(value: Any) -> datetime | None:
    """Kite's "YYYY-MM-DD HH:MM:SS" (IST wall clock) or a datetime the client already parsed (naive = IST)."""
    if value in (None, ""):
        return None
    moment = value if isinstance(value, datetime) else datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S")
    return moment if moment.tzinfo else moment.replace(tzinfo=IST)


def broker_order_from_kite(record: dict[str, Any]) -> BrokerOrder:
    """A Kite order-book entry, order-history entry or postback body as a BrokerOrder."""
    quantity = int(record.get("quantity") or 0)
    filled = int(record.get("filled_quantity") or 0)
    price, trigger = _money(record.get("price")), _money(record.get("trigger_price"))
    return BrokerOrder(
        order_id=str(record["order_id"]),
        tag=record.get("tag") or None,
        status=str(record.get("status") or ""),
        exchange=str(record.get("exchange") or ""),
        tradingsymbol=str(record.get("tradingsymbol") or ""),
        transaction_type=str(record.get("transaction_type") or ""),
        quantity=quantity,
        filled_quantity=filled,
        pending_quantity=int(record.get("pending_quantity") or max(quantity - filled, 0)),
        average_price=_money(record.get("average_price")),
        product=str(record.get("product") or ""),
        order_type=str(record.get("order_type") or ""),
        price=price or None,
        trigger_price=trigger or None,
        status_message=record.get("status_message") or None,
        order_timestamp=_kite_time(record.get("order_timestamp")),
        raw=dict(record),
    )
