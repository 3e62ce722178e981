"""Kite Connect's rate limits per endpoint, and the Redis-shared gate every KiteBroker call passes first.

Kite counts requests per API key over arrival times and answers HTTP 429 beyond
its limits (orders: 10 per second, 400 per minute, 5000 per day, the first
also SEBI's cap per client; quotes: 1 per second; everything else: 10 per
second). A 429 on a placement costs a round trip and a retry, so we never
send a request that would earn one: each call first takes a slot of every
limit of its endpoint from `tradingsite.ratelimit.RateLimiter`, whose grant log
lives in Redis so the web process and every worker on every host share it.

Only the first, shortest window may wait (briefly, about one window); longer
windows are tried once. A slot taken and then waited on would be stale: the
request would leave later than its grant says, and ten others could be granted
around it. So a spent minute or day refuses at once (BrokerThrottled, the
order waits QUEUED for the sweep) rather than blocking a worker for a minute.

Historical candles (3 per second) are limited by apps.marketdata.history with
its own key; they do not pass through here. No Django import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apps.brokers.base import BrokerThrottled
from tradingsite.ratelimit import RateLimiter, RateLimitTimeout

ORDERS = "orders"  # place, modify, cancel
QUOTE = "quote"  # /quote, /quote/ltp, /quote/ohlc
OTHER = "other"  # order book, trades, positions, margins, ...
_ACCOUNT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Limit:
    name: str  # in the Redis key and the messages: "second", "minute", "day"
    rate: int
    per_seconds: float
    max_wait_seconds: float  # how long a call may wait for a slot; 0: one try
    # Grants are spaced by per_seconds + margin: covers the jitter between our grant and Kite's arrival stamp
    # (threads, GIL, a loaded host). 0.2 s kept a 3-thread burst inside 10 arrivals per second in tests.
    margin_seconds: float = 0.2

    def describe(self) -> str:
        span = _SPANS.get(self.per_seconds, f"{self.per_seconds:g}s")
        return f"{self.rate} per {span}"


_SPANS = {1.0: "second", 60.0: "minute", 86_400.0: "day"}


LIMITS: Mapping[str, tuple[Limit, ...]] = {
    ORDERS: (
        Limit("second", 10, 1.0, max_wait_seconds=1.5),
        Limit("minute", 400, 60.0, max_wait_seconds=0.0, margin_seconds=0.5),
        Limit("day", 5000, 86_400.0, max_wait_seconds=0.0, margin_seconds=1.0),
    ),
    QUOTE: (Limit("second", 1, 1.0, max_wait_seconds=1.5),),
    OTHER: (Limit("second", 10, 1.0, max_wait_seconds=1.5),),
}


def check_limits(limits: Mapping[str, tuple[Limit, ...]]) -> None:
    """Refuse a table that breaks the "only the first limit waits" rule (see the module docstring)."""
    for endpoint, chain in limits.items():
        if not chain:
            raise ValueError(f"kite limits: {endpoint} has no limit")
        if any(limit.max_wait_seconds > 0 for limit in chain[1:]):
            raise ValueError(f"kite limits: only the first limit of {endpoint} may wait")


class KiteRateGate:
    """The limits of one Kite account (one API key), shared through Redis by every process."""

    def __init__(self, redis: Any, *, account: str, limits: Mapping[str, tuple[Limit, ...]] = LIMITS) -> None:
        if not _ACCOUNT.match(account):
            raise ValueError(f"kite rate gate: account must be 1-64 of letters, digits, '_', '.', '-': {account!r}")
        check_limits(limits)
        self.account = account
        self._chains = {
            endpoint: [
                (
                    limit,
                    RateLimiter(
                        redis,
                        self.key(endpoint, limit),
                        rate=limit.rate,
                        per_seconds=limit.per_seconds,
                        margin_seconds=limit.margin_seconds,
                    ),
                )
                for limit in chain
            ]
            for endpoint, chain in limits.items()
        }

    def key(self, endpoint: str, limit: Limit) -> str:
        """The limiter's key (RateLimiter prefixes it with "ratelimit:")."""
        return f"kite:{self.account}:{endpoint}:{limit.name}"

    def acquire(self, endpoint: str, what: str) -> None:
        """Take a slot of every limit of `endpoint`, or raise BrokerThrottled naming the one that is spent."""
        for limit, limiter in self._chains[endpoint]:
            if limit.max_wait_seconds > 0:
                try:
                    limiter.acquire(limit.max_wait_seconds)
                except RateLimitTimeout as exc:
                    raise self._refused(endpoint, limit, what, exc.wait) from exc
            else:
                attempt = limiter.attempt()
                if not attempt.granted:
                    raise self._refused(endpoint, limit, what, attempt.wait_seconds)

    def _refused(self, endpoint: str, limit: Limit, what: str, wait: float) -> BrokerThrottled:
        return BrokerThrottled(
            f"{what}: not sent, Kite's {endpoint} limit of {limit.describe()} for account {self.account} "
            f"is reached (next slot in {wait:.2f}s)"
        )
