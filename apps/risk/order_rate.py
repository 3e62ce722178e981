"""Orders per second and per day per account, counted atomically in Redis and shared by every process.

SEBI's retail-algo rule is about arrivals: more than 10 orders in a second makes an algo one the exchange must
register. A classic refilling token bucket of 10 can admit 20 orders inside one second (a full bucket, then a
refill), so this is a token bucket whose every token comes back exactly one window after it was spent: a
sliding log of admission times (the Redis server's clock) in a sorted set. At most `per_second` admissions ever
fall in any window of 1 s (+ a margin for the trip to the broker). The day's count is a counter beside it, in the
same script, so the two limits are taken together or not at all.

`consume=False` only reads (the order already failed another check: it is recorded as refused, and a refused
order must not use up a slot). No Django import: the Redis client is passed in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from apps.risk.pretrade import RateState

WINDOW_SECONDS = 1.0
MARGIN_SECONDS = 0.05
DAY_TTL_SECONDS = 2 * 24 * 3600

# KEYS[1]: admission log (ZSET member -> time in us); KEYS[2]: the day's counter.
# ARGV: per_second, window_us, per_day, day_ttl_s, member, consume. Returns {admitted, in_window, today, now_us}.
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local in_window = redis.call('ZCARD', KEYS[1])
local today = tonumber(redis.call('GET', KEYS[2]) or '0')
local ok = in_window < tonumber(ARGV[1]) and today < tonumber(ARGV[3])
if ok and ARGV[6] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  today = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
  return {1, in_window + 1, today, now}
end
return {0, in_window, today, now}
"""


@dataclass(frozen=True)
class Admission:
    state: RateState
    server_time: float  # seconds since the epoch, the Redis clock


class OrderRate:
    """One account's order counters; build one per call (cheap), share the Redis client."""

    def __init__(self, redis: Any, *, account_id: int, per_second: int, per_day: int, day: date) -> None:
        if per_second < 1 or per_day < 1:
            raise ValueError(f"orders per second and per day must be >= 1, got {per_second} and {per_day}")
        self._redis = redis
        self._keys = [f"risk:orders:sec:{account_id}", f"risk:orders:day:{account_id}:{day.isoformat()}"]
        self._per_second = per_second
        self._per_day = per_day

    def take(self, *, consume: bool = True) -> Admission:
        window_us = round((WINDOW_SECONDS + MARGIN_SECONDS) * 1_000_000)
        args = [self._per_second, window_us, self._per_day, DAY_TTL_SECONDS, uuid.uuid4().hex, int(consume)]
        script = self._redis.register_script(_SCRIPT)
        admitted, in_window, today, now_us = script(keys=self._keys, args=args)
        state = RateState(admitted=bool(admitted), last_second=int(in_window), today=int(today))
        return Admission(state=state, server_time=int(now_us) / 1e6)
