"""PaperBroker: Kite's order book simulated in Redis, shared by every process. See the package docstring.

Each order is one Redis key holding its Kite-shaped record; every change to it (acceptance, trigger, fill,
cancel, modification) is a compare-and-set under WATCH/MULTI that also appends the order's history, the
trade and the postback-shaped update in the same transaction. Two processes pricing the same resting order
therefore cannot both fill it: the second one's transaction fails, it re-reads the order, finds it
COMPLETE and leaves it alone.

Redis keys, for account A (ids are shared by all accounts, so they are unique across them):

    paper:A:order:<order_id>    the order's current record (JSON)
    paper:A:history:<order_id>  list of every record the order had (order_history)
    paper:A:orders              list of order ids in placement order (orders)
    paper:A:open                set of ids still OPEN / TRIGGER PENDING / AMO REQ RECEIVED
    paper:A:trades              list of trades (JSON, Kite's trades.json shape)
    paper:A:order_trades:<id>   the same trades, per order (order_trades)
    paper:A:updates             list of postback-shaped updates not yet drained
    paper:seq:order:<yymmdd>, paper:seq:trade:<yymmdd>   id counters
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis

from apps.brokers.base import BrokerAmbiguous, BrokerOrder, BrokerRejected, BrokerTrade, OrderRequest
from apps.brokers.paper import book, fills, records, rules
from apps.brokers.paper.rules import (
    COMPLETE,
    PAPER_OPEN_STATUSES,
    PaperConfig,
    PaperInstrument,
    SessionRule,
    always_open,
)
from apps.marketdata import events
from apps.marketdata.calendar import IST, as_ist

logger = logging.getLogger(__name__)

PriceSource = Callable[[str], Decimal | None]  # "EXCHANGE:SYMBOL" -> last price
InstrumentLookup = Callable[[str, str], PaperInstrument | None]  # (exchange, tradingsymbol)
CircuitLimits = Callable[[str], tuple[Decimal, Decimal] | None]
Clock = Callable[[], datetime]
CAS_ATTEMPTS = 8
SEED_PER_SECOND = 100_000  # id counters start at seconds-since-midnight x this: a flushed Redis never reuses ids
_ACCOUNT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def redis_price_source(client: redis.Redis) -> PriceSource:
    """Last prices from the feed's `marketdata:ltp` hash (events.py), one HGET per key."""

    def price(key: str) -> Decimal | None:
        raw = client.hget(events.LATEST_PRICES, key)
        return None if raw is None else events.LatestPrice.from_json(raw).price

    return price


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class PaperBroker:
    """Kite's order book, simulated; see the module docstring and docs/paper-broker.md."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        account: str,
        instruments: InstrumentLookup,
        price_source: PriceSource,
        session: SessionRule = always_open,
        circuit_limits: CircuitLimits | None = None,
        clock: Clock | None = None,
        config: PaperConfig | None = None,
    ) -> None:
        if not _ACCOUNT.match(account):
            raise ValueError(f"paper account name must be 1-64 of letters, digits, '_', '.', '-': {account!r}")
        self.account = account
        self.config = config or PaperConfig()
        self._redis = client
        self._instruments = instruments
        self._price = price_source
        self._session = session
        self._circuit_limits = circuit_limits
        self._clock = clock or (lambda: datetime.now(IST))

    # --- the Broker interface -----------------------------------------------------------------------------

    def place(self, request: OrderRequest) -> str:
        """An order id, with the order OPEN / TRIGGER PENDING / COMPLETE / REJECTED (RMS) in the book.

        Raises BrokerRejected for what Kite refuses outright (InputException: malformed, market closed),
        BrokerAmbiguous when Redis failed and the order may or may not have been written.
        """
        rules.check_request(request)
        instrument = self._instrument(request.exchange, request.tradingsymbol)
        at = as_ist(self._clock())
        accepted_types = self._session(at, instrument)
        rules.check_session(accepted_types, variety=request.variety, order_type=request.order_type)
        with self._ambiguous(f"placing {request.tag or 'an untagged order'}"):
            ltp = self._price(instrument.key)
            order_id = self._next_id("order", at)
            record = records.new_record(order_id, request, instrument, at, self.config.placed_by)
            rejection = rules.rms_rejection(
                request, instrument, ltp=ltp, limits=self._limits(instrument, ltp)
            ) or self._funds_rejection(record, ltp)
            if rejection is not None:
                steps = [records.rejected(record, rejection)]
            elif request.variety == "amo":
                steps = [record]
            else:
                steps = self._arrive(records.accepted(record, at), ltp, at, instrument)
            if not self._commit(order_id, None, steps):
                raise BrokerAmbiguous(f"paper order id {order_id} already exists; the id counter was reset")
        return order_id

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
        """Change an open order; a change that Kite would refuse raises BrokerRejected and leaves it as it was.

        `market_protection` (Kite's modify_order takes it too) is needed to turn an order into MARKET or SL-M.
        """
        changes = {
            "quantity": quantity,
            "price": price,
            "trigger_price": trigger_price,
            "order_type": order_type,
            "market_protection": market_protection,
        }
        rules.check_variety(variety)
        with self._ambiguous(f"modifying {order_id}"):
            for _ in range(CAS_ATTEMPTS):
                raw, record = self._load(order_id)
                self._check_open(record, "modified")
                at = as_ist(self._clock())
                steps = self._modified(record, {k: v for k, v in changes.items() if v is not None}, at)
                if self._commit(order_id, raw, steps):
                    return order_id
        raise BrokerAmbiguous(f"order {order_id} kept changing while being modified; look it up")

    def cancel(self, order_id: str, *, variety: str = "regular") -> str:
        """Cancel an open order; a completed, cancelled or rejected one raises BrokerRejected, as at Kite."""
        rules.check_variety(variety)
        with self._ambiguous(f"cancelling {order_id}"):
            for _ in range(CAS_ATTEMPTS):
                raw, record = self._load(order_id)
                self._check_open(record, "cancelled")
                if self._commit(order_id, raw, [records.cancelled(record, as_ist(self._clock()))]):
                    return order_id
        raise BrokerAmbiguous(f"order {order_id} kept changing while being cancelled; look it up")

    def orders(self) -> list[BrokerOrder]:
        ids = [_text(i) for i in self._redis.lrange(self._key("orders"), 0, -1)]
        raws = self._redis.mget([self._key("order", i) for i in ids]) if ids else []
        return [records.broker_order(records.loads(raw)) for raw in raws if raw is not None]

    def order_history(self, order_id: str) -> list[BrokerOrder]:
        raws = self._redis.lrange(self._key("history", order_id), 0, -1)
        if not raws:
            raise BrokerRejected("Couldn't find that `order_id`.")
        return [records.broker_order(records.loads(raw)) for raw in raws]

    def trades(self) -> list[BrokerTrade]:
        return [records.broker_trade(t) for t in self.trade_records()]

    def order_trades(self, order_id: str) -> list[BrokerTrade]:
        """One order's trades, from its own list: read after every fill, so never a scan of the day's trades."""
        raws = self._redis.lrange(self._key("order_trades", order_id), 0, -1)
        return [records.broker_trade(records.loads(raw)) for raw in raws]

    def trade_records(self) -> list[dict[str, Any]]:
        """The trades as Kite's trades.json shows them (money as Decimal)."""
        return [records.loads(raw) for raw in self._redis.lrange(self._key("trades"), 0, -1)]

    def positions(self) -> dict[str, Any]:
        today = as_ist(self._clock()).date()
        return book.positions(self.trade_records(), today=today, last_price=self._price)

    def margins(self) -> dict[str, Any]:
        return self._margins(self.positions()["net"])

    def ltp(self, keys: list[str]) -> dict[str, Decimal]:
        prices = {key: self._price(key) for key in keys}
        return {key: price for key, price in prices.items() if price is not None}

    # --- what the feed and the OMS call -------------------------------------------------------------------

    def process_prices(self, prices: Mapping[str, Decimal], at: datetime) -> list[str]:
        """Re-evaluate every open order against new last prices ("EXCHANGE:SYMBOL" -> price) seen at `at`.

        Releases AMO orders once the session at `at` accepts them, triggers stops, fills what the prices
        cross. Safe to call from several processes at once. Returns the ids of the orders that changed.
        """
        at = as_ist(at)
        for key, price in prices.items():
            if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
                raise TypeError(f"process_prices: the price of {key} must be a positive Decimal, got {price!r}")
        changed = []
        for order_id in sorted(_text(i) for i in self._redis.smembers(self._key("open"))):
            if self._process_one(order_id, prices, at):
                changed.append(order_id)
        return changed

    def process_latest(self, at: datetime | None = None) -> list[str]:
        """`process_prices` with the price source's current prices of the instruments that have open orders."""
        keys = {f"{r['exchange']}:{r['tradingsymbol']}" for r in self._open_records()}
        return self.process_prices(self.ltp(sorted(keys)), at or self._clock())

    def drain_updates(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Postback-shaped updates (Kite's postback.json) for every change since the last drain, oldest first.

        Read and removed in one transaction: each update goes to exactly one caller, whichever process drains.
        """
        if limit is not None and limit <= 0:
            return []
        key = self._key("updates")
        with self._redis.pipeline(transaction=True) as pipe:
            if limit is None:
                pipe.lrange(key, 0, -1)
                pipe.delete(key)
            else:
                pipe.lrange(key, 0, limit - 1)
                pipe.ltrim(key, limit, -1)
            raws, _ = pipe.execute()
        return [records.loads(raw) for raw in raws]

    def expire_day_orders(self, at: datetime | None = None) -> list[str]:
        """End of day: the exchange cancels what is still open of regular DAY orders (AMOs wait)."""
        at = as_ist(at or self._clock())
        expired = []
        for order_id in sorted(_text(i) for i in self._redis.smembers(self._key("open"))):
            for _ in range(CAS_ATTEMPTS):
                raw, record = self._load(order_id)
                if record["status"] not in PAPER_OPEN_STATUSES or record["status"] == rules.AMO_RECEIVED:
                    break
                step = records.cancelled(record, at, "Order cancelled by the exchange at the end of the day.")
                if self._commit(order_id, raw, [step]):
                    expired.append(order_id)
                    break
        return expired

    def reset(self) -> int:
        """Forget the account's whole book (operators' "start over"); returns the number of keys deleted."""
        keys = list(self._redis.scan_iter(match=self._key("*"), count=1000))
        return int(self._redis.delete(*keys)) if keys else 0

    # --- internals ----------------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return ":".join(("paper", self.account, *parts))

    def _instrument(self, exchange: str, tradingsymbol: str) -> PaperInstrument:
        instrument = self._instruments(exchange, tradingsymbol)
        if instrument is None:
            raise BrokerRejected(f"Invalid `tradingsymbol`: {exchange}:{tradingsymbol} is not a known instrument.")
        return instrument

    def _limits(self, instrument: PaperInstrument, ltp: Decimal | None) -> tuple[Decimal, Decimal] | None:
        if self._circuit_limits is not None:
            given = self._circuit_limits(instrument.key)
            if given is not None:
                return given
        if ltp is None:
            return None
        return rules.circuit_limits(ltp, instrument.tick_size, self.config.circuit_percent)

    def _margins(self, net_positions: list[dict[str, Any]]) -> dict[str, Any]:
        blocked = book.open_order_blocks(
            self._open_records(), net_positions, last_price=self._price, config=self.config
        )
        return book.margins(net_positions, blocked=blocked, config=self.config)

    def _funds_rejection(self, record: dict[str, Any], ltp: Decimal | None) -> rules.Rejection | None:
        """Insufficient funds, as Kite words it. Not atomic with other placements (see the docs)."""
        if not self.config.check_funds:
            return None
        positions = self.positions()["net"]
        available = self._margins(positions)["equity"]["net"]
        net = {(p["exchange"], p["tradingsymbol"], p["product"]): p["quantity"] for p in positions}
        required = book.order_margin(
            product=record["product"],
            side=record["transaction_type"],
            quantity=record["quantity"],
            price=book.order_price_estimate(record, ltp),
            position_quantity=net.get((record["exchange"], record["tradingsymbol"], record["product"]), 0),
            config=self.config,
        )
        return None if required <= available else rules.funds_rejection(required, available, self.account)

    def _arrive(
        self, record: dict[str, Any], ltp: Decimal | None, at: datetime, instrument: PaperInstrument
    ) -> list[dict[str, Any]]:
        """An order reaching the market: it and whatever it becomes at the current price."""
        if ltp is None:
            return [record]
        return [record, *fills.advance(record, ltp, at, instrument.tick_size, self.config, arriving=True)]

    def _modified(self, record: dict[str, Any], changes: dict[str, Any], at: datetime) -> list[dict[str, Any]]:
        """The order after `changes`, refused (BrokerRejected, order unchanged) where Kite would refuse it."""
        request = records.request_for(record, changes)
        rules.check_request(request)
        instrument = self._instrument(record["exchange"], record["tradingsymbol"])
        ltp = self._price(instrument.key)
        rejection = rules.rms_rejection(request, instrument, ltp=ltp, limits=self._limits(instrument, ltp))
        if rejection is not None:
            raise BrokerRejected(rejection.message)
        updated = records.modified(record, request, at)
        if updated["status"] == rules.AMO_RECEIVED:
            return [updated]
        return self._arrive(updated, ltp, at, instrument)

    def _process_one(self, order_id: str, prices: Mapping[str, Decimal], at: datetime) -> bool:
        for _ in range(CAS_ATTEMPTS):
            raw, record = self._load(order_id)
            price = prices.get(f"{record['exchange']}:{record['tradingsymbol']}")
            if price is None or record["status"] not in PAPER_OPEN_STATUSES:
                return False
            instrument = self._instruments(record["exchange"], record["tradingsymbol"])
            if instrument is None:
                logger.warning(
                    "paper order %s: instrument %s:%s is gone", order_id, record["exchange"], record["tradingsymbol"]
                )
                return False
            steps = self._steps_at(record, price, at, instrument)
            if not steps:
                return False
            if self._commit(order_id, raw, steps):
                return True
        logger.warning(
            "paper order %s: still contended after %d attempts; next prices will retry", order_id, CAS_ATTEMPTS
        )
        return False

    def _steps_at(
        self, record: dict[str, Any], price: Decimal, at: datetime, instrument: PaperInstrument
    ) -> list[dict[str, Any]]:
        if record["status"] != rules.AMO_RECEIVED:
            return fills.advance(record, price, at, instrument.tick_size, self.config, arriving=False)
        if record["order_type"] not in self._session(at, instrument):
            return []
        return self._arrive(records.accepted(record, at), price, at, instrument)

    def _load(self, order_id: str) -> tuple[bytes | str, dict[str, Any]]:
        raw = self._redis.get(self._key("order", order_id))
        if raw is None:
            raise BrokerRejected("Couldn't find that `order_id`.")
        return raw, records.loads(raw)

    def _open_records(self) -> list[dict[str, Any]]:
        ids = sorted(_text(i) for i in self._redis.smembers(self._key("open")))
        raws = self._redis.mget([self._key("order", i) for i in ids]) if ids else []
        return [
            r for r in (records.loads(raw) for raw in raws if raw is not None) if r["status"] in PAPER_OPEN_STATUSES
        ]

    @staticmethod
    def _check_open(record: dict[str, Any], action: str) -> None:
        status = record["status"]
        if status not in PAPER_OPEN_STATUSES:
            state = {COMPLETE: "completed", rules.CANCELLED: "already cancelled"}.get(status, status.lower())
            raise BrokerRejected(f"Order cannot be {action} as it is {state}.")

    def _commit(self, order_id: str, expected: bytes | str | None, steps: list[dict[str, Any]]) -> bool:
        """Compare-and-set the order from `expected` (None: new) through `steps`, with history, trade, updates.

        False when another process changed the order first (or, for a new order, it exists).
        """
        final = steps[-1]
        trade = None
        if final["status"] == COMPLETE:
            at = records.parse_kite_time(final["exchange_update_timestamp"]) or as_ist(self._clock())
            trade = records.trade_record(final, self._next_id("trade", at))
        key = self._key("order", order_id)
        with self._redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                current = pipe.get(key)
                if (current is None) != (expected is None) or (
                    current is not None and expected is not None and _text(current) != _text(expected)
                ):
                    return False
                pipe.multi()
                self._queue_writes(pipe, order_id, steps, trade, new=expected is None)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def _queue_writes(
        self, pipe: Any, order_id: str, steps: list[dict[str, Any]], trade: dict[str, Any] | None, *, new: bool
    ) -> None:
        final = steps[-1]
        pipe.set(self._key("order", order_id), records.dumps(final))
        if new:
            pipe.rpush(self._key("orders"), order_id)
        for step in steps:
            pipe.rpush(self._key("history", order_id), records.dumps(step))
            pipe.rpush(self._key("updates"), records.dumps(records.postback(step, self.config)))
        if final["status"] in PAPER_OPEN_STATUSES:
            pipe.sadd(self._key("open"), order_id)
        else:
            pipe.srem(self._key("open"), order_id)
        if trade is not None:
            pipe.rpush(self._key("trades"), records.dumps(trade))
            pipe.rpush(self._key("order_trades", order_id), records.dumps(trade))

    def _next_id(self, kind: str, at: datetime) -> str:
        """Kite-like numeric ids: yymmdd + 10 digits, from a per-day counter shared by every process."""
        at = as_ist(at)
        day = at.strftime("%y%m%d")
        key = f"paper:seq:{kind}:{day}"
        seed = (at.hour * 3600 + at.minute * 60 + at.second) * SEED_PER_SECOND
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, seed, nx=True)
            pipe.incr(key)
            _, number = pipe.execute()
        return f"{day}{int(number):010d}"

    @contextmanager
    def _ambiguous(self, what: str) -> Iterator[None]:
        """A Redis failure while writing leaves the outcome unknown: the OMS must look the order up."""
        try:
            yield
        except redis.RedisError as exc:
            raise BrokerAmbiguous(f"paper broker: Redis failed while {what}: {exc}") from exc
