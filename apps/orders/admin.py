"""Orders for operations staff: read-only money and status (changes go through services, never edits)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.orders.models import Fill, Order, OrderEvent, Position


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ("created_at", "from_status", "to_status", "source", "message", "payload")
    readonly_fields = fields


class FillInline(ReadOnlyInline):
    model = Fill
    fields = ("trade_id", "quantity", "price", "filled_at", "charges_total")
    readonly_fields = fields


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "account",
        "instrument",
        "side",
        "quantity",
        "order_type",
        "price",
        "status",
        "filled_quantity",
        "average_price",
        "broker_order_id",
    )
    list_filter = ("status", "side", "product", "order_type", "account")
    search_fields = ("client_order_id", "tag", "broker_order_id", "instrument__tradingsymbol")
    list_select_related = ("account", "instrument")
    inlines = (EventInline, FillInline)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = (
        "account",
        "instrument",
        "product",
        "net_quantity",
        "average_price",
        "realised_pnl",
        "charges",
        "updated_at",
    )
    list_filter = ("account", "product")
    list_select_related = ("account", "instrument")


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("trade_id", "order", "quantity", "price", "filled_at", "charges_total")
    search_fields = ("trade_id", "order__client_order_id")
