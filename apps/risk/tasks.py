"""Risk tasks: thin, plain-value arguments, safe to run twice (a task id stores its snapshot once).

Results are kept (not the project's default): the API's task-status endpoint reads a failed run's error
from the result backend. A success is read from the snapshot itself, found by its task id.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task
from celery.signals import worker_ready
from django.utils import timezone

from apps.risk import snapshots
from apps.risk.quant.var import METHODS
from workers.registry import queue_task

log = logging.getLogger(__name__)
START_DELAY_SECONDS = 30  # a fresh `make run` places its demo book at start: let its first fills land


@queue_task(name="risk.compute_var", time_limit=300, bind=True, ignore_result=False)
def compute_var(
    self: Task,
    *,
    account_id: int | None = None,
    method: str = snapshots.DEFAULTS["method"],
    confidence: float = snapshots.DEFAULTS["confidence"],
    horizon_days: int = snapshots.DEFAULTS["horizon_days"],
    window_days: int = snapshots.DEFAULTS["window_days"],
    paths: int = snapshots.DEFAULTS["paths"],
    distribution: str = snapshots.DEFAULTS["distribution"],
    seed: int = snapshots.DEFAULTS["seed"],
    trigger: str = "beat",
) -> int:
    """One VaR snapshot of the desk's book (beat: every 15 minutes in market hours) or of one account (API)."""
    snapshot = snapshots.var_compute(
        account_id=account_id,
        method=method,
        confidence=confidence,
        horizon_days=horizon_days,
        window_days=window_days,
        paths=paths,
        distribution=distribution,
        seed=seed,
        trigger=trigger,
        task_id=self.request.id or "",
    )
    return snapshot.pk


@queue_task(name="risk.compute_var_close", time_limit=600, bind=True, ignore_result=False)
def compute_var_close(self: Task, *, account_id: int | None = None) -> list[int]:
    """At the close (15:35 IST): the day's record, one snapshot per method with the default parameters."""
    task_id = self.request.id or ""
    return [
        snapshots.var_compute(account_id=account_id, method=method, trigger="close", task_id=task_id).pk
        for method in METHODS
    ]


@worker_ready.connect
def _snapshot_on_start(sender: Any = None, **_: Any) -> None:
    """A `risk` worker that starts with no snapshot of the last 15 minutes takes one, so the desk never waits
    for the next market-hours beat (or for Monday) to see its VaR."""
    hostname = getattr(sender, "hostname", "") or ""
    if not hostname.startswith("risk@"):
        return
    latest = snapshots.snapshot_latest(account_id=None)
    if latest is None or latest.created_at < timezone.now() - timedelta(minutes=15):
        log.info("%s ready: no recent VaR snapshot, computing one in %ss", hostname, START_DELAY_SECONDS)
        compute_var.apply_async(kwargs={"trigger": "start"}, countdown=START_DELAY_SECONDS)
