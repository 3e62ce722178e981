"""/healthz and /readyz; the live-worker cases are in tests/workers/test_live_workers.py."""

from __future__ import annotations

import pytest

from tradingsite import redis_client

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_anything(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "alive"}


def test_readyz_is_503_and_names_redis_when_redis_is_unreachable(client, settings, tmp_path) -> None:
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-listens-here.sock"
    settings.READINESS_PING_TIMEOUT = 0.2
    redis_client._client.cache_clear()
    try:
        response = client.get("/readyz")
    finally:
        redis_client._client.cache_clear()
    body = response.json()
    assert response.status_code == 503 and body["status"] == "not ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False and "ConnectionError" in body["checks"]["redis"]["detail"]
    assert set(body["workers"]) == {"signals", "orders", "risk", "backtests", "default"}
