"""`manage.py run_strategies`: the bar-close dispatcher (what `make run` starts as the `strategies` process).

Reads closed bars from the Redis stream `marketdata:bars` (consumer group `strategies`) and enqueues one
`signals.evaluate` task per enabled strategy config and bar time on the `signals` queue. SIGTERM/SIGINT
stop it after the current read; what it read but had not dispatched is read again on the next start.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError

from apps.strategies import dispatch
from tradingsite.redis_client import get_redis

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Dispatch closed bars from the feed to the enabled strategy configs (one signals.evaluate task each)."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("%s received: stopping the dispatcher", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
        self.stdout.write("run_strategies: dispatching bar closes from marketdata:bars to signals.evaluate")
        try:
            sent = dispatch.run(get_redis(), stop)
        except redis.ConnectionError as exc:
            raise CommandError(f"cannot reach Redis ({exc}); is the stack running?") from None
        self.stdout.write(f"run_strategies: stopped after enqueueing {sent} evaluations")
