from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.security.services import operator_ensure


class Command(BaseCommand):
    help = "Create the operator's admin account from ADMIN_USERNAME / ADMIN_PASSWORD if it does not exist yet."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("ADMIN_USERNAME", "").strip()
        password = os.environ.get("ADMIN_PASSWORD", "")
        if not username or not password:
            raise CommandError("ADMIN_USERNAME and ADMIN_PASSWORD must both be set")
        created = operator_ensure(username=username, password=password, email=os.environ.get("ADMIN_EMAIL", ""))
        self.stdout.write(f"admin user {username!r} {'created' if created else 'already exists (left as it is)'}")
