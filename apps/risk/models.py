"""Risk limits with their change history, restricted instruments, VaR snapshots, stress scenarios and breaches.

Limits come in three scopes: one global row (the desk's defaults, every field set), rows per account, and rows per
strategy (for any account, or for one). A blank field inherits: the effective value is the most specific one set,
in the order global < account < strategy < strategy on this account. Every change is a `RiskLimitChange` row
saying who changed which field from what to what, written in the same transaction as the change, and the row's
`version` moves by one so two editors cannot overwrite each other (compare-and-set).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


def _money(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=18, decimal_places=2, **kwargs)  # type: ignore[arg-type]


def _pct(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=6, decimal_places=2, **kwargs)  # type: ignore[arg-type]


class LimitScope(models.TextChoices):
    GLOBAL = "global", "Global defaults"
    ACCOUNT = "account", "Account"
    STRATEGY = "strategy", "Strategy"


# The limit fields, in the order the admin and the API show them; the pre-trade checks read them by these names.
LIMIT_FIELDS = (
    "max_order_value",
    "max_quantity",
    "max_position_value",
    "max_concentration_pct",
    "concentration_floor",
    "max_gross_exposure",
    "max_open_orders",
    "daily_loss_limit",
    "orders_per_second",
    "orders_per_day",
    "price_band_pct",
    "var_limit",
)


class RiskLimit(models.Model):
    scope = models.CharField(max_length=10, choices=LimitScope.choices)
    account = models.ForeignKey(
        "brokers.BrokerAccount", null=True, blank=True, on_delete=models.CASCADE, related_name="risk_limits"
    )
    strategy = models.CharField(max_length=64, blank=True, help_text="Strategy label of the orders this row limits.")
    max_order_value = _money(null=True, blank=True, help_text="Rupees: price (or last price) x quantity.")
    max_quantity = models.PositiveIntegerField(null=True, blank=True, help_text="Shares in one order.")
    max_position_value = _money(null=True, blank=True, help_text="Rupees held in one symbol after the order.")
    max_concentration_pct = _pct(
        null=True, blank=True, help_text="One symbol's share of the book's gross value after the order, in %."
    )
    concentration_floor = _money(
        null=True,
        blank=True,
        help_text="Concentration is measured against at least this book value, so a small new book can start.",
    )
    max_gross_exposure = _money(null=True, blank=True, help_text="Rupees: sum of |quantity x price| over symbols.")
    max_open_orders = models.PositiveIntegerField(null=True, blank=True, help_text="Orders not yet finished.")
    daily_loss_limit = _money(
        null=True,
        blank=True,
        help_text="Rupees: realised + unrealised - charges today. Past it, only orders that reduce risk pass.",
    )
    orders_per_second = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per account; SEBI's retail-algo threshold is 10."
    )
    orders_per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Per account, per IST day.")
    price_band_pct = _pct(
        null=True, blank=True, help_text="Fat-finger band around the last price, in %, for priced orders."
    )
    var_limit = _money(null=True, blank=True, help_text="Rupees: a VaR snapshot above this raises a breach alert.")
    version = models.PositiveIntegerField(default=1)
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("scope", "account_id", "strategy")
        constraints = [
            models.UniqueConstraint(fields=("scope",), condition=Q(scope="global"), name="risklimit_one_global"),
            models.UniqueConstraint(
                fields=("account",), condition=Q(scope="account"), name="risklimit_one_per_account"
            ),
            models.UniqueConstraint(
                fields=("strategy",),
                condition=Q(scope="strategy", account__isnull=True),
                name="risklimit_one_per_strategy",
            ),
            models.UniqueConstraint(
                fields=("strategy", "account"),
                condition=Q(scope="strategy", account__isnull=False),
                name="risklimit_one_per_strategy_account",
            ),
            models.CheckConstraint(
                condition=(Q(scope="global", account__isnull=True, strategy=""))
                | Q(scope="account", account__isnull=False, strategy="")
                | (Q(scope="strategy") & ~Q(strategy="")),
                name="risklimit_scope_shape",
            ),
        ]

    def __str__(self) -> str:
        if self.scope == LimitScope.GLOBAL:
            return "global limits"
        if self.scope == LimitScope.ACCOUNT:
            return f"limits of account {self.account}"
        return f"limits of strategy {self.strategy}" + (f" on {self.account}" if self.account_id else "")


class RiskLimitChange(models.Model):
    """One field of one limit row changed: append-only, written with the change."""

    limit = models.ForeignKey(RiskLimit, null=True, on_delete=models.SET_NULL, related_name="changes")
    limit_label = models.CharField(max_length=200, help_text="What the row was, kept if the row is deleted.")
    field = models.CharField(max_length=40)
    old_value = models.CharField(max_length=40, blank=True)
    new_value = models.CharField(max_length=40, blank=True)
    version = models.PositiveIntegerField(help_text="The row's version after this change.")
    changed_by = models.CharField(max_length=150)
    source = models.CharField(max_length=16, help_text="admin, api, command or migration.")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-changed_at", "-id")
        indexes = [models.Index(fields=("limit", "-changed_at"), name="risklimitchange_limit_time")]

    def __str__(self) -> str:
        return f"{self.limit_label}: {self.field} {self.old_value or '-'} -> {self.new_value or '-'}"


class RestrictedInstrument(models.Model):
    """An instrument the risk officer has stopped: no order in it passes the pre-trade checks."""

    instrument = models.OneToOneField("marketdata.Instrument", on_delete=models.CASCADE, related_name="restriction")
    reason = models.CharField(max_length=200)
    added_by = models.CharField(max_length=150, blank=True)
    added_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.instrument} restricted: {self.reason}"


class VarMethod(models.TextChoices):
    HISTORICAL = "historical", "Historical"
    PARAMETRIC = "parametric", "Parametric (delta-normal)"
    MONTECARLO = "montecarlo", "Monte Carlo"


class RiskSnapshot(models.Model):
    """One VaR computation of a book: its figures, what drove them and a fingerprint of its inputs."""

    account = models.ForeignKey(
        "brokers.BrokerAccount",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="risk_snapshots",
        help_text="Empty: every enabled account's positions together (the desk's book).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    method = models.CharField(max_length=12, choices=VarMethod.choices)
    confidence = models.DecimalField(max_digits=5, decimal_places=4)
    horizon_days = models.PositiveSmallIntegerField(default=1)
    window_days = models.PositiveIntegerField()
    paths = models.PositiveIntegerField(null=True, blank=True)
    distribution = models.CharField(max_length=8, blank=True)
    var = _money()
    es = _money()
    var_se = _money(null=True, blank=True, help_text="Standard error of the VaR (Monte Carlo).")
    es_se = _money(null=True, blank=True, help_text="Standard error of the ES (Monte Carlo).")
    gross_exposure = _money(default=0)
    positions = models.JSONField(
        default=list, help_text="Per position: symbol, quantity, price, exposure, component and marginal VaR."
    )
    histogram = models.JSONField(default=dict, help_text='The P&L distribution: {"edges": [...], "counts": [...]}.')
    warnings = models.JSONField(default=list)
    inputs_hash = models.CharField(max_length=64, help_text="sha256 of positions, prices, window and parameters.")
    var_limit = _money(null=True, blank=True)
    breached = models.BooleanField(default=False)
    trigger = models.CharField(max_length=16, help_text="beat, api, command or close.")
    task_id = models.CharField(max_length=64, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-created_at", "-id")
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return (
            f"{self.method} VaR {self.confidence} {self.horizon_days}d = {self.var} ({self.created_at:%Y-%m-%d %H:%M})"
        )


class StressKind(models.TextChoices):
    SHOCK = "shock", "Uniform price shock"
    FLASH = "flash", "Flash crash"
    VOL_MULTIPLIER = "vol_multiplier", "Volatility multiplier"
    LIQUIDITY = "liquidity", "Liquidity crisis"
    SIGMA = "sigma", "N-sigma move"
    HISTORICAL = "historical", "Historical replay of a day"
    INDEX_BETA = "index_beta", "Index move through each position's beta"


class StressScenario(models.Model):
    """An operator's own scenario; the built-in ones live in code (apps.risk.quant.stress)."""

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=StressKind.choices)
    params = models.JSONField(default=dict, help_text='Kind-specific, e.g. {"shock": -0.1} or {"date": "2024-06-04"}.')
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class BreachKind(models.TextChoices):
    VAR_LIMIT = "var_limit", "VaR over its limit"
    PRE_TRADE = "pre_trade", "Order refused by a pre-trade check"


class RiskBreach(models.Model):
    """What the risk officer reviews: VaR over its limit, and every order the pre-trade checks refused."""

    kind = models.CharField(max_length=10, choices=BreachKind.choices)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    account = models.ForeignKey(
        "brokers.BrokerAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="risk_breaches"
    )
    codes = models.JSONField(default=list, help_text="Machine-readable codes of the failed checks.")
    message = models.TextField()
    value = _money(null=True, blank=True)
    limit = _money(null=True, blank=True)
    snapshot = models.ForeignKey(RiskSnapshot, null=True, blank=True, on_delete=models.SET_NULL)
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="risk_breaches"
    )
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message[:80]}"
