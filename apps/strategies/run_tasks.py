"""Backtest tasks on the `backtests` queue: thin, ids in, safe to run twice (see apps.strategies.run_exec).

Chord headers (`grid_chunk`, `walk_forward_fold`) keep their results: the database result backend is how
`celery.chord_unlock` learns that every chunk has finished. A chunk that raises marks its own row failed
and returns normally, so the chord's body still runs and fails the run with the chunk's reason; a chunk
killed outright fails the chord, and the body's error callback (`run_abort`) fails the run.
"""

from __future__ import annotations

from typing import Any

from apps.strategies import run_exec
from workers.registry import queue_task

CHUNK_TIME_LIMIT = 1500  # a chunk is sized to about a second: this is only the backstop
FINISH_TIME_LIMIT = 600


@queue_task(name="backtests.run_single", time_limit=CHUNK_TIME_LIMIT)
def run_single(*, run_id: int) -> str:
    return run_exec.single_execute(run_id=run_id)


@queue_task(name="backtests.grid_chunk", time_limit=CHUNK_TIME_LIMIT, ignore_result=False)
def grid_chunk(*, chunk_id: int) -> dict[str, Any]:
    return run_exec.grid_chunk_execute(chunk_id=chunk_id)


@queue_task(name="backtests.grid_finish", time_limit=FINISH_TIME_LIMIT)
def grid_finish(chunk_results: list[Any] | None = None, *, run_id: int) -> str:
    return run_exec.grid_finish_execute(run_id=run_id)


@queue_task(name="backtests.walk_forward_fold", time_limit=CHUNK_TIME_LIMIT, ignore_result=False)
def walk_forward_fold(*, chunk_id: int) -> dict[str, Any]:
    return run_exec.fold_execute(chunk_id=chunk_id)


@queue_task(name="backtests.walk_forward_finish", time_limit=FINISH_TIME_LIMIT)
def walk_forward_finish(chunk_results: list[Any] | None = None, *, run_id: int) -> str:
    return run_exec.walk_forward_finish_execute(run_id=run_id)


@queue_task(name="backtests.monte_carlo", time_limit=CHUNK_TIME_LIMIT)
def monte_carlo(*, run_id: int) -> str:
    return run_exec.monte_carlo_execute(run_id=run_id)


@queue_task(name="backtests.run_abort", time_limit=60)
def run_abort(failed_task_id: str = "", *, run_id: int) -> str:
    """A chord whose header failed outright: the run fails, naming the chunks that never finished."""
    return run_exec.run_abort_execute(run_id=run_id, task_id=failed_task_id)
