"""Broker secrets encrypted at rest with MultiFernet under FIELD_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts, so keys are rotated by putting a
new key first, re-saving the rows, then dropping the old key. A database dump
alone never reveals an API secret or an access token.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class EncryptionNotConfigured(RuntimeError):
    """FIELD_ENCRYPTION_KEYS is empty: broker secrets cannot be stored or read."""


class SecretUnreadable(RuntimeError):
    """A stored secret does not decrypt under any configured key (rotated away, or tampered with)."""


def _fernet() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEYS
    if not keys:
        raise EncryptionNotConfigured(
            "FIELD_ENCRYPTION_KEYS is not set: generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("a stored broker secret does not decrypt under FIELD_ENCRYPTION_KEYS") from None


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python sees the plaintext, the database never does."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return decrypt(value) if value else value

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        return encrypt(value) if value else value
