"""Zerodha's charges on NSE cash-equity orders, from a versioned schedule (pure: no Django).

The live order system, reconciliation and the backtester must charge the same money for the same
trade, and rates change by circular (NSE's transaction charge changed in 2021, 2023 and 2024), so
the rates are data (`data/zerodha_equity_charges.json`), one complete version per `effective_from`
date, and the trade date picks the version in force. docs/charges.md has the sources and how to
add a version.

Charges are computed per executed ORDER from all its fills together, because Zerodha's brokerage
(the lower of Rs 20 and 0.03% for MIS) is capped per executed order, not per fill;
`OrderCharges.allocate()` then spreads the order's total over its fills by value, to the paisa.

Rounding (the same as Kite's virtual contract note, which reports unrounded per-order figures):
every component is computed exactly in Decimal, GST on the exact base, then each component is
rounded to the paisa ROUND_HALF_UP; `total` is the sum of the rounded components, so it always
equals what the parts show. The exact figures stay available as `OrderCharges.exact`.

- brokerage: the lower of the product's cap and its rate times the order value (CNC: 0).
- stt: rate of the side (CNC 0.1% both sides; MIS 0.025% on the sell side only).
- exchange_txn: the exchange's transaction charge plus NSE's IPFT levy, shown together as Kite does.
- sebi: SEBI's turnover fee (Rs 10 per crore).
- stamp_duty: buy side only (CNC 0.015%, MIS 0.003%).
- gst: 18% of (brokerage + transaction charge + SEBI fee); not of the IPFT levy (Kite's figures).

Products: CNC (delivery) and MIS (intraday). NRML is a derivatives product with no meaning on NSE
cash; it is refused rather than guessed at. Money in, money out: Decimal only, never float.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_SCHEDULE_PATH",
    "PAISA",
    "PRODUCTS",
    "SIDES",
    "ChargeComponents",
    "ChargeSchedule",
    "ExchangeRates",
    "Fill",
    "OrderCharges",
    "ProductRates",
    "RoundTripCharges",
    "ScheduleVersion",
    "allocate_pro_rata",
    "charges_for_order",
    "charges_for_round_trip",
    "default_schedule",
]

DEFAULT_SCHEDULE_PATH = Path(__file__).resolve().parent / "data" / "zerodha_equity_charges.json"
PAISA = Decimal("0.01")
CNC, MIS = "CNC", "MIS"
BUY, SELL = "BUY", "SELL"
PRODUCTS = (CNC, MIS)
SIDES = (BUY, SELL)
_PRECISION = 40  # digits; far above any order value times any rate, so products stay exact


class Fill(NamedTuple):
    """One execution of an order: `quantity` shares at `price` rupees."""

    quantity: int
    price: Decimal

    @property
    def value(self) -> Decimal:
        return self.price * self.quantity


@dataclass(frozen=True)
class ProductRates:
    """Rates of one product, as fractions of the order value (0.001 is 0.1%)."""

    brokerage: Decimal
    brokerage_cap: Decimal  # rupees per executed order
    stt: Mapping[str, Decimal]  # side -> rate
    stamp_duty: Mapping[str, Decimal]  # side -> rate


@dataclass(frozen=True)
class ExchangeRates:
    """An exchange's transaction charge and investor-protection levy, as fractions of value."""

    transaction: Decimal
    ipft: Decimal


@dataclass(frozen=True)
class ChargeComponents:
    """The six charges of one order; `total` is their sum."""

    brokerage: Decimal
    stt: Decimal
    exchange_txn: Decimal
    sebi: Decimal
    stamp_duty: Decimal
    gst: Decimal

    @property
    def total(self) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            return sum((getattr(self, f.name) for f in fields(self)), Decimal(0))

    def rounded(self) -> ChargeComponents:
        """Each component to the paisa, half up (see the module docstring)."""
        return ChargeComponents(
            **{f.name: getattr(self, f.name).quantize(PAISA, rounding=ROUND_HALF_UP) for f in fields(self)}
        )


