"""`manage.py demo_strategies [--if-empty] [--account NAME]`: paper strategy configs for the demo feed.

A fresh `make run` replays the latest stored minute session (the `feed` process). These configs, enabled and in
paper mode on the paper account, turn those replayed bars into signals and paper orders through the Orders
service, so the admin's Signals and Orders pages fill up within minutes. `--if-empty` (what `make run` calls)
does nothing once any strategy config exists. Built-ins that are not registered (yet) are skipped.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.brokers import selectors as accounts
from apps.strategies.configs import config_create
from apps.strategies.engine.strategy import REGISTRY, get_strategy
from apps.strategies.models import StrategyConfig
from tradingsite.exceptions import ApplicationError

# Ten liquid names; small capital, so the demo book's buys and these fit in the paper account's cash.
DEMO_SYMBOLS = ["RELIANCE", "HDFCBANK", "ICICIBANK", "INFY", "TCS", "ITC", "LT", "SBIN", "BHARTIARTL", "AXISBANK"]
DEMO_CONFIGS: tuple[dict[str, Any], ...] = (
    {
        "name": "demo-sma-minute",
        "strategy": "sma_crossover",
        "parameters": {"fast": 5, "slow": 20},
        "capital": Decimal(200_000),
        "product": "MIS",
    },
    {
        "name": "demo-orb",
        "strategy": "opening_range_breakout",
        "parameters": {},
        "capital": Decimal(100_000),
        "product": "MIS",
    },
)


class Command(BaseCommand):
    help = "Create enabled paper strategy configs on minute bars for the demo feed (what make run calls)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", default="", help="paper account name (default: the first paper account)")
        parser.add_argument("--if-empty", action="store_true", help="do nothing if any strategy config exists")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and StrategyConfig.objects.exists():
            self.stdout.write("demo strategies: configs exist already; nothing created")
            return
        get_strategy("sma_crossover")  # registers the built-ins
        account = self._account(options["account"])
        for spec in DEMO_CONFIGS:
            if spec["strategy"] not in REGISTRY:
                self.stdout.write(f"demo strategies: {spec['strategy']} is not a built-in here; skipped")
                continue
            if StrategyConfig.objects.filter(name=spec["name"]).exists():
                continue
            try:
                config = config_create(
                    **spec, symbols=DEMO_SYMBOLS, interval="minute", mode="paper", account=account, enabled=True,
                    by="demo_strategies",
                )  # fmt: skip
            except ApplicationError as exc:
                raise CommandError(f"{spec['name']}: {exc}") from None
            self.stdout.write(f"demo strategies: {config.name} ({config.strategy}) on {len(DEMO_SYMBOLS)} symbols")

    def _account(self, name: str) -> Any:
        account: Any = (
            accounts.account_get_by_name(name=name)
            if name
            else next((a for a in accounts.accounts_enabled() if a.kind == "paper"), None)
        )
        if account is None or account.kind != "paper":
            raise CommandError("demo strategies: no paper account (run `manage.py ensure_paper_account` first)")
        return account
