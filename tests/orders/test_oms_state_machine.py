"""A Hypothesis state machine over the OMS: placing, executing (twice), sweeping, postbacks and reconciliation
in any order, against a broker that accepts, rejects, times out before or after accepting, or whose caller
dies mid-call, and a market that fills and cancels.

The broker is an in-memory fake of the Broker protocol (the one thing faked: it stands for Kite's HTTP API),
put in place of `apps.brokers.services.broker_for`. Everything else is the real code on the real database.
After every step the invariants must hold:

- the broker never saw a second placement of a tag (an ambiguous or interrupted placement is never re-sent);
- each position's net quantity is the signed sum of its fills, and what a fresh `pnl.replay` of them gives;
- nothing leaves a terminal status (checked on the order and on its whole event history);
- fills never exceed the order's quantity, and its filled quantity never goes down.

And after `settle` (time passes, the sweep runs, time passes, reconciliation runs) every order the broker
holds agrees with it, and no order is left SUBMITTING or UNKNOWN.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.db.models import F
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.brokers import services as broker_services
from apps.brokers.base import (
    BrokerAmbiguous,
    BrokerOrder,
    BrokerRejected,
    BrokerTrade,
    OrderRequest,
    broker_order_from_kite,
)
from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Instrument
from apps.orders import placement
from apps.orders.lifecycle import TERMINAL
from apps.orders.models import Fill, Order, OrderEvent, Position
from apps.orders.placement import OrderInput, order_execute, order_place, orders_sweep
from apps.orders.pnl import LedgerFill, replay
from apps.orders.reconciliation import reconcile_account
from apps.orders.sync import postback_apply
from apps.risk.limits import limit_create
from apps.risk.models import RiskBreach, RiskLimit
from apps.risk.pretrade import DEFAULT_LIMITS
from tests.orders.desk import set_price

IST = ZoneInfo("Asia/Kolkata")
OUTCOMES = (
    "accept",
    "reject",
    "timeout_before_accept",
    "timeout_after_accept",
    "die_before_accept",
    "die_after_accept",
)
OPEN_AT_BROKER = frozenset({"OPEN"})
KITE_FINAL = {"COMPLETE": "COMPLETE", "CANCELLED": "CANCELLED", "REJECTED": "REJECTED"}


class WorkerKilled(Exception):
    """The worker process died inside the broker call: nothing after the call runs."""


class MemoryBroker:
    """Kite's book in memory: every state an order passes through is kept, so postbacks can be replayed late."""

    def __init__(self) -> None:
        self.book: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.fills: list[BrokerTrade] = []
        self.calls: Counter[str] = Counter()  # placement attempts per tag, arrived or not
        self.outcomes: deque[str] = deque()
        self._ids = itertools.count(1)

    # --- the Broker protocol ------------------------------------------------------------------------
    def place(self, request: OrderRequest) -> str:
        self.calls[request.tag] += 1
        outcome = self.outcomes.popleft() if self.outcomes else "accept"
        if outcome == "reject":
            raise BrokerRejected("fake: Insufficient funds")
        if outcome == "timeout_before_accept":
            raise BrokerAmbiguous("fake: no answer; the request never arrived")
        if outcome == "die_before_accept":
            raise WorkerKilled
        order_id = self._accept(request)
        if outcome == "timeout_after_accept":
            raise BrokerAmbiguous("fake: no answer; the order is in the book")
        if outcome == "die_after_accept":
            raise WorkerKilled
        return order_id

    def modify(self, order_id: str, **_: Any) -> str:
        return order_id

    def cancel(self, order_id: str, *, variety: str = "regular") -> str:
        self._step(order_id, status="CANCELLED", pending_quantity=0)
        return order_id

    def orders(self) -> list[BrokerOrder]:
        return [broker_order_from_kite(o) for o in self.book.values()]

    def order_history(self, order_id: str) -> list[BrokerOrder]:
        return [broker_order_from_kite(o) for o in self.history[order_id]]

    def trades(self) -> list[BrokerTrade]:
        return list(self.fills)

    def order_trades(self, order_id: str) -> list[BrokerTrade]:
        return [t for t in self.fills if t.order_id == order_id]

    def positions(self) -> dict[str, Any]:
        net: Counter[tuple[str, str, str]] = Counter()
        bought: Counter[tuple[str, str, str]] = Counter()
        for t in self.fills:
            key = (t.exchange, t.tradingsymbol, t.product)
            net[key] += t.quantity if t.transaction_type == "BUY" else -t.quantity
            bought[key] += t.quantity if t.transaction_type == "BUY" else 0
        rows = [
            {"exchange": e, "tradingsymbol": s, "product": p, "day_buy_quantity": bought[(e, s, p)]}
            | {"day_sell_quantity": bought[(e, s, p)] - net[(e, s, p)]}
            for e, s, p in net
        ]
        return {"net": rows, "day": rows}

    def margins(self) -> dict[str, Any]:
        return {}

    def ltp(self, keys: list[str]) -> dict[str, Decimal]:
        return {}

    # --- the market -------------------------------------------------------------------------------------
    def open_ids(self) -> list[str]:
        return sorted(i for i, o in self.book.items() if o["status"] in OPEN_AT_BROKER)

    def fill(self, order_id: str, quantity: int) -> None:
        order = self.book[order_id]
        quantity = min(quantity, order["pending_quantity"])
        filled = order["filled_quantity"] + quantity
        trade_no = len(self.fills) + 1
        self.fills.append(
            BrokerTrade(
                trade_id=f"T{trade_no:07d}",
                order_id=order_id,
                exchange="NSE",
                tradingsymbol="INFY",
                transaction_type=order["transaction_type"],
                product=order["product"],
                quantity=quantity,
                average_price=Decimal("1500"),
                fill_timestamp=datetime.now(IST) + timedelta(microseconds=trade_no),
            )
        )
        pending = order["quantity"] - filled
        status = "COMPLETE" if pending == 0 else "OPEN"
        self._step(order_id, status=status, filled_quantity=filled, pending_quantity=pending, average_price=1500.0)

    def _accept(self, request: OrderRequest) -> str:
        order_id = f"26{next(self._ids):013d}"
        self.book[order_id] = {
            "order_id": order_id,
            "tag": request.tag,
            "status": "OPEN",
            "exchange": request.exchange,
            "tradingsymbol": request.tradingsymbol,
            "transaction_type": request.transaction_type,
            "quantity": request.quantity,
            "filled_quantity": 0,
            "pending_quantity": request.quantity,
            "average_price": 0,
            "product": request.product,
            "order_type": request.order_type,
            "price": float(request.price or 0),
            "variety": request.variety,
        }
        self.history[order_id] = [dict(self.book[order_id])]
        return order_id

    def _step(self, order_id: str, **changes: Any) -> None:
        self.book[order_id].update(changes)
        self.history[order_id].append(dict(self.book[order_id]))


