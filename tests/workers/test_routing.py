"""The routing table and the per-queue profiles, as the running Celery app sees them."""

from __future__ import annotations

import pytest

from tradingsite.celery import app
from workers.profiles import BROKER_VISIBILITY_TIMEOUT, PROFILES
from workers.queues import DEDICATED_QUEUES, Queue
from workers.registry import queue_task
from workers.routing import UnroutedTaskError, queue_for, route_task


def project_tasks() -> dict[str, object]:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_the_app_declares_exactly_the_dedicated_queues() -> None:
    assert {q.name for q in app.conf.task_queues} == {q.value for q in DEDICATED_QUEUES}
    assert {q.value for q in Queue} == {"signals", "orders", "risk", "backtests", "default"}
    assert app.conf.task_create_missing_queues is False
    assert app.conf.accept_content == ["json"] and app.conf.task_serializer == "json"
    assert app.conf.worker_send_task_events and app.conf.task_send_sent_event


def test_every_project_task_is_routed_named_and_time_limited() -> None:
    tasks = project_tasks()
    assert "monitoring.ping" in tasks and "monitoring.heartbeat" in tasks
    for name, task in tasks.items():
        queue = queue_for(name)
        assert task.queue == queue.value, name  # type: ignore[attr-defined]
        assert task.time_limit and task.time_limit <= PROFILES[queue].time_limit, name  # type: ignore[attr-defined]
        assert task.soft_time_limit and task.soft_time_limit < task.time_limit, name  # type: ignore[attr-defined]


def test_router_sends_by_name_prefix_and_rejects_unknown_names() -> None:
    assert route_task("orders.execute", (), {}, {}) == {"queue": "orders"}
    assert route_task("risk.compute_var", (), {}, {}) == {"queue": "risk"}
    assert route_task("celery.backend_cleanup", (), {}, {}) == {"queue": "default"}
    with pytest.raises(UnroutedTaskError, match=r"'misc\.thing' matches no route"):
        route_task("misc.thing", (), {}, {})


def test_routing_of_a_sent_message_uses_the_table_unless_a_queue_is_given() -> None:
    router = app.amqp.router
    assert router.route({}, "orders.execute")["queue"].name == "orders"
    assert router.route({"queue": "risk"}, "monitoring.ping")["queue"].name == "risk"


def test_orders_profile_protects_money() -> None:
    orders = PROFILES[Queue.ORDERS]
    assert orders.acks_late and orders.reject_on_worker_lost and orders.prefetch_multiplier == 1
    # Redis re-delivers an unacked message after the visibility timeout: a placement
    # must end long before that, or a second worker could pick up the same order.
    assert orders.time_limit * 10 <= BROKER_VISIBILITY_TIMEOUT
    assert app.conf.broker_transport_options["visibility_timeout"] == BROKER_VISIBILITY_TIMEOUT
    argv = orders.worker_argv()
    assert "--queues=orders" in argv and "--hostname=orders@%h" in argv and "--prefetch-multiplier=1" in argv


def test_every_profile_ends_tasks_inside_the_visibility_timeout() -> None:
    for queue, profile in PROFILES.items():
        assert profile.soft_time_limit < profile.time_limit < BROKER_VISIBILITY_TIMEOUT, queue
        assert f"--queues={queue.value}" in profile.worker_argv()


def test_queue_task_applies_the_queue_profile() -> None:
    @queue_task(name="orders.test_only_probe", time_limit=30)
    def probe() -> None: ...

    task = app.tasks["orders.test_only_probe"]
    assert task.acks_late and task.reject_on_worker_lost
    assert (task.queue, task.time_limit, task.soft_time_limit) == ("orders", 30, 27)  # type: ignore[attr-defined]


def test_queue_task_refuses_unrouted_names_and_limits_beyond_the_profile() -> None:
    with pytest.raises(UnroutedTaskError):
        queue_task(name="nowhere.task", time_limit=10)
    with pytest.raises(ValueError, match="exceeds the orders profile"):
        queue_task(name="orders.too_slow", time_limit=PROFILES[Queue.ORDERS].time_limit + 1)
