"""Environment and fixtures for tests that start real stack processes."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from tradingsite.celery import app as celery_app
from workers.queues import DEDICATED_QUEUES, Queue
from workers.supervision import ManagedProcess, queues_answering, start_queue_workers, stop_all

FLOWER_USER = "flower-test"
FLOWER_PASSWORD = "flower-test-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_database_url() -> str:
    """The URL of the database this test session really uses (the test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}{port}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """What a worker, beat or Flower started by a test sees: the test database and broker."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=celery_app.conf.broker_url,
        CELERY_RESULT_BACKEND=str(celery_app.conf.result_backend),
        VAR_DIR=str(settings.VAR_DIR),
        SECRET_KEY=settings.SECRET_KEY,
        FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        DJANGO_SETTINGS_MODULE="tradingsite.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def queue_nodes_alive(queues: list[Queue]) -> bool:
    return queues_answering(celery_app, [q.value for q in queues])


def start_workers(queues: list[Queue], log_dir: Path) -> dict[Queue, ManagedProcess]:
    procs = start_queue_workers(celery_app, [q.value for q in queues], env=subprocess_env(), log_dir=log_dir)
    return {Queue(name): proc for name, proc in procs.items()}


@pytest.fixture(scope="session")
def live_workers(
    django_db_setup: None, django_db_blocker: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Queue, ManagedProcess]]:
    """One real `celery worker` process per dedicated queue, started through the Procfile's command."""
    celery_app.control.purge()
    procs = start_workers(list(DEDICATED_QUEUES), tmp_path_factory.mktemp("workers"))
    try:
        yield procs
    finally:
        stop_all(procs.values())
