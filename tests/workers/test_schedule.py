"""The default beat schedule: installed idempotently, operators' edits survive."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from tradingsite.celery import app
from workers.routing import queue_for
from workers.schedule import DEFAULT_SCHEDULE, ScheduleEntry

pytestmark = pytest.mark.django_db


def test_install_creates_every_entry_routed_with_expiry(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("install_schedule")
    assert f"{len(DEFAULT_SCHEDULE)} created" in capsys.readouterr().out
    for entry in DEFAULT_SCHEDULE:
        row = PeriodicTask.objects.get(name=entry.name)
        assert row.task == entry.task and row.queue == queue_for(entry.task).value and row.enabled
        assert row.expire_seconds == entry.expires
        if entry.every_seconds:
            assert row.interval.every == entry.every_seconds and row.crontab is None
            assert row.expire_seconds == int(entry.every_seconds * 1.5)
        else:
            assert row.crontab is not None and row.interval is None


def test_every_scheduled_task_exists() -> None:
    app.loader.import_default_modules()
    for entry in DEFAULT_SCHEDULE:
        assert entry.task in app.tasks, entry.task


def test_second_install_changes_nothing_and_keeps_operator_edits(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("install_schedule")
    heartbeat = PeriodicTask.objects.get(name="monitoring.heartbeat")
    heartbeat.enabled = False  # an operator paused it in the admin
    heartbeat.save()
    capsys.readouterr()
    call_command("install_schedule")
    assert f"0 created, 0 reset, {len(DEFAULT_SCHEDULE)} kept" in capsys.readouterr().out
    assert PeriodicTask.objects.filter(name__in=[e.name for e in DEFAULT_SCHEDULE]).count() == len(DEFAULT_SCHEDULE)
    assert PeriodicTask.objects.get(name="monitoring.heartbeat").enabled is False
    call_command("install_schedule", "--reset")
    assert PeriodicTask.objects.get(name="monitoring.heartbeat").enabled is True


def test_an_entry_needs_exactly_one_kind_of_schedule() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ScheduleEntry(name="x", task="monitoring.ping", description="")
