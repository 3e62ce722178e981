from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.monitoring.services import schedule_install


class Command(BaseCommand):
    help = (
        "Install the default beat schedule (workers/schedule.py) into django-celery-beat's tables. "
        "Idempotent: existing rows keep operators' edits unless --reset."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset", action="store_true", help="overwrite existing rows with the code's defaults")

    def handle(self, *args: Any, **options: Any) -> None:
        result = schedule_install(reset=options["reset"])
        self.stdout.write(
            f"beat schedule: {len(result.created)} created, {len(result.reset)} reset, "
            f"{len(result.kept)} kept as operators left them"
        )
