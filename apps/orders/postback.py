"""`POST /kite/postback/`: Kite's order updates, verified by checksum and applied idempotently.

Kite signs each postback with sha256(order_id + order_timestamp + api_secret). The secret is the account's,
so the account is found first: by the order (broker order id or our tag), else by trying each Kite account's
secret (an order placed outside the OMS). A bad or missing checksum answers 403 and changes nothing; a body
that is not a Kite order update answers 400. Applying it goes through `sync.postback_apply`, so duplicate and
out-of-order postbacks change nothing they should not. Kite does not retry on errors, so the rare update
lost here is picked up by reconciliation.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.brokers import selectors as broker_accounts
from apps.brokers.base import postback_checksum
from apps.orders import sync
from apps.orders.models import Order

log = logging.getLogger(__name__)
REQUIRED = ("order_id", "order_timestamp", "checksum", "status")


def checksum_for(payload: dict[str, Any], api_secret: str) -> str:
    return postback_checksum(payload["order_id"], payload["order_timestamp"], api_secret)


def _secrets(payload: dict[str, Any]) -> list[str]:
    order = Order.objects.filter(broker_order_id=str(payload["order_id"])).select_related("account").first()
    if order is None and payload.get("tag"):
        order = Order.objects.filter(tag=payload["tag"]).select_related("account").first()
    accounts = [order.account] if order is not None else broker_accounts.accounts_kite()
    secrets = [broker_accounts.account_api_secret(account) for account in accounts]
    return [secret for secret in secrets if secret]


@csrf_exempt
@require_POST
def kite_postback(request: HttpRequest) -> JsonResponse:
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": {"code": "invalid_json", "message": "the body is not JSON"}}, status=400)
    if not isinstance(payload, dict) or any(payload.get(k) in (None, "") for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(payload, dict) or payload.get(k) in (None, "")]
        return JsonResponse(
            {"error": {"code": "invalid_postback", "message": f"missing {', '.join(missing)}"}}, status=400
        )
    given = str(payload["checksum"])
    if not any(hmac.compare_digest(given, checksum_for(payload, secret)) for secret in _secrets(payload)):
        log.warning("postback for order %s refused: bad checksum", payload.get("order_id"))
        return JsonResponse({"error": {"code": "bad_checksum", "message": "checksum does not verify"}}, status=403)
    order = sync.postback_apply(payload=payload)
    return JsonResponse({"status": "ok", "order": None if order is None else str(order.uuid)})
