"""Orders for operations staff: read-only money and status (changes go through services, never edits).

What operators may do here are actions that call the services: cancel orders,
reconcile their accounts, switch the kill switch. Positions show unrealised and
net P&L at the latest prices (read once per page).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from apps.brokers import services as brokers
from apps.brokers.base import BrokerError
from apps.orders import control, selectors
from apps.orders.models import EventSource, Fill, KillSwitch, Order, OrderEvent, Position
from tradingsite.admin_helpers import ReadOnlyAdmin, ReadOnlyInline
from tradingsite.exceptions import ApplicationError


class EventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ("created_at", "from_status", "to_status", "source", "message", "payload")
    readonly_fields = fields


class FillInline(ReadOnlyInline):
    model = Fill
    fields = ("trade_id", "quantity", "price", "filled_at", "charges_total")
    readonly_fields = fields


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
    actions = ("cancel_orders", "reconcile_accounts")

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orders.change_order")

    @admin.action(description="Cancel selected orders", permissions=("operate",))
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        for order in queryset.order_by("pk"):
            try:
                done = control.order_cancel(
                    order_id=order.pk, source=EventSource.OPERATOR, by=request.user.get_username()
                )
                self.message_user(request, f"order {order.pk}: {done.status}", messages.SUCCESS)
            except (ApplicationError, BrokerError) as exc:
                self.message_user(request, f"order {order.pk}: not cancelled: {exc}", messages.ERROR)

    @admin.action(description="Reconcile the accounts of selected orders", permissions=("operate",))
    def reconcile_accounts(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        from apps.orders.reconciliation import reconcile_account

        for account_id in sorted(set(queryset.values_list("account_id", flat=True))):
            try:
                report = reconcile_account(account_id=account_id).as_dict()
            except (BrokerError, brokers.BrokerNotAvailable, brokers.KiteNotConfigured) as exc:
                self.message_user(request, f"account {account_id}: not reconciled: {exc}", messages.ERROR)
                continue
            problems = report.pop("errors") + report.pop("position_mismatches")
            figures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.items() if k != "account")
            level = messages.WARNING if problems else messages.SUCCESS
            self.message_user(request, f"{report['account']}: {figures}" + "".join(f"; {p}" for p in problems), level)


class PricedChangeList(ChangeList):
    """Reads the latest prices once for the page and hangs each position's P&L on it."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        prices = selectors.last_prices(self.result_list)
        for position in self.result_list:
            key = selectors.instrument_key(position).upper()
            position.pnl = selectors.position_pnl(position, prices.get(key))


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = (
        "account",
        "instrument",
        "product",
        "net_quantity",
        "average_price",
        "last_price",
        "unrealised_pnl",
        "realised_pnl",
        "charges",
        "net_pnl",
        "updated_at",
    )
    list_filter = ("account", "product")
    list_select_related = ("account", "instrument")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return PricedChangeList

    @staticmethod
    def _pnl(obj: Position) -> selectors.PositionPnl:
        return getattr(obj, "pnl", None) or selectors.position_pnl(obj, None)

    @admin.display(description="last price")
    def last_price(self, obj: Position) -> Decimal | None:
        return self._pnl(obj).last_price

    @admin.display(description="unrealised P&L")
    def unrealised_pnl(self, obj: Position) -> Decimal | None:
        return _money(self._pnl(obj).unrealised)

    @admin.display(description="net P&L")
    def net_pnl(self, obj: Position) -> Decimal | None:
        return _money(self._pnl(obj).net)


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("0.01"))


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = ("scope", "account", "active", "reason", "changed_by", "changed_at")
    list_filter = ("active",)
    list_select_related = ("account",)
    ordering = ("scope",)
    actions = ("switch_on", "switch_on_square_off", "switch_off")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        control.kill_switch_rows_ensure()  # every scope has a row to select, off until switched
        return super().changelist_view(request, extra_context)

    def has_switch_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff and request.user.has_perm("orders.change_killswitch"))

    def _set(self, request: HttpRequest, queryset: QuerySet[KillSwitch], *, active: bool, square_off: bool) -> None:
        for row in queryset.order_by("scope"):
            try:
                result = control.kill_switch_set(
                    active=active,
                    account_id=row.account_id,
                    reason=f"admin action by {request.user.get_username()}",
                    by=request.user.get_username(),
                    square_off=square_off,
                )
            except ApplicationError as exc:
                self.message_user(request, f"{row.scope}: {exc}", messages.ERROR)
                continue
            text = f"{row.scope}: {'ON' if result.active else 'off'}"
            if active:
                text += f"; cancelled {len(result.cancelled)}, not cancelled {len(result.not_cancelled)}"
            if square_off:
                text += f"; square-off orders {len(result.square_off_orders)}"
            level = messages.WARNING if result.not_cancelled or result.square_off_skipped else messages.SUCCESS
            self.message_user(request, text, level)

    @admin.action(description="Switch ON (cancel open orders)", permissions=("switch",))
    def switch_on(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        self._set(request, queryset, active=True, square_off=False)

    @admin.action(description="Switch ON and square off MIS", permissions=("switch",))
    def switch_on_square_off(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        self._set(request, queryset, active=True, square_off=True)

    @admin.action(description="Switch OFF", permissions=("switch",))
    def switch_off(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        self._set(request, queryset, active=False, square_off=False)


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("trade_id", "order", "quantity", "price", "filled_at", "charges_total")
    search_fields = ("trade_id", "order__client_order_id")
