"""Reads of the orders area, always through the accounts a user is granted.

P&L here is at the latest prices the feeds left in Redis, read once per call:
unrealised = (last price - average price) x net quantity; realised is gross
(Position.realised_pnl), charges beside it, net = realised + unrealised -
charges. A position without a last price has no unrealised figure (None), so
that no one mistakes "unknown" for "zero".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Prefetch, QuerySet
from redis.exceptions import RedisError

from apps.brokers import selectors as broker_accounts
from apps.brokers import services as brokers
from apps.brokers.base import BrokerError
from apps.marketdata import selectors as marketdata
from apps.orders.lifecycle import TERMINAL, Status
from apps.orders.models import Fill, KillSwitch, Order, OrderEvent, Position
from tradingsite.exceptions import NotFound

ZERO = Decimal(0)


def orders_for_user(
    *,
    user: Any,
    statuses: Sequence[str] | None = None,
    account_id: int | None = None,
    symbol: str | None = None,
    strategy: str | None = None,
    before_id: int | None = None,
) -> QuerySet[Order]:
    """Newest first by id (a stable keyset: `before_id` pages back)."""
    qs = Order.objects.filter(account__in=broker_accounts.accounts_for_user(user=user)).select_related(
        "account", "instrument"
    )
    if statuses:
        qs = qs.filter(status__in=[s.upper() for s in statuses])
    if account_id is not None:
        qs = qs.filter(account_id=account_id)
    if symbol:
        qs = qs.filter(instrument__tradingsymbol=symbol.upper())
    if strategy is not None:
        qs = qs.filter(strategy=strategy)
    if before_id is not None:
        qs = qs.filter(pk__lt=before_id)
    return qs.order_by("-pk")


def order_get_for_user(*, user: Any, order_id: int) -> Order:
    order = (
        orders_for_user(user=user)
        .prefetch_related(Prefetch("events", queryset=OrderEvent.objects.order_by("id")), "fills")
        .filter(pk=order_id)
        .first()
    )
    if order is None:
        raise NotFound(f"order {order_id} does not exist or is not on an account granted to you", code="unknown_order")
    return order


def order_by_client_order_id(*, client_order_id: str) -> Order | None:
    return Order.objects.filter(client_order_id=client_order_id).first()


@dataclass(frozen=True)
class PositionPnl:
    last_price: Decimal | None
    unrealised: Decimal | None
    net: Decimal | None


def position_pnl(position: Position, last_price: Decimal | None) -> PositionPnl:
    if position.net_quantity == 0:
        unrealised: Decimal | None = ZERO
    elif last_price is None:
        unrealised = None
    else:
        unrealised = (last_price - position.average_price) * position.net_quantity
    net = None if unrealised is None else position.realised_pnl + unrealised - position.charges
    return PositionPnl(last_price=last_price, unrealised=unrealised, net=net)


def instrument_key(position: Position) -> str:
    return f"{position.instrument.exchange}:{position.instrument.tradingsymbol}"


def last_prices(positions: Iterable[Position]) -> dict[str, Decimal]:
    """One Redis read for all of them."""
    keys = sorted({instrument_key(p) for p in positions})
    if not keys:
        return {}
    return {k.upper(): v.price for k, v in marketdata.latest_prices(keys=keys).items()}


def _positions(account_ids: Iterable[int]) -> list[Position]:
    return list(
        Position.objects.filter(account_id__in=list(account_ids))
        .select_related("account", "instrument")
        .order_by("account__name", "instrument__tradingsymbol", "product")
    )


def positions_for_user(*, user: Any, account_id: int | None = None, open_only: bool = False) -> list[dict[str, Any]]:
    accounts = broker_accounts.accounts_for_user(user=user)
    if account_id is not None:
        accounts = accounts.filter(pk=account_id)
    return positions_of_accounts(account_ids=accounts.values_list("pk", flat=True), open_only=open_only)


def positions_of_accounts(*, account_ids: Iterable[int], open_only: bool = False) -> list[dict[str, Any]]:
    """The rows of `positions_for_user`, for jobs that act for the desk rather than a user (risk, reports)."""
    positions = _positions(account_ids)
    if open_only:
        positions = [p for p in positions if p.net_quantity]
    prices = last_prices(positions)
    rows = []
    for p in positions:
        pnl = position_pnl(p, prices.get(instrument_key(p).upper()))
        rows.append(
            {
                "account": p.account_id,
                "account_name": p.account.name,
                "instrument": p.instrument_id,
                "exchange": p.instrument.exchange,
                "symbol": p.instrument.tradingsymbol,
                "product": p.product,
                "net_quantity": p.net_quantity,
                "average_price": p.average_price,
                "last_price": pnl.last_price,
                "unrealised_pnl": pnl.unrealised,
                "realised_pnl": p.realised_pnl,
                "charges": p.charges,
                "net_pnl": pnl.net,
            }
        )
    return rows


@dataclass
class Figures:
    cash: Decimal | None = None
    cash_error: str | None = None
    gross_exposure: Decimal = ZERO
    net_exposure: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    unrealised_pnl: Decimal = ZERO
    charges: Decimal = ZERO
    prices_missing: list[str] = field(default_factory=list)

    @property
    def net_pnl(self) -> Decimal:
        return self.realised_pnl + self.unrealised_pnl - self.charges

    def add_position(self, position: Position, last_price: Decimal | None) -> None:
        """Exposure at the last price (at the average price when there is none, and the symbol is listed)."""
        if position.net_quantity and last_price is None:
            self.prices_missing.append(instrument_key(position))
        value = position.net_quantity * (last_price if last_price is not None else position.average_price)
        self.gross_exposure += abs(value)
        self.net_exposure += value
        self.realised_pnl += position.realised_pnl
        self.unrealised_pnl += position_pnl(position, last_price).unrealised or ZERO
        self.charges += position.charges

    def add(self, other: Figures) -> None:
        if other.cash is not None:
            self.cash = (self.cash or ZERO) + other.cash
        for name in ("gross_exposure", "net_exposure", "realised_pnl", "unrealised_pnl", "charges"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.prices_missing.extend(k for k in other.prices_missing if k not in self.prices_missing)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "net_pnl": self.net_pnl}


def account_cash(account: Any) -> tuple[Decimal | None, str | None]:
    """Equity cash available, as the broker's margins report it; (None, why) when the broker cannot say."""
    try:
        margins = brokers.broker_for(account).margins()
        return Decimal(str(margins["equity"]["available"]["cash"])), None
    except (BrokerError, brokers.BrokerNotAvailable, brokers.KiteNotConfigured, RedisError, KeyError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def portfolio_for_user(*, user: Any) -> dict[str, Any]:
    """Per granted account and in total: cash, exposure and P&L; and P&L by day and by strategy."""
    from apps.orders.positions import pnl_breakdown

    accounts = list(broker_accounts.accounts_for_user(user=user).order_by("name"))
    positions = _positions(a.pk for a in accounts)
    prices = last_prices(positions)
    total = Figures()
    rows = []
    for account in accounts:
        figures = Figures()
        figures.cash, figures.cash_error = account_cash(account)
        for p in positions:
            if p.account_id == account.pk:
                figures.add_position(p, prices.get(instrument_key(p).upper()))
        total.add(figures)
        rows.append({"account": account.pk, "account_name": account.name, "kind": account.kind, **figures.as_dict()})
    unknown = [r["account_name"] for r in rows if r["cash"] is None]
    if unknown:
        total.cash_error = f"cash unknown for {', '.join(unknown)}; the total covers the other accounts"
    account_ids = [a.pk for a in accounts]
    return {
        "accounts": rows,
        "total": total.as_dict(),
        "by_day": [r.as_dict() for r in pnl_breakdown(account_ids=account_ids, by="day")],
        "by_strategy": [r.as_dict() for r in pnl_breakdown(account_ids=account_ids, by="strategy")],
    }


def kill_switch_states_for_user(*, user: Any) -> list[KillSwitch]:
    """The global switch and those of the accounts the user is granted (staff see every row)."""
    rows = KillSwitch.objects.select_related("account").order_by("scope")
    if getattr(user, "is_staff", False):
        return list(rows)
    granted = set(broker_accounts.accounts_for_user(user=user).values_list("pk", flat=True))
    return [r for r in rows if r.account_id is None or r.account_id in granted]


@dataclass(frozen=True)
class HoldingRow:
    """One instrument's net position of an account (every product together), for the pre-trade checks."""

    key: str  # "EXCHANGE:SYMBOL"
    net_quantity: int
    average_price: Decimal  # of the largest product's position: marks a quantity carried in from earlier days
    bought_today: int
    sold_today: int
    cash_today: Decimal  # sells minus buys at fill prices, today
    charges_today: Decimal


@dataclass(frozen=True)
class AccountBook:
    holdings: dict[int, HoldingRow]  # by instrument id
    open_orders: int


@cache
def _book_sql() -> tuple[str, str, str]:
    """Hand-written for the order path: the ORM's query compilation cost more than the queries themselves."""
    pos, ins = Position._meta.db_table, Position.instrument.field.related_model._meta.db_table
    fill, order = Fill._meta.db_table, Order._meta.db_table
    done = ", ".join(f"'{s}'" for s in sorted({*TERMINAL, Status.EXTERNAL}))  # constants, not input
    return (
        f"SELECT p.instrument_id, i.exchange, i.tradingsymbol, p.net_quantity, p.average_price "  # noqa: S608
        f"FROM {pos} p JOIN {ins} i ON i.id = p.instrument_id WHERE p.account_id = %s",
        f"SELECT o.instrument_id, o.side, SUM(f.quantity), SUM(f.quantity * f.price), SUM(f.charges_total) "  # noqa: S608
        f"FROM {fill} f JOIN {order} o ON o.id = f.order_id WHERE o.account_id = %s AND f.filled_at >= %s "
        "GROUP BY o.instrument_id, o.side",
        f"SELECT COUNT(*) FROM {order} WHERE account_id = %s AND status NOT IN ({done})",  # noqa: S608
    )


def _money(value: Any) -> Decimal:
    """SQLite sums decimals as floats: back to 4 places, as stored."""
    return Decimal(str(value or 0)).quantize(Decimal("0.0001"))


def account_book(*, account_id: int, since: datetime) -> AccountBook:
    """Three queries: positions, today's fills by instrument and side, and the number of unfinished orders."""
    positions_sql, fills_sql, open_sql = _book_sql()
    rows: dict[int, dict[str, Any]] = {}
    with connection.cursor() as cursor:
        cursor.execute(positions_sql, [account_id])
        for iid, exchange, symbol, quantity, average in cursor.fetchall():
            row = rows.setdefault(iid, {"key": f"{exchange}:{symbol}".upper(), "q": 0, "avg": ZERO, "big": -1})
            row["q"] += quantity
            if abs(quantity) > row["big"]:
                row["avg"], row["big"] = _money(average), abs(quantity)
        cursor.execute(fills_sql, [account_id, connection.ops.adapt_datetimefield_value(since)])
        today = {(iid, side): (int(q), _money(v), _money(c)) for iid, side, q, v, c in cursor.fetchall()}
        cursor.execute(open_sql, [account_id])
        open_count = int(cursor.fetchone()[0])
    holdings = {}
    for iid, row in rows.items():
        buy, sell = today.get((iid, "BUY"), (0, ZERO, ZERO)), today.get((iid, "SELL"), (0, ZERO, ZERO))
        holdings[iid] = HoldingRow(
            key=row["key"],
            net_quantity=row["q"],
            average_price=row["avg"],
            bought_today=buy[0],
            sold_today=sell[0],
            cash_today=sell[1] - buy[1],
            charges_today=buy[2] + sell[2],
        )
    return AccountBook(holdings=holdings, open_orders=open_count)


def strategy_holdings(*, account_id: int, strategy: str, instrument_ids: Sequence[int]) -> dict[int, int]:
    """Net shares a strategy holds or is about to hold per instrument, from its own orders on one account.

    A live order counts in full (it is expected to fill); a finished one by what filled. So a strategy
    that placed a buy a moment ago does not buy again on the next bar, and a strategy never closes shares
    another strategy (or a person) bought on the same account. Instruments with no orders are absent.
    """
    rows = (
        Order.objects.filter(account_id=account_id, strategy=strategy, instrument_id__in=list(instrument_ids))
        .exclude(status=Status.EXTERNAL)
        .values_list("instrument_id", "side", "status", "quantity", "filled_quantity")
    )
    out: dict[int, int] = {}
    for instrument_id, side, status, quantity, filled in rows:
        shares = filled if status in TERMINAL else quantity
        out[instrument_id] = out.get(instrument_id, 0) + (shares if side == "BUY" else -shares)
    return out
