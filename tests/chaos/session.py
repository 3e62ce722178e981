"""The Django side of a chaos run: rows to trade with, the workers, the run, and its report.

Imported only after `django.setup()` in `python -m tests.chaos`, once REDIS_URL points at the private Redis.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from django.core.management import call_command

from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Instrument
from apps.orders.models import Order
from tests.chaos.engine import ChaosRun, Plan
from tests.chaos.infra import ChaosKite, OrdersWorker, PrivateRedis

WORKER_START_SECONDS = 120.0


def plan_from_env(env: dict[str, str], seed: int) -> Plan:
    def number(name: str, default: float) -> float:
        raw = env.get(name, "").strip()
        return float(raw) if raw else default

    return Plan(
        orders=int(number("CHAOS_ORDERS", 40)),
        kills=int(number("CHAOS_KILLS", 8)),
        kill_interval=number("CHAOS_KILL_INTERVAL", 1.0),
        workers=int(number("CHAOS_WORKERS", 2)),
        concurrency=int(number("CHAOS_CONCURRENCY", 2)),
        redis_restarts=int(number("CHAOS_REDIS_RESTARTS", 1)),
        settle_seconds=number("CHAOS_SETTLE_SECONDS", 60.0),
        seed=seed,
    )


def _rows() -> tuple[BrokerAccount, Instrument]:
    if Order.objects.exists():
        raise SystemExit(
            "chaos: the database already holds orders; give the run an empty one "
            "(make chaos uses a fresh test database)"
        )
    instrument, _ = Instrument.objects.get_or_create(
        exchange="NSE", tradingsymbol="INFY", defaults={"instrument_token": 408065, "lot_size": 1}
    )
    account = BrokerAccount.objects.create(
        name=f"chaos-{int(time.time())}", kind="kite", api_key="chaoskey", access_token="chaos-access-token"
    )
    return account, instrument


def _start_workers(plan: Plan, env: dict[str, str], log_dir: Path) -> list[OrdersWorker]:
    for old in log_dir.glob("orders-*.log"):  # each run's logs alone (a worker appends across its restarts)
        old.unlink()
    workers = [OrdersWorker(i, concurrency=plan.concurrency, env=env, log_dir=log_dir) for i in range(plan.workers)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + WORKER_START_SECONDS
    while not all(w.ready() for w in workers):
        if time.monotonic() > deadline or not all(w.process.alive() for w in workers):
            tails = "\n".join(w.process.log_tail(20) for w in workers)
            for worker in workers:
                worker.stop()
            raise RuntimeError(f"chaos: the orders workers did not start:\n{tails}")
        time.sleep(0.2)
    return workers


def run_session(
    *, env: dict[str, str], seed: int, kite: ChaosKite, redis_server: PrivateRedis, var_dir: Path
) -> dict[str, Any]:
    plan = plan_from_env(env, seed)
    call_command("migrate", verbosity=0, interactive=False)
    account, instrument = _rows()
    started = time.monotonic()
    workers = _start_workers(plan, dict(os.environ), var_dir / "logs")
    try:
        run = ChaosRun(
            plan, kite=kite, redis_server=redis_server, workers=workers, account=account, instrument=instrument
        )
        verdict = run.run()
        through_unknown, found = run.through_unknown(), run.found_by_reconciliation()
    finally:
        for worker in workers:
            worker.stop()
    return {
        "plan": vars(plan),
        "seed": seed,
        "account_id": account.pk,
        "verdict": verdict.as_dict(),
        "tally": run.tally.as_dict(),
        "through_unknown": through_unknown,
        "found_by_reconciliation": found,
        "worker_starts": sum(w.starts for w in workers),
        "settle_seconds": run.settle_seconds,
        "seconds": time.monotonic() - started,
        "book": [
            {"order_id": b["order_id"], "tag": b.get("tag"), "status": b["status"], "filled": b["filled_quantity"]}
            for b in kite.book.orders()
        ],
    }
