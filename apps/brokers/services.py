"""The brokers area's public door. For now: the one place a Kite Connect client is built.

Every caller (historical fetch, instrument sync, the ticker, later the order
path) gets its client here, so the API root (`KITE_API_ROOT`, pointed at a
local fake server in tests) and the timeouts are the same everywhere.
"""

from __future__ import annotations

import os
from decimal import Decimal

from django.conf import settings
from kiteconnect import KiteConnect

from apps.brokers.base import Broker
from apps.brokers.kite import KiteBroker, KiteConfig
from apps.brokers.models import BrokerAccount
from tradingsite.redis_client import get_redis

KITE_TIMEOUT_SECONDS = 7
# Percent a MARKET / SL-M order may fill away from the last price when it names no protection of its own.
KITE_MARKET_PROTECTION = Decimal(2)


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
    if account.kind == BrokerAccount.Kind.KITE:
        return kite_broker_for(account)
    raise BrokerNotAvailable(f"account {account.name}: no broker for kind {account.kind!r}")


def kite_broker_for(account: BrokerAccount) -> KiteBroker:
    """A KiteBroker on the account's own key and session; real orders only when TRADING_MODE=live.

    The paper mode promise (README: `paper` means PaperBroker) must hold even for a Kite account that
    has a valid token, so a paper deployment refuses to build one rather than send a real order.
    """
    if settings.TRADING_MODE != "live":
        raise BrokerNotAvailable(
            f"account {account.name} is a Kite account but TRADING_MODE={settings.TRADING_MODE}: "
            "real orders go to Kite only when TRADING_MODE=live"
        )
    if not account.api_key or not account.access_token:
        missing = "api_key" if not account.api_key else "access token"
        raise KiteNotConfigured(f"account {account.name}: no {missing}; log in to Kite to start today's session")
    client = KiteConnect(
        api_key=account.api_key,
        access_token=account.access_token,
        root=settings.KITE_API_ROOT,
        timeout=KITE_TIMEOUT_SECONDS,
    )
    config = KiteConfig(algo_id=account.algo_id, market_protection=KITE_MARKET_PROTECTION)
    # Limits keyed by API key, not account: Kite counts per key, and accounts logged in through one app share it.
    return KiteBroker(client, get_redis(), config=config, account=account.api_key)


class BrokerNotAvailable(RuntimeError):
    """No Broker implementation can serve this account."""


def account_disable(*, account_id: int, reason: str) -> bool:
    """Disable an account (e.g. its Kite session expired); returns whether it was enabled before."""
    return bool(
        BrokerAccount.objects.filter(pk=account_id, enabled=True).update(enabled=False, disabled_reason=reason[:200])
    )


def paper_account_ensure(*, name: str = "paper") -> tuple[BrokerAccount, bool]:
    """A paper account for a fresh installation, granted to every superuser; (account, created).

    Does nothing but grant when any paper account exists already, so `make run` may call it every start.
    """
    from django.contrib.auth import get_user_model

    account = BrokerAccount.objects.filter(kind=BrokerAccount.Kind.PAPER).order_by("pk").first()
    created = account is None
    if account is None:
        account = BrokerAccount.objects.create(name=name, kind=BrokerAccount.Kind.PAPER)
    account.users.add(*get_user_model().objects.filter(is_superuser=True))
    return account, created
