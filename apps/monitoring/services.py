"""Writes of the monitoring area: heartbeats and the default beat schedule."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from tradingsite.redis_client import get_redis
from workers.routing import queue_for
from workers.schedule import DEFAULT_SCHEDULE, ScheduleEntry

HEARTBEAT_KEY = "monitoring:beat:heartbeat"
log = logging.getLogger(__name__)


def heartbeat_record(*, at: datetime, token: str = "") -> None:
    get_redis().set(HEARTBEAT_KEY, json.dumps({"at": at.isoformat(), "token": token}))


@dataclass
class ScheduleInstallResult:
    created: list[str]
    reset: list[str]
    kept: list[str]


def _schedule_for(entry: ScheduleEntry) -> dict[str, object]:
    if entry.every_seconds is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(every=entry.every_seconds, period=IntervalSchedule.SECONDS)
        return {"interval": interval, "crontab": None}
    assert entry.crontab is not None
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=entry.crontab.minute,
        hour=entry.crontab.hour,
        day_of_week=entry.crontab.day_of_week,
        day_of_month=entry.crontab.day_of_month,
        month_of_year=entry.crontab.month_of_year,
        timezone="Asia/Kolkata",
    )
    return {"interval": None, "crontab": crontab}


@transaction.atomic
def schedule_install(
    *, reset: bool = False, entries: tuple[ScheduleEntry, ...] = DEFAULT_SCHEDULE
) -> ScheduleInstallResult:
    """Install the code-defined schedule; rows that exist are the operators' unless `reset`."""
    result = ScheduleInstallResult(created=[], reset=[], kept=[])
    for entry in entries:
        existing = PeriodicTask.objects.select_for_update().filter(name=entry.name).first()
        if existing is not None and not reset:
            result.kept.append(entry.name)
            continue
        fields = {
            "task": entry.task,
            "queue": queue_for(entry.task).value,
            "description": entry.description,
            "expire_seconds": entry.expires,
            "enabled": True,
            **_schedule_for(entry),
        }
        PeriodicTask.objects.update_or_create(name=entry.name, defaults=fields)
        (result.reset if existing else result.created).append(entry.name)
    return result


ALERT_STREAM = "monitoring:alerts"
ALERT_STREAM_MAXLEN = 10_000


def alert_raise(
    *, kind: str, message: str, source: str, at: datetime | None = None, client: Any = None, **details: object
) -> None:
    """An operational alert: a WARNING log line and an entry on the `monitoring:alerts` Redis stream.

    The stream keeps the field names the ticker already writes (kind, source, message, time), plus a JSON
    `details` field; `alerts_recent()` reads it back for the admin and the API.
    """
    from django.utils import timezone

    moment = at or timezone.now()
    log.warning("alert kind=%s source=%s: %s", kind, source, message)
    fields = {"kind": kind, "source": source, "message": message, "time": moment.isoformat()}
    if details:
        fields["details"] = json.dumps(details, default=str)
    try:
        (client or get_redis()).xadd(ALERT_STREAM, fields, maxlen=ALERT_STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    except redis.RedisError:
        log.exception("could not record alert %s on %s", kind, ALERT_STREAM)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def alerts_recent(*, count: int = 100, kind: str | None = None) -> list[dict[str, str]]:
    """The newest alerts first (at most `count`, optionally of one kind)."""
    rows: list[dict[str, str]] = []
    entries: Any = get_redis().xrevrange(ALERT_STREAM, count=count if kind is None else count * 10)
    for entry_id, raw in entries or []:
        fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
        if kind is None or fields.get("kind") == kind:
            rows.append({"id": _text(entry_id), **fields})
    return rows[:count]
