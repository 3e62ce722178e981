"""Broker secrets are encrypted at rest and survive key rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from apps.brokers.crypto import EncryptionNotConfigured, SecretUnreadable
from apps.brokers.models import BrokerAccount

pytestmark = pytest.mark.django_db


def _stored(account: BrokerAccount, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM brokers_brokeraccount WHERE id = %s", [account.pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def test_secrets_are_ciphertext_in_the_database_and_plaintext_in_python() -> None:
    account = BrokerAccount.objects.create(
        name="kite-1", kind="kite", api_key="abc", api_secret="s3cret-value", access_token="tok-123"
    )
    assert "s3cret-value" not in _stored(account, "api_secret") and _stored(account, "api_secret").startswith("gAAAA")
    assert "tok-123" not in _stored(account, "access_token")
    fresh = BrokerAccount.objects.get(pk=account.pk)
    assert (fresh.api_secret, fresh.access_token) == ("s3cret-value", "tok-123")


def test_rotation_new_key_first_old_key_still_decrypts(settings) -> None:
    old = settings.FIELD_ENCRYPTION_KEYS[0]
    account = BrokerAccount.objects.create(name="kite-2", kind="kite", api_secret="before-rotation")
    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = (new, old)
    assert BrokerAccount.objects.get(pk=account.pk).api_secret == "before-rotation"
    account.save()  # re-encrypts under the new key
    settings.FIELD_ENCRYPTION_KEYS = (new,)
    assert BrokerAccount.objects.get(pk=account.pk).api_secret == "before-rotation"
    settings.FIELD_ENCRYPTION_KEYS = (old,)
    with pytest.raises(SecretUnreadable):
        BrokerAccount.objects.get(pk=account.pk)


def test_no_keys_is_a_clear_error(settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = ()
    with pytest.raises(EncryptionNotConfigured, match="FIELD_ENCRYPTION_KEYS is not set"):
        BrokerAccount.objects.create(name="kite-3", kind="kite", api_secret="x")


def test_the_admin_never_shows_a_secret_and_keeps_it_when_left_empty(admin_client) -> None:
    account = BrokerAccount.objects.create(name="kite-4", kind="kite", api_key="k", api_secret="very-secret-1")
    page = admin_client.get(f"/admin/brokers/brokeraccount/{account.pk}/change/").content.decode()
    assert "very-secret-1" not in page and "kite-4" in page
    response = admin_client.post(
        f"/admin/brokers/brokeraccount/{account.pk}/change/",
        {
            "name": "kite-4",
            "kind": "kite",
            "api_key": "k2",
            "api_secret": "",
            "access_token": "",
            "algo_id": "",
            "enabled": "on",
            "disabled_reason": "",
        },
    )
    assert response.status_code == 302
    fresh = BrokerAccount.objects.get(pk=account.pk)
    assert (fresh.api_key, fresh.api_secret) == ("k2", "very-secret-1")
