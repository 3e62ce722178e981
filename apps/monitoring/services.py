"""Writes of the monitoring area: heartbeats and the default beat schedule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from tradingsite.redis_client import get_redis
from workers.routing import queue_for
from workers.schedule import DEFAULT_SCHEDULE, ScheduleEntry

HEARTBEAT_KEY = "monitoring:beat:heartbeat"


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