def expected_status(snapshot: dict[str, Any]) -> str:
    if snapshot["status"] in KITE_FINAL:
        return KITE_FINAL[snapshot["status"]]
    return "PARTIALLY_FILLED" if snapshot["filled_quantity"] else "OPEN"


class OmsMachine(RuleBasedStateMachine):
    # The example running now: the patched broker_for hands out its broker, the patched enqueue records to it.
    live: dict[str, OmsMachine] = {}

    def __init__(self) -> None:
        super().__init__()
        self.broker = MemoryBroker()
        OmsMachine.live["machine"] = self
        _empty_tables()  # whatever an interrupted example left behind
        self.account = BrokerAccount.objects.create(name="sm-kite", kind="kite", api_key="k", access_token="t")
        self.infy = Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065, lot_size=1)
        set_price("INFY", "1500")  # the pre-trade band is centred on it: never another test's leftover
        self.enqueued: list[int] = []  # every execute message sent (after commit, and by the sweep)
        self.terminal: dict[int, str] = {}
        self.filled: dict[int, int] = {}
        self._cids = itertools.count(1)

    def teardown(self) -> None:
        """A fresh database per example: this test commits for real (the after-commit enqueue must fire)."""
        _empty_tables()

    # --- the OMS ----------------------------------------------------------------------------------------
    @rule(side=st.sampled_from(["BUY", "SELL"]), quantity=st.integers(1, 12), mis=st.booleans())
    def place(self, side: str, quantity: int, mis: bool) -> None:
        self._place(side=side, quantity=quantity, mis=mis)

    def _place(self, *, side: str, quantity: int, mis: bool) -> int:
        order = order_place(
            order=OrderInput(
                account=self.account,
                instrument=self.infy,
                client_order_id=f"sm-{next(self._cids)}",
                side=side,
                quantity=quantity,
                product="MIS" if mis else "CNC",
                order_type="LIMIT",
                price=Decimal("1500"),
            )
        )
        assert order.status == "QUEUED" and order.pk in self.enqueued
        return order.pk

    @initialize(count=st.integers(1, 3), filled=st.integers(1, 4))
    def a_few_orders_at_the_broker(self, count: int, filled: int) -> None:
        """Start with orders live at the broker, the first one partly filled and known to be: every example then
        has something to fill, cancel and replay stale reports of (the rules alone reach that state rarely)."""
        placed = [self._place(side="BUY", quantity=5 * (n + 1), mis=n % 2 == 0) for n in range(count)]
        for order_id in placed:
            order_execute(order_id=order_id)
        first = Order.objects.get(pk=placed[0])
        assert first.broker_order_id is not None
        self.broker.fill(first.broker_order_id, filled)
        postback_apply(payload=dict(self.broker.book[first.broker_order_id]))

    @precondition(lambda self: self.enqueued)
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def execute(self, data: st.DataObject, outcome: str) -> None:
        """Any message ever sent, again and again (redelivery, duplicates); `outcome` if it reaches the broker."""
        order_id = data.draw(st.sampled_from(self.enqueued))
        self.broker.outcomes.append(outcome)
        try:
            order_execute(order_id=order_id)
        except WorkerKilled:
            assert Order.objects.get(pk=order_id).status == "SUBMITTING"
        finally:
            self.broker.outcomes.clear()  # not sent (it was past QUEUED): the outcome is not kept for another

    @rule()
    def sweep(self) -> None:
        """Always after time passed: which QUEUED orders it sends again must not depend on the wall clock, or
        Hypothesis could not replay an example (the messages it adds are what `execute` draws from)."""
        _an_hour_passes()
        orders_sweep()

    @rule(hour_passed=st.booleans())
    def reconcile(self, hour_passed: bool) -> None:
        if hour_passed:
            _an_hour_passes()
        reconcile_account(account_id=self.account.pk)

    @rule()
    def settle(self) -> None:
        """Time for every grace: SUBMITTING of dead workers become UNKNOWN, UNKNOWN resolve or are REJECTED."""
        _an_hour_passes()
        orders_sweep()
        _an_hour_passes()
        reconcile_account(account_id=self.account.pk)
        by_tag = {o["tag"]: o for o in self.broker.book.values()}
        for order in Order.objects.all():
            assert order.status not in {"SUBMITTING", "UNKNOWN"}, order
            at_broker = by_tag.get(order.tag)
            if at_broker is None:
                continue
            fills = sum(f.quantity for f in order.fills.all())
            assert order.broker_order_id == at_broker["order_id"]
            assert order.status == expected_status(at_broker), (order, at_broker)
            assert order.filled_quantity == fills == at_broker["filled_quantity"], (order, at_broker)

    # --- the broker's side ----------------------------------------------------------------------------------
    @precondition(lambda self: self.broker.open_ids())
    @rule(data=st.data(), quantity=st.integers(1, 12))
    def market_fills(self, data: st.DataObject, quantity: int) -> None:
        self.broker.fill(data.draw(st.sampled_from(self.broker.open_ids())), quantity)

    @precondition(lambda self: self.broker.open_ids())
    @rule(data=st.data())
    def broker_cancels(self, data: st.DataObject) -> None:
        self.broker.cancel(data.draw(st.sampled_from(self.broker.open_ids())))

    @precondition(lambda self: self.broker.history)
    @rule(data=st.data(), times=st.integers(1, 2))
    def postback(self, data: st.DataObject, times: int) -> None:
        """Any state the order ever had at the broker, possibly older than one applied already, maybe twice."""
        order_id = data.draw(st.sampled_from(sorted(self.broker.history)))
        snapshot = data.draw(st.sampled_from(self.broker.history[order_id]))
        for _ in range(times):
            postback_apply(payload=dict(snapshot))

    # --- invariants -------------------------------------------------------------------------------------
    @invariant()
    def no_tag_is_placed_twice(self) -> None:
        assert all(n == 1 for n in self.broker.calls.values()), self.broker.calls

    @invariant()
    def positions_are_the_sum_and_the_replay_of_their_fills(self) -> None:
        groups: dict[tuple[int, str], list[Fill]] = {}
        for fill in Fill.objects.select_related("order").order_by("filled_at", "id"):
            groups.setdefault((fill.order.instrument_id, fill.order.product), []).append(fill)
        positions = {(p.instrument_id, p.product): p.net_quantity for p in Position.objects.all()}
        for key, fills in groups.items():
            signed = sum(f.quantity if f.order.side == "BUY" else -f.quantity for f in fills)
            ledger = [LedgerFill(f.order.side, f.quantity, f.price, f.charges_total, f.filled_at.date()) for f in fills]
            assert positions.get(key) == signed == replay(ledger).net_quantity, (key, positions, signed)

    @invariant()
    def nothing_leaves_a_terminal_status(self) -> None:
        for order in Order.objects.prefetch_related("events"):
            if order.pk in self.terminal:
                assert order.status == self.terminal[order.pk], (order, self.terminal[order.pk])
            elif order.status in TERMINAL:
                self.terminal[order.pk] = order.status
            moves = [(e.from_status, e.to_status) for e in order.events.all()]
            for (_, before), (frm, _) in itertools.pairwise(moves):
                assert frm == before and before not in TERMINAL, (order, moves)

    @invariant()
    def fills_never_exceed_the_order_and_never_shrink(self) -> None:
        for order in Order.objects.prefetch_related("fills"):
            assert sum(f.quantity for f in order.fills.all()) <= order.quantity, order
            assert order.filled_quantity <= order.quantity, order
            # A stale report (an older postback replayed) must never take filled quantity back.
            assert order.filled_quantity >= self.filled.get(order.pk, 0), (order, self.filled[order.pk])
            self.filled[order.pk] = order.filled_quantity


