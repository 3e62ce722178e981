"""Queue round trip: a no-op task sent to each dedicated queue and awaited, beside the raw Redis floor.

Why: every bar-close signal, order placement and risk run pays this round trip
before doing any work of its own, so it is the latency budget the platform
cannot go below. The floor is what two processes exchanging a message through
the same Redis cost (LPUSH then BRPOP each way, against an echo subprocess);
the ratio to it is what Celery adds on top (kombu routing and JSON, the
worker's hand-off to its pool process, the result store and its pub/sub),
per queue, since each queue's worker profile differs (acks_late, prefetch,
pool size).

The probes are interleaved, one round of floor and five queues at a time in a
rotating order, so that a slow moment of the machine lands on every series
alike instead of on whichever queue happened to be measured then.

Environment: BENCH_ROUNDTRIPS (default 500 per series), BENCH_WARMUP (default
20 per series, discarded), REDIS_URL (a Redis database no stack uses; without
it a private embedded redis-server is started).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from benchmarks._redis_echo import STOP
from benchmarks._stack import BenchStack, machine_extras, redacted
from benchmarks.stats import Report, Summary, ratio, summarize_ns
from workers.profiles import PROFILES
from workers.queues import DEDICATED_QUEUES, Queue

DEFAULT_ROUNDTRIPS = 500
DEFAULT_WARMUP = 20
REPLY_TIMEOUT_SECONDS = 10
FLOOR = "raw redis"
RESULT_KEY_BATCH = 500


def env_count(name: str, default: int, *, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise SystemExit(f"configuration error: {name} must be an integer >= {minimum}, got {raw!r}")
    return int(raw)


@dataclass
class Probe:
    """One series: a callable that performs a single round trip and returns its duration in ns."""

    label: str
    once: Callable[[], int]
    samples: list[int]


class RawFloor:
    """LPUSH to the echo's request list, BRPOP its reply: the least a cross-process Redis round trip costs."""

    def __init__(self, client: redis.Redis, request_key: str, reply_key: str) -> None:
        self.client = client
        self.request_key = request_key
        self.reply_key = reply_key
        self.counter = 0

    def once(self) -> int:
        self.counter += 1
        payload = str(self.counter).encode()
        started = time.perf_counter_ns()
        self.client.lpush(self.request_key, payload)
        reply: Any = self.client.brpop([self.reply_key], timeout=REPLY_TIMEOUT_SECONDS)
        elapsed = time.perf_counter_ns() - started
        if reply is None or reply[1] != payload:
            raise RuntimeError(f"the Redis echo answered {reply!r} to {payload!r}")
        return elapsed


class TaskRoundTrip:
    """`monitoring.ping` sent to one queue and awaited through the Redis result backend."""

    def __init__(self, task: Any, queue: str, task_ids: list[str]) -> None:
        self.task = task
        self.queue = queue
        self.task_ids = task_ids
        self.counter = 0

    def once(self) -> int:
        self.counter += 1
        token = f"{self.queue}-{self.counter}"
        started = time.perf_counter_ns()
        result = self.task.apply_async(kwargs={"token": token}, queue=self.queue)
        reply = result.get(timeout=REPLY_TIMEOUT_SECONDS)
        elapsed = time.perf_counter_ns() - started
        self.task_ids.append(result.id)
        if reply.get("token") != token or reply.get("queue") != self.queue:
            raise RuntimeError(f"ping to {self.queue} came back as {reply!r}")
        return elapsed


def measure(probes: list[Probe], *, roundtrips: int, warmup: int) -> None:
    """Run every probe `warmup + roundtrips` times, interleaved in a rotating order; keep the last `roundtrips`."""
    for i in range(warmup + roundtrips):
        shift = i % len(probes)
        for probe in probes[shift:] + probes[:shift]:
            elapsed = probe.once()
            if i >= warmup:
                probe.samples.append(elapsed)


