"""Kite-shaped records: orders (orders.json), trades (trades.json), postbacks (postback.json). Pure, no Django.

An order is a dict with Kite's field names in Kite's order, money as Decimal; each function returns the
next state of it, never changing the one it was given, so a caller can compare-and-set old against new.
Stored as JSON with money as exact decimal strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from apps.brokers.base import BrokerOrder, BrokerTrade, OrderRequest, postback_checksum
from apps.brokers.paper.rules import (
    AMO_RECEIVED,
    CANCELLED,
    COMPLETE,
    LIMIT,
    MONEY_FIELDS,
    OPEN,
    REJECTED,
    SL,
    SL_M,
    TRIGGER_PENDING,
    PaperConfig,
    PaperInstrument,
    Rejection,
)
from apps.marketdata.calendar import IST, as_ist


def kite_time(at: datetime) -> str:
    """Kite's timestamp format: IST wall clock, no offset."""
    return as_ist(at).strftime("%Y-%m-%d %H:%M:%S")


def parse_kite_time(text: str | None) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST) if text else None


def new_record(
    order_id: str, request: OrderRequest, instrument: PaperInstrument, at: datetime, placed_by: str
) -> dict[str, Any]:
    """The order as Kite's order book shows it on arrival (before acceptance), in Kite's key order."""
    record: dict[str, Any] = {
        "placed_by": placed_by,
        "order_id": order_id,
        "exchange_order_id": None,
        "parent_order_id": None,
        "status": AMO_RECEIVED if request.variety == "amo" else OPEN,
        "status_message": None,
        "status_message_raw": None,
        "order_timestamp": kite_time(at),
        "exchange_update_timestamp": None,
        "exchange_timestamp": None,
        "variety": request.variety,
        "modified": False,
        "exchange": request.exchange,
        "tradingsymbol": request.tradingsymbol,
        "instrument_token": instrument.instrument_token,
        "order_type": request.order_type,
        "transaction_type": request.transaction_type,
        "validity": request.validity,
        "product": request.product,
        "quantity": request.quantity,
        "disclosed_quantity": 0,
        "price": request.price if request.order_type in (LIMIT, SL) else Decimal(0),
        "trigger_price": request.trigger_price if request.order_type in (SL, SL_M) else Decimal(0),
        "average_price": Decimal(0),
        "filled_quantity": 0,
        "pending_quantity": request.quantity,
        "cancelled_quantity": 0,
        "market_protection": request.market_protection or Decimal(0),
        "meta": {},
        "tag": request.tag or None,
        "guid": f"paper-{order_id}",
    }
    if request.tag:
        record["tags"] = [request.tag]
    return record


def request_for(record: dict[str, Any], changes: Mapping[str, Any]) -> OrderRequest:
    """The request an open order would be with `changes` applied, to validate a modification like a placement."""
    merged = {**record, **changes}
    return OrderRequest(
        tag=record["tag"] or "",
        exchange=record["exchange"],
        tradingsymbol=record["tradingsymbol"],
        transaction_type=record["transaction_type"],
        quantity=merged["quantity"],
        product=record["product"],
        order_type=merged["order_type"],
        variety=record["variety"],
        validity=record["validity"],
        price=merged["price"] or None,
        trigger_price=merged["trigger_price"] or None,
        market_protection=merged["market_protection"] or None,
    )


def accepted(record: dict[str, Any], at: datetime) -> dict[str, Any]:
    """At the exchange: an exchange order id, and TRIGGER PENDING for stops."""
    status = TRIGGER_PENDING if record["order_type"] in (SL, SL_M) else OPEN
    stamp = kite_time(at)
    return {
        **record,
        "status": status,
        "exchange_order_id": "1" + record["order_id"],
        "exchange_timestamp": stamp,
        "exchange_update_timestamp": stamp,
    }


def modified(record: dict[str, Any], request: OrderRequest, at: datetime) -> dict[str, Any]:
    """An open order with the new quantity, prices and type; a changed type re-arms or drops the trigger."""
    updated = {
        **record,
        "order_type": request.order_type,
        "quantity": request.quantity,
        "pending_quantity": request.quantity,
        "price": request.price if request.order_type in (LIMIT, SL) else Decimal(0),
        "trigger_price": request.trigger_price if request.order_type in (SL, SL_M) else Decimal(0),
        "market_protection": request.market_protection or Decimal(0),
        "modified": True,
    }
    if record["status"] == AMO_RECEIVED:
        return updated
    status = record["status"]
    if request.order_type != record["order_type"]:
        status = TRIGGER_PENDING if request.order_type in (SL, SL_M) else OPEN
    return with_status(updated, status, at)


