"""The bar-close dispatcher: bar events on the Redis stream -> one `signals.evaluate` task per enabled config.

Both feeds (replay and the live ticker) publish closed bars on `marketdata:bars` after storing them.
This process reads the stream through a consumer group (`strategies`), so a restart picks up what it had
read but not yet dispatched (the group's pending entries) and nothing is dispatched from a bar it never
saw. For each (interval, bar time) in a batch it enqueues one task per enabled config of that interval;
a Redis key per (config, bar time), set NX, keeps a step split over two reads, a repeated event or a
second dispatcher from enqueueing it again. The task itself is idempotent too (signals are unique per
config, instrument and bar time), so the key only saves work. Entries are acknowledged after enqueueing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import ResponseError

from apps.marketdata.events import BAR_STREAM
from apps.strategies.models import StrategyConfig

log = logging.getLogger(__name__)
GROUP = "strategies"
DISPATCHED_TTL_SECONDS = 3 * 24 * 3600


def ensure_group(redis: Any, *, start: str = "$") -> None:
    """Create the consumer group (from new entries only, by default) if it is not there yet."""
    try:
        redis.xgroup_create(BAR_STREAM, GROUP, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def bar_steps(entries: Iterable[tuple[Any, dict[Any, Any]]]) -> set[tuple[str, str]]:
    """The distinct (interval, bar time ISO) pairs of a batch of stream entries."""
    steps = set()
    for _id, fields in entries:
        f = {_text(k): _text(v) for k, v in fields.items()}
        if "interval" in f and "time" in f:
            steps.add((f["interval"], f["time"]))
    return steps


def dispatch_steps(redis: Any, steps: set[tuple[str, str]], enqueue: Callable[[int, str], None]) -> int:
    """Enqueue each enabled config of a step's interval once per bar time; returns how many were enqueued."""
    if not steps:
        return 0
    by_interval: dict[str, list[int]] = {}
    for pk, interval in StrategyConfig.objects.filter(enabled=True).values_list("pk", "interval"):
        by_interval.setdefault(interval, []).append(pk)
    sent = 0
    for interval, at in sorted(steps, key=lambda s: s[1]):
        for config_id in by_interval.get(interval, []):
            if redis.set(f"strategies:dispatched:{config_id}:{at}", "1", nx=True, ex=DISPATCHED_TTL_SECONDS):
                enqueue(config_id, at)
                sent += 1
    return sent


def celery_enqueue(config_id: int, bar_time: str) -> None:
    from apps.strategies.tasks import evaluate

    evaluate.apply_async(kwargs={"config_id": config_id, "bar_time": bar_time})


def run(
    redis: Any,
    stop: threading.Event,
    *,
    enqueue: Callable[[int, str], None] = celery_enqueue,
    block_ms: int = 1000,
    consumer: str | None = None,
) -> int:
    """Read, dispatch and acknowledge until `stop` is set; returns the tasks enqueued."""
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    ensure_group(redis)
    sent = 0
    cursor = "0"  # first our own pending entries (read before a crash, never acknowledged), then new ones
    while not stop.is_set():
        reply = redis.xreadgroup(
            GROUP, name, {BAR_STREAM: cursor}, count=2000, block=None if cursor == "0" else block_ms
        )
        entries = reply[0][1] if reply else []
        if cursor == "0" and not entries:
            cursor = ">"
            continue
        if entries:
            sent += dispatch_steps(redis, bar_steps(entries), enqueue)
            redis.xack(BAR_STREAM, GROUP, *[entry_id for entry_id, _ in entries])
    return sent
