"""`queue_task`: the one way this project defines a Celery task.

It takes the stable name and a time limit (both required), finds the queue in
the routing table and applies that queue's profile (acks_late and friends for
`orders`), so no task can forget any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from celery import shared_task

from workers.profiles import PROFILES
from workers.routing import queue_for

F = TypeVar("F", bound=Callable[..., Any])


def queue_task(*, name: str, time_limit: int, soft_time_limit: int | None = None, **options: Any) -> Callable[[F], Any]:
    queue = queue_for(name)
    profile = PROFILES[queue]
    if time_limit > profile.time_limit:
        raise ValueError(
            f"task {name!r}: time_limit {time_limit}s exceeds the {queue.value} profile's {profile.time_limit}s"
        )
    soft = soft_time_limit if soft_time_limit is not None else max(1, int(time_limit * 0.9))
    merged: dict[str, Any] = {
        **profile.task_defaults(),
        "name": name,
        "queue": queue.value,
        "time_limit": time_limit,
        "soft_time_limit": soft,
        **options,
    }

    def decorate(fn: F) -> Any:
        return shared_task(**merged)(fn)

    return decorate
