"""The order side of the fake Kite server: an in-memory order book and trade book, Kite-shaped.

Placing, modifying and cancelling answer like Kite (`{"order_id": ...}`, errors as
InputException / OrderException with Kite's wording), and the book reads back in
the shape of Zerodha's mocks (orders.json, order_info.json, trades.json). Tests
move orders on with `fill`. Every placement is kept with the form it arrived
with, so tests can assert what the real client sent (market_protection, algo_id,
tag) and how many orders one tag produced.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, deque
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
VARIETIES = frozenset({"regular", "amo", "co", "iceberg", "auction"})
ORDER_TYPES = frozenset({"MARKET", "LIMIT", "SL", "SL-M"})
PROTECTED = frozenset({"MARKET", "SL-M"})
OPEN_STATUSES = frozenset({"OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED"})
REQUIRED = ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type")
NO_PROTECTION = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)
NOT_FOUND = "Couldn't find that `order_id`."
PLACE_FAULTS = frozenset({"drop_after_accept", "timeout", "429", "403_token", "500"})
DROP = -1  # the status of a request answered by closing the connection, without a response


class OrderRefused(Exception):
    """Kite's answer to a bad order request: HTTP status, error_type, message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _input(message: str) -> OrderRefused:
    return OrderRefused(400, "InputException", message)


def _success(data: Any) -> dict[str, Any]:
    return {"status": "success", "data": data}


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "data": None, "error_type": error_type}


def _now() -> str:
    return datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S")


def _number(form: dict[str, str], name: str) -> float:
    raw = form.get(name, "")
    try:
        return float(Decimal(raw)) if raw else 0.0
    except ArithmeticError:
        raise _input(f"Invalid `{name}`.") from None


