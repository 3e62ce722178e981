from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.brokers import selectors as broker_accounts
from apps.brokers import services as brokers
from apps.brokers.base import BrokerError
from apps.orders.reconciliation import reconcile_account
from tradingsite.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Bring the OMS in line with the broker's order book and trades, for every enabled account or one "
        "(resolves UNKNOWN orders, stores missed fills, records EXTERNAL orders). Exit status 1 if any "
        "account reported errors or position mismatches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", metavar="NAME", help="one broker account (by name); default: all enabled")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            accounts = (
                [broker_accounts.account_get_by_name(name=options["account"])]
                if options["account"]
                else broker_accounts.accounts_enabled()
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if not accounts:
            self.stdout.write("reconcile_orders: no enabled account")
            return
        troubled = []
        for account in accounts:
            try:
                report = reconcile_account(account_id=account.pk).as_dict()
            except (BrokerError, brokers.BrokerNotAvailable, brokers.KiteNotConfigured) as exc:
                report = {"account": account.name, "errors": [f"{type(exc).__name__}: {exc}"]}
                report["position_mismatches"] = []
            problems = report.pop("errors") + report.pop("position_mismatches")
            figures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.items() if k != "account")
            self.stdout.write(f"{account.name}: {figures or 'not reconciled'}")
            for problem in problems:
                self.stdout.write(f"  {problem}")
            if problems:
                troubled.append(account.name)
        if troubled:
            raise CommandError(f"reconciliation found problems on: {', '.join(troubled)}")
