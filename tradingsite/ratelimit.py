"""A strict rate limiter shared by every process, kept in Redis.

Kite answers 429 when a client sends more than 3 historical requests in a
second, and SEBI caps orders at 10 per second per account. Both limits are
counted by the server over request arrival times, so a token bucket (which can
grant 2 x rate inside one second straddling a refill) is not good enough. This
is a sliding-window log: a sorted set of grant times, trimmed, counted and
appended atomically by one Lua script, so at most `rate` grants ever fall in
any window of `per_seconds` (+ a small margin for network jitter between the
grant here and the arrival there).

Time comes from the Redis server (`TIME` inside the script), never from the
caller, so processes on several machines agree on the window. No Django import:
the Redis client is passed in.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

DEFAULT_MARGIN_SECONDS = 0.05  # grants are spaced by the window + this; covers jitter on the way to the server
KEY_PREFIX = "ratelimit:"

# KEYS[1] the grant log (ZSET: member -> grant time in microseconds).
# ARGV: rate, window_us, burst, spacing_us, member. Returns {granted, wait_us, now_us}.
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local spacing = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local wait = 0
if redis.call('ZCARD', key) >= rate then
  local s = redis.call('ZREVRANGE', key, rate - 1, rate - 1, 'WITHSCORES')
  wait = tonumber(s[2]) + window - now
end
if burst < rate and redis.call('ZCOUNT', key, now - spacing + 1, '+inf') >= burst then
  local s = redis.call('ZREVRANGE', key, burst - 1, burst - 1, 'WITHSCORES')
  wait = math.max(wait, tonumber(s[2]) + spacing - now)
end
if wait > 0 then
  return {0, wait, now}
end
redis.call('ZADD', key, now, ARGV[5])
redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
return {1, 0, now}
"""


class RateLimitTimeout(TimeoutError):
    """No slot could be had within the caller's timeout."""

    def __init__(self, key: str, rate: int, per_seconds: float, timeout: float, wait: float) -> None:
        super().__init__(
            f"rate limiter {key!r} ({rate} per {per_seconds:g}s): no slot within {timeout:g}s "
            f"(the next one is {wait:.3f}s away)"
        )
        self.key = key
        self.wait = wait


@dataclass(frozen=True)
class Attempt:
    granted: bool
    wait_seconds: float  # 0 when granted; otherwise how long until a slot frees up
    server_time: float  # the Redis clock at the attempt, seconds since the epoch


class RateLimiter:
    """At most `rate` grants in any `per_seconds` window, across every process using `key`.

    `burst` (1..rate, default rate) additionally spreads grants out: at most
    `burst` of them in any `per_seconds * burst / rate` window, so burst=1 means
    evenly spaced grants.
    """

    def __init__(
        self,
        redis: Any,
        key: str,
        rate: int,
        per_seconds: float,
        burst: int | None = None,
        *,
        margin_seconds: float = DEFAULT_MARGIN_SECONDS,
    ) -> None:
        if rate < 1 or per_seconds <= 0 or margin_seconds < 0:
            raise ValueError(f"rate limiter {key!r}: need rate >= 1, per_seconds > 0, margin >= 0")
        burst = rate if burst is None else burst
        if not 1 <= burst <= rate:
            raise ValueError(f"rate limiter {key!r}: burst must be between 1 and rate ({rate}), got {burst}")
        self.key = key
        self.rate = rate
        self.per_seconds = per_seconds
        self.burst = burst
        self._window_us = round((per_seconds + margin_seconds) * 1_000_000)
        self._spacing_us = round(self._window_us * burst / rate)
        self._script = redis.register_script(_SCRIPT)

    def attempt(self) -> Attempt:
        """One atomic try: take a slot if one is free, else say how long until one is."""
        args = [self.rate, self._window_us, self.burst, self._spacing_us, uuid.uuid4().hex]
        granted, wait_us, now_us = self._script(keys=[KEY_PREFIX + self.key], args=args)
        return Attempt(granted=bool(granted), wait_seconds=int(wait_us) / 1_000_000, server_time=int(now_us) / 1e6)

    def try_acquire(self) -> bool:
        """Take a slot if one is free now; never blocks."""
        return self.attempt().granted

    def acquire(self, timeout: float) -> Attempt:
        """Block until a slot is granted, sleeping exactly until the next one frees up; the granted attempt.

        Raises RateLimitTimeout as soon as the next free slot is known to lie
        beyond the timeout (waiting longer could not help: grants only expire).
        """
        deadline = time.monotonic() + timeout
        while True:
            attempt = self.attempt()
            if attempt.granted:
                return attempt
            remaining = deadline - time.monotonic()
            if attempt.wait_seconds > remaining:
                raise RateLimitTimeout(self.key, self.rate, self.per_seconds, timeout, attempt.wait_seconds)
            time.sleep(attempt.wait_seconds)