class FakeOrderBook:
    """Kite's order book for one fake server. Thread-safe: the server answers on several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._trades: list[dict[str, Any]] = []
        self._forms: dict[str, dict[str, str]] = {}
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._faults: deque[str] = deque()
        self.place_timeout_seconds = 2.0  # how long a "timeout" placement waits before it answers

    def route(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """/orders, /orders/{variety}[/{id}], /orders/{id}[/trades] and /trades, as Kite routes them."""
        if not path.startswith("/orders"):
            return 200, _success(self.trades())  # /trades
        parts = path.split("/")[2:]
        if method == "POST" and len(parts) == 1:
            return self._place(parts[0], form)
        return 200, _success(self._answer(method, parts, form, path))

    def _answer(self, method: str, parts: list[str], form: dict[str, str], path: str) -> Any:
        if method == "PUT" and len(parts) == 2:
            return {"order_id": self.modify(parts[0], parts[1], form)}
        if method == "DELETE" and len(parts) == 2:
            return {"order_id": self.cancel(parts[0], parts[1])}
        if method == "GET" and not parts:
            return self.orders()
        if method == "GET" and len(parts) == 1:
            return self.history(parts[0])
        if method == "GET" and len(parts) == 2 and parts[1] == "trades":
            return self.trades(parts[0])
        raise OrderRefused(404, "GeneralException", f"Route not found: {method} {path}")

    def fail_next_place(self, mode: str) -> None:
        """Break the next placement (queued: call twice for two):

        drop_after_accept  the order enters the book, then the connection closes unanswered
        timeout            the order enters the book; the answer comes after place_timeout_seconds
        429 / 403_token / 500  Kite's throttle, session and internal errors; nothing enters the book
        """
        if mode not in PLACE_FAULTS:
            raise ValueError(f"fake kite: unknown placement fault {mode!r}; one of {sorted(PLACE_FAULTS)}")
        with self._lock:
            self._faults.append(mode)

    # --- what tests read and change -----------------------------------------------------------------
    def seed(self, mocks_dir: Path) -> None:
        """Zerodha's mock book: orders.json, order_info.json (one order's history) and trades.json."""
        with self._lock:
            for order in json.loads((mocks_dir / "orders.json").read_text())["data"]:
                self._orders[order["order_id"]] = order
                self._history[order["order_id"]] = [order]
            history = json.loads((mocks_dir / "order_info.json").read_text())["data"]
            self._history[history[-1]["order_id"]] = history
            self._orders[history[-1]["order_id"]] = history[-1]
            self._trades.extend(json.loads((mocks_dir / "trades.json").read_text())["data"])

    def order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._orders[order_id])

    def form(self, order_id: str) -> dict[str, str]:
        """The form fields the placement of `order_id` arrived with."""
        with self._lock:
            return dict(self._forms[order_id])

    def with_tag(self, tag: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(o) for o in self._orders.values() if o.get("tag") == tag]

    def placements_per_tag(self) -> Counter[str]:
        """How many orders each tag produced in the book (placed here, not seeded)."""
        with self._lock:
            return Counter(self._orders[i].get("tag") or "" for i in self._forms)

    def fill(self, order_id: str, quantity: int, price: float) -> dict[str, Any]:
        """A trade of `quantity` at `price`: the order's filled/pending/average move, COMPLETE when done."""
        with self._lock:
            order = self._orders.get(order_id)
            if order is None or order["status"] not in OPEN_STATUSES:
                raise ValueError(f"fake kite: order {order_id} is not open")
            if not 0 < quantity <= order["pending_quantity"]:
                raise ValueError(f"fake kite: cannot fill {quantity} of {order['pending_quantity']} pending")
            filled = order["filled_quantity"] + quantity
            average = (order["average_price"] * order["filled_quantity"] + price * quantity) / filled
            now = _now()
            trade = {
                "trade_id": f"{next(self._trade_ids):08d}",
                "order_id": order_id,
                "exchange": order["exchange"],
                "tradingsymbol": order["tradingsymbol"],
                "instrument_token": order["instrument_token"],
                "product": order["product"],
                "average_price": price,
                "quantity": quantity,
                "exchange_order_id": order["exchange_order_id"],
                "transaction_type": order["transaction_type"],
                "fill_timestamp": now,
                "order_timestamp": now[11:],
                "exchange_timestamp": now,
            }
            self._trades.append(trade)
            pending = order["quantity"] - filled
            self._step(
                order,
                status="COMPLETE" if pending == 0 else "OPEN",
                filled_quantity=filled,
                pending_quantity=pending,
                average_price=round(average, 4),
                exchange_update_timestamp=now,
            )
            return dict(trade)

    # --- the endpoints ------------------------------------------------------------------------------
    def place(self, variety: str, form: dict[str, str]) -> str:
        order = self._new_order(variety, form)
        with self._lock:
            order_id = f"2604{next(self._ids):011d}"
            order["order_id"] = order_id
            order["exchange_order_id"] = f"1100000{order_id[-9:]}"
            self._forms[order_id] = dict(form)
            self._orders[order_id] = order
            self._history[order_id] = []
            for status in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"):
                self._history[order_id].append({**order, "status": status})
            self._step(order, status="AMO REQ RECEIVED" if variety == "amo" else "OPEN")
        return order_id

    def modify(self, variety: str, order_id: str, form: dict[str, str]) -> str:
        with self._lock:
            order = self._open(variety, order_id, "modified")
            changes: dict[str, Any] = {}
            if form.get("quantity"):
                quantity = int(form["quantity"])
                if quantity < order["filled_quantity"] or quantity <= 0:
                    raise _input("Invalid `quantity`.")
                changes.update(quantity=quantity, pending_quantity=quantity - order["filled_quantity"])
            for name in ("price", "trigger_price"):
                if form.get(name):
                    changes[name] = _number(form, name)
            order_type = form.get("order_type") or order["order_type"]
            if order_type not in ORDER_TYPES:
                raise _input("Invalid `order_type`.")
            protection = _number(form, "market_protection") if form.get("market_protection") else 0
            if order_type in PROTECTED and order_type != order["order_type"] and protection == 0:
                raise _input(NO_PROTECTION)
            changes.update(order_type=order_type, modified=True)
            if protection:
                changes["market_protection"] = protection
            self._history[order_id].append({**order, "status": "MODIFY VALIDATION PENDING"})
            self._step(order, **changes)
        return order_id

    def cancel(self, variety: str, order_id: str) -> str:
        with self._lock:
            order = self._open(variety, order_id, "cancelled")
            self._history[order_id].append({**order, "status": "CANCEL PENDING"})
            pending = order["pending_quantity"]
            self._step(order, status="CANCELLED", pending_quantity=0, cancelled_quantity=pending)
        return order_id

    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(o) for o in self._orders.values()]

    def history(self, order_id: str) -> list[dict[str, Any]]:
        with self._lock:
            if order_id not in self._history:
                raise _input(NOT_FOUND)
            return [dict(o) for o in self._history[order_id]]

    def trades(self, order_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            trades = [dict(t) for t in self._trades if order_id is None or t["order_id"] == order_id]
            if order_id is not None and not trades and order_id not in self._orders:
                raise _input(NOT_FOUND)  # (the mock trades.json's orders are not in orders.json)
            return trades

    # --- internals ----------------------------------------------------------------------------------
    def _place(self, variety: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault == "429":
            return 429, _error("NetworkException", "Too many requests")
        if fault == "403_token":
            return 403, _error("TokenException", "Incorrect `api_key` or `access_token`.")
        if fault == "500":
            return 500, _error("GeneralException", "Something went wrong. Please try again.")
        order_id = self.place(variety, form)
        if fault == "drop_after_accept":
            return DROP, {}
        if fault == "timeout":
            time.sleep(self.place_timeout_seconds)
        return 200, _success({"order_id": order_id})

    def _new_order(self, variety: str, form: dict[str, str]) -> dict[str, Any]:
        """Kite's input validation, then the order as orders.json shows it (before its id)."""
        if variety not in VARIETIES:
            raise _input("Invalid `variety`.")
        for name in REQUIRED:
            if not form.get(name):
                raise _input(f"Missing `{name}`.")
        order_type = form["order_type"]
        if order_type not in ORDER_TYPES:
            raise _input("Invalid `order_type`.")
        if not form["quantity"].isdigit() or int(form["quantity"]) <= 0:
            raise _input("Invalid `quantity`.")
        protection = _number(form, "market_protection")
        if order_type in PROTECTED and protection == 0:
            raise _input(NO_PROTECTION)
        if protection and not (protection == -1 or 0 < protection <= 100):
            raise _input("Invalid `market_protection`.")
        if order_type in ("LIMIT", "SL") and not form.get("price"):
            raise _input("Missing `price`.")
        if order_type in ("SL", "SL-M") and not form.get("trigger_price"):
            raise _input("Missing `trigger_price`.")
        tag = form.get("tag") or None
        if tag is not None and (len(tag) > 20 or not tag.isalnum()):
            raise _input("Invalid `tag`: alphanumeric, at most 20 characters.")
        quantity, now = int(form["quantity"]), _now()
        return {
            "placed_by": "FAKE01",
            "order_id": "",
            "exchange_order_id": None,
            "parent_order_id": None,
            "status": "PUT ORDER REQ RECEIVED",
            "status_message": None,
            "status_message_raw": None,
            "order_timestamp": now,
            "exchange_update_timestamp": now,
            "exchange_timestamp": now,
            "variety": variety,
            "modified": False,
            "exchange": form["exchange"],
            "tradingsymbol": form["tradingsymbol"],
            "instrument_token": 408065,
            "order_type": order_type,
            "transaction_type": form["transaction_type"],
            "validity": form.get("validity") or "DAY",
            "product": form["product"],
            "quantity": quantity,
            "disclosed_quantity": 0,
            "price": _number(form, "price"),
            "trigger_price": _number(form, "trigger_price"),
            "average_price": 0,
            "filled_quantity": 0,
            "pending_quantity": quantity,
            "cancelled_quantity": 0,
            "market_protection": protection,
            "meta": {},
            "tag": tag,
            "tags": [tag] if tag else [],
            "guid": "FAKE",
        }

    def _open(self, variety: str, order_id: str, action: str) -> dict[str, Any]:
        if variety not in VARIETIES:
            raise _input("Invalid `variety`.")
        order = self._orders.get(order_id)
        if order is None:
            raise _input(NOT_FOUND)
        if order["status"] not in OPEN_STATUSES:
            state = {"COMPLETE": "completed", "CANCELLED": "cancelled"}.get(order["status"], order["status"].lower())
            raise OrderRefused(400, "OrderException", f"Order cannot be {action} as it is {state}.")
        return order

    def _step(self, order: dict[str, Any], **changes: Any) -> None:
        """Change the order in place and append the new state to its history (lock held)."""
        order.update(changes)
        self._history[order["order_id"]].append(dict(order))
