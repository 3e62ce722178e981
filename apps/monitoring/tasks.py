"""Operational tasks: a no-op ping for round-trips and a beat heartbeat."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import Task
from django.utils import timezone

from apps.monitoring import services
from workers.registry import queue_task


@queue_task(name="monitoring.ping", time_limit=10, bind=True, ignore_result=False)
def ping(self: Task, token: str = "") -> dict[str, Any]:
    """A no-op that reports where it ran; sent with `queue=` to reach any worker."""
    delivery = self.request.delivery_info or {}
    return {
        "token": token,
        "hostname": self.request.hostname,
        "queue": delivery.get("routing_key"),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


@queue_task(name="monitoring.heartbeat", time_limit=10)
def heartbeat(token: str = "") -> None:
    """Beat's heartbeat, run by the default worker: records when it last fired."""
    services.heartbeat_record(at=timezone.now(), token=token)
