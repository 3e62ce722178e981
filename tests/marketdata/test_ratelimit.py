"""The Redis rate limiter, against the real Redis of the test session, from several processes at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from django.conf import settings

from tradingsite.config import BASE_DIR
from tradingsite.ratelimit import RateLimiter, RateLimitTimeout
from tradingsite.redis_client import get_redis


def assert_no_window_exceeds(times: list[float], rate: int, per_seconds: float = 1.0) -> None:
    """Every `rate + 1` consecutive grants span at least `per_seconds`: no window holds more than `rate`."""
    times = sorted(times)
    for i in range(len(times) - rate):
        span = times[i + rate] - times[i]
        assert span >= per_seconds, f"{rate + 1} grants within {span:.4f}s, from grant {i} on"


@pytest.fixture
def key(unique_token: str) -> str:
    return f"test:{unique_token}"


def test_try_acquire_grants_the_rate_then_refuses_until_the_window_moves(key: str) -> None:
    limiter = RateLimiter(get_redis(), key, rate=3, per_seconds=1)
    assert [limiter.try_acquire() for _ in range(3)] == [True, True, True]
    refused = limiter.attempt()
    assert not refused.granted
    assert 0 < refused.wait_seconds <= 1.05
    assert not limiter.try_acquire()


def test_acquire_waits_until_the_oldest_grant_leaves_the_window(key: str) -> None:
    limiter = RateLimiter(get_redis(), key, rate=2, per_seconds=0.5)
    first = limiter.acquire(timeout=1)
    limiter.acquire(timeout=1)
    third = limiter.acquire(timeout=2)
    assert third.granted
    assert third.server_time - first.server_time >= 0.5


def test_acquire_raises_a_clear_timeout_when_no_slot_can_come_in_time(key: str) -> None:
    limiter = RateLimiter(get_redis(), key, rate=1, per_seconds=5)
    limiter.acquire(timeout=1)
    with pytest.raises(RateLimitTimeout, match=rf"rate limiter '{key}' \(1 per 5s\): no slot within 0.2s"):
        limiter.acquire(timeout=0.2)


def test_keys_are_independent(key: str) -> None:
    a = RateLimiter(get_redis(), f"{key}:a", rate=1, per_seconds=5)
    b = RateLimiter(get_redis(), f"{key}:b", rate=1, per_seconds=5)
    assert a.try_acquire()
    assert not a.try_acquire()
    assert b.try_acquire()


def test_burst_one_spaces_grants_evenly(key: str) -> None:
    limiter = RateLimiter(get_redis(), key, rate=4, per_seconds=1, burst=1)
    first = limiter.acquire(timeout=1)
    refused = limiter.attempt()
    assert not refused.granted and refused.wait_seconds <= 0.27
    second = limiter.acquire(timeout=1)
    assert second.server_time - first.server_time >= 0.25


@pytest.mark.parametrize(
    ("rate", "per_seconds", "burst", "message"),
    [(0, 1, None, "rate >= 1"), (3, 0, None, "per_seconds > 0"), (3, 1, 4, "burst must be between 1 and rate")],
)
def test_bad_parameters_are_refused(key: str, rate: int, per_seconds: float, burst: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiter(get_redis(), key, rate=rate, per_seconds=per_seconds, burst=burst)


# Each process is a fresh interpreter (forking a test process that has threads can deadlock the child).
CHILD = """
import json, sys, time
import redis
from tradingsite.ratelimit import RateLimiter

url, key, rate, mode, amount, start_at = sys.argv[1:]
limiter = RateLimiter(redis.Redis.from_url(url), key, rate=int(rate), per_seconds=1)
time.sleep(max(0.0, float(start_at) - time.time()))  # start together
granted, refused = [], 0
if mode == "acquire":
    granted = [limiter.acquire(timeout=30).server_time for _ in range(int(amount))]
else:
    stop = time.monotonic() + float(amount)
    while time.monotonic() < stop:
        attempt = limiter.attempt()
        if attempt.granted:
            granted.append(attempt.server_time)
        else:
            refused += 1
            time.sleep(0.002)
print(json.dumps({"granted": granted, "refused": refused}))
"""


def run_processes(n: int, key: str, rate: int, mode: str, amount: float) -> list[dict[str, Any]]:
    start_at = str(time.time() + 2.0)
    argv = [sys.executable, "-c", CHILD, settings.REDIS_URL, key, str(rate), mode, str(amount), start_at]
    procs = [subprocess.Popen(argv, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


def test_processes_blocking_on_one_key_never_exceed_the_rate_in_any_second(key: str) -> None:
    results = run_processes(4, key, rate=10, mode="acquire", amount=8)
    grants = [t for r in results for t in r["granted"]]
    assert len(grants) == 32
    assert_no_window_exceeds(grants, rate=10)


def test_processes_hammering_try_acquire_never_exceed_the_rate_in_any_second(key: str) -> None:
    results = run_processes(3, key, rate=3, mode="try", amount=1.6)
    grants = [t for r in results for t in r["granted"]]
    refused = sum(r["refused"] for r in results)
    assert refused > 0, "the limiter was never contended"
    assert len(grants) >= 3
    assert_no_window_exceeds(grants, rate=3)
