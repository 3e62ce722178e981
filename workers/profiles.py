"""Per-queue worker profiles: how each queue's worker runs and what its tasks default to.

The `orders` profile is the one that protects money: a message is acknowledged
only after the task finished (acks_late), is given back if the worker process
dies (reject_on_worker_lost), one at a time (prefetch 1), and every task ends
far inside the Redis visibility timeout, so Redis never hands a still-running
placement to a second worker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from workers.queues import Queue, node_name

# Redis re-delivers an unacknowledged message after this many seconds.
BROKER_VISIBILITY_TIMEOUT = 3600


@dataclass(frozen=True)
class WorkerProfile:
    queue: Queue
    concurrency: int
    prefetch_multiplier: int
    time_limit: int  # hard limit, seconds: the worker kills the task
    soft_time_limit: int  # the task gets SoftTimeLimitExceeded
    acks_late: bool = False
    reject_on_worker_lost: bool = False
    # Recycle a pool process only when it grew past this (KiB). Not max_tasks_per_child:
    # its replacement child is often started by a 5 s timer (celery/celery#9588), which
    # stalled a one-process queue for seconds (seen in `make bench`).
    max_memory_per_child_kib: int | None = None
    pool: str = "prefork"
    extra_args: tuple[str, ...] = field(default=())

    def task_defaults(self) -> dict[str, object]:
        """Options every task on this queue gets unless it says otherwise."""
        return {
            "acks_late": self.acks_late,
            "reject_on_worker_lost": self.reject_on_worker_lost,
            "time_limit": self.time_limit,
            "soft_time_limit": self.soft_time_limit,
        }

    def concurrency_from_env(self) -> int:
        raw = os.environ.get(f"WORKER_CONCURRENCY_{self.queue.value.upper()}", "")
        return int(raw) if raw.isdigit() and int(raw) > 0 else self.concurrency

    def worker_argv(self, *, loglevel: str = "INFO") -> list[str]:
        """The `celery worker` command line for this queue's worker."""
        argv = [
            "worker",
            f"--queues={self.queue.value}",
            f"--hostname={node_name(self.queue)}",
            f"--pool={self.pool}",
            f"--concurrency={self.concurrency_from_env()}",
            f"--prefetch-multiplier={self.prefetch_multiplier}",
            f"--time-limit={self.time_limit}",
            f"--soft-time-limit={self.soft_time_limit}",
            "--task-events",
            "--without-mingle",
            f"--loglevel={loglevel}",
        ]
        if self.max_memory_per_child_kib:
            argv.append(f"--max-memory-per-child={self.max_memory_per_child_kib}")
        if self.prefetch_multiplier == 1:
            argv.append("-O")
            argv.append("fair")
        return argv + list(self.extra_args)


PROFILES: dict[Queue, WorkerProfile] = {
    Queue.SIGNALS: WorkerProfile(
        queue=Queue.SIGNALS, concurrency=2, prefetch_multiplier=4, time_limit=60, soft_time_limit=50
    ),
    Queue.ORDERS: WorkerProfile(
        queue=Queue.ORDERS,
        concurrency=2,
        prefetch_multiplier=1,
        time_limit=120,
        soft_time_limit=90,
        acks_late=True,
        reject_on_worker_lost=True,
    ),
    Queue.RISK: WorkerProfile(
        queue=Queue.RISK,
        concurrency=1,
        prefetch_multiplier=1,
        time_limit=600,
        soft_time_limit=540,
        max_memory_per_child_kib=2_000_000,
    ),
    Queue.BACKTESTS: WorkerProfile(
        queue=Queue.BACKTESTS,
        concurrency=2,
        prefetch_multiplier=1,
        time_limit=1800,
        soft_time_limit=1700,
        max_memory_per_child_kib=1_500_000,
    ),
    Queue.DEFAULT: WorkerProfile(
        queue=Queue.DEFAULT, concurrency=1, prefetch_multiplier=1, time_limit=900, soft_time_limit=840
    ),
}
