"""A private stack for one benchmark: a Redis, an environment, real worker processes.

Why it exists beside tests/support: a benchmark runs outside pytest, with no
test database, and it must choose Redis and the result backend *before* Django
settings are imported, because settings read the environment once, at import.
So `BenchStack` first picks the Redis (REDIS_URL if set, else a private
embedded redis-server under `var/bench/`), then writes the environment that
both this process and every worker it starts will read, then sets up Django.

Nothing at module level imports Django or Celery: the runner imports benchmark
modules (and so this one) only to find them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis

from tradingsite.config import broker_url_for, var_dir_from_env
from tradingsite.embedded_redis import EmbeddedRedis
from workers.supervision import ManagedProcess, ping_nodes, start_queue_workers, stop_all

if TYPE_CHECKING:
    from celery import Celery

WORKER_START_SECONDS = 120.0
# A Unix socket path longer than this does not fit in sockaddr_un (108 bytes with the NUL).
MAX_SOCKET_PATH = 100


def result_backend_for(redis_url: str) -> str:
    """Celery's Redis result backend spells a unix socket `redis+socket:///path` (as kombu does)."""
    return broker_url_for(redis_url)


def redacted(url: str) -> str:
    """The URL without its password, fit for a results file that may be shared."""
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not at or ":" not in auth:
        return url
    return f"{scheme}{sep}{auth.split(':', 1)[0]}:***@{host}"


class BenchStack:
    """Redis, environment and processes of one benchmark run; a context manager that stops all of it.

    On a clean exit the work directory (logs, the SQLite file, the embedded
    Redis) is removed; after a failure it is kept and its path printed, since
    the worker logs are what explains the failure.
    """

    def __init__(self, name: str) -> None:
        bench_root = var_dir_from_env(os.environ) / "bench"
        bench_root.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=bench_root))
        if len(str(self.workdir / "redis" / "redis.sock")) > MAX_SOCKET_PATH:
            self.workdir.rmdir()
            self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.log_dir = self.workdir / "logs"
        self.processes: list[ManagedProcess] = []
        self.embedded: EmbeddedRedis | None = None
        self.redis_url = os.environ.get("REDIS_URL", "").strip()  # empty: __enter__ starts an embedded one
        self.env: dict[str, str] = {}

    # --- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> BenchStack:
        try:
            if not self.redis_url:
                self.embedded = EmbeddedRedis(self.workdir / "redis").start()
                self.redis_url = self.embedded.url
            self._check_reachable()
            self.env = self._configure_environment()
        except BaseException:
            self._close(keep=True)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close(keep=exc_type is not None)

    def _close(self, *, keep: bool) -> None:
        try:
            stop_all(self.processes)
        finally:
            self.processes.clear()
            if self.embedded is not None:
                self.embedded.stop()
                self.embedded = None
            if keep and any(self.workdir.iterdir()):
                print(f"benchmark files kept in {self.workdir}", file=sys.stderr)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _check_reachable(self) -> None:
        """One clear line for a wrong REDIS_URL, instead of kombu's retries and a worker that waits a minute."""
        try:
            redis.Redis.from_url(self.redis_url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            raise RuntimeError(f"cannot reach Redis at {redacted(self.redis_url)}: {exc}") from None

    # --- environment ---------------------------------------------------------------
    @property
    def broker_kind(self) -> str:
        return "embedded" if self.embedded is not None else "external"

    @property
    def broker_url(self) -> str:
        return broker_url_for(self.redis_url)

    @property
    def result_backend(self) -> str:
        return result_backend_for(self.redis_url)

    def _configure_environment(self) -> dict[str, str]:
        """Point this process and its workers at the bench Redis, a private SQLite file, paper trading.

        The broker and the result backend are both this Redis: the project's
        default SQLAlchemy result backend polls, and a benchmark of it would
        measure its polling interval. TRADING_MODE is forced to paper so that
        workers started by a benchmark can never reach a live broker account.
        """
        if "tradingsite.settings" in sys.modules:
            raise RuntimeError("Django settings were imported before the benchmark environment was set")
        overrides = {
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": self.result_backend,
            "VAR_DIR": str(self.workdir),
            "DATABASE_URL": f"sqlite:///{self.workdir / 'db.sqlite3'}",
            "TRADING_MODE": "paper",
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(overrides)
        os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + os.urandom(16).hex())
        return dict(os.environ)

    def setup_django(self) -> Celery:
        """`django.setup()` under the bench environment; returns the project's Celery app."""
        import django

        django.setup()
        from tradingsite.celery import app

        return app

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    # --- processes -----------------------------------------------------------------
    def spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.env, self.log_dir / f"{name}.log")
        self.processes.append(proc)
        return proc.start()

    def start_workers(self, app: Celery, queues: Iterable[str], timeout: float = WORKER_START_SECONDS) -> None:
        """Start `python -m workers worker <queue>` for each queue and wait until each node answers a ping.

        On an external Redis it first refuses to run beside workers it did not
        start (they would take the benchmark's tasks and blur its numbers) or
        beside pending messages (its workers would run someone else's work
        against the benchmark's empty database).
        """
        names = list(queues)
        if self.embedded is None:
            self._refuse_shared_broker(app, names)
        procs = start_queue_workers(app, names, env=self.env, log_dir=self.log_dir, timeout=timeout)
        self.processes.extend(procs.values())

    def _refuse_shared_broker(self, app: Celery, queues: list[str]) -> None:
        foreign = ping_nodes(app)
        if foreign:
            raise RuntimeError(
                f"workers already listen on {redacted(self.redis_url)} ({', '.join(sorted(foreign))}); "
                "point REDIS_URL at a Redis database no stack uses"
            )
        client = self.redis_client()
        pending = {q: n for q in queues if (n := int(client.llen(q)))}
        if pending:
            counts = ", ".join(f"{q}: {n}" for q, n in pending.items())
            raise RuntimeError(
                f"queues on {redacted(self.redis_url)} hold pending messages ({counts}); "
                "point REDIS_URL at a Redis database with no pending work"
            )


def machine_extras(client: redis.Redis, broker_kind: str) -> dict[str, Any]:
    """Versions a reader needs to compare two runs of a queue benchmark."""
    from importlib.metadata import version

    info: dict[str, Any] = client.info("server")
    return {
        "celery": version("celery"),
        "kombu": version("kombu"),
        "redis_py": version("redis"),
        "redis_server": info.get("redis_version", "unknown"),
        "broker": broker_kind,
    }
