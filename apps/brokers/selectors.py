"""Reads of the brokers area."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet

from apps.brokers.crypto import SecretUnreadable
from apps.brokers.models import BrokerAccount
from tradingsite.exceptions import NotFound

log = logging.getLogger(__name__)


def account_get(*, account_id: int) -> BrokerAccount:
    account = BrokerAccount.objects.filter(pk=account_id).first()
    if account is None:
        raise NotFound(f"no broker account {account_id}", code="unknown_account")
    return account


def accounts_enabled() -> list[BrokerAccount]:
    return list(BrokerAccount.objects.filter(enabled=True).order_by("pk"))


def accounts_for_user(*, user: Any) -> QuerySet[BrokerAccount]:
    """The accounts a user may see and trade: those granted to them (`BrokerAccount.users`); superusers see all."""
    if getattr(user, "is_superuser", False):
        return BrokerAccount.objects.all()
    if not getattr(user, "is_authenticated", False):
        return BrokerAccount.objects.none()
    return BrokerAccount.objects.filter(users=user)


def account_get_for_user(*, user: Any, account_id: int) -> BrokerAccount:
    """404 alike for an account that does not exist and one not granted: ids of others' accounts stay unknown."""
    account = accounts_for_user(user=user).filter(pk=account_id).first()
    if account is None:
        raise NotFound(f"account {account_id} does not exist or is not granted to you", code="unknown_account")
    return account


def account_get_by_name(*, name: str) -> BrokerAccount:
    account = BrokerAccount.objects.filter(name=name).first()
    if account is None:
        raise NotFound(f"no broker account named {name!r}", code="unknown_account")
    return account


def accounts_kite() -> list[BrokerAccount]:
    """Every Kite account (a postback of an order placed outside the OMS is checked against each one's secret)."""
    return list(BrokerAccount.objects.filter(kind=BrokerAccount.Kind.KITE).order_by("pk"))


def account_api_secret(account: BrokerAccount) -> str:
    """The decrypted api_secret, or "" when unset or unreadable (keys rotated away: logged, never raised)."""
    try:
        return account.api_secret or ""
    except SecretUnreadable:
        log.error("the api_secret of account %s cannot be decrypted with the configured keys", account.pk)
        return ""
