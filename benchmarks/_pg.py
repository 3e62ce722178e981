"""A fresh PostgreSQL database for one benchmark, chosen before Django reads its settings.

DATABASE_URL's server when it is a PostgreSQL URL, else
postgres://postgres@127.0.0.1:5432/trading_bench (created when missing).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2  # type: ignore[import-untyped]

from tradingsite.config import ConfigError, parse_database_url

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/trading_bench"


def server_url() -> str:
    raw = os.environ.get("DATABASE_URL", "").strip()
    try:
        if raw and parse_database_url(raw).engine == "postgresql":
            return raw
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    return DEFAULT_SERVER_URL


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _libpq(url: str) -> str:
    """libpq reads postgres:// and postgresql:// URIs; Django's other spellings become the latter."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def ensure_database(url: str) -> str:
    """A database on the server to run CREATE/DROP DATABASE from: the URL's own.

    The default `trading_bench` is created when missing; a DATABASE_URL naming
    a database that does not exist falls back to the server's `postgres`
    database rather than creating someone else's.
    """
    try:
        psycopg2.connect(_libpq(url), connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
        maintenance = with_database(url, "postgres")
        if url != DEFAULT_SERVER_URL:
            return maintenance
        execute(maintenance, f"CREATE DATABASE {parse_database_url(url).name}")
    return url


def execute(url: str, *statements: str) -> None:
    conn = psycopg2.connect(_libpq(url), connect_timeout=5)
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


def configure_environment(database_url: str, var_dir: Path) -> None:
    """Settings read the environment once, at import: point them at the bench database before Django starts."""
    if "tradingsite.settings" in sys.modules:
        raise RuntimeError("Django settings were imported before the benchmark environment was set")
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "VAR_DIR": str(var_dir),
            "TRADING_MODE": "paper",
            "DJANGO_SETTINGS_MODULE": "tradingsite.settings",
        }
    )
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + os.urandom(16).hex())
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def close_django() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()
