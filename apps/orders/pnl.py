"""Positions and P&L from fills, by the average-cost method. Pure: no Django.

A position is never stored as a running total that a lost or repeated update
could corrupt: it is the replay of its fills, in time order, so it can always
be recomputed from them (positions equal the sum of fills by construction).

Average cost: fills that add to a position move its average price; fills that
reduce it realise (fill price - average) x closed quantity (sign by
direction) and leave the average alone; a fill that crosses zero closes the
old position and opens the rest at the fill price. Realised P&L here is gross;
charges are kept beside it so "net" is always realised - charges (+
unrealised, at a last price, for what is still open).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

PRICE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class LedgerFill:
    side: str  # BUY | SELL
    quantity: int
    price: Decimal
    charges: Decimal
    day: date  # the exchange (IST) date of the fill


@dataclass
class PositionState:
    net_quantity: int = 0
    average_price: Decimal = Decimal(0)
    realised: Decimal = Decimal(0)  # gross of charges
    charges: Decimal = Decimal(0)
    buy_quantity: int = 0
    sell_quantity: int = 0
    realised_by_day: dict[date, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    charges_by_day: dict[date, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def apply(self, fill: LedgerFill) -> None:
        if fill.quantity <= 0:
            raise ValueError(f"a fill's quantity must be positive, got {fill.quantity}")
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        if fill.side == "BUY":
            self.buy_quantity += fill.quantity
        elif fill.side == "SELL":
            self.sell_quantity += fill.quantity
        else:
            raise ValueError(f"a fill's side must be BUY or SELL, got {fill.side!r}")
        self.charges += fill.charges
        self.charges_by_day[fill.day] += fill.charges
        held = self.net_quantity
        if held == 0 or (held > 0) == (signed > 0):  # opening or adding
            total = abs(held) + fill.quantity
            self.average_price = (self.average_price * abs(held) + fill.price * fill.quantity) / total
            self.net_quantity = held + signed
            return
        closed = min(abs(held), fill.quantity)
        direction = 1 if held > 0 else -1
        gain = (fill.price - self.average_price) * closed * direction
        self.realised += gain
        self.realised_by_day[fill.day] += gain
        self.net_quantity = held + signed
        if self.net_quantity == 0:
            self.average_price = Decimal(0)
        elif (self.net_quantity > 0) != (held > 0):  # crossed zero: the rest opens at the fill price
            self.average_price = fill.price

    def unrealised(self, last_price: Decimal | None) -> Decimal | None:
        if self.net_quantity == 0:
            return Decimal(0)
        if last_price is None:
            return None
        return (last_price - self.average_price) * self.net_quantity

    @property
    def rounded_average(self) -> Decimal:
        return self.average_price.quantize(PRICE_PLACES)


def replay(fills: Iterable[LedgerFill]) -> PositionState:
    """The position that these fills (in time order) leave."""
    state = PositionState()
    for fill in fills:
        state.apply(fill)
    return state