def with_status(record: dict[str, Any], status: str, at: datetime) -> dict[str, Any]:
    return {**record, "status": status, "exchange_update_timestamp": kite_time(at)}


def rejected(record: dict[str, Any], rejection: Rejection) -> dict[str, Any]:
    """RMS rejections never reach the exchange: no exchange order id, nothing pending (as Kite shows them)."""
    return {
        **record,
        "status": REJECTED,
        "status_message": rejection.message,
        "status_message_raw": rejection.raw,
        "pending_quantity": 0,
    }


def filled(record: dict[str, Any], price: Decimal, at: datetime) -> dict[str, Any]:
    return {
        **with_status(record, COMPLETE, at),
        "average_price": price,
        "filled_quantity": record["quantity"],
        "pending_quantity": 0,
    }


def cancelled(record: dict[str, Any], at: datetime, message: str | None = None) -> dict[str, Any]:
    """Kite keeps pending_quantity on a cancelled order and repeats it in cancelled_quantity."""
    unfilled = record["quantity"] - record["filled_quantity"]
    return {
        **with_status(record, CANCELLED, at),
        "status_message": message,
        "pending_quantity": unfilled,
        "cancelled_quantity": unfilled,
    }


def trade_record(record: dict[str, Any], trade_id: str) -> dict[str, Any]:
    """The fill of a COMPLETE order, shaped like Kite's trades.json."""
    stamp = record["exchange_update_timestamp"]
    return {
        "trade_id": trade_id,
        "order_id": record["order_id"],
        "exchange": record["exchange"],
        "tradingsymbol": record["tradingsymbol"],
        "instrument_token": record["instrument_token"],
        "product": record["product"],
        "average_price": record["average_price"],
        "quantity": record["filled_quantity"],
        "exchange_order_id": record["exchange_order_id"],
        "transaction_type": record["transaction_type"],
        "fill_timestamp": stamp,
        "order_timestamp": stamp.split(" ")[1],
        "exchange_timestamp": stamp,
    }


def postback(record: dict[str, Any], config: PaperConfig) -> dict[str, Any]:
    """Kite's postback body: the order record plus user_id, unfilled_quantity, app_id and checksum."""
    return {
        "user_id": record["placed_by"],
        "unfilled_quantity": record["quantity"] - record["filled_quantity"],
        "app_id": config.app_id,
        "checksum": postback_checksum(record["order_id"], record["order_timestamp"], config.postback_secret),
        **record,
    }


def dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, default=str)


def loads(raw: bytes | str) -> dict[str, Any]:
    """A stored record with its money fields back as Decimal (stored as strings, exactly)."""
    record: dict[str, Any] = json.loads(raw)
    for name in MONEY_FIELDS:
        if name in record:
            record[name] = Decimal(str(record[name]))
    return record


def broker_order(record: dict[str, Any]) -> BrokerOrder:
    return BrokerOrder(
        order_id=record["order_id"],
        tag=record["tag"],
        status=record["status"],
        exchange=record["exchange"],
        tradingsymbol=record["tradingsymbol"],
        transaction_type=record["transaction_type"],
        quantity=record["quantity"],
        filled_quantity=record["filled_quantity"],
        pending_quantity=record["pending_quantity"],
        average_price=record["average_price"],
        product=record["product"],
        order_type=record["order_type"],
        price=record["price"] or None,
        trigger_price=record["trigger_price"] or None,
        status_message=record["status_message"],
        order_timestamp=parse_kite_time(record["order_timestamp"]),
        raw=record,
    )


def broker_trade(trade: dict[str, Any]) -> BrokerTrade:
    stamp = parse_kite_time(trade["fill_timestamp"])
    if stamp is None:
        raise ValueError(f"paper trade {trade.get('trade_id')!r} has no fill_timestamp")
    return BrokerTrade(
        trade_id=trade["trade_id"],
        order_id=trade["order_id"],
        exchange=trade["exchange"],
        tradingsymbol=trade["tradingsymbol"],
        transaction_type=trade["transaction_type"],
        product=trade["product"],
        quantity=trade["quantity"],
        average_price=trade["average_price"],
        fill_timestamp=stamp,
    )
