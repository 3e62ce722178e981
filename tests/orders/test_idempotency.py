"""Idempotency-Key on POST /api/v1/orders/: one order per key, stored answers replayed byte for byte."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from apps.orders import apis
from apps.orders.models import IdempotencyKey, Order
from tests.orders.desk import Desk, make_desk, order_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/orders/"


@pytest.fixture
def desk(settings) -> Iterator[Desk]:
    settings.PAPER_MARKET_HOURS = False
    desk = make_desk()
    yield desk
    desk.reset()


def _post(client, body, key: str | None = "key-1"):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(URL, body, format="json", **headers)


def test_the_same_key_and_body_give_one_order_and_a_byte_identical_answer(desk) -> None:
    client = desk.client()
    first = _post(client, order_body(desk, strategy="momo"))
    second = _post(client, order_body(desk, strategy="momo"))
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert "Idempotent-Replayed" not in first and second["Idempotent-Replayed"] == "true"
    order = Order.objects.get()
    assert first.json()["id"] == order.pk and order.strategy == "momo"
    row = IdempotencyKey.objects.get()
    assert row.state == "done" and row.order_id == order.pk and row.response_status == 201


def test_the_body_is_compared_canonically_not_byte_for_byte(desk) -> None:
    client = desk.client()
    body = order_body(desk)
    first = _post(client, body)
    reordered = dict(reversed(list(body.items())))
    again = _post(client, reordered)
    assert again.status_code == 201 and again.content == first.content and Order.objects.count() == 1


def test_the_same_key_with_another_body_is_refused_422(desk) -> None:
    client = desk.client()
    assert _post(client, order_body(desk)).status_code == 201
    reused = _post(client, order_body(desk, quantity=11))
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


@pytest.mark.parametrize(("key", "code"), [(None, "idempotency_key_missing"), ("k" * 256, "idempotency_key_invalid")])
def test_a_missing_or_overlong_key_is_a_400_and_nothing_is_kept(desk, key, code) -> None:
    response = _post(desk.client(), order_body(desk), key=key)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert not Order.objects.exists() and not IdempotencyKey.objects.exists()


def test_a_key_still_in_progress_answers_409(desk) -> None:
    client = desk.client()
    body = order_body(desk)
    _post(client, body)
    IdempotencyKey.objects.update(state="in_progress", response_status=None, response_body=None)
    busy = _post(client, body)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_key_in_progress"


def test_a_stale_in_progress_key_is_taken_over_and_finds_the_same_order(desk) -> None:
    """A process died after placing but before storing the answer: the retry maps to the same order."""
    client = desk.client()
    body = order_body(desk)
    placed = _post(client, body).json()
    IdempotencyKey.objects.update(
        state="in_progress", response_status=None, response_body=None, created_at=timezone.now() - timedelta(hours=1)
    )
    retry = _post(client, body)
    assert retry.status_code == 200  # not created now: the order existed
    assert retry.json()["id"] == placed["id"] and Order.objects.count() == 1
    assert IdempotencyKey.objects.get().state == "done"


def test_a_validation_error_is_stored_and_replayed_too(desk) -> None:
    client = desk.client()
    bad = order_body(desk, quantity=0)
    first = _post(client, bad)
    assert first.status_code == 400 and "quantity" in first.json()["error"]["details"]
    again = _post(client, bad)
    assert again.status_code == 400 and again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get().response_status == 400
    assert _post(client, order_body(desk)).status_code == 422  # the key is spent on that request


def test_a_server_error_forgets_the_key_so_that_a_retry_runs_again(desk, monkeypatch) -> None:
    client = desk.client()
    client.raise_request_exception = False

    def broken(**kwargs: object) -> Order:
        raise RuntimeError("database went away")

    monkeypatch.setattr(apis, "order_place", broken)
    assert _post(client, order_body(desk)).status_code == 500
    assert not IdempotencyKey.objects.exists()
    monkeypatch.undo()
    assert _post(client, order_body(desk)).status_code == 201


def test_keys_are_per_user(desk) -> None:
    mine = _post(desk.client(), order_body(desk))
    theirs = _post(desk.client(desk.other), order_body(desk, account=desk.other_account.pk))
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"] and IdempotencyKey.objects.count() == 2


def test_the_default_client_order_id_comes_from_user_and_key(desk) -> None:
    body = _post(desk.client(), order_body(desk), key="retry-me").json()
    assert body["client_order_id"] == apis.default_client_order_id(user_id=desk.user.pk, key="retry-me")
    other = _post(desk.client(), order_body(desk), key="another").json()
    assert other["client_order_id"] != body["client_order_id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_make_exactly_one_order(settings) -> None:
    """Threads with their own connections; the owner is held inside order_place by a table lock, so the others
    certainly arrive while it is in progress (and not after it finished, which would replay instead)."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "SQLite has one write lock for the whole database: holding the owner mid-request would also hold "
            "the others' key inserts, so the race cannot be staged; the 409 path is tested above on both"
        )
    settings.PAPER_MARKET_HOURS = False
    desk = make_desk()
    body, n = order_body(desk), 6
    results: queue.Queue[tuple[int, bytes]] = queue.Queue()
    start = threading.Barrier(n)

    def request() -> None:
        try:
            start.wait()
            response = _post(desk.client(), body, key="race")
            results.put((response.status_code, response.content))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(n)]
    answers = []
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:  # inserts into orders_order wait; reads and key inserts do not
                cursor.execute(f"LOCK TABLE {Order._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
            for t in threads:
                t.start()
            answers = [results.get(timeout=30) for _ in range(n - 1)]  # all but the owner, which waits
    finally:
        for t in threads:
            t.join(timeout=30)
        desk.reset()
    answers.append(results.get(timeout=30))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * (n - 1)
    assert Order.objects.count() == 1
    assert IdempotencyKey.objects.get().state == "done"