@dataclass(frozen=True)
class ScheduleVersion:
    """One complete set of rates, in force from `effective_from` until the next version."""

    effective_from: date
    source: tuple[str, ...]
    note: str
    gst: Decimal
    sebi_fee: Decimal
    products: Mapping[str, ProductRates]
    exchanges: Mapping[str, ExchangeRates]

    def exact_charges(self, *, product: str, side: str, exchange: str, value: Decimal) -> ChargeComponents:
        """Unrounded charges of one executed order of total traded `value` rupees."""
        rates = self.products[product]
        venue = self.exchange_rates(exchange)
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            brokerage = min(rates.brokerage_cap, value * rates.brokerage)
            transaction = value * venue.transaction
            sebi = value * self.sebi_fee
            return ChargeComponents(
                brokerage=brokerage,
                stt=value * rates.stt[side],
                exchange_txn=transaction + value * venue.ipft,
                sebi=sebi,
                stamp_duty=value * rates.stamp_duty[side],
                gst=self.gst * (brokerage + transaction + sebi),
            )

    def exchange_rates(self, exchange: str) -> ExchangeRates:
        if exchange not in self.exchanges:
            raise ValueError(
                f"exchange {exchange!r}: no rates in the charge schedule version effective "
                f"{self.effective_from} (it has {', '.join(sorted(self.exchanges))}; see docs/charges.md)"
            )
        return self.exchanges[exchange]


@dataclass(frozen=True)
class OrderCharges:
    """The charges of one executed order, rounded (fields) and `exact`, with the fills they cover."""

    product: str
    side: str
    exchange: str
    trade_date: date
    effective_from: date  # of the schedule version used
    fills: tuple[Fill, ...]
    value: Decimal
    brokerage: Decimal
    stt: Decimal
    exchange_txn: Decimal
    sebi: Decimal
    stamp_duty: Decimal
    gst: Decimal
    total: Decimal
    exact: ChargeComponents

    def allocate(self) -> tuple[Decimal, ...]:
        """`total` spread over the fills pro rata by value; the parts sum to `total` exactly."""
        return allocate_pro_rata(self.total, [fill.value for fill in self.fills])


@dataclass(frozen=True)
class RoundTripCharges:
    """A buy order and a sell order of the same shares."""

    buy: OrderCharges
    sell: OrderCharges

    @property
    def total(self) -> Decimal:
        return self.buy.total + self.sell.total


class ChargeSchedule:
    """All versions of the schedule, oldest first; `version_on(d)` picks the one in force on d."""

    def __init__(self, versions: Sequence[ScheduleVersion]) -> None:
        if not versions:
            raise ValueError("charge schedule: no versions")
        starts = [v.effective_from for v in versions]
        for earlier, later in pairwise(starts):
            if later <= earlier:
                raise ValueError(f"charge schedule: effective_from {later} is not after {earlier}")
        self.versions: tuple[ScheduleVersion, ...] = tuple(versions)
        self._starts = starts

    @classmethod
    def load(cls, path: Path | str | None = None) -> ChargeSchedule:
        """Read a schedule file (the shipped one by default); bad data raises ValueError naming where."""
        where = Path(path) if path is not None else DEFAULT_SCHEDULE_PATH
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, origin=str(where))

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "charge schedule") -> ChargeSchedule:
        raw_versions = data.get("versions") if isinstance(data, dict) else None
        if not isinstance(raw_versions, list):
            raise ValueError(f"{origin}: expected an object with a 'versions' list")
        return cls([_parse_version(raw, f"{origin}: versions[{i}]") for i, raw in enumerate(raw_versions)])

    def version_on(self, d: date) -> ScheduleVersion:
        """The version in force on trade date `d` (the latest one with effective_from <= d)."""
        _check_trade_date(d, "d")
        index = bisect_right(self._starts, d) - 1
        if index < 0:
            raise ValueError(f"trade date {d}: before the charge schedule's first version ({self._starts[0]})")
        return self.versions[index]


@cache
def default_schedule() -> ChargeSchedule:
    """The shipped schedule, read once per process."""
    return ChargeSchedule.load()


