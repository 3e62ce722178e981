"""Broker accounts: who can trade where, with secrets encrypted at rest."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.brokers.crypto import EncryptedTextField


class BrokerAccount(models.Model):
    class Kind(models.TextChoices):
        PAPER = "paper", "Paper"
        KITE = "kite", "Zerodha Kite"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    api_key = models.CharField(max_length=64, blank=True)
    api_secret = EncryptedTextField(blank=True, help_text="Encrypted at rest; never displayed.")
    access_token = EncryptedTextField(blank=True, help_text="Today's session token; encrypted at rest.")
    token_expires_at = models.DateTimeField(null=True, blank=True)
    algo_id = models.CharField(
        max_length=32, blank=True, help_text="Exchange-issued algo id sent with every order (SEBI retail-algo rules)."
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="broker_accounts", help_text="Users granted access."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
