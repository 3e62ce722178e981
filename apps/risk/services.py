"""The risk area's public door: the pre-trade checks of the order path, limits, and the VaR/stress services.

`pre_trade_check` gathers the facts of one order (effective limits, the account's book and today's P&L, the
session, the latest prices) in five small queries and two Redis round trips, runs every pure check of
`apps.risk.pretrade`, and only when all of them pass takes a slot of the account's orders-per-second and
orders-per-day limiter; a refused order only reads the limiter, so it records a full limiter as a reason too
without using up a slot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.marketdata import selectors as marketdata
from apps.marketdata.calendar import IST
from apps.orders import selectors as orders
from apps.risk.limits import limit_update, limits_effective, limits_list
from apps.risk.models import BreachKind, RestrictedInstrument, RiskBreach
from apps.risk.order_rate import OrderRate
from apps.risk.pretrade import RATE_CHECKS, CheckFailure, Limits, OrderFacts, run_checks, with_rate
from tradingsite.redis_client import get_redis

if TYPE_CHECKING:
    from apps.marketdata.models import Instrument

__all__ = [
    "CheckFailure",
    "Limits",
    "OrderFacts",
    "PreTradeRequest",
    "limit_update",
    "limits_effective",
    "limits_list",
    "pre_trade_check",
    "pre_trade_rejection_record",
]

_RESTRICTED_SQL = f"SELECT reason FROM {RestrictedInstrument._meta.db_table} WHERE instrument_id = %s"  # noqa: S608
SUPPORTED_TYPES = frozenset({"EQ"})
SUPPORTED_EXCHANGES = frozenset({"NSE", "BSE"})


@dataclass(frozen=True)
class PreTradeRequest:
    account_id: int
    account_kind: str  # "paper" or "kite"
    strategy: str
    instrument: Instrument
    side: str
    quantity: int
    order_type: str
    price: Decimal | None
    trigger_price: Decimal | None
    kill_switch_on: bool
    variety: str = "regular"


def _now() -> datetime:
    return timezone.now()  # one seam: the session tests move the clock here


def pre_trade_check(*, request: PreTradeRequest) -> list[CheckFailure]:
    """Every failing check, in a fixed order; empty when the order may go (and it then holds a rate slot)."""
    facts = order_facts(request=request)
    failures = run_checks(facts)
    limits = facts.limits
    if limits.orders_per_second is None and limits.orders_per_day is None:
        return failures
    rate = OrderRate(
        get_redis(),
        account_id=request.account_id,
        per_second=limits.orders_per_second or 1_000_000,
        per_day=limits.orders_per_day or 1_000_000_000,
        day=timezone.localtime(_now(), IST).date(),
    )
    admission = rate.take(consume=not failures)
    return failures + run_checks(with_rate(facts, admission.state), RATE_CHECKS)


def order_facts(*, request: PreTradeRequest) -> OrderFacts:
    """Everything the pure checks need about one order, read now."""
    instrument = request.instrument
    key = f"{instrument.exchange}:{instrument.tradingsymbol}".upper()
    now = _now()
    day_start = datetime.combine(timezone.localtime(now, IST).date(), time.min, tzinfo=IST)
    book = orders.account_book(account_id=request.account_id, since=day_start)
    keys = [key, *(row.key for row in book.holdings.values())]
    prices = {k: v.price for k, v in marketdata.latest_prices(keys=keys).items()}
    held = book.holdings.get(instrument.pk)
    facts = OrderFacts(
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        price=request.price,
        trigger_price=request.trigger_price,
        lot_size=instrument.lot_size,
        tick_size=Decimal(instrument.tick_size),
        reference_price=prices.get(key),
        kill_switch_on=request.kill_switch_on,
        limits=limits_effective(account_id=request.account_id, strategy=request.strategy),
        position_quantity=held.net_quantity if held else 0,
        gross_exposure=_gross(book, prices),
        open_orders=book.open_orders,
        day_pnl=_day_pnl(book, prices),
    )
    facts = _with_session(facts, request, now)
    return _with_tradable(facts, request)


def _mark(row: orders.HoldingRow, prices: dict[str, Decimal]) -> Decimal:
    """The latest price, else the average cost (a symbol without a price counts at what it cost)."""
    return prices.get(row.key.upper(), row.average_price)


def _gross(book: orders.AccountBook, prices: dict[str, Decimal]) -> Decimal:
    return sum((abs(row.net_quantity) * _mark(row, prices) for row in book.holdings.values()), Decimal(0))


def _day_pnl(book: orders.AccountBook, prices: dict[str, Decimal]) -> Decimal:
    """Today's P&L: value now - value at the open + today's cash flows - today's charges.

    The quantity carried in from earlier days is valued at the open at its average cost (there is no stored
    previous close), so a loss carried in counts against today's limit: conservative, never lenient.
    """
    total = Decimal(0)
    for row in book.holdings.values():
        carried = row.net_quantity - row.bought_today + row.sold_today
        total += row.net_quantity * _mark(row, prices) - carried * row.average_price
        total += row.cash_today - row.charges_today
    return total


def _with_session(facts: OrderFacts, request: PreTradeRequest, now: datetime) -> OrderFacts:
    """Kite accounts follow the exchange's session (RISK_MARKET_HOURS); paper ones when PAPER_MARKET_HOURS is on.

    An AMO (after-market order) is the other way round: Kite takes it only while the market does not.
    """
    enforced = settings.RISK_MARKET_HOURS if request.account_kind == "kite" else settings.PAPER_MARKET_HOURS
    if not enforced:
        return facts
    session = marketdata.trading_calendar().session_at(now, request.instrument)
    band = None
    if session.price_band is not None and facts.reference_price:
        band = session.price_band.limits(facts.reference_price, facts.tick_size)
    if request.variety == "amo":
        if not session.accepts_orders:
            return facts
        note = "an after-market order (AMO) is taken only while the market is shut"
        return replace(facts, market_open=False, market_note=note)
    if request.order_type in session.order_types:
        return replace(facts, band=band)
    state = f"{session.phase.name.lower().replace('_', ' ')}"
    note = f"the market does not take {request.order_type} orders now ({state}, {now.astimezone(IST):%H:%M} IST)"
    return replace(facts, market_open=False, market_note=note, band=band)


def _with_tradable(facts: OrderFacts, request: PreTradeRequest) -> OrderFacts:
    instrument = request.instrument
    note = ""
    if instrument.instrument_type not in SUPPORTED_TYPES or instrument.exchange not in SUPPORTED_EXCHANGES:
        note = f"{instrument} is a {instrument.exchange} {instrument.instrument_type}: only NSE/BSE equities trade here"
    elif request.account_kind == "kite" and instrument.instrument_token is None:
        note = f"{instrument} has no Kite instrument token: sync instruments from Kite first"
    else:
        with connection.cursor() as cursor:
            cursor.execute(_RESTRICTED_SQL, [instrument.pk])
            restricted = cursor.fetchone()
        if restricted is not None:
            note = f"{instrument} is on the restricted list: {restricted[0]}"
    return replace(facts, tradable=False, tradable_note=note) if note else facts


def pre_trade_rejection_record(*, order_id: int, account_id: int, failures: list[CheckFailure]) -> RiskBreach:
    """The refused order, where the risk officer reviews breaches; call inside the order's transaction."""
    return RiskBreach.objects.create(
        kind=BreachKind.PRE_TRADE,
        account_id=account_id,
        order_id=order_id,
        codes=[f.code for f in failures],
        message="; ".join(f.message for f in failures),
    )
