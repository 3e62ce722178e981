"""`make run` end to end on the embedded default: the whole stack, in real processes.

Started exactly as an operator starts it, in a private VAR_DIR on free ports:
/readyz turns 200, Flower lists the five queue workers, the admin logs in
with the generated credentials; a second launcher is turned away; a port in
use stops a launcher before it starts anything; SIGINT (and SIGTERM to make)
leaves no process behind; a second run reuses what the first one made.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.support.stack import free_port
from tradingsite.config import BASE_DIR
from workers.queues import DEDICATED_QUEUES
from workers.supervision import wait_until

pytestmark = [pytest.mark.smoke, pytest.mark.processes]

READY_WITHIN_SECONDS = 90
STRIP = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SECRET_KEY", "VAR_DIR")


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    log: Path
    var_dir: Path
    web: int
    flower: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def credentials(self) -> tuple[str, str]:
        match = re.search(r"user '([^']+)', password '([^']+)'", self.output())
        assert match, self.output()[-3000:]
        return match.group(1), match.group(2)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)


def embedded_env(var_dir: Path, web: int, flower: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STRIP and not k.startswith("DJANGO_")}
    env.update(VAR_DIR=str(var_dir), WEB_PORT=str(web), FLOWER_PORT=str(flower), PYTHONUNBUFFERED="1")
    return env


def launch(var_dir: Path, web: int, flower: int, *, via_make: bool = False, name: str = "run") -> Stack:
    var_dir.mkdir(parents=True, exist_ok=True)
    log = var_dir.parent / f"{name}.log"
    argv = (
        ["make", "--no-print-directory", "run"] if via_make else [sys.executable, "-m", "tradingsite.launcher", "run"]
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=embedded_env(var_dir, web, flower),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Stack(proc, log, var_dir, web, flower)


def wait_ready(stack: Stack) -> dict:
    def ready() -> bool:
        assert stack.proc.poll() is None, f"launcher exited:\n{stack.output()[-4000:]}"
        try:
            return requests.get(f"{stack.url}/readyz", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    wait_until(ready, timeout=READY_WITHIN_SECONDS, interval=0.5, what="/readyz to answer 200")
    return requests.get(f"{stack.url}/readyz", timeout=5).json()


def stop(stack: Stack, sig: signal.Signals = signal.SIGINT) -> list[psutil.Process]:
    """Signal the launcher (or make) and wait; returns the processes it had started."""
    before = stack.descendants() if stack.proc.poll() is None else []
    if stack.proc.poll() is None:
        stack.proc.send_signal(sig)
        try:
            stack.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.proc.pid, signal.SIGKILL)
            for p in before:
                p.kill()
            raise
    return before


def assert_all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=10)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    running = launch(root / "var", free_port(), free_port())
    try:
        yield running
    finally:
        assert_all_gone(stop(running))


def admin_session(stack: Stack) -> requests.Session:
    session = requests.Session()
    session.get(f"{stack.url}/admin/login/", timeout=10)
    user, password = stack.credentials()
    session.post(
        f"{stack.url}/admin/login/?next=/admin/",
        data={"username": user, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{stack.url}/admin/login/"},
        timeout=10,
    )
    return session


def test_readyz_answers_200_within_90_seconds(stack: Stack) -> None:
    started = time.monotonic()
    body = wait_ready(stack)
    assert time.monotonic() - started < READY_WITHIN_SECONDS
    assert body["status"] == "ready" and body["checks"]["database"]["detail"] == "sqlite"
    assert {q: body["workers"][q]["ok"] for q in body["workers"]} == {q.value: True for q in DEDICATED_QUEUES}
    assert (stack.var_dir / "db.sqlite3").exists() and (stack.var_dir / "redis" / "redis.sock").exists()
    # The launcher polls /readyz once a second itself and then prints the banner again.
    wait_until(lambda: "stack ready in" in stack.output(), timeout=15, what="the launcher's ready banner")
    out = stack.output()
    for part in ("API     http", "Admin   http", "Flower  http"):
        assert part in out


def test_flower_lists_the_five_queue_workers(stack: Stack) -> None:
    wait_ready(stack)
    url = f"http://127.0.0.1:{stack.flower}/api/workers"
    assert requests.get(url, timeout=10).status_code == 401
    workers = requests.get(url, params={"refresh": 1}, auth=stack.credentials(), timeout=30).json()
    for queue in DEDICATED_QUEUES:
        assert any(name.startswith(f"{queue.value}@") for name in workers), sorted(workers)


def test_admin_login_page_loads_and_the_printed_credentials_log_in(stack: Stack) -> None:
    wait_ready(stack)
    session = requests.Session()
    page = session.get(f"{stack.url}/admin/login/", timeout=10)
    assert page.status_code == 200 and "Trading platform operations" in page.text
    user, password = stack.credentials()
    response = session.post(
        f"{stack.url}/admin/login/?next=/admin/",
        data={"username": user, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{stack.url}/admin/login/"},
        timeout=10,
    )
    assert response.status_code == 200 and response.url.endswith("/admin/") and "Log out" in response.text
    universes = session.get(f"{stack.url}/admin/marketdata/universe/", timeout=10).text
    assert "NIFTY 50" in universes
    coverage = session.get(f"{stack.url}/admin/marketdata/instrument/coverage/", params={"q": "RELIANCE"}, timeout=10)
    assert "RELIANCE" in coverage.text and "<td>minute</td>" in coverage.text


def test_the_api_serves_the_demo_universe_and_candles(stack: Stack) -> None:
    wait_ready(stack)
    auth = stack.credentials()
    instruments = requests.get(
        f"{stack.url}/api/v1/instruments/", params={"universe": "NIFTY 50"}, auth=auth, timeout=10
    ).json()
    assert instruments["count"] == 50
    candles = requests.get(
        f"{stack.url}/api/v1/candles/", params={"symbol": "RELIANCE", "interval": "day"}, auth=auth, timeout=10
    ).json()
    assert candles["count"] == 300 and {r["source"] for r in candles["results"]} == {"synthetic"}


def test_a_paper_order_placed_through_the_api_fills_with_a_position_and_net_pnl(stack: Stack) -> None:
    """The demo feed prices RELIANCE, the paper account `make run` creates takes a MARKET order, and the fill
    shows up as a position with P&L in the API and the admin."""
    wait_ready(stack)
    auth, api = stack.credentials(), f"{stack.url}/api/v1"
    wait_until(
        lambda: "NSE:RELIANCE" in requests.get(f"{api}/quotes/latest/", auth=auth, timeout=10).text,
        timeout=60,
        what="a RELIANCE price from the demo feed",
    )
    portfolio = requests.get(f"{api}/portfolio/", auth=auth, timeout=10).json()
    [paper] = [a for a in portfolio["accounts"] if a["kind"] == "paper"]
    body = {"account": paper["account"], "symbol": "RELIANCE", "side": "BUY", "quantity": 2, "product": "MIS"}
    body["order_type"] = "MARKET"
    placed = requests.post(f"{api}/orders/", json=body, auth=auth, headers={"Idempotency-Key": "smoke-1"}, timeout=10)
    assert placed.status_code == 201, placed.text[:300]
    order_url = f"{api}/orders/{placed.json()['id']}/"

    seen: list[dict] = []

    def complete() -> bool:
        seen.append(requests.get(order_url, auth=auth, timeout=10).json())
        return seen[-1]["status"] in {"COMPLETE", "REJECTED", "CANCELLED"}

    wait_until(complete, timeout=30, what="the paper order to fill")
    assert seen[-1]["status"] == "COMPLETE", (seen[-1]["status"], seen[-1]["status_message"], seen[-1]["events"])
    order = requests.get(order_url, auth=auth, timeout=10).json()
    assert order["filled_quantity"] == 2 and len(order["fills"]) == 1
    assert [e["to_status"] for e in order["events"]][-1] == "COMPLETE"
    positions = requests.get(f"{api}/positions/", auth=auth, timeout=10).json()["results"]
    [reliance] = [p for p in positions if p["symbol"] == "RELIANCE" and p["product"] == "MIS"]
    assert reliance["net_quantity"] == 2 and reliance["charges"] != "0.0000" and "net_pnl" in reliance
    totals = requests.get(f"{api}/portfolio/", auth=auth, timeout=10).json()["total"]
    assert totals["charges"] not in ("0", "0.00", "0.0000") and "net_pnl" in totals
    session = admin_session(stack)
    page = session.get(f"{stack.url}/admin/orders/position/", timeout=10).text
    assert "RELIANCE" in page and "net p&amp;l" in page.lower()


def test_var_and_limits_of_the_demo_book_in_the_api_and_the_admin(stack: Stack) -> None:
    """`make run` buys a demo book through the OMS; the risk worker prices it: VaR, ES, stress and limits show."""
    wait_ready(stack)
    auth, api = stack.credentials(), f"{stack.url}/api/v1"

    def demo_filled() -> bool:
        rows = requests.get(f"{api}/positions/", auth=auth, timeout=10).json()["results"]
        return len({p["symbol"] for p in rows if p["product"] == "CNC" and p["net_quantity"] > 0}) >= 5

    wait_until(demo_filled, timeout=90, what="the demo book's buys to fill")
    started = requests.post(f"{api}/risk/var/", json={"method": "montecarlo", "paths": 20000}, auth=auth, timeout=10)
    assert started.status_code == 202, started.text[:300]
    seen: list[dict] = []

    def done() -> bool:
        seen.append(requests.get(started.json()["status_url"], auth=auth, timeout=10).json())
        return seen[-1]["status"] != "pending"

    wait_until(done, timeout=120, what="the VaR computation on the risk worker")
    assert seen[-1]["status"] == "done", seen[-1]
    snapshot = seen[-1]["snapshot"]
    assert Decimal(snapshot["var"]) > 0 and Decimal(snapshot["es"]) >= Decimal(snapshot["var"])
    assert snapshot["var_se"] is not None and len(snapshot["positions"]) >= 5
    latest = requests.get(f"{api}/risk/var/", auth=auth, timeout=10).json()
    assert latest["id"] == snapshot["id"]
    stress = requests.get(f"{api}/risk/stress/", auth=auth, timeout=60)
    assert stress.status_code == 200 and "market_crash" in stress.text
    limits = requests.get(f"{api}/risk/limits/", auth=auth, timeout=10).json()
    assert any(r["scope"] == "global" and r["orders_per_second"] == 10 for r in limits["results"])
    session = admin_session(stack)
    page = session.get(f"{stack.url}/admin/risk/risksnapshot/{snapshot['id']}/change/", timeout=10).text
    symbols = [p["symbol"].split(":")[1] for p in snapshot["positions"]]  # the fills so far (the strategies trade too)
    assert "<svg" in page and all(s in page for s in symbols), (symbols, page[-3000:])
    assert "orders_per_second" in session.get(f"{stack.url}/admin/risk/risklimit/", timeout=10).text.lower() or (
        "orders per second" in session.get(f"{stack.url}/admin/risk/risklimit/", timeout=10).text.lower()
    )


def test_demo_strategies_turn_replayed_bars_into_signals_and_paper_orders(stack: Stack) -> None:
    """`make run` creates enabled paper configs on minute bars; the demo feed's bars reach them through the
    dispatcher and the signals worker, and a change of target becomes a paper order that fills."""
    wait_ready(stack)
    auth, api = stack.credentials(), f"{stack.url}/api/v1"
    demo: dict[str, Any] = {}

    def configs_made() -> bool:  # after the demo book, once the stack is ready
        demo.update({c["name"]: c for c in requests.get(f"{api}/strategies/", auth=auth, timeout=10).json()["results"]})
        return "demo-sma-minute" in demo

    wait_until(configs_made, timeout=60, interval=1, what="make run's demo strategy configs")
    assert demo["demo-sma-minute"]["enabled"] and demo["demo-sma-minute"]["mode"] == "paper"
    config_id = demo["demo-sma-minute"]["id"]
    seen: list[dict] = []

    def ordered() -> bool:
        page = requests.get(f"{api}/signals/", params={"config": config_id, "limit": 500}, auth=auth, timeout=10)
        seen[:] = page.json()["results"]
        return any(s["action"] == "ordered" for s in seen)

    wait_until(ordered, timeout=240, interval=2, what="a demo signal that places an order")
    assert {s["config_name"] for s in seen} == {"demo-sma-minute"}
    assert all(s["target"] in (0.0, 1.0) for s in seen)
    signal_row = next(s for s in seen if s["action"] == "ordered")
    order_url = f"{api}/orders/{signal_row['order']}/"
    wait_until(
        lambda: requests.get(order_url, auth=auth, timeout=10).json()["status"] in {"COMPLETE", "REJECTED"},
        timeout=60,
        what="the strategy's paper order to finish",
    )
    order = requests.get(order_url, auth=auth, timeout=10).json()
    assert order["status"] == "COMPLETE", (order["status"], order["status_message"])
    assert order["strategy"] == "demo-sma-minute" and order["filled_quantity"] > 0
    page = admin_session(stack).get(f"{stack.url}/admin/strategies/signal/", timeout=10).text
    assert "demo-sma-minute" in page


def run_to_completion(stack: Stack, body: dict[str, Any], what: str) -> dict[str, Any]:
    auth, api = stack.credentials(), f"{stack.url}/api/v1"
    started = requests.post(f"{api}/backtests/", json=body, auth=auth, timeout=30)
    assert started.status_code in (200, 202), started.text[:500]
    url = f"{api}/backtests/{started.json()['id']}/"
    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(requests.get(url, auth=auth, timeout=10).json())
        return seen[-1]["status"] in {"done", "failed"}

    wait_until(finished, timeout=180, interval=1, what=what)
    assert seen[-1]["status"] == "done", seen[-1].get("error")
    assert seen[-1]["progress"] == 1.0
    return seen[-1]


def test_grid_walk_forward_and_monte_carlo_runs_on_the_backtests_workers_show_their_charts(stack: Stack) -> None:
    """POST /backtests/ on the demo daily candles: chunks on the backtests queue, chords, the admin's charts."""
    wait_ready(stack)
    common: dict[str, Any] = {
        "strategy": "sma_crossover", "symbols": ["RELIANCE", "INFY", "TCS", "ITC"], "interval": "day",
        "start": "2000-01-01", "end": "2100-01-01",
    }  # fmt: skip
    grid = run_to_completion(
        stack, {**common, "kind": "grid", "grid": {"fast": [5, 10, 15], "slow": [20, 30, 40]}}, "the grid run"
    )
    assert len(grid["results"]["rows"]) == 9 and grid["chunks_total"] >= 1
    wf_options = {"folds": 2, "mode": "anchored", "grid": {"fast": [5, 10], "slow": [20, 30]}}
    walk = run_to_completion(stack, {**common, "kind": "walk_forward", "walk_forward": wf_options}, "walk-forward")
    assert len(walk["results"]["folds"]) == 2 and walk["equity"]
    mc_options = {"simulations": 500, "method": "bootstrap", "seed": 1}
    carlo = run_to_completion(
        stack, {**common, "kind": "monte_carlo", "source_run": grid["id"], "monte_carlo": mc_options}, "Monte Carlo"
    )
    assert 0.0 <= carlo["results"]["probability_of_ruin"] <= 1.0
    session = admin_session(stack)
    pages = {
        run["kind"]: session.get(f"{stack.url}/admin/strategies/backtestrun/{run['id']}/change/", timeout=10).text
        for run in (grid, walk, carlo)
    }
    assert pages["grid"].count("<svg") >= 3 and "heatmap" in pages["grid"].lower()  # equity, drawdown, heatmap
    assert pages["walk_forward"].count("<svg") >= 2 and "fold" in pages["walk_forward"].lower()
    assert pages["monte_carlo"].count("<svg") >= 2 and "ruin" in pages["monte_carlo"].lower()


