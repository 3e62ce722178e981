"""KiteBroker: the Broker interface on Zerodha Kite Connect, through the official `kiteconnect` client.

What the OMS must do after a call depends only on the exception it gets
(apps/brokers/base.py), so every Kite failure is mapped here, once:

- `TokenException` (HTTP 403: session expired or revoked) -> BrokerAuthError.
- `InputException`, `OrderException`, `PermissionException`, and `GeneralException` with an HTTP 4xx
  (how this client delivers Kite's MarginException / HoldingException, for which it has no class):
  Kite refused it -> BrokerRejected, with Kite's message.
- HTTP 429, whatever the class (the client raises NetworkException for both 429 and 503, so they are
  told apart by `.code`): Kite refused to look at it -> BrokerThrottled.
- Timeouts, dropped connections, `NetworkException` (503), `DataException`, `GeneralException` 5xx,
  a malformed answer: the order may exist -> BrokerAmbiguous. The OMS marks it UNKNOWN and finds it
  by tag; it is never sent again. On reads the same errors say what could not be read.

Every request first passes the account's rate gate (kite_limits.py), so a
call that would exceed Kite's limits is refused here (BrokerThrottled, nothing
sent) instead of earning a 429.

Orders always carry:
- `tag` (the OMS's per-order tag; the only way to find an order whose placement outcome is unknown);
- `market_protection` on MARKET and SL-M orders: since April 2026 Kite refuses those without it. The
  order's own value, else `KiteConfig.market_protection` (a percentage, or -1 for Kite's automatic one);
- `algo_id` when the order or the account has one (SEBI's retail-algo rules). kiteconnect 5.2.2's
  `place_order` takes both `market_protection` and `algo_id` as keyword arguments and sends them as form
  fields, so no patching of the client is needed. `modify_order` has no `algo_id`: Kite keeps the one
  the order was placed with.

The client's `_format_response` turns Kite's "YYYY-MM-DD HH:MM:SS" timestamps into naive datetimes on
the exchange clock; they get Asia/Kolkata attached here. Money becomes Decimal via str() of the float the
JSON parser produced (the shortest repr, i.e. the digits Kite sent). No Django import: the caller passes
the KiteConnect client and the Redis client for the rate gate (apps.brokers.services.broker_for).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

from apps.brokers.base import (
    BrokerAmbiguous,
    BrokerAuthError,
    BrokerOrder,
    BrokerRejected,
    BrokerThrottled,
    BrokerTrade,
    OrderRequest,
    broker_order_from_kite,
)
from apps.brokers.kite_limits import LIMITS, ORDERS, OTHER, QUOTE, KiteRateGate, Limit

IST = ZoneInfo("Asia/Kolkata")
AUTO_PROTECTION = Decimal(-1)
PROTECTED_TYPES = frozenset({"MARKET", "SL-M"})  # Kite refuses these without market protection
PRICED_TYPES = frozenset({"LIMIT", "SL"})
TRIGGERED_TYPES = frozenset({"SL", "SL-M"})
# kiteconnect 5.2.2 has no MarginException / HoldingException classes: an error_type it does not know
# arrives as GeneralException carrying the HTTP status, so those two are "GeneralException with a 4xx".
REJECTIONS = (kite_errors.InputException, kite_errors.OrderException, kite_errors.PermissionException)
# After the request may have left: the answer, or its absence, does not say what Kite did.
UNCLEAR = (requests.RequestException, KeyError, TypeError, ValueError)
MONEY_KEYS = frozenset({"price", "trigger_price", "average_price", "market_protection", "last_price", "close_price"})


@dataclass(frozen=True)
class KiteConfig:
    algo_id: str = ""  # the account's exchange-issued algo id; an order's own algo_id wins
    market_protection: Decimal = Decimal(2)  # percent, for MARKET / SL-M orders that name none; -1: Kite's auto

    def __post_init__(self) -> None:
        if not protection_valid(self.market_protection):
            raise ValueError(f"KiteConfig.{PROTECTION_RULE}, got {self.market_protection!r}")


PROTECTION_RULE = "market_protection must be -1 (automatic) or a percentage in (0, 100]"


def protection_valid(value: object) -> bool:
    """What Kite accepts; it refuses anything else, 0 included."""
    return isinstance(value, Decimal) and (value == AUTO_PROTECTION or 0 < value <= 100)


def check_protection(value: Decimal) -> Decimal:
    """An order's protection, refused here (nothing sent) when Kite would refuse it."""
    if not protection_valid(value):
        raise BrokerRejected(f"not sent: {PROTECTION_RULE}, got {value!r}")
    return value


