"""Admin pages of VaR snapshots (read-only, with the P&L histogram drawn server-side), stress scenarios
(operators' own, validated by the engine's rules, and a page that runs every scenario on the current book),
and breaches (the risk officer acknowledges them).

The histogram is inline SVG built here from the snapshot's stored bins: no JavaScript, nothing fetched.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from apps.risk import analysis, snapshots
from apps.risk.models import RiskBreach, RiskSnapshot, StressScenario
from apps.risk.quant.stress import StressInputError, scenario_validate
from tradingsite.admin_helpers import ReadOnlyAdmin
from tradingsite.exceptions import ApplicationError

SVG_WIDTH, SVG_HEIGHT = 640, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 16, 16, 28, 34


def _scale(lo: float, hi: float, left: float, right: float) -> Any:
    span = (hi - lo) or 1.0
    return lambda v: left + (v - lo) / span * (right - left)


def _bars(edges: list[float], counts: list[int], *, x: Any, var: float, base: float, height: float) -> SafeString:
    """One rect per bin; bins wholly beyond the VaR loss (the tail) in red."""
    peak = max(counts) or 1
    rows = []
    for i, count in enumerate(counts):
        h = count / peak * height
        colour = "#c0392b" if edges[i + 1] <= -var else "#7f8fa6"
        rows.append(
            (
                f"{x(edges[i]):.1f}",
                f"{base - h:.1f}",
                f"{max(x(edges[i + 1]) - x(edges[i]) - 0.6, 0.4):.1f}",
                f"{h:.1f}",
                colour,
                count,
                f"{edges[i]:,.0f}",
                f"{edges[i + 1]:,.0f}",
            )
        )
    return format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{} scenarios from {} to {}</title></rect>',
        rows,
    )


def _marker(x: float, *, label: str, colour: str, top: float, base: float, row: int) -> SafeString:
    return format_html(
        '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="{3}" stroke-width="2" stroke-dasharray="5,3"/>'
        '<text x="{0}" y="{4}" fill="{3}" font-size="11" text-anchor="middle">{5}</text>',
        f"{x:.1f}",
        f"{top:.1f}",
        f"{base:.1f}",
        colour,
        f"{top - 4 - 12 * row:.1f}",
        label,
    )


def histogram_svg(histogram: dict[str, Any], *, var: Decimal, es: Decimal) -> SafeString:
    """The P&L distribution as bars, with the VaR and ES losses marked as lines at -VaR and -ES."""
    edges, counts = list(histogram.get("edges") or []), list(histogram.get("counts") or [])
    if len(edges) != len(counts) + 1 or not counts:
        return format_html("<p>{}</p>", "No P&L distribution stored (an empty book).")
    v, e = float(var), float(es)
    lo, hi = min(edges[0], -e), max(edges[-1], 0.0)
    top, base = MARGIN_TOP + 14.0, SVG_HEIGHT - MARGIN_BOTTOM
    x = _scale(lo, hi, MARGIN_LEFT, SVG_WIDTH - MARGIN_RIGHT)
    axis = format_html(
        '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#333"/>'
        '<text x="{0}" y="{3}" font-size="11">{4}</text>'
        '<text x="{2}" y="{3}" font-size="11" text-anchor="end">{5}</text>'
        '<text x="{6}" y="{3}" font-size="11" text-anchor="middle">P&amp;L (rupees)</text>',
        MARGIN_LEFT,
        f"{base:.1f}",
        SVG_WIDTH - MARGIN_RIGHT,
        f"{base + 16:.1f}",
        f"{lo:,.0f}",
        f"{hi:,.0f}",
        SVG_WIDTH / 2,
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="{}">'
        "<title>{}</title>{}{}{}{}</svg>",
        SVG_WIDTH,
        SVG_HEIGHT,
        "P&L distribution with VaR and ES",
        f"P&L distribution: VaR {v:,.2f}, ES {e:,.2f}",
        _bars(edges, counts, x=x, var=v, base=base, height=base - top),
        axis,
        _marker(x(-v), label=f"VaR {v:,.0f}", colour="#c0392b", top=top, base=base, row=0),
        _marker(x(-e), label=f"ES {e:,.0f}", colour="#6c1d14", top=top, base=base, row=1),
    )


def positions_table(snapshot: RiskSnapshot) -> SafeString:
    var = float(snapshot.var) or 1.0
    rows = [
        (
            p["symbol"],
            p["quantity"],
            p["price"],
            p["exposure"],
            p["component_var"],
            f"{100.0 * float(p['component_var']) / var:.1f}%",
            p["marginal_var"],
        )
        for p in snapshot.positions
    ]
    if not rows:
        return format_html("<p>{}</p>", "No positions.")
    head = "".join(
        f"<th>{h}</th>" for h in ("symbol", "quantity", "price", "exposure", "component VaR", "share", "marginal VaR")
    )
    body = format_html_join("", "<tr>" + "<td>{}</td>" * 7 + "</tr>", rows)
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", mark_safe(head), body)  # noqa: S308


@admin.register(RiskSnapshot)
class RiskSnapshotAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "book",
        "method",
        "confidence",
        "horizon_days",
        "var",
        "es",
        "var_se",
        "breached",
        "trigger",
    )
    list_filter = ("method", "breached", "trigger", "account")
    list_select_related = ("account",)
    date_hierarchy = "created_at"
    fields = (
        ("created_at", "account", "trigger", "task_id", "duration_ms"),
        ("method", "confidence", "horizon_days", "window_days", "paths", "distribution"),
        ("var", "es", "var_se", "es_se"),
        ("gross_exposure", "var_limit", "breached"),
        "distribution_picture",
        "positions_breakdown",
        "warnings",
        "inputs_hash",
    )
    readonly_fields = ("distribution_picture", "positions_breakdown")

    @admin.display(description="book")
    def book(self, obj: RiskSnapshot) -> str:
        return obj.account.name if obj.account else "desk (every enabled account)"

    @admin.display(description="P&L distribution")
    def distribution_picture(self, obj: RiskSnapshot) -> SafeString:
        return histogram_svg(obj.histogram, var=obj.var, es=obj.es)

    @admin.display(description="positions and component VaR")
    def positions_breakdown(self, obj: RiskSnapshot) -> SafeString:
        return positions_table(obj)


class StressScenarioForm(forms.ModelForm):
    class Meta:
        model = StressScenario
        fields = ("name", "kind", "params", "description", "enabled")

    def clean(self) -> dict[str, Any]:
        """The engine's own validation, so a saved scenario always runs; the error goes on the params field."""
        data = super().clean() or {}
        kind, params = data.get("kind"), data.get("params")
        if kind and params is not None and "params" not in self.errors:
            try:
                scenario_validate(kind, params)
            except StressInputError as exc:
                self.add_error("kind" if exc.param == "kind" else "params", str(exc))
        return data


