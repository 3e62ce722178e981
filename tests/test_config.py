"""Configuration from the environment: defaults, derived URLs, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tradingsite.config import BASE_DIR, ConfigError, load_config

BASE = {"SECRET_KEY": "k"}


def cfg(**env: str):
    return load_config({**BASE, **env})


def test_embedded_default_uses_sqlite_and_redis_socket_under_var(tmp_path: Path) -> None:
    c = cfg(VAR_DIR=str(tmp_path))
    assert c.database_embedded and c.redis_embedded
    assert c.database.django()["NAME"] == str(tmp_path / "db.sqlite3")
    assert c.redis_url == f"unix://{tmp_path}/redis/redis.sock"
    assert c.celery_broker_url == f"redis+socket://{tmp_path}/redis/redis.sock"
    assert c.celery_result_backend == f"db+sqlite:///{tmp_path}/db.sqlite3"
    assert (c.trading_mode, c.web_port, c.flower_port) == ("paper", 8000, 5555)


def test_postgres_and_redis_urls_are_used_as_given() -> None:
    c = cfg(DATABASE_URL="postgres://u:p%40ss@db.example:6543/trading", REDIS_URL="redis://127.0.0.1:6379/3")
    assert not c.database_embedded and not c.redis_embedded
    django_db = c.database.django()
    assert django_db["ENGINE"] == "django.db.backends.postgresql"
    assert (django_db["NAME"], django_db["USER"], django_db["PASSWORD"]) == ("trading", "u", "p@ss")
    assert (django_db["HOST"], int(django_db["PORT"])) == ("db.example", 6543)
    assert c.celery_broker_url == "redis://127.0.0.1:6379/3"
    assert c.celery_result_backend == "db+postgresql+psycopg2://u:p%40ss@db.example:6543/trading"


def test_celery_urls_can_be_overridden() -> None:
    c = cfg(CELERY_BROKER_URL="amqp://guest@localhost//", CELERY_RESULT_BACKEND="redis://localhost/2")
    assert c.celery_broker_url == "amqp://guest@localhost//"
    assert c.celery_result_backend == "redis://localhost/2"


def test_relative_and_absolute_sqlite_urls() -> None:
    assert cfg(DATABASE_URL="sqlite:////tmp/x.db").database.name == "/tmp/x.db"
    assert cfg(DATABASE_URL="sqlite:///var/y.db").database.name == str(BASE_DIR / "var" / "y.db")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://u@h:notaport/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://u@h:5432/"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h:99999999/0"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h:6379/zero"}, "REDIS_URL"),
        ({"CELERY_BROKER_URL": "kafka://h"}, "CELERY_BROKER_URL"),
        ({"WEB_PORT": "80a"}, "WEB_PORT"),
        ({"FLOWER_PORT": "70000"}, "FLOWER_PORT"),
        ({"TRADING_MODE": "yolo"}, "TRADING_MODE"),
        ({"TRADING_MODE": "live"}, "KITE_API_KEY"),
        ({"TRADING_MODE": "live", "KITE_API_KEY": "k"}, "KITE_API_SECRET"),
        ({"KITE_API_ROOT": "ftp://kite"}, "KITE_API_ROOT"),
        ({"FLOWER_BASIC_AUTH": "nopassword"}, "FLOWER_BASIC_AUTH"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"FIELD_ENCRYPTION_KEYS": "not-a-fernet-key"}, "FIELD_ENCRYPTION_KEYS"),
        ({"KITE_TICKER_ROOT": "http://x"}, "KITE_TICKER_ROOT"),
        ({"TICKER_STALE_SECONDS": "0"}, "TICKER_STALE_SECONDS"),
    ],
)
def test_malformed_variables_are_named(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_secret_key_required_unless_debug() -> None:
    with pytest.raises(ConfigError, match=r"^SECRET_KEY is required"):
        load_config({})
    assert load_config({"DEBUG": "true"}).secret_key is None


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "SECRET_KEY": "k", **env}
    return subprocess.run(
        [sys.executable, *args], env=clean, cwd=BASE_DIR, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "args",
    [["manage.py", "check"], ["-m", "workers", "worker", "orders"], ["-m", "tradingsite.launcher", "check"]],
    ids=["manage.py", "worker", "launcher"],
)
@pytest.mark.parametrize(("variable", "value"), [("DATABASE_URL", "postgres//oops"), ("REDIS_URL", "redis://:x:y@/")])
def test_every_entry_point_stops_with_one_line_naming_the_variable(args: list[str], variable: str, value: str) -> None:
    done = _run(args, **{variable: value})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0] and "Traceback" not in done.stderr
