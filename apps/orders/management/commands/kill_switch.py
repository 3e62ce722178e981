from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.brokers import selectors as broker_accounts
from apps.orders.control import kill_switch_set
from tradingsite.exceptions import ApplicationError


class Command(BaseCommand):
    help = (
        "Turn the kill switch on or off, for everything or for one account. On: no order leaves, QUEUED and "
        "open orders are cancelled, and with --square-off open MIS positions are closed at market. "
        "See docs/kill-switch.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("on", "off"))
        parser.add_argument("--account", metavar="NAME", help="one broker account (by name); default: global")
        parser.add_argument("--square-off", action="store_true", help="also close open MIS positions (with on)")
        parser.add_argument("--reason", default="", help="why (kept on the switch)")

    def handle(self, *args: Any, **options: Any) -> None:
        active = options["action"] == "on"
        if options["square_off"] and not active:
            raise CommandError("--square-off only goes with 'on'")
        try:
            account_id = broker_accounts.account_get_by_name(name=options["account"]).pk if options["account"] else None
            result = kill_switch_set(
                active=active,
                account_id=account_id,
                reason=options["reason"],
                by=f"manage.py ({getpass.getuser()})",
                square_off=options["square_off"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        state = "ON" if result.active else "off"
        self.stdout.write(
            f"kill switch {result.scope}: {state}" + ("" if result.changed else f" (was already {state})")
        )
        if not active:
            return
        self.stdout.write(f"cancelled {len(result.cancelled)} order(s)" + _ids(result.cancelled))
        for order_id, why in result.not_cancelled.items():
            self.stdout.write(f"NOT cancelled: order {order_id}: {why}")
        if options["square_off"]:
            self.stdout.write(f"square-off: {len(result.square_off_orders)} order(s)" + _ids(result.square_off_orders))
            for key, why in result.square_off_skipped.items():
                self.stdout.write(f"square-off skipped {key}: {why}")


def _ids(ids: list[int]) -> str:
    return f": {', '.join(map(str, ids))}" if ids else ""
