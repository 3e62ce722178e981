"""Flower finds every worker through its HTTP API; beat fires a scheduled task from the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.monitoring.services import HEARTBEAT_KEY
from tests.support.stack import FLOWER_PASSWORD, FLOWER_USER, free_port, subprocess_env
from tradingsite.redis_client import get_redis
from workers.queues import DEDICATED_QUEUES, Queue
from workers.supervision import ManagedProcess, stack_process, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_flower_lists_every_queue_worker_and_requires_auth(
    live_workers: dict[Queue, ManagedProcess], tmp_path: Path
) -> None:
    port = free_port()
    flower = stack_process("flower", env=subprocess_env(FLOWER_PORT=str(port)), log_dir=tmp_path).start()
    url = f"http://127.0.0.1:{port}/api/workers"
    try:

        def answering() -> bool:
            assert flower.alive(), flower.log_tail()
            try:
                return requests.get(url, timeout=2).status_code in {200, 401}
            except requests.ConnectionError:
                return False

        wait_until(answering, timeout=60, what="Flower's HTTP API")
        assert requests.get(url, timeout=5).status_code == 401
        workers = requests.get(url, params={"refresh": 1}, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=30).json()
        for queue in DEDICATED_QUEUES:
            node = next((n for n in workers if n.startswith(f"{queue.value}@")), None)
            assert node, f"Flower does not list a {queue.value} worker: {sorted(workers)}"
            assert [q["name"] for q in workers[node]["active_queues"]] == [queue.value]
    finally:
        flower.stop()
    assert not flower.alive()


def test_beat_fires_a_database_schedule_that_the_default_worker_runs(
    live_workers: dict[Queue, ManagedProcess], tmp_path: Path, unique_token: str
) -> None:
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name=f"test heartbeat {unique_token}",
        task="monitoring.heartbeat",
        interval=every_second,
        kwargs=json.dumps({"token": unique_token}),
        queue=Queue.DEFAULT.value,
        expire_seconds=2,
    )
    redis = get_redis()
    redis.delete(HEARTBEAT_KEY)
    beat = stack_process("beat", env=subprocess_env(), log_dir=tmp_path).start()
    try:

        def fired() -> bool:
            assert beat.alive(), beat.log_tail()
            raw = redis.get(HEARTBEAT_KEY)
            return raw is not None and json.loads(raw)["token"] == unique_token

        wait_until(fired, timeout=60, what="beat to fire the heartbeat and the default worker to run it")
    finally:
        beat.stop()
    assert not beat.alive()
    assert "Scheduler: Sending due task" in beat.log_path.read_text()
