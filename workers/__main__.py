"""Start one part of the Celery side: `python -m workers worker <queue> | beat | flower`.

The Procfile and the tests start workers through here, so both run exactly
the per-queue profile in `workers.profiles`. Configuration is validated first
(one line naming a bad variable) and the broker is awaited, so a worker
started beside the embedded Redis does not race it; then this process is
replaced by `celery` itself, which receives the signals directly.
"""

from __future__ import annotations

import os
import sys
import time

from tradingsite.config import Config, ConfigError, load_config
from workers.profiles import PROFILES
from workers.queues import Queue

USAGE = "usage: python -m workers worker <signals|orders|risk|backtests|default> | beat | flower"
BROKER_WAIT_SECONDS = 60.0


def wait_for_broker(config: Config, timeout: float = BROKER_WAIT_SECONDS) -> None:
    url = config.celery_broker_url
    if not url.startswith(("redis", "rediss")):
        return  # AMQP: kombu retries on start-up by itself
    import redis

    client = redis.Redis.from_url(url.replace("redis+socket://", "unix://", 1), socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                sys.exit(f"error: the Celery broker at {url} did not answer within {timeout:.0f}s")
            time.sleep(0.2)


def celery_argv(role: str, args: list[str], config: Config) -> list[str]:
    loglevel = config.log_level
    if role == "worker":
        if len(args) != 1 or args[0] not in {q.value for q in Queue}:
            sys.exit(USAGE)
        return PROFILES[Queue(args[0])].worker_argv(loglevel=loglevel)
    if role == "beat":
        return [
            "beat",
            "--scheduler=django_celery_beat.schedulers:DatabaseScheduler",
            "--max-interval=5",
            f"--loglevel={loglevel}",
        ]
    if role == "flower":
        if not config.flower_basic_auth:
            sys.exit("configuration error: FLOWER_BASIC_AUTH is required to start Flower (user:password)")
        return [
            "flower",
            f"--port={config.flower_port}",
            "--address=127.0.0.1",
            f"--basic-auth={config.flower_basic_auth}",
            "--persistent=False",
        ]
    sys.exit(USAGE)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(USAGE)
    try:
        config = load_config()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    celery_args = celery_argv(argv[0], argv[1:], config)
    wait_for_broker(config)
    os.execv(sys.executable, [sys.executable, "-m", "celery", "--app=tradingsite", *celery_args])


if __name__ == "__main__":
    main(sys.argv[1:])