class KiteBroker:
    """One Kite account. Build one per process or thread: the KiteConnect session is not thread-safe."""

    def __init__(
        self,
        client: KiteConnect,
        redis: Any,
        *,
        config: KiteConfig | None = None,
        limits: Mapping[str, tuple[Limit, ...]] = LIMITS,
        account: str | None = None,
    ) -> None:
        self._kite = client
        self.config = config or KiteConfig()
        self.gate = KiteRateGate(redis, account=account or client.api_key, limits=limits)

    # --- orders -------------------------------------------------------------------------------------

    def place(self, request: OrderRequest) -> str:
        """Kite's order id. See the module docstring for what each failure becomes."""
        if not request.tag:
            raise BrokerRejected("not sent: an order without a tag could not be found again after a timeout")
        params = place_params(request, self.config)
        what = f"placing {request.tag}"
        with self._writing(what):
            return str(self._kite.place_order(**params))

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
    ) -> str:
        """Change an open order; turning it into MARKET / SL-M carries market protection, as placing does."""
        if order_type in PROTECTED_TYPES:
            market_protection = check_protection(
                market_protection if market_protection else self.config.market_protection
            )
        params = {
            "quantity": quantity,
            "price": _wire(price),
            "trigger_price": _wire(trigger_price),
            "order_type": order_type,
            "market_protection": _wire(market_protection),
        }
        with self._writing(f"modifying {order_id}"):
            return str(self._kite.modify_order(variety=variety, order_id=order_id, **params))

    def cancel(self, order_id: str, *, variety: str = "regular") -> str:
        with self._writing(f"cancelling {order_id}"):
            return str(self._kite.cancel_order(variety=variety, order_id=order_id))

    # --- reads --------------------------------------------------------------------------------------

    def orders(self) -> list[BrokerOrder]:
        with self._reading("the order book"):
            return [broker_order(item) for item in self._kite.orders()]

    def order_history(self, order_id: str) -> list[BrokerOrder]:
        with self._reading(f"the history of order {order_id}"):
            return [broker_order(item) for item in self._kite.order_history(order_id)]

    def trades(self) -> list[BrokerTrade]:
        with self._reading("the trade book"):
            return [broker_trade(item) for item in self._kite.trades()]

    def order_trades(self, order_id: str) -> list[BrokerTrade]:
        with self._reading(f"the trades of order {order_id}"):
            return [broker_trade(item) for item in self._kite.order_trades(order_id)]

    def positions(self) -> dict[str, Any]:
        with self._reading("positions"):
            return dict(decimals(self._kite.positions()))

    def margins(self) -> dict[str, Any]:
        with self._reading("margins"):
            return dict(decimals(self._kite.margins()))

    def ltp(self, keys: list[str]) -> dict[str, Decimal]:
        """Latest price per "EXCHANGE:SYMBOL"; keys Kite does not know are left out, as PaperBroker does."""
        if not keys:
            return {}
        with self._reading("last prices", endpoint=QUOTE):
            quotes = self._kite.ltp(keys)
            return {key: money(quote["last_price"]) for key, quote in quotes.items()}

    # --- the one place Kite's failures are translated -------------------------------------------------

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        self.gate.acquire(ORDERS, what)
        with translated(what, unclear="the outcome is unknown: look the order up, do not resend"):
            yield

    @contextmanager
    def _reading(self, what: str, *, endpoint: str = OTHER) -> Iterator[None]:
        self.gate.acquire(endpoint, f"reading {what}")
        with translated(f"reading {what}", unclear="nothing was changed; read again later"):
            yield