RESULTS_TEMPLATE = """{% extends "admin/base_site.html" %}
{% block content %}
<p>Book: {{ book }}. Every built-in scenario, the worst NIFTY 50 days in the data, and the enabled scenarios
below, on today's positions. P&amp;L in rupees (negative is a loss).</p>
{% if error %}<p class="errornote">{{ error }}</p>{% endif %}
<table>
<thead><tr><th>scenario</th><th>kind</th><th>source</th><th>P&amp;L</th><th>% of gross</th><th>notes</th></tr></thead>
<tbody>{% for r in results %}
<tr><td title="{{ r.description }}">{{ r.name }}</td><td>{{ r.kind }}</td><td>{{ r.source }}</td>
<td style="text-align:right">{{ r.pnl|default_if_none:"-" }}</td>
<td style="text-align:right">{{ r.pnl_pct_of_gross|default_if_none:"-" }}</td>
<td>{% if r.error %}<strong>{{ r.error }}</strong>{% endif %}{% for w in r.warnings %}{{ w }}<br>{% endfor %}</td></tr>
{% empty %}<tr><td colspan="6">The book is empty: nothing to stress.</td></tr>{% endfor %}</tbody>
</table>
{% endblock %}"""


@admin.register(StressScenario)
class StressScenarioAdmin(admin.ModelAdmin):
    form = StressScenarioForm
    list_display = ("name", "kind", "params", "enabled", "description", "created_by", "created_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "description")
    actions = ("run_stress_tests",)

    def save_model(self, request: HttpRequest, obj: StressScenario, form: Any, change: bool) -> None:
        if not obj.created_by:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[URLPattern]:
        run = path("run/", self.admin_site.admin_view(self.run_view), name="risk_stressscenario_run")
        return [run, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        link = format_html(
            '<a href="{}">Run stress tests now on the current book</a>', reverse("admin:risk_stressscenario_run")
        )
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": link})

    def run_view(self, request: HttpRequest) -> HttpResponse:
        """Every scenario on the current book (?account=<id>, default: the desk's book), as a table."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        raw = request.GET.get("account", "")
        account_id = int(raw) if raw.isdigit() else None
        results: list[dict[str, Any]] = []
        error = ""
        try:
            results = analysis.stress_current(account_id=account_id)
        except ApplicationError as exc:
            error = exc.message
        context = {
            **self.admin_site.each_context(request),
            "title": "Stress tests on the current book",
            "book": f"account {account_id}" if account_id else "the desk (every enabled account)",
            "results": results,
            "error": error,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, engines["django"].from_string(RESULTS_TEMPLATE), context)

    @admin.action(description="Run stress tests now on the current book")
    def run_stress_tests(self, request: HttpRequest, queryset: QuerySet[StressScenario]) -> HttpResponse:
        return self.run_view(request)


@admin.register(RiskBreach)
class RiskBreachAdmin(ReadOnlyAdmin):
    list_display = ("at", "kind", "account", "message", "value", "limit", "acknowledged_by", "acknowledged_at")
    list_filter = ("kind", ("acknowledged_at", admin.EmptyFieldListFilter), "account")
    list_select_related = ("account",)
    search_fields = ("message",)
    date_hierarchy = "at"
    actions = ("acknowledge",)

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("risk.change_riskbreach")

    @admin.action(description="Acknowledge selected breaches", permissions=("acknowledge",))
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[RiskBreach]) -> None:
        count = snapshots.breaches_acknowledge(
            breach_ids=list(queryset.values_list("pk", flat=True)), by=request.user.get_username()
        )
        self.message_user(request, f"{count} breach(es) acknowledged", messages.SUCCESS)
