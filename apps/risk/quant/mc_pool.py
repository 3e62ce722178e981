"""The process pool of the Monte Carlo engine; deliberately imports no numpy.

Why no numpy: OpenBLAS reads OPENBLAS_NUM_THREADS once, when numpy first loads. A spawned worker unpickles
`single_thread_blas` (importing only this module), runs it, and only then unpickles its first task, which
imports numpy with one BLAS thread. Two workers on two cores each running a multi-threaded matmul would
oversubscribe the machine and be slower than one.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_thread_blas() -> None:
    """Pool initializer: one BLAS thread per worker process (the process is the unit of parallelism)."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ[name] = "1"


def make_pool(processes: int) -> ProcessPoolExecutor:
    """A pool for `montecarlo_var(workers=processes + 1, executor=...)`: the caller simulates one part itself.

    "spawn", not fork: forking a process that holds threads (pytest, Celery, Django's connection pools) can
    deadlock, and a spawned child starts with the environment the initializer sets.
    """
    return ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("spawn"), initializer=single_thread_blas
    )
