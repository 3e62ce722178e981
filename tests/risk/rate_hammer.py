"""One process of the orders-per-second test: ask for slots as fast as it can, print the admitted server times.

    python -m tests.risk.rate_hammer REDIS_URL ACCOUNT_ID START_AT SECONDS

It starts at START_AT (epoch seconds, the same for every process) so that the processes really compete.
No Django: the limiter takes a Redis client.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date

import redis

from apps.risk.order_rate import OrderRate


def main(url: str, account_id: int, start_at: float, seconds: float) -> None:
    client = redis.Redis.from_url(url)
    client.ping()
    time.sleep(max(0.0, start_at - time.time()))
    admitted, refused = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        limiter = OrderRate(client, account_id=account_id, per_second=10, per_day=10**6, day=date(2024, 6, 10))
        taken = limiter.take()
        if taken.state.admitted:
            admitted.append(taken.server_time)
        else:
            refused += 1
    print(json.dumps({"admitted": admitted, "refused": refused}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
