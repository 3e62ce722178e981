from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.brokers.services import paper_account_ensure


class Command(BaseCommand):
    help = "Create a paper broker account if none exists and grant it to every superuser (what make run calls)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="paper", help="name of the account if one is created ('paper')")

    def handle(self, *args: Any, **options: Any) -> None:
        account, created = paper_account_ensure(name=options["name"])
        state = "created" if created else "exists"
        self.stdout.write(f"paper account {account.name!r} (id {account.pk}) {state}; granted to every superuser")
