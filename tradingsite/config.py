"""Configuration from the environment, validated once, with one-line errors.

Every process of the stack (web, workers, beat, Flower, the launcher, tests)
reads its configuration through `load_config`, so a missing or malformed
variable is reported the same way everywhere: one line naming the variable.
Nothing here has a secret with a default; the launcher generates the local
SECRET_KEY and admin credentials under `var/` instead.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

TRADING_MODES = ("paper", "live")
DEFAULT_KITE_API_ROOT = "https://api.kite.trade"
DEFAULT_KITE_TICKER_ROOT = "wss://ws.kite.trade"
DATABASE_SCHEMES = {"postgres", "postgresql", "pgsql", "postgis", "sqlite"}
REDIS_SCHEMES = {"redis", "rediss", "unix"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A configuration variable is missing or malformed; the message names it."""

    def __init__(self, variable: str, reason: str) -> None:
        self.variable = variable
        self.reason = reason
        super().__init__(f"{variable} {reason}")


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed `DATABASE_URL`: the pieces Django and SQLAlchemy both need."""

    engine: str  # "postgresql" or "sqlite"
    name: str
    user: str = ""
    password: str = ""
    host: str = ""
    port: int | None = None
    raw: str = ""

    def sqlalchemy_url(self) -> str:
        if self.engine == "sqlite":
            return f"sqlite:///{self.name}"
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = self.host or "localhost"
        port = f":{self.port}" if self.port else ""
        return f"postgresql+psycopg2://{auth}@{host}{port}/{quote(self.name, safe='')}"

    def django(self) -> dict[str, Any]:
        if self.engine == "sqlite":
            return {"ENGINE": "django.db.backends.sqlite3", "NAME": self.name}
        # django-environ knows every option a postgres URL can carry (?sslmode=...).
        config: dict[str, Any] = dict(environ.Env.db_url_config(self.raw))
        config["ENGINE"] = "django.db.backends.postgresql"
        return config


@dataclass(frozen=True)
class Config:
    """Every setting that comes from the environment, validated."""

    debug: bool
    secret_key: str | None
    allowed_hosts: list[str]
    var_dir: Path
    database: DatabaseURL
    database_embedded: bool
    redis_url: str
    redis_embedded: bool
    celery_broker_url: str
    celery_result_backend: str
    trading_mode: str
    kite_api_key: str
    kite_api_secret: str
    kite_api_root: str
    web_port: int
    flower_port: int
    flower_basic_auth: str | None
    log_level: str
    kite_ticker_root: str
    ticker_enabled: bool
    demo_feed: bool
    ticker_stale_seconds: int
    field_encryption_keys: tuple[str, ...]
    paper_market_hours: bool
    risk_market_hours: bool
    orders_submitting_grace_seconds: int
    orders_unknown_grace_seconds: int


def parse_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def parse_port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(name, f"must be a TCP port between 1 and 65535, got {raw!r}")
    return int(raw)


def parse_database_url(raw: str, *, name: str = "DATABASE_URL") -> DatabaseURL:
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in DATABASE_SCHEMES:
        raise ConfigError(name, f"is malformed: expected postgres://user@host:port/name or sqlite:///path, got {raw!r}")
    if scheme == "sqlite":
        # sqlite:////abs/path is absolute, sqlite:///rel/path is relative to the project.
        path = unquote(parts.path)
        if parts.netloc or not path.lstrip("/"):
            raise ConfigError(
                name, f"is malformed: expected sqlite:////absolute/path or sqlite:///relative, got {raw!r}"
            )
        file = Path(path[1:]) if path.startswith("//") else BASE_DIR / path[1:]
        return DatabaseURL(engine="sqlite", name=str(file), raw=raw)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(name, f"is malformed: bad port in {raw!r}") from None
    db_name = unquote(parts.path.lstrip("/"))
    if not db_name or "/" in db_name:
        raise ConfigError(name, f"is malformed: no database name in {raw!r}")
    return DatabaseURL(
        engine="postgresql",
        name=db_name,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        host=parts.hostname or "",
        port=port,
        raw=raw,
    )


def validate_redis_url(raw: str, *, name: str = "REDIS_URL") -> str:
    parts = urlsplit(raw)
    if parts.scheme.lower() not in REDIS_SCHEMES:
        raise ConfigError(name, f"is malformed: expected redis://host:port/db or unix:///path, got {raw!r}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(name, f"is malformed: unix URL has no socket path in {raw!r}")
        return raw
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError:
        raise ConfigError(name, f"is malformed: bad port in {raw!r}") from None
    if not parts.hostname:
        raise ConfigError(name, f"is malformed: no host in {raw!r}")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ConfigError(name, f"is malformed: database must be a number, got {db!r}")
    return raw


def broker_url_for(redis_url: str) -> str:
    """Kombu spells a Redis unix socket `redis+socket://`, redis-py `unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


def embedded_redis_socket(var_dir: Path) -> Path:
    return var_dir / "redis" / "redis.sock"


def var_dir_from_env(env: Mapping[str, str]) -> Path:
    raw = env.get("VAR_DIR", "").strip()
    path = Path(raw) if raw else BASE_DIR / "var"
    return path if path.is_absolute() else (BASE_DIR / path)


def _database(env: Mapping[str, str], var_dir: Path) -> tuple[DatabaseURL, bool]:
    raw = env.get("DATABASE_URL", "").strip()
    if raw:
        return parse_database_url(raw), False
    return DatabaseURL(engine="sqlite", name=str(var_dir / "db.sqlite3")), True


def _redis(env: Mapping[str, str], var_dir: Path) -> tuple[str, bool]:
    raw = env.get("REDIS_URL", "").strip()
    if raw:
        return validate_redis_url(raw), False
    return f"unix://{embedded_redis_socket(var_dir)}", True


def _celery_urls(env: Mapping[str, str], redis_url: str, database: DatabaseURL) -> tuple[str, str]:
    broker = env.get("CELERY_BROKER_URL", "").strip() or broker_url_for(redis_url)
    scheme = urlsplit(broker).scheme
    if scheme not in {"redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp"}:
        raise ConfigError("CELERY_BROKER_URL", f"is malformed: unsupported scheme in {broker!r}")
    backend = env.get("CELERY_RESULT_BACKEND", "").strip() or "db+" + database.sqlalchemy_url()
    if not re.match(r"^[a-z][a-z0-9+]*://", backend):
        raise ConfigError("CELERY_RESULT_BACKEND", f"is malformed: {backend!r} is not a URL")
    return broker, backend


def _kite(env: Mapping[str, str], trading_mode: str) -> tuple[str, str, str]:
    key = env.get("KITE_API_KEY", "").strip()
    secret = env.get("KITE_API_SECRET", "").strip()
    root = env.get("KITE_API_ROOT", "").strip() or DEFAULT_KITE_API_ROOT
    if urlsplit(root).scheme not in {"http", "https"} or not urlsplit(root).hostname:
        raise ConfigError("KITE_API_ROOT", f"is malformed: expected an http(s) URL, got {root!r}")
    if trading_mode == "live":
        for name, value in (("KITE_API_KEY", key), ("KITE_API_SECRET", secret)):
            if not value:
                raise ConfigError(name, "is required when TRADING_MODE=live")
    return key, secret, root.rstrip("/")


def _flower_auth(env: Mapping[str, str]) -> str | None:
    raw = env.get("FLOWER_BASIC_AUTH", "").strip()
    if not raw:
        return None
    for pair in raw.split(","):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise ConfigError("FLOWER_BASIC_AUTH", "is malformed: expected user:password[,user:password]")
    return raw


def parse_positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(name, f"must be a positive whole number, got {raw!r}")
    return int(raw)


def _ticker_root(env: Mapping[str, str]) -> str:
    root = env.get("KITE_TICKER_ROOT", "").strip() or DEFAULT_KITE_TICKER_ROOT
    if urlsplit(root).scheme not in {"ws", "wss"} or not urlsplit(root).hostname:
        raise ConfigError("KITE_TICKER_ROOT", f"is malformed: expected a ws(s):// URL, got {root!r}")
    return root


def _encryption_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    """Fernet keys, newest first: the first encrypts, all decrypt (so keys can be rotated)."""
    raw = env.get("FIELD_ENCRYPTION_KEYS", "").strip()
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for n, key in enumerate(keys, start=1):
        try:
            ok = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (ValueError, binascii.Error):
            ok = False
        if not ok:
            raise ConfigError("FIELD_ENCRYPTION_KEYS", f"key {n} is not a Fernet key (32 url-safe base64 bytes)")
    return keys


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the environment; raises `ConfigError` naming the variable."""
    env = os.environ if env is None else env
    debug = parse_bool(env, "DEBUG", False)
    secret_key = env.get("SECRET_KEY", "").strip() or None
    if secret_key is None and not debug:
        raise ConfigError("SECRET_KEY", "is required unless DEBUG=true")
    trading_mode = env.get("TRADING_MODE", "").strip().lower() or "paper"
    if trading_mode not in TRADING_MODES:
        raise ConfigError("TRADING_MODE", f"must be one of {', '.join(TRADING_MODES)}, got {trading_mode!r}")
    var_dir = var_dir_from_env(env)
    database, database_embedded = _database(env, var_dir)
    redis_url, redis_embedded = _redis(env, var_dir)
    broker, backend = _celery_urls(env, redis_url, database)
    kite_key, kite_secret, kite_root = _kite(env, trading_mode)
    hosts = [h.strip() for h in env.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    log_level = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError("LOG_LEVEL", f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}")
    return Config(
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=hosts or ["localhost", "127.0.0.1", "[::1]"],
        var_dir=var_dir,
        database=database,
        database_embedded=database_embedded,
        redis_url=redis_url,
        redis_embedded=redis_embedded,
        celery_broker_url=broker,
        celery_result_backend=backend,
        trading_mode=trading_mode,
        kite_api_key=kite_key,
        kite_api_secret=kite_secret,
        kite_api_root=kite_root,
        web_port=parse_port(env, "WEB_PORT", 8000),
        flower_port=parse_port(env, "FLOWER_PORT", 5555),
        flower_basic_auth=_flower_auth(env),
        log_level=log_level,
        kite_ticker_root=_ticker_root(env),
        ticker_enabled=parse_bool(env, "TICKER_ENABLED", False),
        demo_feed=parse_bool(env, "DEMO_FEED", True),
        ticker_stale_seconds=parse_positive_int(env, "TICKER_STALE_SECONDS", 30),
        field_encryption_keys=_encryption_keys(env),
        paper_market_hours=parse_bool(env, "PAPER_MARKET_HOURS", True),
        risk_market_hours=parse_bool(env, "RISK_MARKET_HOURS", True),
        orders_submitting_grace_seconds=parse_positive_int(env, "ORDERS_SUBMITTING_GRACE_SECONDS", 180),
        orders_unknown_grace_seconds=parse_positive_int(env, "ORDERS_UNKNOWN_GRACE_SECONDS", 120),
    )