def _empty_tables() -> None:
    for model in (RiskBreach, OrderEvent, Fill, Position, Order, RiskLimit, BrokerAccount, Instrument):
        model.objects.all().delete()
    # Hypothesis places orders far faster than SEBI's 10 a second: the limits are tested in tests/risk, not here.
    fast = {**asdict(DEFAULT_LIMITS), "orders_per_second": 10**6, "orders_per_day": 10**9}
    limit_create(scope="global", values=fast, changed_by="test", source="test")


def _an_hour_passes() -> None:
    """Every grace period is measured from updated_at: moving it back is time passing for the OMS."""
    Order.objects.update(updated_at=F("updated_at") - timedelta(hours=1))


@pytest.mark.django_db(transaction=True)
def test_the_oms_keeps_its_invariants_whatever_the_order_of_events(monkeypatch: pytest.MonkeyPatch) -> None:
    def broker_for(account: BrokerAccount) -> MemoryBroker:
        return OmsMachine.live["machine"].broker

    def enqueue(order_id: int) -> None:  # instead of a Celery message: `execute` delivers them, in any order
        OmsMachine.live["machine"].enqueued.append(order_id)

    monkeypatch.setattr(broker_services, "broker_for", broker_for)
    monkeypatch.setattr(django_settings, "RISK_MARKET_HOURS", False)
    monkeypatch.setattr(placement, "_enqueue", enqueue)
    run_state_machine_as_test(
        OmsMachine,
        settings=hsettings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
            # No "explain" phase: it traces every line of every replay, which made shrinking a failure take minutes.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        ),
    )
