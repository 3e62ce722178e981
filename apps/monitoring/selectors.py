"""Reads of the monitoring area: the readiness report behind `/readyz`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection

from apps.monitoring.services import HEARTBEAT_KEY
from tradingsite.celery import app as celery_app
from tradingsite.redis_client import get_redis
from workers.queues import DEDICATED_QUEUES

# What a failed check reports is the exception text; these are the failures a
# readiness probe must survive and name, not crash on.
_PROBE_ERRORS = (OSError, ConnectionError, TimeoutError, RuntimeError, ValueError)


@dataclass
class Check:
    ok: bool
    detail: str
    nodes: list[str] = field(default_factory=list)


def _check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready"; it is reported
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return Check(ok=True, detail=connection.vendor)


def _check_redis() -> Check:
    try:
        get_redis().ping()
    except Exception as exc:  # noqa: BLE001 - redis-py raises its own hierarchy; reported, not swallowed
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}")
    return Check(ok=True, detail="PONG")


def _ping_workers(timeout: float) -> tuple[list[str], str | None]:
    try:
        with celery_app.connection_for_write() as conn:
            # Fail fast: a probe must answer within seconds, not ride kombu's start-up retries.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=1, timeout=2)
            replies = celery_app.control.ping(timeout=timeout, connection=conn) or []
    except Exception as exc:  # noqa: BLE001 - broker unreachable: every worker check fails with this reason
        return [], f"broker unreachable: {type(exc).__name__}: {exc}"
    return sorted(name for reply in replies for name in reply), None


def _worker_checks(timeout: float) -> dict[str, Check]:
    nodes, error = _ping_workers(timeout)
    checks = {}
    for queue in DEDICATED_QUEUES:
        mine = [n for n in nodes if n.startswith(f"{queue.value}@")]
        if mine:
            checks[queue.value] = Check(ok=True, detail="pong", nodes=mine)
        else:
            checks[queue.value] = Check(ok=False, detail=error or f"no worker answered a ping within {timeout}s")
    return checks


def _beat_heartbeat() -> dict[str, Any]:
    try:
        raw = get_redis().get(HEARTBEAT_KEY)
    except Exception:  # noqa: BLE001 - informational only; the redis check reports the failure
        return {"last": None}
    return {"last": json.loads(raw)["at"] if raw else None}


def readiness_report(*, ping_timeout: float | None = None) -> dict[str, Any]:
    timeout = ping_timeout if ping_timeout is not None else settings.READINESS_PING_TIMEOUT
    checks = {"database": _check_database(), "redis": _check_redis()}
    workers = _worker_checks(timeout)
    ready = all(c.ok for c in checks.values()) and all(c.ok for c in workers.values())
    return {
        "status": "ready" if ready else "not ready",
        "checks": {name: asdict(c) for name, c in checks.items()},
        "workers": {name: asdict(c) for name, c in workers.items()},
        "beat": _beat_heartbeat(),
        "trading_mode": settings.TRADING_MODE,
    }
