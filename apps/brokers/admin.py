"""Broker accounts for operations staff; secrets can be replaced but are never displayed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from apps.brokers.models import BrokerAccount


class BrokerAccountForm(forms.ModelForm):
    api_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False), help_text="Leave empty to keep the stored one."
    )
    access_token = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False), help_text="Leave empty to keep the stored one."
    )

    class Meta:
        model = BrokerAccount
        fields = (
            "name",
            "kind",
            "api_key",
            "api_secret",
            "access_token",
            "token_expires_at",
            "algo_id",
            "enabled",
            "disabled_reason",
            "users",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("api_secret", None)
        self.initial.pop("access_token", None)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for secret in ("api_secret", "access_token"):
            if not data.get(secret) and self.instance.pk:
                data[secret] = getattr(self.instance, secret)
        return data


@admin.register(BrokerAccount)
class BrokerAccountAdmin(admin.ModelAdmin):
    form = BrokerAccountForm
    list_display = ("name", "kind", "enabled", "has_secret", "has_token", "token_expires_at", "algo_id")
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    filter_horizontal = ("users",)

    @admin.display(boolean=True, description="secret set")
    def has_secret(self, obj: BrokerAccount) -> bool:
        return bool(obj.api_secret)

    @admin.display(boolean=True, description="token set")
    def has_token(self, obj: BrokerAccount) -> bool:
        return bool(obj.access_token)
