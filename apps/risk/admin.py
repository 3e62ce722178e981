"""Risk in the admin: limits (edited by risk officers, every change kept with who and when), restricted instruments.

A limit row is saved through `apps.risk.limits` (never a plain `save()`): the change history is written in the
same transaction and the form carries the version it was loaded at, so two risk officers editing the same row
cannot silently overwrite each other; the second save is refused with a message to reload.
VaR snapshots, stress scenarios and breaches are in `apps.risk.admin_var`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from apps.risk import admin_var  # noqa: F401 - registers the snapshot, scenario and breach admins
from apps.risk.limits import limit_create, limit_update
from apps.risk.models import LIMIT_FIELDS, RestrictedInstrument, RiskLimit, RiskLimitChange
from tradingsite.admin_helpers import ReadOnlyInline, ServiceSavedAdmin
from tradingsite.exceptions import ApplicationError


class LimitChangeInline(ReadOnlyInline):
    model = RiskLimitChange
    fields = ("changed_at", "field", "old_value", "new_value", "version", "changed_by", "source")
    readonly_fields = fields
    ordering = ("-changed_at", "-id")
    verbose_name_plural = "history (who changed what, when)"


class RiskLimitForm(forms.ModelForm):
    loaded_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = RiskLimit
        fields = ("scope", "account", "strategy", *LIMIT_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["loaded_version"].initial = self.instance.version
            for name in ("scope", "account", "strategy"):
                self.fields[name].disabled = True


BOOK_FIELDS = ("max_position_value", "max_concentration_pct", "concentration_floor", "max_gross_exposure",
               "daily_loss_limit")  # fmt: skip


@admin.register(RiskLimit)
class RiskLimitAdmin(ServiceSavedAdmin):
    form = RiskLimitForm
    list_display = (
        "__str__", "max_order_value", "max_position_value", "max_concentration_pct", "max_gross_exposure",
        "daily_loss_limit", "orders_per_second", "orders_per_day", "var_limit", "version", "updated_by", "updated_at",
    )  # fmt: skip
    list_filter = ("scope",)
    search_fields = ("strategy", "account__name")
    inlines = [LimitChangeInline]
    fieldsets = (
        (None, {"fields": ("scope", "account", "strategy", "loaded_version")}),
        ("Per order", {"fields": ("max_order_value", "max_quantity", "price_band_pct")}),
        ("Book (refused only when the order adds risk)", {"fields": BOOK_FIELDS}),
        ("Order flow", {"fields": ("max_open_orders", "orders_per_second", "orders_per_day")}),
        ("VaR", {"fields": ("var_limit",)}),
    )

    def save_model(self, request: HttpRequest, obj: RiskLimit, form: Any, change: bool) -> None:
        by = request.user.get_username()
        values = {name: form.cleaned_data.get(name) for name in LIMIT_FIELDS}
        try:
            if change:
                changed = {name: values[name] for name in form.changed_data if name in LIMIT_FIELDS}
                saved = limit_update(
                    limit_id=obj.pk, changes=changed, changed_by=by, source="admin",
                    expected_version=form.cleaned_data.get("loaded_version"),
                )  # fmt: skip
            else:
                saved = limit_create(
                    scope=obj.scope, account_id=obj.account_id, strategy=obj.strategy, values=values,
                    changed_by=by, source="admin",
                )  # fmt: skip
        except ApplicationError as exc:
            raise ValidationError(str(exc)) from exc
        obj.pk, obj.version = saved.pk, saved.version

    def has_delete_permission(self, request: HttpRequest, obj: RiskLimit | None = None) -> bool:
        return obj is None or obj.scope != "global"  # the desk's defaults always exist


@admin.register(RestrictedInstrument)
class RestrictedInstrumentAdmin(admin.ModelAdmin):
    list_display = ("instrument", "reason", "added_by", "added_at")
    search_fields = ("instrument__tradingsymbol", "reason")
    autocomplete_fields = ("instrument",)
    readonly_fields = ("added_by", "added_at")

    def save_model(self, request: HttpRequest, obj: RestrictedInstrument, form: Any, change: bool) -> None:
        if not change:
            obj.added_by = request.user.get_username()
        super().save_model(request, obj, form, change)
