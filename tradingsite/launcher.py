"""`make run`: prepare and start the whole stack in the foreground, supervised by honcho.

    python -m tradingsite.launcher run     # what `make run` calls
    python -m tradingsite.launcher check   # validate the configuration only

Before anything starts it validates the configuration (one line naming a bad
variable), takes `var/run.lock` (a second `make run` is told the first one is
running), checks that the web and Flower ports are free, stops processes a
killed earlier run left behind, generates the local SECRET_KEY and the
operator's credentials once under `var/`, migrates, creates the admin account
installs the default beat schedule and, on a first start, seeds the demo data. Then honcho starts every line of
`deploy/Procfile` (the embedded Redis only when REDIS_URL is unset). Ctrl-C or
SIGTERM stops all of them, each in its own process group, and the launcher
checks that none is left. No Django import here: everything Django runs in a
child process with the environment the stack will use.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
from honcho import manager as honcho_manager
from honcho.environ import parse_procfile

from tradingsite.config import BASE_DIR, Config, ConfigError, embedded_redis_socket, load_config
from tradingsite.embedded_redis import ping as redis_socket_alive

PROCFILE = BASE_DIR / "deploy" / "Procfile"
READY_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 15


class LaunchError(Exception):
    """Start-up cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


# --- files under var/ ---------------------------------------------------------------


def _private_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)


def local_secret_key(var_dir: Path) -> str:
    path = var_dir / "secret_key"
    if not path.exists():
        _private_file(path, secrets.token_urlsafe(50))
    return path.read_text().strip()


def local_encryption_key(var_dir: Path) -> str:
    """The Fernet key for broker secrets of a local stack, generated once (production sets FIELD_ENCRYPTION_KEYS)."""
    path = var_dir / "field_encryption_key"
    if not path.exists():
        _private_file(path, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    return path.read_text().strip()


def operator_credentials(var_dir: Path, env: dict[str, str]) -> Credentials:
    """From ADMIN_USERNAME / ADMIN_PASSWORD, else generated once into var/admin-credentials.json."""
    username = env.get("ADMIN_USERNAME", "").strip() or "admin"
    if env.get("ADMIN_PASSWORD"):
        return Credentials(username, env["ADMIN_PASSWORD"])
    path = var_dir / "admin-credentials.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("username") == username:
            return Credentials(username, stored["password"])
    password = secrets.token_urlsafe(12)
    _private_file(path, json.dumps({"username": username, "password": password}))
    return Credentials(username, password)


@contextlib.contextmanager
def run_lock(var_dir: Path, describe: str) -> Iterator[None]:
    """Hold var/run.lock for the life of the stack; a second launcher gets a clear message."""
    path = var_dir / "run.lock"
    fh: IO[str] = open(path, "a+")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another launcher"
        fh.close()
        raise LaunchError(f"the stack is already running from {var_dir} ({holder}); stop it first") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}, {describe}")
    fh.flush()
    try:
        yield
    finally:
        fh.seek(0)
        fh.truncate()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def check_ports(config: Config) -> None:
    ports = {"WEB_PORT": config.web_port, "FLOWER_PORT": config.flower_port}
    if config.web_port == config.flower_port:
        raise LaunchError(f"WEB_PORT and FLOWER_PORT are both {config.web_port}; give them different ports")
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                raise LaunchError(
                    f"port {port} ({name}) is already in use; stop what holds it or set {name} to a free port"
                ) from None


# --- processes a killed earlier run left behind ----------------------------------------


def _record_children(path: Path) -> None:
    rows = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            rows.append({"pid": child.pid, "created": child.create_time(), "cmd": " ".join(child.cmdline())})
    _private_file(path, json.dumps(rows))


def stop_leftovers(path: Path) -> int:
    """Stop processes recorded by a launcher that was killed without cleaning up."""
    if not path.exists():
        return 0
    stopped = 0
    for row in json.loads(path.read_text() or "[]"):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(row["pid"])
            if abs(proc.create_time() - row["created"]) < 1e-3:
                proc.kill()
                stopped += 1
    path.unlink()
    return stopped


# --- preparing -----------------------------------------------------------------------


