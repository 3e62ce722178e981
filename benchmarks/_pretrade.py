"""The pre-trade check suite per order, with Redis: p50 and p99 beside one Redis round trip (the `risk` benchmark).

What one order pays before it is committed: the effective limits (one query), the account's positions, today's
fills and its open orders (three queries), the restricted list (one), the latest prices (one Redis read), every
pure check, and a slot of the orders-per-second limiter (one Redis script). The book is realistic for a desk:
30 positions out of the NIFTY 50, 200 fills today, 20 open orders. The floor is one Redis PING from this process,
measured interleaved. The database is a private SQLite file, as `make run`'s embedded default.

Environment: BENCH_PRETRADE_ORDERS (default 3000), REDIS_URL (else a private embedded Redis).
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks._stack import BenchStack
from benchmarks.stats import summarize_ns

GOAL_P99_MS = 2.0
# The checks run as if at 10:00 IST on a Monday, in the continuous session, so the session check is measured too.
MOMENT = datetime(2024, 6, 10, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata"))


def _seed() -> Any:
    """Migrate; a paper account holding 30 of 50 symbols, 200 fills today, 20 open orders; latest prices."""
    from django.core.management import call_command

    from apps.brokers.models import BrokerAccount
    from apps.marketdata import events
    from apps.marketdata.models import Instrument
    from apps.orders.models import Fill, Order, Position
    from apps.risk import services as risk
    from tradingsite.redis_client import get_redis

    call_command("migrate", verbosity=0)
    desk = next(row for row in risk.limits_list() if row.scope == "global")
    risk.limit_update(limit_id=desk.pk, changes={"orders_per_second": 10**6, "orders_per_day": 10**9},
                      changed_by="bench", source="bench")  # fmt: skip
    account = BrokerAccount.objects.create(name="bench paper", kind="paper")
    instruments = [Instrument.objects.create(tradingsymbol=f"SYM{i:02d}", instrument_token=1000 + i) for i in range(50)]
    now = MOMENT
    prices = {f"NSE:{i.tradingsymbol}": events.LatestPrice(Decimal("1000") + i.pk, now, i.instrument_token, "bench")
              for i in instruments}  # fmt: skip
    events.set_latest_prices(get_redis(), prices)
    for n, inst in enumerate(instruments[:30]):
        Position.objects.create(account=account, instrument=inst, product="CNC", net_quantity=10 + n,
                                average_price=Decimal("1000"))  # fmt: skip
    for n in range(220):
        inst = instruments[n % 30]
        order = Order.objects.create(
            client_order_id=f"bench-{n}", tag=f"b{n:08d}", account=account, instrument=inst,
            side="BUY" if n % 2 else "SELL", quantity=1, product="CNC", order_type="LIMIT", price=Decimal("1000"),
            status="COMPLETE" if n < 200 else "OPEN",
        )  # fmt: skip
        if n < 200:
            Fill.objects.create(order=order, trade_id=f"T{n}", quantity=1, price=Decimal("1000"), filled_at=now,
                                charges_total=Decimal("1.5"))  # fmt: skip
    return risk.PreTradeRequest(
        account_id=account.pk, account_kind="paper", strategy="bench", instrument=instruments[3], side="BUY",
        quantity=1, order_type="LIMIT", price=Decimal("1003"), trigger_price=None, kill_switch_on=False,
    )  # fmt: skip


def measure() -> tuple[list[list[object]], dict[str, Any]]:
    """Rows for the risk benchmark's table: (measurement, seconds, x floor, goal, met), and the raw data."""
    orders = int(os.environ.get("BENCH_PRETRADE_ORDERS", "3000"))
    with BenchStack("pretrade") as stack:
        stack.setup_django()
        from apps.risk import services as risk
        from tradingsite.redis_client import get_redis

        request = _seed()
        risk._now = lambda: MOMENT  # the services' one clock seam
        client = get_redis()
        checks, pings = [], []
        for n in range(orders + 200):
            t0 = time.perf_counter_ns()
            failures = risk.pre_trade_check(request=request)
            t1 = time.perf_counter_ns()
            client.ping()
            t2 = time.perf_counter_ns()
            if failures:
                raise RuntimeError(f"the benchmark order was refused: {failures}")
            if n >= 200:  # warm-up: connections, the calendar cache, the script's SHA
                checks.append(t1 - t0)
                pings.append(t2 - t1)
    check, ping = summarize_ns(checks), summarize_ns(pings)
    rows: list[list[object]] = [
        ["pre-trade suite per order, p50", f"{check.p50_ms / 1000:.6f}", f"{check.p50_ms / ping.p50_ms:.1f}x ping",
         "", ""],
        ["pre-trade suite per order, p99", f"{check.p99_ms / 1000:.6f}", f"{check.p99_ms / ping.p99_ms:.1f}x ping",
         f"<= {GOAL_P99_MS:g} ms", "yes" if check.p99_ms <= GOAL_P99_MS else "MISSED"],
        ["one Redis PING (floor), p50", f"{ping.p50_ms / 1000:.6f}", "1.0x", "", ""],
    ]  # fmt: skip
    data = {
        "orders": orders,
        "book": "30 positions of 50 symbols, 200 fills today, 20 open orders; SQLite (WAL) private file",
        "redis": stack.broker_kind,
        "check": check.as_dict(),
        "redis_ping": ping.as_dict(),
        "goal_p99_ms": GOAL_P99_MS,
    }
    return rows, data
