"""SEBI's 10 orders a second per account, under real concurrency: several processes on one Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from bisect import bisect_left
from datetime import date

import pytest
from django.conf import settings

from apps.risk.order_rate import OrderRate
from tradingsite.redis_client import get_redis

PROCESSES = 4


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of admissions inside any window [t, t + window) that starts at an admission."""
    times = sorted(times)
    return max((bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def test_the_window_counter_is_right() -> None:
    assert most_in_any_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert most_in_any_window([0.0, 0.1, 0.2]) == 3 and most_in_any_window([]) == 0


def test_four_processes_never_get_more_than_ten_in_any_second() -> None:
    account = int(uuid.uuid4().int % 10**9)  # a fresh account id: no slots taken before
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.risk.rate_hammer",
                settings.REDIS_URL,
                str(account),
                str(start_at),
                "3",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    admitted = [t for r in results for t in r["admitted"]]
    assert most_in_any_window(admitted) <= 10
    assert all(r["refused"] > 0 for r in results)  # every process was really held back ...
    assert len(admitted) >= 2 * 10  # ... and the limiter kept admitting (about 10 a second for 3 s)
    assert sum(1 for r in results if r["admitted"]) >= 2  # slots went to more than one process


def test_a_read_takes_no_slot_and_the_day_counts_only_admissions() -> None:
    redis = get_redis()
    account = int(uuid.uuid4().int % 10**9)
    limiter = OrderRate(redis, account_id=account, per_second=2, per_day=3, day=date(2024, 6, 10))
    assert limiter.take(consume=False).state.last_second == 0
    assert [limiter.take().state.admitted for _ in range(3)] == [True, True, False]
    time.sleep(1.1)
    third = limiter.take()
    assert third.state.admitted and third.state.today == 3
    assert not limiter.take().state.admitted and limiter.take(consume=False).state.today == 3
    tomorrow = OrderRate(redis, account_id=account, per_second=2, per_day=3, day=date(2024, 6, 11))
    assert tomorrow.take().state.admitted


@pytest.mark.parametrize("bad", [(0, 5), (5, 0)])
def test_limits_below_one_are_refused(bad) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        OrderRate(get_redis(), account_id=1, per_second=bad[0], per_day=bad[1], day=date(2024, 6, 10))
