"""Judging a chaos run: the broker's book is the truth, the OMS must agree with it order by order.

Pure: the engine gathers the OMS's orders and the fake Kite's book, this compares them. The mapping from a
Kite status to the OMS status is written out here again on purpose (not imported from apps.orders.sync): the
oracle must not share a mistake with the code it judges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

UNSETTLED = frozenset({"NEW", "QUEUED", "SUBMITTING", "UNKNOWN"})
NEVER_SENT = frozenset({"REJECTED", "CANCELLED", "RISK_REJECTED"})  # what an order missing at the broker may be
KITE_FINAL = {"COMPLETE": "COMPLETE", "CANCELLED": "CANCELLED", "REJECTED": "REJECTED"}


@dataclass(frozen=True)
class OmsOrder:
    client_order_id: str
    tag: str
    status: str
    broker_order_id: str | None
    quantity: int
    filled_quantity: int
    fills_quantity: int  # the sum of its stored Fill rows


@dataclass(frozen=True)
class BookOrder:
    order_id: str
    tag: str
    status: str  # Kite's
    quantity: int
    filled_quantity: int


@dataclass
class Verdict:
    orders: int = 0  # committed OMS orders (EXTERNAL records excluded)
    duplicates: int = 0  # extra broker orders for a tag that already had one
    lost: int = 0  # committed orders neither matched at the broker nor explained as never sent
    matched: int = 0  # at the broker, with the same id, status and filled quantity, fills stored
    never_sent: int = 0  # not at the broker, and REJECTED / CANCELLED in the OMS
    unsettled: int = 0  # (part of lost) still QUEUED / SUBMITTING / UNKNOWN
    orphans: int = 0  # broker orders whose tag no OMS order has
    positions_off: int = 0  # (instrument, product) whose OMS net quantity differs from the broker's trades
    statuses: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.duplicates == 0 and self.lost == 0 and self.orphans == 0 and self.positions_off == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def expected_status(book: BookOrder) -> str:
    """The OMS status an order in this Kite state must have."""
    if book.status in KITE_FINAL:
        return KITE_FINAL[book.status]
    return "PARTIALLY_FILLED" if book.filled_quantity > 0 else "OPEN"


def _judge_one(order: OmsOrder, at_broker: BookOrder | None) -> str | None:
    """None when the order is matched or explained, else what is wrong with it."""
    if at_broker is None:
        if order.status in NEVER_SENT:
            return None
        return f"{order.client_order_id}: {order.status} in the OMS but not at the broker"
    want = expected_status(at_broker)
    facts = (order.broker_order_id, order.status, order.filled_quantity, order.fills_quantity)
    if facts != (at_broker.order_id, want, at_broker.filled_quantity, at_broker.filled_quantity):
        return (
            f"{order.client_order_id}: OMS (id, status, filled, fills) {facts}, broker {at_broker.order_id} "
            f"{at_broker.status} filled {at_broker.filled_quantity} (expects {want})"
        )
    return None


def judge(
    oms: Iterable[OmsOrder],
    book: Iterable[BookOrder],
    *,
    oms_positions: dict[tuple[str, str], int] | None = None,
    broker_positions: dict[tuple[str, str], int] | None = None,
) -> Verdict:
    """Compare the OMS with the broker's book (and net positions per symbol and product, when given)."""
    orders, book_orders = list(oms), list(book)
    verdict = Verdict(orders=len(orders), statuses=dict(sorted(Counter(o.status for o in orders).items())))
    per_tag = Counter(b.tag for b in book_orders)
    verdict.duplicates = sum(n - 1 for n in per_tag.values())
    verdict.problems += [f"tag {tag} placed {n} times" for tag, n in per_tag.items() if n > 1]
    first_by_tag: dict[str, BookOrder] = {}
    for b in book_orders:
        first_by_tag.setdefault(b.tag, b)
    ours = {o.tag for o in orders}
    verdict.orphans = sum(1 for tag in per_tag if tag not in ours)
    verdict.problems += [
        f"broker order {b.order_id} (tag {b.tag}) is no OMS order" for b in book_orders if b.tag not in ours
    ]
    for order in orders:
        at_broker = first_by_tag.get(order.tag)
        problem = _judge_one(order, at_broker)
        if problem is None:
            verdict.matched += at_broker is not None
            verdict.never_sent += at_broker is None
            continue
        verdict.lost += 1
        verdict.unsettled += order.status in UNSETTLED
        verdict.problems.append(problem)
    if oms_positions is not None and broker_positions is not None:
        for key in sorted(set(oms_positions) | set(broker_positions)):
            ours_net, theirs = oms_positions.get(key, 0), broker_positions.get(key, 0)
            if ours_net != theirs:
                verdict.positions_off += 1
                verdict.problems.append(f"position {key}: OMS {ours_net}, broker trades {theirs}")
    return verdict
