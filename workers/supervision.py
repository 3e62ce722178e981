"""Start and stop real stack processes (workers, beat, Flower) from tests and benchmarks.

Each process runs in its own session, so stopping it stops its whole process
group (the prefork pool's children included) and nothing is left behind.
Output goes to a log file whose tail is shown when a process fails to start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradingsite.config import BASE_DIR

if TYPE_CHECKING:
    from celery import Celery


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it."""
        if self.popen is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.popen):
                time.sleep(0.05)
            if not _group_alive(self.popen):
                break
        self.popen.wait(5)


def _group_alive(popen: subprocess.Popen[bytes]) -> bool:
    popen.poll()
    try:
        os.killpg(popen.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stack_process(role: str, *args: str, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """`python -m workers <role> [args]`: exactly what the Procfile runs."""
    name = "-".join((role, *args))
    argv = [sys.executable, "-m", "workers", role, *args]
    return ManagedProcess(name, argv, env, log_dir / f"{name}.log")


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stop_all(processes: Iterable[ManagedProcess]) -> None:
    """Stop processes in parallel: each warm shutdown takes a second or two, one after another they add up."""
    procs = list(processes)
    if not procs:
        return
    with ThreadPoolExecutor(max_workers=len(procs)) as pool:
        for future in [pool.submit(p.stop) for p in procs]:
            future.result()


def ping_nodes(app: Celery, timeout: float = 1.0) -> set[str]:
    """Node names of the workers that answer a control ping (`<queue>@<host>`)."""
    replies: list[dict[str, Any]] = app.control.ping(timeout=timeout) or []
    return {name for reply in replies for name in reply}


def queues_answering(app: Celery, queues: Iterable[str]) -> bool:
    nodes = ping_nodes(app)
    return all(any(n.startswith(f"{q}@") for n in nodes) for q in queues)


def start_queue_workers(
    app: Celery, queues: Iterable[str], *, env: dict[str, str], log_dir: Path, timeout: float = 120.0
) -> dict[str, ManagedProcess]:
    """Start `python -m workers worker <queue>` per queue; return once each answers a ping, or stop them all."""
    names = list(queues)
    procs = {q: stack_process("worker", q, env=env, log_dir=log_dir).start() for q in names}

    def ready() -> bool:
        for q, proc in procs.items():
            if not proc.alive():
                raise RuntimeError(f"the {q} worker exited during start-up:\n{proc.log_tail()}")
        return queues_answering(app, names)

    try:
        wait_until(ready, timeout=timeout, interval=0.1, what=f"workers for {', '.join(names)}")
    except BaseException:
        stop_all(procs.values())
        raise
    return procs