def charges_for_order(
    *,
    product: str,
    side: str,
    fills: Sequence[tuple[int, Decimal]],
    trade_date: date,
    exchange: str = "NSE",
    schedule: ChargeSchedule | None = None,
) -> OrderCharges:
    """Charges of one executed order from all its fills, by the schedule version of `trade_date`.

    `fills` are (quantity, price) pairs of the same order: brokerage is capped once per order.
    """
    _check_choice("product", product, PRODUCTS)
    _check_choice("side", side, SIDES)
    _check_trade_date(trade_date, "trade_date")
    checked = _check_fills(fills)
    version = (schedule or default_schedule()).version_on(trade_date)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        value = sum((fill.value for fill in checked), Decimal(0))
    exact = version.exact_charges(product=product, side=side, exchange=exchange, value=value)
    rounded = exact.rounded()
    return OrderCharges(
        product=product,
        side=side,
        exchange=exchange,
        trade_date=trade_date,
        effective_from=version.effective_from,
        fills=checked,
        value=value,
        brokerage=rounded.brokerage,
        stt=rounded.stt,
        exchange_txn=rounded.exchange_txn,
        sebi=rounded.sebi,
        stamp_duty=rounded.stamp_duty,
        gst=rounded.gst,
        total=rounded.total,
        exact=exact,
    )


def charges_for_round_trip(
    *,
    product: str,
    quantity: int,
    buy_price: Decimal,
    sell_price: Decimal,
    buy_date: date,
    sell_date: date | None = None,
    exchange: str = "NSE",
    schedule: ChargeSchedule | None = None,
) -> RoundTripCharges:
    """A buy and a sell of `quantity` shares, one fill each: what a backtest trade costs.

    MIS must buy and sell on one day (`sell_date` defaults to `buy_date`). A CNC position bought and
    sold on the same day is intraday for Zerodha and for STT, so it is charged as MIS (the returned
    orders say MIS). CNC cannot sell before it buys.
    """
    _check_choice("product", product, PRODUCTS)
    sell_date = buy_date if sell_date is None else sell_date
    _check_trade_date(buy_date, "buy_date")
    _check_trade_date(sell_date, "sell_date")
    if product == MIS and sell_date != buy_date:
        raise ValueError(f"sell_date {sell_date}: an MIS round trip buys and sells on one day ({buy_date})")
    if product == CNC and sell_date < buy_date:
        raise ValueError(f"sell_date {sell_date}: a CNC round trip cannot sell before it buys ({buy_date})")
    charged_as = MIS if sell_date == buy_date else product

    def leg(side: str, price: Decimal, trade_date: date) -> OrderCharges:
        return charges_for_order(
            product=charged_as,
            side=side,
            fills=[(quantity, price)],
            trade_date=trade_date,
            exchange=exchange,
            schedule=schedule,
        )

    return RoundTripCharges(buy=leg(BUY, buy_price, buy_date), sell=leg(SELL, sell_price, sell_date))


