"""The launcher's guards: ports, the run lock, generated credentials, the Procfile selection."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from tradingsite.config import load_config
from tradingsite.launcher import (
    LaunchError,
    check_ports,
    local_secret_key,
    operator_credentials,
    process_names,
    run_lock,
    stop_leftovers,
)


def config_for(tmp_path: Path, **env: str):
    return load_config({"SECRET_KEY": "k", "VAR_DIR": str(tmp_path), **env})


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(LaunchError, match=rf"port {port} \(FLOWER_PORT\) is already in use"):
            check_ports(config_for(tmp_path, FLOWER_PORT=str(port), WEB_PORT=str(_free())))


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_same_port_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="WEB_PORT and FLOWER_PORT are both 9000"):
        check_ports(config_for(tmp_path, WEB_PORT="9000", FLOWER_PORT="9000"))


def test_a_second_run_lock_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    with (
        run_lock(tmp_path, "web on port 8000"),
        pytest.raises(LaunchError, match=r"already running .*web on port 8000"),
        run_lock(tmp_path, "second"),
    ):
        pass
    with run_lock(tmp_path, "after release"):
        pass


def test_credentials_and_secret_key_are_generated_once_and_private(tmp_path: Path) -> None:
    first = operator_credentials(tmp_path, {})
    assert first.username == "admin" and len(first.password) >= 12
    assert operator_credentials(tmp_path, {}) == first
    stored = tmp_path / "admin-credentials.json"
    assert json.loads(stored.read_text())["password"] == first.password
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert operator_credentials(tmp_path, {"ADMIN_PASSWORD": "from-env"}).password == "from-env"
    key = local_secret_key(tmp_path)
    assert len(key) >= 50 and local_secret_key(tmp_path) == key


def test_embedded_redis_runs_only_without_redis_url(tmp_path: Path) -> None:
    embedded = process_names(config_for(tmp_path))
    assert embedded[0] == "redis"
    assert {"web", "signals", "strategies", "orders", "risk", "backtests", "default", "beat", "flower"} <= set(embedded)
    assert "redis" not in process_names(config_for(tmp_path, REDIS_URL="redis://127.0.0.1:6379/0"))


def test_stop_leftovers_ignores_recycled_pids(tmp_path: Path) -> None:
    record = tmp_path / "run-processes.json"
    record.write_text(json.dumps([{"pid": os.getpid(), "created": 0.0, "cmd": "not me"}]))
    assert stop_leftovers(record) == 0 and not record.exists()


def test_the_ticker_runs_only_when_enabled(tmp_path: Path) -> None:
    assert "ticker" not in process_names(config_for(tmp_path))
    assert "ticker" in process_names(config_for(tmp_path, TICKER_ENABLED="true"))


def test_the_demo_feed_runs_only_without_the_ticker_and_when_wanted(tmp_path: Path) -> None:
    assert "feed" in process_names(config_for(tmp_path))
    assert "feed" not in process_names(config_for(tmp_path, TICKER_ENABLED="true"))
    assert "feed" not in process_names(config_for(tmp_path, DEMO_FEED="false"))
