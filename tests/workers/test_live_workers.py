"""Real `celery worker` processes, one per dedicated queue, started as the Procfile starts them."""

from __future__ import annotations

import pytest

from apps.monitoring.tasks import ping
from tests.support.stack import queue_nodes_alive, start_workers
from tradingsite.celery import app
from workers.queues import DEDICATED_QUEUES, Queue
from workers.supervision import ManagedProcess, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_a_task_sent_to_each_queue_runs_on_that_queues_worker(
    live_workers: dict[Queue, ManagedProcess], unique_token: str
) -> None:
    sent = {q: ping.apply_async(kwargs={"token": f"{unique_token}-{q.value}"}, queue=q.value) for q in DEDICATED_QUEUES}
    for queue, result in sent.items():
        reply = result.get(timeout=30, interval=0.05)
        assert reply["token"] == f"{unique_token}-{queue.value}"
        assert reply["queue"] == queue.value
        assert reply["hostname"].startswith(f"{queue.value}@")
        # The pool child that ran it belongs to that queue's worker process group.
        assert reply["pid"] != live_workers[queue].pid


def test_a_task_without_an_explicit_queue_follows_the_routing_table(
    live_workers: dict[Queue, ManagedProcess], unique_token: str
) -> None:
    reply = ping.delay(token=unique_token).get(timeout=30, interval=0.05)
    assert reply["queue"] == "default" and reply["hostname"].startswith("default@")


def test_each_worker_consumes_only_its_own_queue(live_workers: dict[Queue, ManagedProcess]) -> None:
    active = app.control.inspect(timeout=2).active_queues() or {}
    by_node = {node: sorted(q["name"] for q in queues) for node, queues in active.items()}
    for queue in DEDICATED_QUEUES:
        mine = [n for n in by_node if n.startswith(f"{queue.value}@")]
        assert mine, f"no worker for {queue.value}: {by_node}"
        assert all(by_node[n] == [queue.value] for n in mine)


def test_orders_worker_runs_with_the_orders_profile(live_workers: dict[Queue, ManagedProcess]) -> None:
    stats = app.control.inspect(timeout=2).stats() or {}
    orders = next(v for k, v in stats.items() if k.startswith("orders@"))
    assert orders["prefetch_count"] == orders["pool"]["max-concurrency"]  # prefetch multiplier 1
    assert orders["pool"]["timeouts"] == [90.0, 120.0]  # soft, hard
    assert orders["broker"]["transport_options"]["visibility_timeout"] == 3600
    signals = next(v for k, v in stats.items() if k.startswith("signals@"))
    assert signals["prefetch_count"] == 4 * signals["pool"]["max-concurrency"]


def test_readyz_reports_a_dead_worker_and_recovers_when_it_returns(
    live_workers: dict[Queue, ManagedProcess], client, tmp_path
) -> None:
    assert client.get("/readyz").status_code == 200
    live_workers[Queue.RISK].stop()
    wait_until(lambda: not queue_nodes_alive([Queue.RISK]), timeout=30, what="risk worker gone")
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "not ready"
    assert body["workers"]["risk"]["ok"] is False and "no worker answered" in body["workers"]["risk"]["detail"]
    assert all(body["workers"][q.value]["ok"] for q in DEDICATED_QUEUES if q is not Queue.RISK)
    live_workers.update(start_workers([Queue.RISK], tmp_path))
    assert client.get("/readyz").status_code == 200