@contextmanager
def translated(what: str, *, unclear: str) -> Iterator[None]:
    """Kite's exceptions and the wire's, as the Broker outcomes the OMS acts on (module docstring)."""
    try:
        yield
    except kite_errors.TokenException as exc:
        raise BrokerAuthError(f"{what}: Kite refused the session (HTTP {exc.code}): {exc}") from exc
    except REJECTIONS as exc:
        raise BrokerRejected(str(exc)) from exc
    except kite_errors.KiteException as exc:
        if exc.code == 429:
            raise BrokerThrottled(f"{what}: Kite answered 429 Too many requests; nothing was done") from exc
        if isinstance(exc, kite_errors.GeneralException) and 400 <= exc.code < 500:
            raise BrokerRejected(str(exc)) from exc  # Kite answered and refused (MarginException, ...)
        raise BrokerAmbiguous(
            f"{what}: Kite answered {type(exc).__name__} (HTTP {exc.code}): {exc}; {unclear}"
        ) from exc
    except requests.Timeout as exc:
        raise BrokerAmbiguous(f"{what}: no answer from Kite in time ({exc}); {unclear}") from exc
    except requests.ConnectionError as exc:
        raise BrokerAmbiguous(f"{what}: the connection to Kite failed ({exc}); {unclear}") from exc
    except UNCLEAR as exc:
        raise BrokerAmbiguous(f"{what}: unreadable answer from Kite ({exc!r}); {unclear}") from exc


# --- requests out ---------------------------------------------------------------------------------------


def place_params(request: OrderRequest, config: KiteConfig) -> dict[str, Any]:
    """`KiteConnect.place_order` keyword arguments; None values are dropped by the client."""
    protection = None
    if request.order_type in PROTECTED_TYPES:
        protection = check_protection(request.market_protection or config.market_protection)
    return {
        "variety": request.variety,
        "exchange": request.exchange,
        "tradingsymbol": request.tradingsymbol,
        "transaction_type": request.transaction_type,
        "quantity": request.quantity,
        "product": request.product,
        "order_type": request.order_type,
        "validity": request.validity,
        "price": _wire(request.price) if request.order_type in PRICED_TYPES else None,
        "trigger_price": _wire(request.trigger_price) if request.order_type in TRIGGERED_TYPES else None,
        "market_protection": _wire(protection),
        "algo_id": request.algo_id or config.algo_id or None,
        "tag": request.tag,
    }


def _wire(value: Decimal | None) -> str | None:
    """A Decimal as Kite reads it: plain digits, never an exponent ("1E+2")."""
    return None if value is None else format(value.normalize(), "f")


# --- answers in -----------------------------------------------------------------------------------------


def money(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"Kite sent {value!r} where a number belongs") from None


def ist(value: Any) -> datetime | None:
    """A Kite timestamp on the exchange clock: the client's naive datetime, or the raw string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    if not isinstance(value, datetime):
        raise TypeError(f"Kite sent {value!r} where a timestamp belongs")
    return value.replace(tzinfo=IST) if value.tzinfo is None else value.astimezone(IST)


def decimals(value: Any) -> Any:
    """Kite's JSON with every float as Decimal (money), recursively; ints stay ints (quantities)."""
    if isinstance(value, float):
        return money(value)
    if isinstance(value, Mapping):
        return {key: decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decimals(item) for item in value]
    return value


def broker_order(item: Mapping[str, Any]) -> BrokerOrder:
    """base.broker_order_from_kite (shared with postbacks), with money in `raw` as Decimal too."""
    order = broker_order_from_kite(dict(item))
    raw = {key: money(v) if key in MONEY_KEYS and isinstance(v, int | float) else v for key, v in item.items()}
    return replace(order, raw=raw)


def broker_trade(item: Mapping[str, Any]) -> BrokerTrade:
    stamp = ist(item.get("fill_timestamp")) or ist(item.get("exchange_timestamp"))
    if stamp is None:
        raise ValueError(f"Kite trade {item.get('trade_id')!r} has no fill_timestamp")
    return BrokerTrade(
        trade_id=str(item["trade_id"]),
        order_id=str(item["order_id"]),
        exchange=item["exchange"],
        tradingsymbol=item["tradingsymbol"],
        transaction_type=item["transaction_type"],
        product=item["product"],
        quantity=int(item["quantity"]),
        average_price=money(item["average_price"]),
        fill_timestamp=stamp,
    )
