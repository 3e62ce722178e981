"""Operations views of market data: instruments, universes, the calendar, candles, coverage, fetch jobs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from apps.marketdata import selectors
from apps.marketdata.coverage import coverage_rows
from apps.marketdata.models import CalendarDay, Candle, FetchJob, Instrument, Universe, UniverseMembership


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = (
        "tradingsymbol",
        "exchange",
        "name",
        "instrument_token",
        "instrument_type",
        "tick_size",
        "lot_size",
        "provisional",
        "source",
    )
    list_filter = ("exchange", "instrument_type", "provisional", "source", "memberships__universe")
    search_fields = ("tradingsymbol", "name", "=instrument_token")
    readonly_fields = ("created_at", "updated_at")
    change_list_template = "admin/marketdata/instrument_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        coverage = path("coverage/", self.admin_site.admin_view(self.coverage_view), name="marketdata_coverage")
        return [coverage, *super().get_urls()]

    def coverage_view(self, request: HttpRequest) -> HttpResponse:
        """Per instrument and interval: first and last bar, bar count, and bars missing against the calendar."""
        symbol = request.GET.get("q", "").strip()
        ids = list(selectors.instrument_list(search=symbol).values_list("id", flat=True)) if symbol else None
        context = {
            **self.admin_site.each_context(request),
            "title": "Candle coverage",
            "rows": coverage_rows(instrument_ids=ids),
            "query": symbol,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/marketdata/coverage.html", context)


class MembershipInline(admin.TabularInline):
    model = UniverseMembership
    extra = 0
    autocomplete_fields = ("instrument",)


@admin.register(Universe)
class UniverseAdmin(admin.ModelAdmin):
    list_display = ("name", "members", "description")
    search_fields = ("name",)
    inlines = (MembershipInline,)

    @admin.display(description="members")
    def members(self, obj: Universe) -> int:
        return obj.memberships.filter(end_date__isnull=True).count()


@admin.register(CalendarDay)
class CalendarDayAdmin(admin.ModelAdmin):
    list_display = ("date", "exchange", "kind", "description", "open_time", "close_time", "source")
    list_filter = ("kind", "exchange", "source")
    search_fields = ("description",)
    date_hierarchy = "date"


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    """Read-only: bars come from imports, Kite and the feeds, never from hand edits."""

    list_display = ("instrument", "interval", "time", "open", "high", "low", "close", "volume", "source")
    list_filter = ("interval", "source")
    search_fields = ("=instrument__tradingsymbol",)
    list_select_related = ("instrument",)
    show_full_result_count = False
    ordering = ("-time",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(FetchJob)
class FetchJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "interval",
        "start",
        "end",
        "symbol_count",
        "status",
        "progress_bar",
        "rows_written",
        "created_at",
    )
    list_filter = ("status", "interval")
    readonly_fields = [f.name for f in FetchJob._meta.fields] + ["progress_bar"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="symbols")
    def symbol_count(self, obj: FetchJob) -> int:
        return len(obj.symbols)

    @admin.display(description="progress")
    def progress_bar(self, obj: FetchJob) -> str:
        done = obj.requests_done + obj.requests_skipped
        return format_html(
            '<progress value="{}" max="{}"></progress> {}/{} requests ({} skipped)',
            done,
            max(obj.requests_total, 1),
            done,
            obj.requests_total,
            obj.requests_skipped,
        )


def coverage_url() -> str:
    return reverse("admin:marketdata_coverage")