def _stack_env(config: Config, base: dict[str, str], creds: Credentials) -> dict[str, str]:
    env = dict(base)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["VAR_DIR"] = str(config.var_dir)
    env.setdefault("SECRET_KEY", local_secret_key(config.var_dir))
    env.setdefault("FIELD_ENCRYPTION_KEYS", local_encryption_key(config.var_dir))
    env.setdefault("FLOWER_BASIC_AUTH", f"{creds.username}:{creds.password}")
    env["ADMIN_USERNAME"] = creds.username
    env["ADMIN_PASSWORD"] = creds.password
    env["WEB_PORT"] = str(config.web_port)
    env["FLOWER_PORT"] = str(config.flower_port)
    env["PYTHONUNBUFFERED"] = "1"
    if "feed" in process_names(config):
        # The demo feed replays a past session: the wall clock's market hours would refuse every demo order
        # outside 09:15-15:30 IST, so the paper broker accepts orders at any hour unless told otherwise.
        env.setdefault("PAPER_MARKET_HOURS", "false")
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    print(f"$ manage.py {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], check=False, env=env, cwd=BASE_DIR)
    if done.returncode != 0:
        raise LaunchError(f"`manage.py {' '.join(args)}` failed (exit {done.returncode}); nothing was started")


def prepare(env: dict[str, str]) -> None:
    _manage(env, "migrate", "--noinput", "-v", "1")
    _manage(env, "ensure_admin")
    _manage(env, "install_schedule")
    _manage(env, "seed_demo", "--if-empty")  # first start: the NIFTY 50 universe and demo candles to look at
    _manage(env, "ensure_paper_account")  # first start: a paper account the operator may trade


def after_ready(env: dict[str, str]) -> None:
    """Steps that need the running stack (Redis, the orders worker); a failure is reported, the stack stays up.

    First start: a small demo book, so VaR and limits have something to show; then the paper strategy configs the
    demo feed drives (after the book, so its burst of orders goes out alone, within the account's 10 a second)."""
    for step in (("demo_book", "--if-empty"), ("demo_strategies", "--if-empty")):
        try:
            _manage(env, *step)
        except LaunchError as exc:
            print(f"warning: {exc}", flush=True)


def process_names(config: Config) -> list[str]:
    """The Procfile's lines this configuration runs: `redis` only when embedded, `ticker` only when enabled,
    `feed` (the demo replay) only when the ticker is off and DEMO_FEED is on."""
    skip = set()
    if not config.redis_embedded:
        skip.add("redis")
    if not config.ticker_enabled:
        skip.add("ticker")
    if config.ticker_enabled or not config.demo_feed:
        skip.add("feed")
    return [n for n in parse_procfile(PROCFILE.read_text()).processes if n not in skip]


def banner(config: Config, creds: Credentials) -> str:
    web = f"http://127.0.0.1:{config.web_port}"
    db = "embedded SQLite" if config.database_embedded else f"PostgreSQL ({config.database.name})"
    rd = "embedded Redis" if config.redis_embedded else "Redis"
    return "\n".join(
        [
            f"Trading platform: {config.trading_mode} mode, {db}, {rd}, var at {config.var_dir}",
            f"  API     {web}/api/v1/   (docs {web}/api/docs/)",
            f"  Admin   {web}/admin/    user {creds.username!r}, password {creds.password!r}",
            f"  Flower  http://127.0.0.1:{config.flower_port}/   (same credentials)",
            f"  Ready   {web}/readyz    Ctrl-C stops everything",
        ]
    )


def _watch_readiness(
    config: Config, creds: Credentials, started: float, children_file: Path, env: dict[str, str]
) -> None:
    url = f"http://127.0.0.1:{config.web_port}/readyz"
    last: Any = None
    while time.monotonic() - started < READY_TIMEOUT_SECONDS:
        time.sleep(1.0)
        _record_children(children_file)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    took = time.monotonic() - started
                    print(f"\n*** stack ready in {took:.0f}s ***\n{banner(config, creds)}\n", flush=True)
                    after_ready(env)
                    return
        except urllib.error.HTTPError as exc:
            last = json.loads(exc.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            continue
    failing = [k for part in ("checks", "workers") for k, v in (last or {}).get(part, {}).items() if not v["ok"]]
    print(f"\n*** not ready after {READY_TIMEOUT_SECONDS:.0f}s; failing: {', '.join(failing) or 'web'} ***\n")


def _kill_remaining(children: list[psutil.Process]) -> None:
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def supervise(config: Config, env: dict[str, str], creds: Credentials) -> int:
    procfile = parse_procfile(PROCFILE.read_text())
    honcho_manager.KILL_WAIT = STOP_GRACE_SECONDS  # let workers finish a warm shutdown
    manager = honcho_manager.Manager()
    for name in process_names(config):
        manager.add_process(name, procfile.processes[name], env=env, cwd=str(BASE_DIR))
    children_file = config.var_dir / "run-processes.json"
    watcher = threading.Thread(
        target=_watch_readiness, args=(config, creds, time.monotonic(), children_file, env), daemon=True
    )
    watcher.start()
    try:
        manager.loop()
    finally:
        _kill_remaining(psutil.Process().children(recursive=True))
        with contextlib.suppress(FileNotFoundError):
            children_file.unlink()
    return manager.returncode or 0


def run(base_env: dict[str, str]) -> int:
    # Validate before touching anything; SECRET_KEY is generated below when absent.
    config = load_config({**base_env, "SECRET_KEY": base_env.get("SECRET_KEY") or "validated-later"})
    config.var_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(config.var_dir, f"web on port {config.web_port}, Flower on port {config.flower_port}"):
        stopped = stop_leftovers(config.var_dir / "run-processes.json")
        if stopped:
            print(f"stopped {stopped} process(es) left behind by an earlier run that was killed", flush=True)
        check_ports(config)
        if config.redis_embedded and redis_socket_alive(embedded_redis_socket(config.var_dir)):
            raise LaunchError(f"an embedded Redis is already serving {embedded_redis_socket(config.var_dir)}")
        creds = operator_credentials(config.var_dir, base_env)
        env = _stack_env(config, base_env, creds)
        config = load_config(env)
        prepare(env)
        print(banner(config, creds), flush=True)
        return supervise(config, env, creds)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    try:
        if command == "check":
            env = dict(os.environ)
            load_config({**env, "SECRET_KEY": env.get("SECRET_KEY") or "generated-by-run"})
            print("configuration ok")
            return 0
        if command == "run":
            return run(dict(os.environ))
    except (ConfigError, LaunchError) as exc:
        prefix = "configuration error" if isinstance(exc, ConfigError) else "error"
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before the stack started; nothing is running", file=sys.stderr)
        return 130
    print("usage: python -m tradingsite.launcher [run|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM before supervise: same as Ctrl-C
    sys.exit(main(sys.argv[1:]))
