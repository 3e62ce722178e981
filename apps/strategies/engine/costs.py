"""Zerodha's charges as exact integer rate tables for the compiled backtest kernel.

The backtester must charge a simulated fill what `apps.orders.charges.charges_for_order` charges the
same order live, to the paisa. That function works in Decimal; the kernel cannot. Every rate in the
schedule is a short decimal fraction of the order value, so each becomes an integer numerator over
one power of ten `D` shared by the whole table, and the kernel computes every component exactly in
int64 on the order value in whole paise, then rounds it half up to the paisa:

    component (paise) = round_half_up(value_paise * numerator / D)
    gst (paise)       = round_half_up(gst_num * (brokerage + transaction + sebi) / (gst_den * D))

with the brokerage (the lower of the product's cap and its rate) and the GST base kept unrounded,
exactly as `ScheduleVersion.exact_charges` does. `tests/strategies/test_costs.py` checks the two agree.

Layout: `rates[version, product, side, component]` with products (CNC, MIS), sides (BUY, SELL) and
components (brokerage, stt, transaction, ipft, sebi, stamp_duty); `caps[version, product]` in paise
times D; `gst[version] = (numerator, denominator)`; `starts[version]` in days since 1970-01-01 (the
exchange's dates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from apps.orders.charges import PRODUCTS, SIDES, ChargeSchedule, ScheduleVersion, default_schedule
from apps.strategies.engine.kernel import charge_components

__all__ = ["CHARGE_NAMES", "COMPONENTS", "RateTable", "order_charges_paise", "product_index", "rate_table"]

COMPONENTS = ("brokerage", "stt", "transaction", "ipft", "sebi", "stamp_duty")
# What the kernel charges, named as `apps.orders.charges.OrderCharges` names them.
CHARGE_NAMES = ("brokerage", "stt", "exchange_txn", "sebi", "stamp_duty", "gst")
EPOCH = date(1970, 1, 1)
# value_paise * numerator must stay inside int64 for any order up to this many paise (Rs 100 billion).
MAX_ORDER_PAISE = 10**13
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class RateTable:
    denominator: int  # D: a power of ten
    starts: NDArray[np.int64]  # (V,) days since the epoch of each version's effective_from
    rates: NDArray[np.int64]  # (V, 2, 2, 6) numerators over D
    caps: NDArray[np.int64]  # (V, 2) brokerage cap per order in paise * D
    gst: NDArray[np.int64]  # (V, 2) numerator, denominator of the GST rate

    def version_index(self, days: NDArray[np.int64]) -> NDArray[np.int64]:
        """Index of the version in force on each date (days since the epoch); ValueError before the first."""
        index = np.searchsorted(self.starts, days, side="right").astype(np.int64) - 1
        if len(index) and int(index.min()) < 0:
            first = EPOCH.toordinal() + int(self.starts[0])
            bad = EPOCH.toordinal() + int(days[int(np.argmin(index))])
            raise ValueError(
                f"costs: bar date {date.fromordinal(bad)} is before the charge schedule's first version "
                f"({date.fromordinal(first)}); run with costs off or extend the schedule"
            )
        return index


def product_index(product: str) -> int:
    if product not in PRODUCTS:
        raise ValueError(f"product: expected one of {', '.join(PRODUCTS)}, got {product!r}")
    return PRODUCTS.index(product)


def order_charges_paise(
    value_paise: int, *, trade_date: date, product: str, side: str, schedule: ChargeSchedule | None = None
) -> dict[str, int]:
    """The kernel's charges of one order, by component and "total", in paise (for tests and reports)."""
    if side not in SIDES:
        raise ValueError(f"side: expected one of {', '.join(SIDES)}, got {side!r}")
    table = rate_table(schedule)
    version = int(table.version_index(np.array([(trade_date - EPOCH).days], dtype=np.int64))[0])
    parts = charge_components(table.rates, table.caps, table.gst, table.denominator, version,
                              product_index(product), SIDES.index(side), int(value_paise))  # fmt: skip
    out = {name: int(x) for name, x in zip(CHARGE_NAMES, parts, strict=True)}
    out["total"] = sum(out.values())
    return out


_TABLES: dict[int, tuple[ChargeSchedule, RateTable]] = {}


def rate_table(schedule: ChargeSchedule | None = None, exchange: str = "NSE") -> RateTable:
    """The integer table of a schedule (the shipped one by default), built once per schedule object."""
    schedule = schedule or default_schedule()
    hit = _TABLES.get(id(schedule))
    if hit is not None and hit[0] is schedule:
        return hit[1]
    table = _build(schedule, exchange)
    _TABLES[id(schedule)] = (schedule, table)
    return table


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


def _version_rates(version: ScheduleVersion, exchange: str) -> dict[tuple[int, int], list[Decimal]]:
    venue = version.exchange_rates(exchange)
    out: dict[tuple[int, int], list[Decimal]] = {}
    for p, product in enumerate(PRODUCTS):
        rates = version.products[product]
        for s, side in enumerate(SIDES):
            out[p, s] = [
                rates.brokerage,
                rates.stt[side],
                venue.transaction,
                venue.ipft,
                version.sebi_fee,
                rates.stamp_duty[side],
            ]
    return out


def _build(schedule: ChargeSchedule, exchange: str) -> RateTable:
    per_version = [_version_rates(v, exchange) for v in schedule.versions]
    places = max(_decimals(r) for rates in per_version for row in rates.values() for r in row)
    denominator = 10**places
    n = len(schedule.versions)
    rates = np.zeros((n, len(PRODUCTS), len(SIDES), len(COMPONENTS)), dtype=np.int64)
    caps = np.zeros((n, len(PRODUCTS)), dtype=np.int64)
    gst = np.zeros((n, 2), dtype=np.int64)
    for v, version in enumerate(schedule.versions):
        for (p, s), row in per_version[v].items():
            rates[v, p, s] = [int(r * denominator) for r in row]
        for p, product in enumerate(PRODUCTS):
            caps[v, p] = int(version.products[product].brokerage_cap * 100 * denominator)
        gst_places = _decimals(version.gst)
        gst[v] = (int(version.gst * 10**gst_places), 10**gst_places)
    widest = int(rates.sum(axis=3).max()) * int(gst[:, 0].max() + 1)
    if widest and _INT64_MAX // widest < MAX_ORDER_PAISE:
        raise ValueError(f"costs: rates with {places} decimal places overflow int64 exact arithmetic")
    starts = np.array([(v.effective_from - EPOCH).days for v in schedule.versions], dtype=np.int64)
    return RateTable(denominator=denominator, starts=starts, rates=rates, caps=caps, gst=gst)
