"""The catalogue of dedicated queues; pure, importable by settings and tools alike."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    SIGNALS = "signals"  # strategy evaluation on bar close
    ORDERS = "orders"  # placement, modification, cancellation, reconciliation
    RISK = "risk"  # VaR, stress tests, limits
    BACKTESTS = "backtests"  # single runs, grid chunks, walk-forward folds, Monte Carlo
    DEFAULT = "default"  # maintenance: imports, sweeps, backups, notifications


DEDICATED_QUEUES: tuple[Queue, ...] = tuple(Queue)


def node_name(queue: Queue) -> str:
    """The worker node name for a queue; `/readyz` finds workers by this prefix."""
    return f"{queue.value}@%h"
