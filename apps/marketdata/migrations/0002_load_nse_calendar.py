"""Load the NSE holiday and special-session table shipped with the code into CalendarDay.

Idempotent (update_or_create on exchange + date); the reverse deletes the dates the CSV lists.
After this, operators own the rows and edit them in the admin. The CSV is parsed here rather than
through apps.marketdata.calendar so that this migration keeps meaning what it meant when written.
"""

import csv
from datetime import date, time
from pathlib import Path

from django.db import migrations

CSV_PATH = Path(__file__).resolve().parent.parent / "data" / "nse_calendar.csv"
EXCHANGE = "NSE"


def _rows():
    with CSV_PATH.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if row["kind"] not in ("closed", "special"):
                raise ValueError(f"{CSV_PATH}, line {line}: unknown kind {row['kind']!r}")
            yield {
                "date": date.fromisoformat(row["date"]),
                "kind": row["kind"],
                "description": row["description"],
                "open_time": time.fromisoformat(row["open_time"]) if row["open_time"] else None,
                "close_time": time.fromisoformat(row["close_time"]) if row["close_time"] else None,
                "source": row["source"],
            }


def load(apps, schema_editor):
    CalendarDay = apps.get_model("marketdata", "CalendarDay")
    for row in _rows():
        day = row.pop("date")
        CalendarDay.objects.update_or_create(exchange=EXCHANGE, date=day, defaults=row)


def unload(apps, schema_editor):
    CalendarDay = apps.get_model("marketdata", "CalendarDay")
    CalendarDay.objects.filter(exchange=EXCHANGE, date__in=[row["date"] for row in _rows()]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(load, unload),
    ]
