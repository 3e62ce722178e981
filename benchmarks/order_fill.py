"""Order to fill: REST POST of a paper MARKET order until its fill is committed, beside a no-op orders task.

Why: a strategy's signal pays this latency before it is in the market. The floor
is what the platform cannot go below for anything that goes through the `orders`
queue: a no-op task sent there and awaited (the `queue_roundtrip` benchmark's
probe), measured in the same run, interleaved order by order. The goal is p50 of
the full path at most 2x that floor.

The full path, as a trader's script sees it: an HTTP POST to a real gunicorn
(session-authenticated, CSRF token, `Idempotency-Key`), the view's validation,
pre-trade checks and commit, the `orders.execute` task on a real orders worker
(claim, PaperBroker placement in Redis, the paper fill applied, fill and
position committed), and this process polling the database until the Fill row
is visible. "POST answered" is the HTTP response alone.

Environment: BENCH_ORDERS (default 1000), BENCH_WARMUP (default 20), REDIS_URL
(a Redis database no stack uses; without it a private embedded one is started).
The database is a private SQLite file (WAL), as `make run`'s embedded default.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from typing import Any

from benchmarks._stack import BenchStack, machine_extras, redacted
from benchmarks.queue_roundtrip import TaskRoundTrip, env_count
from benchmarks.stats import Report, Summary, ratio, summarize_ns

DEFAULT_ORDERS = 1000
DEFAULT_WARMUP = 20
FILL_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.0005
GOAL_P50_RATIO = 2.0
NOOP = "no-op task on orders"
FILL = "POST -> fill committed"
POSTED = "POST answered"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def _setup_data() -> tuple[Any, int]:
    """Schema, a superuser with a session, a paper account, INFY with a latest price."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.utils import timezone

    from apps.brokers.models import BrokerAccount
    from apps.marketdata import events
    from apps.marketdata.models import Instrument
    from apps.risk import services as risk
    from tradingsite.redis_client import get_redis

    call_command("migrate", verbosity=0)
    # One order after another as fast as they fill passes SEBI's 10 a second: this measures latency, not limits.
    desk = next(row for row in risk.limits_list() if row.scope == "global")
    fast = {"orders_per_second": 10**6, "orders_per_day": 10**9}
    risk.limit_update(limit_id=desk.pk, changes=fast, changed_by="bench", source="bench")
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", uuid.uuid4().hex)
    account = BrokerAccount.objects.create(name="bench paper", kind="paper")
    account.users.add(user)
    Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065, tick_size=Decimal("0.05"))
    price = events.LatestPrice(Decimal("1500"), timezone.now(), 408065, "bench")
    events.set_latest_prices(get_redis(), {"NSE:INFY": price})
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return session.session_key, account.pk


class OrderProbe:
    """One order: POST it, then poll until its fill is committed; records both times."""

    def __init__(self, http: Any, base: str, account_id: int) -> None:
        from apps.orders.models import Fill

        self.fills = Fill.objects
        self.http = http
        self.url = f"{base}/api/v1/orders/"
        self.account_id = account_id
        self.counter = 0
        self.posted: list[int] = []

    def once(self) -> int:
        self.counter += 1
        body = {
            "account": self.account_id,
            "symbol": "INFY",
            "side": "BUY" if self.counter % 2 else "SELL",
            "quantity": 1,
            "product": "MIS",
            "order_type": "MARKET",
        }
        headers = {"Idempotency-Key": f"bench-{uuid.uuid4().hex}"}
        started = time.perf_counter_ns()
        response = self.http.post(self.url, json=body, headers=headers, timeout=FILL_TIMEOUT_SECONDS)
        answered = time.perf_counter_ns()
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/v1/orders/ answered {response.status_code}: {response.text[:300]}")
        order_id = response.json()["id"]
        deadline = time.monotonic() + FILL_TIMEOUT_SECONDS
        while not self.fills.filter(order_id=order_id).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"order {order_id} had no fill after {FILL_TIMEOUT_SECONDS:.0f}s")
            time.sleep(POLL_SECONDS)
        done = time.perf_counter_ns()
        self.posted.append(answered - started)
        return done - started


