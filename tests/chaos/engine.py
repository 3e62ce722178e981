"""The chaos run itself: orders flow through real `orders` workers while they are SIGKILLed and Redis crashes.

Five threads share the engine process (each with its own database connection):

- the submitter commits orders with `order_place` at a steady rate (the after-commit enqueue goes to the
  private Redis; when Redis is down the order stays QUEUED and the sweep must find it), and now and then
  arms a placement fault at the fake Kite (connection dropped after accept, HTTP 500, HTTP 429);
- the killer SIGKILLs a random ready worker's pool child, its parent alone, or its whole process group,
  preferring moments when the fake holds an accepted placement unanswered, and restarts the worker; once
  (or `redis_restarts` times) it crashes and restarts the Redis server instead;
- the market fills and cancels open orders at the fake Kite, as an exchange would;
- the sweeper runs `orders_sweep` at beat's interval (10 s), the reconciler `reconcile_account` every 2 s.

Then the killing and the market stop, every worker is brought back, and the last two run on until the OMS
agrees with the broker's book (or the settle time is over), and `verdict.judge` compares them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psutil
import redis
from amqp.exceptions import AMQPError
from django.db import DatabaseError, connections
from django.db.models import Sum
from django.db.models.functions import Coalesce
from kombu.exceptions import KombuError

from apps.brokers.base import BrokerError
from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Instrument
from apps.orders.models import Order, OrderEvent, Position
from apps.orders.placement import OrderInput, order_place, orders_sweep
from apps.orders.reconciliation import reconcile_account
from apps.orders.services import OrderStateConflict
from tests.chaos.infra import ChaosKite, OrdersWorker, PrivateRedis
from tests.chaos.verdict import BookOrder, OmsOrder, Verdict, judge
from workers.schedule import DEFAULT_SCHEDULE

log = logging.getLogger("chaos")

# What a dead or restarting Redis, a killed connection or a busy database look like to the engine's threads:
# counted and carried on with, because recovering from them is the OMS's job, not the engine's.
TRANSIENT = (KombuError, AMQPError, redis.RedisError, DatabaseError, OSError, BrokerError)
# orders_sweep lets a compare-and-set conflict out when a worker moves a SUBMITTING order on between the sweep's
# query and its transition (the rest of that sweep is skipped; the next one carries on): counted, not fatal.
RACES = (OrderStateConflict,)
FAULTS = ("drop_after_accept", "500", "429")
KILL_KINDS = ("child", "child", "child", "main", "group")  # pool children most often: they die most often
OPEN_AT_KITE = frozenset({"OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED"})
SWEEP_EVERY = next(e.every_seconds for e in DEFAULT_SCHEDULE if e.task == "orders.sweep") or 10  # seconds, as beat
RECONCILE_EVERY = 2  # seconds


@dataclass(frozen=True)
class Plan:
    orders: int = 40
    kills: int = 8
    kill_interval: float = 1.0  # seconds between kills; orders are spread over kills * kill_interval
    workers: int = 2
    concurrency: int = 2
    redis_restarts: int = 1
    redis_down_seconds: float = 1.0
    settle_seconds: float = 60.0
    max_delay: float = 0.3  # the fake's delay between accepting a placement and answering it
    fault_every: int = 7  # every n-th order arms one placement fault
    seed: int = 0

    @property
    def duration(self) -> float:
        return self.kills * self.kill_interval


@dataclass
class Tally:
    """What the threads did; one lock, because several threads count."""

    kills: Counter[str] = field(default_factory=Counter)
    kills_mid_call: int = 0
    redis_restarts: int = 0
    messages_lost: int = 0  # queued or unacknowledged in Redis when it crashed
    requeued: int = 0  # orders the sweep sent again because their message was lost (QUEUED past its grace)
    faults: Counter[str] = field(default_factory=Counter)
    committed: int = 0
    enqueue_failed: int = 0  # committed, but the after-commit enqueue raised (Redis down): the sweep's job
    not_committed: int = 0
    fills: int = 0
    cancels: int = 0
    sweeps: int = 0
    reconciles: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def count(self, counter: str, key: str) -> None:
        with self.lock:
            getattr(self, counter)[key] += 1

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items() if k != "lock"}


@contextmanager
def _db_thread() -> Iterator[None]:
    try:
        yield
    finally:
        connections.close_all()


class ChaosRun:
    def __init__(
        self,
        plan: Plan,
        *,
        kite: ChaosKite,
        redis_server: PrivateRedis,
        workers: list[OrdersWorker],
        account: BrokerAccount,
        instrument: Instrument,
    ) -> None:
        self.plan, self.kite, self.redis_server, self.workers = plan, kite, redis_server, workers
        self.account, self.instrument = account, instrument
        self.tally = Tally()
        self.rng = random.Random(plan.seed)
        self._market_rng = random.Random(plan.seed + 1)
        self._stop_market = threading.Event()
        self._stop_sweeper = threading.Event()
        self._killer_done = threading.Event()
        self._kills_done = 0
        self.failures: list[str] = []
        self.settle_seconds = 0.0

    # --- the run ----------------------------------------------------------------------------------------
    def run(self) -> Verdict:
        sweeper = self._thread(self._sweeper, "sweeper")
        reconciler = self._thread(self._reconciler, "reconciler")
        market = self._thread(self._market, "market")
        killer = self._thread(self._killer, "killer")
        with _db_thread():
            self._submit()
        killer.join()
        self._stop_market.set()
        market.join()
        self._restart_dead_workers()
        verdict = self._settle()
        self._stop_sweeper.set()
        sweeper.join()
        reconciler.join()
        if self.failures:
            raise RuntimeError("a chaos thread died: " + "; ".join(self.failures))
        return verdict

    def _thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """A daemon thread whose death is not silent: its exception is kept and raised by `run`."""

        def body() -> None:
            try:
                with _db_thread():
                    target()
            except BaseException as exc:
                self.failures.append(f"{name}: {exc!r}")
                raise
            finally:
                if name == "killer":
                    self._killer_done.set()  # the submitter waits on the killer's progress

        thread = threading.Thread(target=body, name=f"chaos-{name}", daemon=True)
        thread.start()
        return thread

    def _settle(self) -> Verdict:
        """Until the OMS agrees with the book (bounded): the sweeper and the reconciler keep running."""
        start = time.monotonic()
        with _db_thread():
            while True:
                verdict = self.verdict()
                if verdict.clean or time.monotonic() - start > self.plan.settle_seconds:
                    self.settle_seconds = time.monotonic() - start
                    return verdict
                time.sleep(1.0)

    # --- the submitter ------------------------------------------------------------------------------------
    def _submit(self) -> None:
        """At a steady rate, but never more than the kills so far allow: slow kills slow the orders too."""
        interval = self.plan.duration / max(self.plan.orders, 1)
        per_kill = self.plan.orders / max(self.plan.kills, 1)
        start = time.monotonic()
        for i in range(self.plan.orders):
            _sleep_until(start + i * interval)
            while i >= (self._kills_done + 1) * per_kill and not self._killer_done.is_set():
                time.sleep(0.02)
            cid = f"chaos-{i:05d}"
            try:
                order_place(order=self._order(cid))
                self.tally.add("committed")
            except TRANSIENT as exc:
                committed = _exists(cid)
                self.tally.add("enqueue_failed" if committed else "not_committed")
                self.tally.add("committed", int(committed))
                self.tally.count("errors", f"submit: {type(exc).__name__}")
            if (i + 1) % self.plan.fault_every == 0:
                mode = FAULTS[(i // self.plan.fault_every) % len(FAULTS)]
                self.kite.fail_next_place(mode)
                self.tally.count("faults", mode)

    def _order(self, cid: str) -> OrderInput:
        ticks = self.rng.randint(-20, 20)
        return OrderInput(
            account=self.account,
            instrument=self.instrument,
            client_order_id=cid,
            side=self.rng.choice(("BUY", "SELL")),
            quantity=self.rng.randint(1, 10),
            product=self.rng.choice(("MIS", "CNC")),
            order_type="LIMIT",
            price=Decimal("1500") + Decimal("0.05") * ticks,
        )

    # --- the killer ---------------------------------------------------------------------------------------
    def _killer(self) -> None:
        plan = self.plan
        restarts_at = {plan.kills * (r + 1) // (plan.redis_restarts + 1) for r in range(plan.redis_restarts)}
        start = time.monotonic()
        for i in range(plan.kills):
            if i in restarts_at:
                self._crash_redis()
            _sleep_until(start + (i + 0.5) * plan.kill_interval)
            ready = self._ready_workers(timeout=60.0)
            worker, caller = self._victim(ready, until=time.monotonic() + plan.kill_interval / 2)
            # A parent is killed only while another worker is up: the queue keeps a consumer between kills
            # (the Redis crash is the one moment every worker is down at once).
            kind = self.rng.choice(KILL_KINDS) if len(ready) > 1 else "child"
            self.tally.add("kills_mid_call", int(caller is not None))
            worker.kill(kind, self.rng, child=caller)
            self.tally.count("kills", kind)
            self._kills_done += 1
            for w in self.workers:
                w.reap_orphans(now=time.monotonic())

    def _crash_redis(self) -> None:
        """With messages waiting: every worker's group is killed first, so orders queue up unconsumed (and
        the dead workers' unacknowledged ones stay behind); the crash then loses them all, and only the
        sweep can send those orders."""
        for worker in self.workers:
            if worker.process.alive():
                worker.kill("group", self.rng)
                self.tally.count("kills", "group")
        deadline = time.monotonic() + 3 * self.plan.kill_interval
        queued, unacked = self.redis_server.waiting("orders")
        while queued == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            queued, unacked = self.redis_server.waiting("orders")
        self.redis_server.restart(self.plan.redis_down_seconds)
        self.tally.add("redis_restarts")
        self.tally.add("messages_lost", queued + unacked)

    def _ready_workers(self, *, timeout: float) -> list[OrdersWorker]:
        deadline = time.monotonic() + timeout
        while True:
            ready = [w for w in self.workers if w.ready()]
            if ready:
                return ready
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "no orders worker became ready: " + "; ".join(w.process.log_tail(5) for w in self.workers)
                )
            time.sleep(0.05)

    def _victim(self, ready: list[OrdersWorker], *, until: float) -> tuple[OrdersWorker, psutil.Process | None]:
        """The worker (and pool child) with a placement accepted at Kite but not yet answered, if one shows up
        before `until`: killing it there is the case that matters. Otherwise a random ready worker."""
        port = int(self.kite.url.rsplit(":", 1)[1])
        while time.monotonic() < until:
            if self.kite.book.in_flight:
                for worker in ready:
                    caller = worker.calling(port)
                    if caller is not None:
                        return worker, caller
            time.sleep(0.005)
        return self.rng.choice(ready), None

    def _restart_dead_workers(self) -> None:
        for worker in self.workers:
            worker.reap_orphans()
            if not worker.process.alive():
                worker.start()
        deadline = time.monotonic() + 120
        while not all(w.ready() for w in self.workers):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not come back after the run")
            time.sleep(0.2)

    # --- the market, the sweeper and the reconciler ----------------------------------------------------------
    def _market(self) -> None:
        """Each tick, each open order at Kite trades (in part or in full) or is cancelled with a small chance."""
        rng = self._market_rng
        while not self._stop_market.wait(0.1):
            for order in self.kite.book.orders():
                if order["status"] not in OPEN_AT_KITE or rng.random() > 0.04:
                    continue
                roll = rng.random()
                if roll < 0.15:
                    self.kite.book.cancel(order["variety"], order["order_id"])
                    self.tally.add("cancels")
                    continue
                pending = int(order["pending_quantity"])
                quantity = pending if roll > 0.6 else rng.randint(1, pending)
                self.kite.fill(order["order_id"], quantity, float(order["price"]))
                self.tally.add("fills")

    def _sweeper(self) -> None:
        """The sweep at beat's own interval: each run re-sends every QUEUED order past its grace, so running it
        faster than production floods a slow queue with duplicates."""
        while not self._stop_sweeper.wait(SWEEP_EVERY):
            swept = self._guarded("sweep", orders_sweep)
            if isinstance(swept, dict):
                self.tally.add("requeued", swept["requeued"])

    def _reconciler(self) -> None:
        """Faster than production's minute, so the run settles soon; it only reads the broker. Its own thread:
        with hundreds of orders in the book one run takes seconds, which must not delay the sweep."""
        while not self._stop_sweeper.wait(RECONCILE_EVERY):
            self._guarded("reconcile", lambda: reconcile_account(account_id=self.account.pk))

    def _guarded(self, name: str, call: Callable[[], object]) -> object:
        try:
            result = call()
        except (*TRANSIENT, *RACES) as exc:
            self.tally.count("errors", f"{name}: {type(exc).__name__}")
            log.info("%s failed (%s); next tick tries again", name, exc)
            return None
        self.tally.add(f"{name}s")
        return result

    # --- judging -------------------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        orders = (
            Order.objects.filter(account=self.account)
            .exclude(status="EXTERNAL")
            .annotate(fills_quantity=Coalesce(Sum("fills__quantity"), 0))
        )
        oms = [
            OmsOrder(
                o.client_order_id, o.tag, o.status, o.broker_order_id, o.quantity, o.filled_quantity, o.fills_quantity
            )
            for o in orders
        ]
        book = [
            BookOrder(b["order_id"], b.get("tag") or "", b["status"], int(b["quantity"]), int(b["filled_quantity"]))
            for b in self.kite.book.orders()
        ]
        positions = Position.objects.filter(account=self.account).select_related("instrument")
        ours = {(p.instrument.tradingsymbol, p.product): p.net_quantity for p in positions if p.net_quantity}
        theirs = {(r["tradingsymbol"], r["product"]): r["quantity"] for r in self.kite.net_positions() if r["quantity"]}
        return judge(oms, book, oms_positions=ours, broker_positions=theirs)

    def through_unknown(self) -> int:
        """Orders that were UNKNOWN at some point: each was resolved from the book, never re-sent."""
        events = OrderEvent.objects.filter(order__account=self.account, to_status="UNKNOWN")
        return events.values("order_id").distinct().count()

    def found_by_reconciliation(self) -> int:
        """Orders whose placement's answer never got recorded (worker killed mid-call, answer dropped) and that
        reconciliation found in the book by tag: SUBMITTING or UNKNOWN -> a broker status."""
        events = OrderEvent.objects.filter(
            order__account=self.account, source="reconciliation", from_status__in=("SUBMITTING", "UNKNOWN")
        ).exclude(to_status__in=("UNKNOWN", "REJECTED"))
        return events.values("order_id").distinct().count()


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _exists(client_order_id: str) -> bool:
    try:
        return Order.objects.filter(client_order_id=client_order_id).exists()
    except DatabaseError:
        return False
