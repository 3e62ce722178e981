"""Average-cost positions and P&L from fills (pure)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.orders.pnl import LedgerFill, replay

D1, D2 = date(2024, 6, 3), date(2024, 6, 4)


def fill(side: str, qty: int, price: str, charges: str = "0", day: date = D1) -> LedgerFill:
    return LedgerFill(side=side, quantity=qty, price=Decimal(price), charges=Decimal(charges), day=day)


def test_adding_moves_the_average_and_reducing_realises_against_it() -> None:
    state = replay([fill("BUY", 10, "100"), fill("BUY", 10, "110"), fill("SELL", 15, "120", day=D2)])
    assert state.net_quantity == 5
    assert state.average_price == Decimal("105")
    assert state.realised == Decimal("225")  # (120 - 105) x 15
    assert dict(state.realised_by_day) == {D2: Decimal("225")}


def test_crossing_zero_closes_the_long_and_opens_the_short_at_the_fill_price() -> None:
    state = replay([fill("BUY", 5, "105"), fill("SELL", 10, "100")])
    assert state.net_quantity == -5
    assert state.realised == Decimal("-25")
    assert state.average_price == Decimal("100")
    assert state.unrealised(Decimal("90")) == Decimal("50")  # short 5 from 100, now 90


def test_a_short_covered_higher_loses_and_flat_has_no_average() -> None:
    state = replay([fill("SELL", 4, "200", "1.50"), fill("BUY", 4, "210", "2.25")])
    assert state.net_quantity == 0 and state.average_price == 0
    assert state.realised == Decimal("-40")
    assert state.charges == Decimal("3.75")
    assert state.unrealised(None) == 0  # flat: nothing open, no price needed


def test_open_position_without_a_price_has_unknown_unrealised() -> None:
    assert replay([fill("BUY", 1, "10")]).unrealised(None) is None


def test_bad_fills_are_refused() -> None:
    with pytest.raises(ValueError, match="quantity"):
        replay([fill("BUY", 0, "10")])
    with pytest.raises(ValueError, match="side"):
        replay([fill("HOLD", 1, "10")])