def test_a_second_launcher_on_the_same_var_is_turned_away(stack: Stack) -> None:
    second = launch(stack.var_dir, free_port(), free_port(), name="second")
    assert second.proc.wait(60) == 2
    assert "the stack is already running" in second.output()
    assert requests.get(f"{stack.url}/readyz", timeout=5).status_code == 200


def test_a_port_in_use_stops_a_launcher_before_anything_starts(stack: Stack, tmp_path: Path) -> None:
    other = launch(tmp_path / "var", stack.web, free_port(), name="busy-port")
    assert other.proc.wait(60) == 2
    assert f"port {stack.web} (WEB_PORT) is already in use" in other.output()
    assert not (tmp_path / "var" / "redis" / "redis.sock").exists()
    assert not (tmp_path / "var" / "db.sqlite3").exists()


def test_sigint_stops_everything_and_a_rerun_via_make_reuses_it_then_sigterm_stops_it(stack: Stack) -> None:
    wait_ready(stack)
    user, password = stack.credentials()
    started = stop(stack, signal.SIGINT)
    assert len(started) >= 10  # honcho's runners and the 9 Procfile processes with their pools
    assert_all_gone(started)
    assert not (stack.var_dir / "redis" / "redis.sock").exists()

    again = launch(stack.var_dir, stack.web, stack.flower, via_make=True, name="rerun")
    try:
        wait_ready(again)
        out = again.output()
        assert "No migrations to apply" in out and "already exists" in out and "0 created" in out
        assert "seed_demo: candles exist already; nothing to do" in out
        assert again.credentials() == (user, password)
    finally:
        processes = stop(again, signal.SIGTERM)
    assert_all_gone(processes)
