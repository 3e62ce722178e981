"""Strategy tasks: live evaluation on the `signals` queue (the backtests queue's are in run_tasks.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.strategies import (
    live,
    run_tasks,  # noqa: F401 - the backtests queue's tasks, found by autodiscovery
)
from workers.registry import queue_task


@queue_task(name="signals.evaluate", time_limit=60)
def evaluate(*, config_id: int, bar_time: str) -> dict[str, Any]:
    """One enabled config at one closed bar: its whole universe at once (apps.strategies.live)."""
    result = live.evaluate(config_id=config_id, bar_time=datetime.fromisoformat(bar_time))
    return {"status": result.status, "reason": result.reason, "signals": result.signals, "orders": result.orders}
