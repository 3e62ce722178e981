"""Every pre-trade check on its own: a passing and a failing order, as pure functions (no database)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from apps.risk import pretrade
from apps.risk.pretrade import CHECKS, Limits, OrderFacts, RateState, run_checks

D = Decimal
LIMITS = Limits(
    max_order_value=D("100000"),
    max_quantity=500,
    max_position_value=D("200000"),
    max_concentration_pct=D("40"),
    concentration_floor=D("100000"),
    max_gross_exposure=D("1000000"),
    max_open_orders=5,
    daily_loss_limit=D("10000"),
    orders_per_second=10,
    orders_per_day=100,
    price_band_pct=D("5"),
)


def facts(**kw: object) -> OrderFacts:
    base = OrderFacts(
        side="BUY",
        quantity=10,
        order_type="LIMIT",
        price=D("1500.05"),
        trigger_price=None,
        lot_size=1,
        tick_size=D("0.05"),
        reference_price=D("1500"),
        kill_switch_on=False,
        limits=LIMITS,
        gross_exposure=D("500000"),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_a_plain_order_passes_every_check() -> None:
    assert run_checks(facts()) == []


# (check, a passing variation, a failing variation, the code it fails with)
CASES = [
    (pretrade.kill_switch, {}, {"kill_switch_on": True}, "kill_switch"),
    (pretrade.market_open, {}, {"market_open": False, "market_note": "closed, 16:00 IST"}, "market_closed"),
    (pretrade.tradable, {}, {"tradable": False, "tradable_note": "restricted"}, "not_tradable"),
    (pretrade.lot_multiple, {"lot_size": 5}, {"lot_size": 3}, "lot_size"),
    (pretrade.on_tick, {"price": D("1500.10")}, {"price": D("1500.03")}, "tick_size"),
    (pretrade.price_band, {"price": D("1574.95")}, {"price": D("1575.10")}, "price_band"),
    (pretrade.price_band, {"price": D("1425")}, {"order_type": "SL", "trigger_price": D("1420")}, "price_band"),
    (pretrade.price_band, {"band": (D("1490"), D("1510"))}, {"band": (D("1490"), D("1500"))}, "price_band"),
    (pretrade.order_value, {"quantity": 66}, {"quantity": 67}, "max_order_value"),
    (pretrade.order_value, {"order_type": "MARKET", "price": None}, {"order_type": "MARKET", "price": None,
                                                                      "reference_price": None}, "no_price"),
    (pretrade.max_quantity, {"quantity": 500, "price": D("10")}, {"quantity": 501, "price": D("10")}, "max_quantity"),
    (pretrade.position_value, {"position_quantity": 123}, {"position_quantity": 124}, "max_position_value"),
    (pretrade.concentration, {"position_quantity": 100}, {"position_quantity": 140}, "concentration"),
    (pretrade.gross_exposure, {"gross_exposure": D("985000")}, {"gross_exposure": D("985001")}, "gross_exposure"),
    (pretrade.open_orders, {"open_orders": 4}, {"open_orders": 5}, "max_open_orders"),
    (pretrade.daily_loss, {"day_pnl": D("-9999.99")}, {"day_pnl": D("-10000")}, "daily_loss"),
    (pretrade.orders_per_second, {"rate": RateState(True, 10, 50)}, {"rate": RateState(False, 10, 50)},
     "orders_per_second"),
    (pretrade.orders_per_day, {"rate": RateState(True, 3, 100)}, {"rate": RateState(False, 3, 100)},
     "orders_per_day"),
]  # fmt: skip


@pytest.mark.parametrize(("check", "passing", "failing", "code"), CASES, ids=[f"{c[0].__name__}-{c[3]}" for c in CASES])
def test_each_check_passes_and_fails_at_its_edge(check, passing, failing, code) -> None:
    assert check(facts(**passing)) is None
    failure = check(facts(**failing))
    assert failure is not None and failure.code == code and failure.message


def test_every_failure_is_reported_not_just_the_first() -> None:
    bad = facts(kill_switch_on=True, price=D("1500.03"), quantity=501, open_orders=9)
    assert [f.code for f in run_checks(bad)] == [
        "kill_switch", "tick_size", "max_order_value", "max_quantity", "max_position_value", "concentration",
        "gross_exposure", "max_open_orders",
    ]  # fmt: skip


def test_book_limits_refuse_only_orders_that_add_risk() -> None:
    """Past the daily loss, concentration and position limits a desk can still get out."""
    over = {"position_quantity": 300, "day_pnl": D("-50000"), "gross_exposure": D("450000")}
    adding = run_checks(facts(**over))
    assert {"max_position_value", "concentration", "daily_loss"} <= {f.code for f in adding}
    reducing = run_checks(facts(side="SELL", **over))
    assert reducing == []
    flipping = run_checks(facts(side="SELL", quantity=700, price=D("100"), **over))  # +300 -> -400: adds risk
    assert "daily_loss" in {f.code for f in flipping}


def test_concentration_is_measured_against_the_floor_for_a_small_book() -> None:
    """A first order into an empty book is 100% of it; the floor lets it start when it is small."""
    first = facts(gross_exposure=D(0), quantity=20)  # 30,001 of max(30,001, 100,000): 30%
    assert pretrade.concentration(first) is None
    large = facts(gross_exposure=D(0), quantity=60)  # 90,003 of 100,000: 90%
    assert pretrade.concentration(large) is not None


def test_no_limit_set_means_no_refusal() -> None:
    unlimited = facts(limits=Limits(), quantity=10**6, open_orders=10**4, day_pnl=D("-1e9"))
    assert run_checks(unlimited, CHECKS) == []
