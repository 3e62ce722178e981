"""The brokers area's public door. For now: the one place a Kite Connect client is built.

Every caller (historical fetch, instrument sync, the ticker, later the order
path) gets its client here, so the API root (`KITE_API_ROOT`, pointed at a
local fake server in tests) and the timeouts are the same everywhere.
"""

from __future__ import annotations

import os

from django.conf import settings
from kiteconnect import KiteConnect

from apps.brokers.base import Broker
from apps.brokers.models import BrokerAccount

KITE_TIMEOUT_SECONDS = 7


class KiteNotConfigured(RuntimeError):
    """Kite cannot be called: no API key, or no access token for today's session."""


def kite_access_token() -> str:
    """Today's access token. Until broker accounts hold sessions (orders issue) it comes from KITE_ACCESS_TOKEN."""
    token = os.environ.get("KITE_ACCESS_TOKEN", "").strip()
    if not token:
        raise KiteNotConfigured("KITE_ACCESS_TOKEN is not set: log in to Kite and export today's access token")
    return token


def kite_client(*, access_token: str | None = None) -> KiteConnect:
    """A real `kiteconnect.KiteConnect` against settings.KITE_API_ROOT."""
    if not settings.KITE_API_KEY:
        raise KiteNotConfigured("KITE_API_KEY is not set")
    client = KiteConnect(api_key=settings.KITE_API_KEY, root=settings.KITE_API_ROOT, timeout=KITE_TIMEOUT_SECONDS)
    client.set_access_token(access_token or kite_access_token())
    return client


def broker_for(account: BrokerAccount) -> Broker:
    """The Broker implementation for an account: PaperBroker for paper accounts, KiteBroker for Kite."""
    if account.kind == BrokerAccount.Kind.PAPER:
        from apps.brokers.paper_glue import paper_broker_for

        return paper_broker_for(account)
    raise BrokerNotAvailable(f"account {account.name}: KiteBroker is not implemented yet; use a paper account")


class BrokerNotAvailable(RuntimeError):
    """No Broker implementation can serve this account."""


def account_disable(*, account_id: int, reason: str) -> bool:
    """Disable an account (e.g. its Kite session expired); returns whether it was enabled before."""
    return bool(
        BrokerAccount.objects.filter(pk=account_id, enabled=True).update(enabled=False, disabled_reason=reason[:200])
    )
