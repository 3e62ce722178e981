"""Strategies in the admin: configs (edited and switched through `apps.strategies.configs`, never a plain save),
live signals (read-only), and backtest runs with their pictures (read-only; `admin_charts` draws them).

A config form carries the version it was loaded at, so two operators editing one config cannot silently
overwrite each other: the second save is refused with a message to reload. Parameters are validated against
the strategy's schema on the form, the error on the parameters field naming the parameter.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.brokers import selectors as broker_accounts
from apps.strategies import admin_charts as charts
from apps.strategies.configs import (
    EDITABLE_FIELDS,
    KITE_INTERVALS,
    config_create,
    config_create_from_run,
    config_disable,
    config_enable,
    config_update,
    config_validate,
    strategy_describe,
    strategy_library,
)
from apps.strategies.engine.packing import unpack_series
from apps.strategies.models import BacktestChunk, BacktestRun, RunKind, Signal, StrategyConfig, StrategyConfigEvent
from apps.strategies.serializers import chunk_items
from tradingsite.admin_helpers import ReadOnlyAdmin, ReadOnlyInline, ServiceSavedAdmin
from tradingsite.exceptions import ApplicationError

# --- strategy configs ----------------------------------------------------------------------------------------------


class ConfigEventInline(ReadOnlyInline):
    model = StrategyConfigEvent
    fields = ("at", "kind", "version", "by", "detail")
    readonly_fields = fields
    ordering = ("-at", "-id")
    verbose_name_plural = "history (who changed what, when)"


class StrategyConfigForm(forms.ModelForm):
    strategy = forms.ChoiceField(choices=())
    interval = forms.ChoiceField(choices=[(i, i) for i in KITE_INTERVALS], initial="day")
    symbols = forms.CharField(
        required=False, help_text="Comma-separated NSE symbols (RELIANCE, INFY); leave empty when a universe is set."
    )
    loaded_version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = StrategyConfig
        fields = ("name", "strategy", "parameters", "universe", "symbols", "interval", "capital", "product", "mode",
                  "account")  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["strategy"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(d["name"], f"{d['name']} ({d['title']})") for d in strategy_library()]
        if self.instance.pk:
            self.fields["loaded_version"].initial = self.instance.version
            self.initial["symbols"] = ", ".join(self.instance.symbols or [])

    def clean(self) -> dict[str, Any]:
        """The service's own validation, each error on its field (a parameter's on `parameters`)."""
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            config_validate(**{k: data.get(k) for k in EDITABLE_FIELDS}, config_id=self.instance.pk)
        except ApplicationError as exc:
            field = "parameters" if exc.code == "invalid_params" else exc.details.get("field")
            self.add_error(field if field in self.fields else None, exc.message)
        return data


def _schema_table(description: dict[str, Any]) -> SafeString:
    rows = [
        (p["name"], p["type"], p["default"], p.get("minimum", ""), p.get("maximum", ""),
         ", ".join(map(str, p.get("choices") or [])), p.get("help", ""))
        for p in description["schema"]["params"]
    ]  # fmt: skip
    rules = format_html_join("", "<li>{}</li>", ((r,) for r in description["schema"]["rules"]))
    return format_html(
        "<p><strong>{}</strong> ({}): {}</p>{}{}",
        description["title"], description["name"], description["description"],
        charts._table(("parameter", "type", "default", "min", "max", "choices", "help"), rows, css="schema"),
        format_html("<ul>{}</ul>", rules) if description["schema"]["rules"] else "",
    )  # fmt: skip


@admin.register(StrategyConfig)
class StrategyConfigAdmin(ServiceSavedAdmin):
    form = StrategyConfigForm
    list_display = ("name", "strategy", "mode", "enabled", "interval", "capital", "product", "account", "version",
                    "last_bar_time")  # fmt: skip
    list_filter = ("enabled", "mode", "strategy", "interval")
    list_select_related = ("account", "universe")
    search_fields = ("name", "strategy")
    readonly_fields = ("enabled", "version", "last_bar_time", "created_at", "updated_at", "schema_help")
    inlines = [ConfigEventInline]
    actions = ("enable_configs", "disable_configs")
    fieldsets = (
        (None, {"fields": ("name", "strategy", "parameters", "schema_help", "loaded_version")}),
        ("Where and how much", {"fields": ("universe", "symbols", "interval", "capital", "product")}),
        ("Mode", {"fields": ("mode", "account", "enabled")}),
        ("State", {"fields": ("version", "last_bar_time", "created_at", "updated_at")}),
    )

    @admin.display(description="parameters of the strategy")
    def schema_help(self, obj: StrategyConfig | None) -> SafeString:
        described = strategy_describe(obj.strategy) if obj is not None and obj.strategy else None
        tables = [described] if described else strategy_library()
        return format_html_join("", "{}", ((_schema_table(d),) for d in tables))

    def save_model(self, request: HttpRequest, obj: StrategyConfig, form: Any, change: bool) -> None:
        by = request.user.get_username()
        values = {name: form.cleaned_data.get(name) for name in EDITABLE_FIELDS}
        try:
            if change:
                changed = {name: values[name] for name in form.changed_data if name in EDITABLE_FIELDS}
                expected = form.cleaned_data.get("loaded_version") or obj.version
                saved = config_update(config_id=obj.pk, expected_version=expected, by=by, **changed)
            else:
                saved = config_create(**values, by=by)
        except ApplicationError as exc:
            raise ValidationError(exc.message) from exc
        obj.pk, obj.version = saved.pk, saved.version

    def has_delete_permission(self, request: HttpRequest, obj: StrategyConfig | None = None) -> bool:
        return False  # disable a config instead: its signals and events are the desk's record

    def _switch(self, request: HttpRequest, queryset: QuerySet[StrategyConfig], *, enable: bool) -> None:
        service = config_enable if enable else config_disable
        for config in queryset.order_by("pk"):
            try:
                saved = service(config_id=config.pk, by=request.user.get_username())
            except ApplicationError as exc:
                self.message_user(request, f"{config.name}: not changed: {exc.message}", messages.ERROR)
                continue
            state = "enabled" if saved.enabled else "disabled"
            self.message_user(request, f"{config.name}: {state} (version {saved.version})", messages.SUCCESS)

    @admin.action(description="Enable selected configs (evaluated on every bar close)", permissions=("change",))
    def enable_configs(self, request: HttpRequest, queryset: QuerySet[StrategyConfig]) -> None:
        self._switch(request, queryset, enable=True)

    @admin.action(description="Disable selected configs", permissions=("change",))
    def disable_configs(self, request: HttpRequest, queryset: QuerySet[StrategyConfig]) -> None:
        self._switch(request, queryset, enable=False)


# --- signals -------------------------------------------------------------------------------------------------------


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = ("bar_time", "config", "instrument", "target", "previous_target", "price", "action", "order_link",
                    "detail")  # fmt: skip
    list_filter = ("action", "config__mode", "config")
    list_select_related = ("config", "instrument")
    search_fields = ("instrument__tradingsymbol", "config__name")
    date_hierarchy = "bar_time"

    @admin.display(description="order", ordering="order_id")
    def order_link(self, obj: Signal) -> SafeString | str:
        if obj.order_id is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[obj.order_id]), obj.order_id
        )


# --- backtest runs -------------------------------------------------------------------------------------------------


class ChunkInline(admin.TabularInline):
    model = BacktestChunk
    fields = ("index", "status", "items", "error", "worker", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "chunks (one Celery task each)"

    @admin.display(description="items")
    def items(self, obj: BacktestChunk) -> int:
        return chunk_items(obj.work)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


RESULT_FIELDS = {
    RunKind.SINGLE: ("equity_chart", "drawdown_chart"),
    RunKind.GRID: ("grid_heatmap", "equity_chart", "drawdown_chart"),
    RunKind.WALK_FORWARD: ("folds", "equity_chart", "drawdown_chart"),
    RunKind.MONTE_CARLO: ("monte_carlo",),
}
PICTURES = ("metrics_table", "grid_heatmap", "folds", "monte_carlo", "equity_chart", "drawdown_chart", "trades_table",
            "progress_bar", "symbol_count")  # fmt: skip


@admin.register(BacktestRun)
class BacktestRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "strategy", "status", "progress_bar", "symbol_count", "interval", "start", "end",
                    "headline", "created_at")  # fmt: skip
    list_filter = ("kind", "status", "strategy", "interval")
    search_fields = ("strategy",)
    date_hierarchy = "created_at"
    readonly_fields = PICTURES
    inlines = [ChunkInline]
    actions = ("create_paper_config",)

    def get_fieldsets(self, request: HttpRequest, obj: BacktestRun | None = None) -> Any:
        kind = obj.kind if obj is not None else RunKind.SINGLE
        return (
            ("Run", {"fields": (("kind", "status", "progress_bar"), ("chunks_total", "chunks_done"),
                                ("created_at", "started_at", "finished_at"), "created_by", "error")}),
            ("Inputs", {"fields": ("strategy", "parameters", "grid", "options", "symbols", "interval",
                                   ("start", "end"), "source_run", ("code_version", "data_hash", "cache_key"))}),
            ("Results", {"fields": ("metrics_table", *RESULT_FIELDS.get(RunKind(kind), ()), "trades_table")}),
        )  # fmt: skip

    @admin.display(description="progress")
    def progress_bar(self, obj: BacktestRun) -> SafeString:
        pct = max(0.0, min(1.0, float(obj.progress or 0.0))) * 100
        colour = {"failed": "#c0392b", "done": "#27ae60"}.get(obj.status, "#2c6fbb")
        return format_html(
            '<span class="progress" title="{} of {} chunks"><span style="display:inline-block;width:100px;height:8px;'
            'background:#eee;vertical-align:middle"><span style="display:block;width:{}%;height:8px;background:{}">'
            "</span></span> {}%</span>",
            obj.chunks_done, obj.chunks_total, f"{pct:.0f}", colour, f"{pct:.0f}",
        )  # fmt: skip

    @admin.display(description="symbols")
    def symbol_count(self, obj: BacktestRun) -> int:
        return len(obj.symbols or [])

    @admin.display(description="result")
    def headline(self, obj: BacktestRun) -> str:
        m = obj.metrics or {}
        if obj.status == "failed":
            return obj.error[:80]
        if "total_return" not in m:
            return ""
        return f"return {charts.metric_text('total_return', m['total_return'])}, sharpe {m.get('sharpe', 0):.2f}"

    @admin.display(description="metrics")
    def metrics_table(self, obj: BacktestRun) -> SafeString:
        return charts.metrics_table(obj.metrics or {})

    def _equity(self, obj: BacktestRun) -> tuple[Any, Any]:
        return unpack_series(obj.equity)

    @admin.display(description="equity")
    def equity_chart(self, obj: BacktestRun) -> SafeString:
        title = "Stitched out-of-sample equity (₹)" if obj.kind == RunKind.WALK_FORWARD else "Equity (₹)"
        return charts.equity_svg(*self._equity(obj), title=title)

    @admin.display(description="drawdown")
    def drawdown_chart(self, obj: BacktestRun) -> SafeString:
        return charts.drawdown_svg(*self._equity(obj))

    @admin.display(description="grid")
    def grid_heatmap(self, obj: BacktestRun) -> SafeString:
        results = obj.results or {}
        best, objective = results.get("best") or {}, str(results.get("objective", "sharpe"))
        summary = format_html(
            "<p>Best: {} ({} {}).</p>",
            ", ".join(f"{k}={v}" for k, v in (best.get("params") or {}).items()) or "-",
            objective,
            charts.metric_text(objective, (best.get("metrics") or {}).get(objective)),
        )
        return format_html("{}{}", charts.heatmap_svg(results), summary)

    @admin.display(description="walk-forward folds")
    def folds(self, obj: BacktestRun) -> SafeString:
        results = obj.results or {}
        oos = charts.metrics_table(results.get("oos_metrics") or {})
        return format_html("{}<p>Out of sample, all folds:</p>{}", charts.folds_table(results), oos)

    @admin.display(description="Monte Carlo")
    def monte_carlo(self, obj: BacktestRun) -> SafeString:
        results = obj.results or {}
        return format_html(
            "{}{}{}",
            charts.monte_carlo_summary(results),
            charts.histogram_svg(
                results.get("max_drawdown") or {}, title="Max drawdown", value_text=lambda v: f"{100 * v:.1f}%"
            ),
            charts.histogram_svg(results.get("final_equity") or {}, title="Final equity (₹)"),
        )

    @admin.display(description="trades")
    def trades_table(self, obj: BacktestRun) -> SafeString:
        return charts.trades_table(obj.trades or [], limit=200)

    def has_create_config_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("strategies.add_strategyconfig")

    @admin.action(
        description="Create a paper strategy config from this run's parameters (a grid's best)",
        permissions=("create_config",),
    )
    def create_paper_config(self, request: HttpRequest, queryset: QuerySet[BacktestRun]) -> None:
        paper = next((a for a in broker_accounts.accounts_enabled() if a.kind == "paper"), None)
        if paper is None:
            self.message_user(
                request,
                "No enabled paper account: add one (manage.py broker_account add --kind paper).",
                messages.ERROR,
            )
            return
        for run in queryset.order_by("pk"):
            try:
                config = config_create_from_run(run_id=run.pk, account=paper, by=request.user.get_username())
            except ApplicationError as exc:
                self.message_user(request, f"run {run.pk}: no config created: {exc.message}", messages.ERROR)
                continue
            link = reverse("admin:strategies_strategyconfig_change", args=[config.pk])
            self.message_user(
                request,
                format_html(
                    'run {}: created the disabled paper config <a href="{}">{}</a> ({}) on {}',
                    run.pk,
                    link,
                    config.name,
                    ", ".join(f"{k}={v}" for k, v in config.parameters.items()),
                    paper.name,
                ),
                messages.SUCCESS,
            )
