from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError, transaction

from apps.brokers.models import BrokerAccount


class Command(BaseCommand):
    help = (
        "Add a broker account (paper or Kite) or list them. Secrets are stored encrypted and never printed: "
        "the list says only whether each is set."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create an account")
        add.add_argument("--name", required=True)
        add.add_argument("--kind", required=True, choices=BrokerAccount.Kind.values)
        add.add_argument("--api-key", default="", help="Kite Connect app key (required for kite)")
        add.add_argument("--api-secret", default="", help="Kite Connect app secret (stored encrypted)")
        add.add_argument("--access-token", default="", help="today's Kite access token (stored encrypted)")
        add.add_argument("--algo-id", default="", help="exchange-issued algo id sent with every order")
        add.add_argument(
            "--user", action="append", default=[], metavar="USERNAME", help="grant to this user (repeatable)"
        )
        add.add_argument("--disabled", action="store_true", help="create it disabled")
        sub.add_parser("list", help="list the accounts (secrets shown only as set / not set)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "add":
            self._add(options)
        else:
            self._list()

    def _add(self, o: dict[str, Any]) -> None:
        name = o["name"].strip()
        if not name:
            raise CommandError("--name must not be empty")
        if o["kind"] == BrokerAccount.Kind.KITE and not o["api_key"]:
            raise CommandError("a kite account needs --api-key (and --api-secret to log in)")
        users = list(get_user_model().objects.filter(username__in=o["user"]))
        missing = sorted(set(o["user"]) - {u.get_username() for u in users})
        if missing:
            raise CommandError(f"no such user: {', '.join(missing)}")
        try:
            with transaction.atomic():
                account = BrokerAccount.objects.create(
                    name=name,
                    kind=o["kind"],
                    api_key=o["api_key"],
                    api_secret=o["api_secret"],
                    access_token=o["access_token"],
                    algo_id=o["algo_id"],
                    enabled=not o["disabled"],
                    disabled_reason="created disabled" if o["disabled"] else "",
                )
                account.users.set(users)
        except IntegrityError:
            raise CommandError(f"an account named {name!r} exists already") from None
        self.stdout.write(f"broker account {account.pk} {account.name!r} ({account.kind}) created")
        self._list(only=account.pk)

    def _list(self, only: int | None = None) -> None:
        accounts = BrokerAccount.objects.prefetch_related("users").order_by("name")
        if only is not None:
            accounts = accounts.filter(pk=only)
        if not accounts:
            self.stdout.write("no broker accounts")
        for a in accounts:
            state = "enabled" if a.enabled else f"DISABLED ({a.disabled_reason})"
            users = ", ".join(sorted(u.get_username() for u in a.users.all())) or "-"
            self.stdout.write(
                f"{a.pk:>4}  {a.name}  {a.kind}  {state}  api_key {_set(a.api_key)}  api_secret {_set(a.api_secret)}"
                f"  access_token {_set(a.access_token)}  algo_id {a.algo_id or '-'}  users {users}"
            )


def _set(value: str) -> str:
    return "set" if value else "not set"
