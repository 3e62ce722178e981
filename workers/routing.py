"""The routing table: which queue a task goes to, by the prefix of its stable name.

Task names are `<area>.<verb>` (`orders.execute`, `risk.compute_var`), so the
table is short and a task that matches no row is an error at definition time,
never a message silently sent to a queue that nobody consumes.
"""

from __future__ import annotations

from typing import Any

from workers.queues import Queue

ROUTES: tuple[tuple[str, Queue], ...] = (
    ("signals.", Queue.SIGNALS),
    ("orders.", Queue.ORDERS),
    ("risk.", Queue.RISK),
    ("backtests.", Queue.BACKTESTS),
    ("marketdata.", Queue.DEFAULT),
    ("monitoring.", Queue.DEFAULT),
    ("security.", Queue.DEFAULT),
    ("brokers.", Queue.DEFAULT),
    ("celery.", Queue.DEFAULT),  # Celery's own: backend_cleanup, chord_unlock
)


class UnroutedTaskError(LookupError):
    """A task name matches no row of the routing table."""


def queue_for(task_name: str) -> Queue:
    for prefix, queue in ROUTES:
        if task_name.startswith(prefix):
            return queue
    raise UnroutedTaskError(
        f"task {task_name!r} matches no route in workers.routing.ROUTES; "
        f"name it '<area>.<verb>' with one of: {', '.join(p for p, _ in ROUTES)}"
    )


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict[str, str]:
    """Celery router: an explicit `queue=` given to apply_async still wins."""
    return {"queue": queue_for(name).value}
