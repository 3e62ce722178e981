"""`Idempotency-Key` for requests that create orders (draft-ietf-httpapi-idempotency-key-header).

A client that timed out cannot know whether its order was placed; retrying with
the same key must not place a second one. So:

- the key is claimed before any work, by inserting the row (in_progress) in a
  transaction of its own that commits at once; the unique (user, key)
  constraint makes exactly one of several concurrent requests the owner;
- the others get 409 while the owner works, 422 if they carry a different body
  (the key was reused for another request), and once it is done a replay of
  the stored status and the stored bytes of the body;
- a 4xx answer is a finished answer and is stored like a success; a 5xx or an
  unexpected error deletes the row, so the client may retry with the same key.

The response is stored as the rendered JSON text, not as a JSON object: jsonb
reorders keys, and a replay must be byte-identical. Keys are per user.

Work that the row cannot make atomic with itself is made idempotent by the
order's `client_order_id` (derived from the key by the API): if a process dies
between placing the order and storing the answer, the stale in_progress row is
taken over after IN_PROGRESS_TIMEOUT and the retry finds the same order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer

from apps.orders.models import IdempotencyKey
from tradingsite.exceptions import ApplicationError, Conflict, api_exception_handler

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
IN_PROGRESS_TIMEOUT = timedelta(minutes=2)  # far beyond any request; a row this old lost its process


class IdempotencyKeyReused(ApplicationError):
    http_status = 422
    default_code = "idempotency_key_reused"


class IdempotencyKeyInProgress(Conflict):
    default_code = "idempotency_key_in_progress"


@dataclass(frozen=True)
class Outcome:
    """What the work answered: status, body and the order it concerns (None for an error)."""

    status: int
    body: Any
    order_id: int | None = None


@dataclass(frozen=True)
class StoredResponse:
    status: int
    content: str  # the rendered JSON body, as sent the first time
    replayed: bool


def key_validate(raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise ApplicationError(
            f"the {HEADER} header is required: send a unique value (a UUID) per order, and the same one on retries",
            code="idempotency_key_missing",
        )
    key = raw.strip()
    if len(key) > MAX_KEY_LENGTH:
        raise ApplicationError(
            f"the {HEADER} header is at most {MAX_KEY_LENGTH} characters, got {len(key)}",
            code="idempotency_key_invalid",
        )
    return key


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """sha256 of the method, path and canonical JSON of the body (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


def render(body: Any) -> str:
    return JSONRenderer().render(body).decode()


def _claim(*, user_id: int, key: str, fingerprint: str) -> int | StoredResponse:
    """The row's id if this request owns the key now; the stored response if the key is done."""
    for _ in range(3):  # the row may vanish between the failed insert and the read (its owner failed)
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(user_id=user_id, key=key, request_hash=fingerprint).pk
        except IntegrityError:
            pass
        row = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
        if row is None:
            continue
        if row.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                f"this {HEADER} was used for a different request; use a new key for a new order",
                details={"key": key},
            )
        if row.state == IdempotencyKey.State.DONE:
            return StoredResponse(status=row.response_status or 200, content=str(row.response_body), replayed=True)
        if _take_over(row):
            return row.pk
        raise IdempotencyKeyInProgress(
            f"a request with this {HEADER} is still being processed; retry shortly for its answer",
            details={"key": key},
        )
    raise IdempotencyKeyInProgress(f"the request with this {HEADER} keeps changing; retry shortly")


def _take_over(row: IdempotencyKey) -> bool:
    """Compare-and-set on created_at: of several retries after a crash, one takes the stale row over."""
    now = timezone.now()
    if row.created_at >= now - IN_PROGRESS_TIMEOUT:
        return False
    return bool(
        IdempotencyKey.objects.filter(
            pk=row.pk, state=IdempotencyKey.State.IN_PROGRESS, created_at=row.created_at
        ).update(created_at=now)
    )


def _finish(row_id: int, outcome: Outcome) -> StoredResponse:
    content = render(outcome.body)
    IdempotencyKey.objects.filter(pk=row_id).update(
        state=IdempotencyKey.State.DONE,
        response_status=outcome.status,
        response_body=content,
        order_id=outcome.order_id,
        completed_at=timezone.now(),
    )
    return StoredResponse(status=outcome.status, content=content, replayed=False)


def _client_error(exc: Exception) -> Outcome | None:
    """The response a 4xx error renders to (as the API's exception handler renders it), else None."""
    if not isinstance(exc, ApplicationError | APIException):
        return None
    response = api_exception_handler(exc, {})
    if response is None or response.status_code >= 500:
        return None
    return Outcome(status=response.status_code, body=response.data)


def idempotent_call(*, user_id: int, key: str, fingerprint: str, work: Callable[[], Outcome]) -> StoredResponse:
    """Run `work` once per (user, key); replay its stored answer to every later request with the same key."""
    claimed = _claim(user_id=user_id, key=key, fingerprint=fingerprint)
    if isinstance(claimed, StoredResponse):
        return claimed
    try:
        outcome = work()
    except Exception as exc:
        stored = _client_error(exc)
        if stored is None:  # a 5xx or a bug: forget the key so that a retry runs the work again
            IdempotencyKey.objects.filter(pk=claimed, state=IdempotencyKey.State.IN_PROGRESS).delete()
            raise
        return _finish(claimed, stored)
    try:
        return _finish(claimed, outcome)
    except Exception:
        IdempotencyKey.objects.filter(pk=claimed, state=IdempotencyKey.State.IN_PROGRESS).delete()
        raise