def run() -> Report:
    orders = env_count("BENCH_ORDERS", DEFAULT_ORDERS, minimum=1)
    warmup = env_count("BENCH_WARMUP", DEFAULT_WARMUP, minimum=0)
    os.environ["PAPER_MARKET_HOURS"] = "false"  # fills at any hour: the benchmark must not depend on the clock
    with BenchStack("order_fill") as stack:
        app = stack.setup_django()
        import requests

        from apps.monitoring.tasks import ping

        session_key, account_id = _setup_data()
        port = _free_port()
        web = [sys.executable, "-m", "gunicorn", "tradingsite.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        stack.spawn("web", [*web, "--workers", "1", "--threads", "4"])
        stack.start_workers(app, ["orders"])
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz")
        http = requests.Session()
        http.cookies.set("sessionid", session_key)
        http.get(f"{base}/admin/login/", timeout=10)  # sets the csrftoken cookie
        http.headers["X-CSRFToken"] = http.cookies.get("csrftoken") or ""
        http.headers["Referer"] = base
        order_probe = OrderProbe(http, base, account_id)
        task_ids: list[str] = []
        noop = TaskRoundTrip(ping, "orders", task_ids)
        fill_samples: list[int] = []
        noop_samples: list[int] = []
        for i in range(warmup + orders):
            pair = [(noop.once, noop_samples), (order_probe.once, fill_samples)]
            for once, samples in pair if i % 2 else reversed(pair):
                elapsed = once()
                if i >= warmup:
                    samples.append(elapsed)
        posted = order_probe.posted[warmup:]
        machine = machine_extras(stack.redis_client(), stack.broker_kind)
        config = {
            "orders": orders,
            "warmup": warmup,
            "database": "SQLite (WAL), private file",
            "web": "gunicorn, 1 worker x 4 threads, session auth",
            "broker_url": redacted(stack.broker_url),
            "order": "interleaved: no-op task, order (alternating which goes first)",
        }
    summaries = {NOOP: summarize_ns(noop_samples), FILL: summarize_ns(fill_samples), POSTED: summarize_ns(posted)}
    return build_report(summaries, config=config, machine=machine)


def build_report(summaries: dict[str, Summary], *, config: dict[str, Any], machine: dict[str, Any]) -> Report:
    floor = summaries[NOOP]
    ratios = {
        label: {"p50": ratio(s.p50_ms, floor.p50_ms), "p99": ratio(s.p99_ms, floor.p99_ms)}
        for label, s in summaries.items()
    }
    fill_p50 = ratios[FILL]["p50"]
    verdict = "met" if fill_p50 is not None and fill_p50 <= GOAL_P50_RATIO else "missed"
    rows: list[list[object]] = [
        [
            label,
            *(f"{v:.2f}" for v in (s.p50_ms, s.p99_ms, s.mean_ms, s.max_ms)),
            _times(ratios[label]["p50"]),
            _times(ratios[label]["p99"]),
        ]
        for label, s in summaries.items()
    ]
    return Report(
        title=(
            f"order_fill: REST POST of a paper MARKET order until its fill is committed vs a no-op task on the "
            f"orders queue ({config['orders']} each after {config['warmup']} warm-up, {machine['broker']} Redis)"
        ),
        headers=["series", "p50 ms", "p99 ms", "mean ms", "max ms", "p50 / no-op", "p99 / no-op"],
        rows=rows,
        data={
            "config": config,
            "series": {label: s.as_dict() for label, s in summaries.items()},
            "ratios": ratios,
            "goal": {"p50_ratio_at_most": GOAL_P50_RATIO, "verdict": verdict},
        },
        machine=machine,
        notes=[f"goal: POST -> fill p50 <= {GOAL_P50_RATIO:g}x the no-op task: {verdict} ({_times(fill_p50)})"],
    )


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
