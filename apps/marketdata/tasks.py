"""Market-data tasks on the `default` queue: thin, they take ids and call services."""

from __future__ import annotations

import time

from apps.marketdata.history import fetch_job_run
from workers.registry import queue_task

# The default profile kills a task at 900 s. A job stops starting requests after this
# budget and re-enqueues itself for the rest, so any job fits, however many symbols it has.
FETCH_BUDGET_SECONDS = 600


@queue_task(name="marketdata.fetch_history", time_limit=900)
def fetch_history(job_id: int, start_index: int = 0, start_chunk: int = 0) -> None:
    """Run FetchJob `job_id` from (symbol, chunk) on; hand the rest to a fresh task when over budget."""
    deadline = time.monotonic() + FETCH_BUDGET_SECONDS
    rest = fetch_job_run(job_id=job_id, start_index=start_index, start_chunk=start_chunk, deadline=deadline)
    if rest is not None:
        fetch_history.apply_async(args=(job_id, *rest))
