"""`manage.py demo_book [--if-empty] [--account NAME]`: buy a small NIFTY 50 book on a paper account.

A fresh `make run` has no positions, so VaR, stress tests and the limits in use have nothing to show. This places
real orders through the OMS (pre-trade checks, the orders queue, the paper broker): LIMIT buys 3% above each
stock's last daily close, which the demo feed's prices cross within its first bars. `--if-empty` (what `make run`
calls) does nothing once the account has any demo-book order. Orders are tagged with strategy `demo`.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.brokers import selectors as accounts
from apps.marketdata import selectors as marketdata
from apps.orders.models import EventSource, Order
from apps.orders.placement import OrderInput, order_place
from tradingsite.exceptions import NotFound

# Eight sectors, about 80,000 rupees each (6.4 lakh of the paper account's 10): no symbol near the 40% limit.
DEMO_SYMBOLS = ("RELIANCE", "HDFCBANK", "INFY", "TCS", "ITC", "LT", "SUNPHARMA", "MARUTI")
VALUE_PER_SYMBOL = Decimal(80_000)
ABOVE_CLOSE = Decimal("1.03")
DEMO_STRATEGY = "demo"  # the strategy label of its orders (the demo strategy configs trade the same account)


def _last_close(symbol: str) -> tuple[Any, Decimal] | None:
    instrument = marketdata.instrument_get(symbol=symbol)
    last = marketdata.candle_range(instrument=instrument, interval="day").reverse().first()
    return (instrument, last.close) if last is not None else None


def _limit_price(close: Decimal, tick: Decimal) -> Decimal:
    return ((close * ABOVE_CLOSE) / tick).to_integral_value(rounding=ROUND_CEILING) * tick


class Command(BaseCommand):
    help = "Place a small demo book of NIFTY 50 buys on a paper account through the OMS (what make run calls)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", default="", help="paper account name (default: the first paper account)")
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing if the account has demo-book orders already"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = self._account(options["account"])
        placed_before = Order.objects.filter(account=account, strategy=DEMO_STRATEGY)
        if options["if_empty"] and placed_before.exists():
            self.stdout.write(f"demo book: account {account.name!r} has demo-book orders already; nothing placed")
            return
        placed = []
        for symbol in DEMO_SYMBOLS:
            try:
                found = _last_close(symbol)
            except NotFound:
                found = None
            if found is None:
                self.stdout.write(f"demo book: no daily candles for {symbol}; skipped")
                continue
            instrument, close = found
            quantity = max(1, int(VALUE_PER_SYMBOL / close))
            order = order_place(
                order=OrderInput(
                    account=account, instrument=instrument, side="BUY", quantity=quantity, product="CNC",
                    order_type="LIMIT", price=_limit_price(close, Decimal(instrument.tick_size)),
                    client_order_id=f"demo-{account.pk}-{symbol}", strategy=DEMO_STRATEGY,
                ),
                source=EventSource.OPERATOR,
            )  # fmt: skip
            placed.append(f"{symbol} x{quantity} {order.status}")
        self.stdout.write(f"demo book on {account.name!r}: " + (", ".join(placed) or "nothing placed"))

    @staticmethod
    def _account(name: str) -> Any:
        account: Any = (
            accounts.account_get_by_name(name=name)
            if name
            else next((a for a in accounts.accounts_enabled() if a.kind == "paper"), None)
        )
        if account is None or account.kind != "paper":
            raise CommandError("demo book: no paper account (run `manage.py ensure_paper_account` first)")
        return account