def allocate_pro_rata(amount: Decimal, weights: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """Split `amount` (whole paise, >= 0) by `weights`, largest remainder on paise.

    Each part is its exact share rounded down to the paisa; the paise left over go one each to the
    parts with the largest remainders (the earlier part on a tie), so the parts sum to `amount`.
    """
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        raise ValueError(f"amount: expected a non-negative Decimal, got {amount!r}")
    if amount != amount.quantize(PAISA):
        raise ValueError(f"amount: {amount} is not a whole number of paise")
    if not weights:
        raise ValueError("weights: nothing to allocate to")
    exact = [Fraction(_positive_decimal(w, f"weights[{i}]")) for i, w in enumerate(weights)]
    paise, whole = int(amount * 100), sum(exact)
    shares = [paise * w / whole for w in exact]
    parts = [share.numerator // share.denominator for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (parts[i] - shares[i], i))
    for i in by_remainder[: paise - sum(parts)]:
        parts[i] += 1
    return tuple((Decimal(part) / 100).quantize(PAISA) for part in parts)


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value in allowed:
        return
    hint = " (NRML is a derivatives product; NSE cash equity is CNC or MIS)" if value == "NRML" else ""
    raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}{hint}")


def _check_trade_date(value: object, name: str) -> None:
    # A datetime is a date too, but one in UTC can name the wrong exchange day: ask for the IST date.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError(f"{name}: expected a date (the exchange's, Asia/Kolkata), got {value!r}")


def _check_fills(fills: object) -> tuple[Fill, ...]:
    if isinstance(fills, str | bytes) or not isinstance(fills, Sequence) or not fills:
        raise ValueError(f"fills: expected a non-empty sequence of (quantity, price) pairs, got {fills!r}")
    checked = []
    for i, fill in enumerate(fills):
        if not isinstance(fill, tuple | list) or len(fill) != 2:
            raise ValueError(f"fills[{i}]: expected a (quantity, price) pair, got {fill!r}")
        quantity, price = fill
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise ValueError(f"fills[{i}].quantity: expected a positive int, got {quantity!r}")
        checked.append(Fill(quantity, _positive_decimal(price, f"fills[{i}].price")))
    return tuple(checked)


def _positive_decimal(value: object, name: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise ValueError(f"{name}: expected a Decimal (money is never float), got {type(value).__name__} {value!r}")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name}: expected a positive finite amount, got {value}")
    return value


def _parse_version(raw: Any, where: str) -> ScheduleVersion:
    source = _get(raw, "source", where)
    if not isinstance(source, list) or not source or not all(isinstance(s, str) and s for s in source):
        raise ValueError(f"{where}.source: expected a non-empty list of URLs or document names")
    products, exchanges = _get(raw, "products", where, dict), _get(raw, "exchanges", where, dict)
    if not exchanges:
        raise ValueError(f"{where}.exchanges: no exchanges")
    return ScheduleVersion(
        effective_from=_parse_date(_get(raw, "effective_from", where), f"{where}.effective_from"),
        source=tuple(source),
        note=str(raw.get("note", "")),
        gst=_percent(raw, "gst_percent", where),
        sebi_fee=_percent(raw, "sebi_fee_percent", where),
        products={name: _parse_product(products, name, f"{where}.products") for name in PRODUCTS},
        exchanges={name: _parse_exchange(exchanges, name, f"{where}.exchanges") for name in exchanges},
    )


def _parse_product(products: dict[str, Any], name: str, where: str) -> ProductRates:
    raw, here = _get(products, name, where, dict), f"{where}.{name}"
    stt, stamp = _get(raw, "stt_percent", here, dict), _get(raw, "stamp_duty_percent", here, dict)
    return ProductRates(
        brokerage=_percent(raw, "brokerage_percent", here),
        brokerage_cap=_decimal_string(raw, "brokerage_cap_rupees", here),
        stt={side: _percent(stt, side, f"{here}.stt_percent") for side in SIDES},
        stamp_duty={side: _percent(stamp, side, f"{here}.stamp_duty_percent") for side in SIDES},
    )


def _parse_exchange(exchanges: dict[str, Any], name: str, where: str) -> ExchangeRates:
    raw, here = _get(exchanges, name, where, dict), f"{where}.{name}"
    return ExchangeRates(
        transaction=_percent(raw, "transaction_percent", here), ipft=_percent(raw, "ipft_percent", here)
    )


def _get(raw: Any, key: str, where: str, kind: type | None = None) -> Any:
    if not isinstance(raw, dict) or key not in raw:
        raise ValueError(f"{where}: missing {key!r}")
    if kind is not None and not isinstance(raw[key], kind):
        raise ValueError(f"{where}.{key}: expected a JSON {'object' if kind is dict else kind.__name__}")
    return raw[key]


def _decimal_string(raw: dict[str, Any], key: str, where: str) -> Decimal:
    """A non-negative amount written as a string in the file, so no float ever touches a rate."""
    value = _get(raw, key, where)
    try:
        amount = Decimal(value) if isinstance(value, str) else Decimal("NaN")
    except ArithmeticError:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        raise ValueError(f'{where}.{key}: expected a non-negative decimal string such as "0.00297", got {value!r}')
    return amount


def _percent(raw: dict[str, Any], key: str, where: str) -> Decimal:
    return _decimal_string(raw, key, where).scaleb(-2)  # "0.1" (percent) -> Decimal("0.001"), exactly


def _parse_date(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: expected an ISO date such as "2024-10-01", got {value!r}') from None