def run() -> Report:
    roundtrips = env_count("BENCH_ROUNDTRIPS", DEFAULT_ROUNDTRIPS, minimum=1)
    warmup = env_count("BENCH_WARMUP", DEFAULT_WARMUP, minimum=0)
    queues = [q.value for q in DEDICATED_QUEUES]
    run_id = uuid.uuid4().hex[:12]
    request_key, reply_key = f"bench:queue_roundtrip:{run_id}:request", f"bench:queue_roundtrip:{run_id}:reply"

    with BenchStack("queue_roundtrip") as stack:
        app = stack.setup_django()
        from apps.monitoring.tasks import ping

        client = stack.redis_client()
        stack.start_workers(app, queues)
        echo_argv = [sys.executable, "-m", "benchmarks._redis_echo", stack.redis_url, request_key, reply_key]
        stack.spawn("redis-echo", echo_argv)
        task_ids: list[str] = []
        floor = RawFloor(client, request_key, reply_key)
        probes = [Probe(FLOOR, floor.once, [])]
        probes += [Probe(q, TaskRoundTrip(ping, q, task_ids).once, []) for q in queues]
        try:
            measure(probes, roundtrips=roundtrips, warmup=warmup)
        finally:
            client.lpush(request_key, STOP)
            keys = [app.backend.get_key_for_task(task_id) for task_id in task_ids]  # type: ignore[attr-defined]
            for start in range(0, len(keys), RESULT_KEY_BATCH):
                client.delete(*keys[start : start + RESULT_KEY_BATCH])
            client.delete(request_key, reply_key)
        machine = machine_extras(client, stack.broker_kind)
        config = {
            "roundtrips": roundtrips,
            "warmup": warmup,
            "order": "interleaved, rotating",
            "broker_url": redacted(stack.broker_url),
            "result_backend": redacted(stack.result_backend),
            "profiles": {q: profile_facts(Queue(q)) for q in queues},
        }

    summaries = {p.label: summarize_ns(p.samples) for p in probes}
    return build_report(summaries, config=config, machine=machine)


def profile_facts(queue: Queue) -> dict[str, Any]:
    """The worker settings a reader needs to explain one queue's numbers against another's."""
    profile = PROFILES[queue]
    return {
        "pool": profile.pool,
        "concurrency": profile.concurrency_from_env(),
        "prefetch_multiplier": profile.prefetch_multiplier,
        "acks_late": profile.acks_late,
        "max_memory_per_child_kib": profile.max_memory_per_child_kib,
    }


def build_report(summaries: dict[str, Summary], *, config: dict[str, Any], machine: dict[str, Any]) -> Report:
    raw = summaries[FLOOR]
    ratios = {
        label: {"p50": _rounded(ratio(s.p50_ms, raw.p50_ms)), "p99": _rounded(ratio(s.p99_ms, raw.p99_ms))}
        for label, s in summaries.items()
        if label != FLOOR
    }
    rows: list[list[object]] = [[FLOOR, *_ms(raw), "1.0x", "1.0x"]]
    rows += [
        [label, *_ms(s), _times(ratios[label]["p50"]), _times(ratios[label]["p99"])]
        for label, s in summaries.items()
        if label != FLOOR
    ]
    title = (
        f"queue_roundtrip: no-op task sent and awaited per queue vs raw Redis LPUSH/BRPOP echo "
        f"({config['roundtrips']} per series after {config['warmup']} warm-up, {machine['broker']} Redis "
        f"{machine['redis_server']}, celery {machine['celery']})"
    )
    return Report(
        title=title,
        headers=["series", "p50 ms", "p99 ms", "mean ms", "max ms", "p50 / raw", "p99 / raw"],
        rows=rows,
        data={
            "config": config,
            "floor": raw.as_dict(),
            "queues": {label: s.as_dict() for label, s in summaries.items() if label != FLOOR},
            "ratios": ratios,
        },
        machine=machine,
    )


def _ms(s: Summary) -> list[str]:
    return [f"{s.p50_ms:.3f}", f"{s.p99_ms:.3f}", f"{s.mean_ms:.3f}", f"{s.max_ms:.3f}"]


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
