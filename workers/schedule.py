"""The default beat schedule, defined in code and installed into django-celery-beat's tables.

`manage.py install_schedule` writes these rows idempotently; once a row exists,
operations staff own it in the admin (interval, enabled) and a later install
leaves their edits alone unless asked to `--reset`. Repeating entries expire
after about 1.5x their interval so a backlog does not run a job twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Crontab:
    minute: str = "*"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: Crontab | None = None
    expires_seconds: int | None = None

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.crontab is None):
            raise ValueError(f"schedule entry {self.name!r} needs exactly one of every_seconds or crontab")

    @property
    def expires(self) -> int | None:
        if self.expires_seconds is not None:
            return self.expires_seconds
        if self.every_seconds is not None:
            return max(1, int(self.every_seconds * 1.5))
        return None


DEFAULT_SCHEDULE: tuple[ScheduleEntry, ...] = (
    ScheduleEntry(
        name="monitoring.heartbeat",
        task="monitoring.heartbeat",
        description="Proves beat and the default worker are alive; /readyz shows the last beat.",
        every_seconds=30,
    ),
    ScheduleEntry(
        name="orders.sweep",
        task="orders.sweep",
        description="The database is the outbox: re-enqueue QUEUED orders whose message was lost; "
        "mark SUBMITTING orders of dead workers UNKNOWN (never re-sent).",
        every_seconds=10,
    ),
    ScheduleEntry(
        name="orders.paper_sync",
        task="orders.paper_sync",
        description="Paper accounts: fill resting orders at the feed's latest prices and apply their updates.",
        every_seconds=2,
    ),
    ScheduleEntry(
        name="orders.reconcile",
        task="orders.reconcile",
        description="Every minute in market hours (IST): resolve UNKNOWN orders by tag, store missed fills, "
        "record EXTERNAL orders, compare positions with the broker's and alert on a difference.",
        crontab=Crontab(minute="*", hour="9-15", day_of_week="mon-fri"),
        expires_seconds=90,
    ),
    ScheduleEntry(
        name="risk.compute_var",
        task="risk.compute_var",
        description="Every 15 minutes in market hours (IST; crontab runs 09:00-15:45, the session is 09:15-15:30): "
        "historical VaR 99% 1-day of every enabled account's book; over its var_limit raises a breach alert.",
        crontab=Crontab(minute="*/15", hour="9-15", day_of_week="mon-fri"),
        expires_seconds=int(15 * 60 * 1.5),
    ),
    ScheduleEntry(
        name="risk.compute_var_close",
        task="risk.compute_var_close",
        description="At 15:35 IST after the close: the day's record, one VaR snapshot per method "
        "(historical, parametric, Monte Carlo).",
        crontab=Crontab(minute="35", hour="15", day_of_week="mon-fri"),
        expires_seconds=3600,
    ),
    ScheduleEntry(
        name="celery.backend_cleanup",
        task="celery.backend_cleanup",
        description="Deletes expired task results from the database result backend.",
        crontab=Crontab(minute="30", hour="4"),
        expires_seconds=3600,
    ),
)
