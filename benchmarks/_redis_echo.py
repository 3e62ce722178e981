"""The far end of the raw Redis floor: BRPOP from one list, LPUSH the same bytes onto another.

It is a separate process, like a Celery worker, so the floor pays for the same
two process hops and the same scheduler wake-ups that a task round trip pays
for, and nothing more: no serialization, no routing, no result store.

    python -m benchmarks._redis_echo <redis-url> <request-list> <reply-list>

It stops on the STOP payload, or by itself within a second of its parent
going away, so an interrupted benchmark leaves no echo behind.
"""

from __future__ import annotations

import os
import sys

import redis

STOP = b"__stop__"
POLL_SECONDS = 1


def echo(url: str, request_key: str, reply_key: str) -> None:
    client = redis.Redis.from_url(url)
    parent = os.getppid()
    while True:
        item = client.brpop([request_key], timeout=POLL_SECONDS)
        if item is None:
            if os.getppid() != parent:
                return
            continue
        payload = item[1]
        if payload == STOP:
            return
        client.lpush(reply_key, payload)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m benchmarks._redis_echo <redis-url> <request-list> <reply-list>")
    echo(*sys.argv[1:])
