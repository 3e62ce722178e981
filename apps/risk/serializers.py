"""Input and output shapes of the risk API. Shape only: the rules are in apps.risk.snapshots and apps.risk.book.

Money is a Decimal rendered as a string (to the paisa), never a float; ratios and p-values are floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from apps.risk.models import RiskSnapshot, VarMethod
from tradingsite.api_helpers import StrictSerializer


def money(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=18, decimal_places=2, **kwargs)


class AccountFilterSerializer(serializers.Serializer):
    account = serializers.IntegerField(
        required=False, min_value=1, help_text="A broker account granted to you; omitted: the desk's book (staff)."
    )


class VarFilterSerializer(AccountFilterSerializer):
    method = serializers.ChoiceField(choices=VarMethod.choices, required=False)


class VarComputeInputSerializer(StrictSerializer):
    account = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    method = serializers.ChoiceField(choices=VarMethod.choices, default=VarMethod.HISTORICAL)
    confidence = serializers.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.99"), min_value=Decimal("0.5"), max_value=Decimal("0.9999")
    )
    horizon_days = serializers.IntegerField(default=1, min_value=1, max_value=250)
    window_days = serializers.IntegerField(default=250, min_value=20, max_value=5000)
    paths = serializers.IntegerField(default=100_000, min_value=1_000, max_value=2_000_000, help_text="Monte Carlo")
    distribution = serializers.ChoiceField(choices=("normal", "t"), default="normal", help_text="Monte Carlo")
    seed = serializers.IntegerField(default=0, min_value=0, help_text="Monte Carlo")


class TaskAcceptedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status_url = serializers.URLField()


class SnapshotOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True, default=None)

    class Meta:
        model = RiskSnapshot
        fields = (
            "id",
            "account",
            "account_name",
            "created_at",
            "method",
            "confidence",
            "horizon_days",
            "window_days",
            "paths",
            "distribution",
            "var",
            "es",
            "var_se",
            "es_se",
            "gross_exposure",
            "var_limit",
            "breached",
            "positions",
            "histogram",
            "warnings",
            "inputs_hash",
            "trigger",
            "task_id",
            "duration_ms",
        )


class TaskStatusSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    # A plain string: a choice field named `status` would collide with the order status enum in the schema.
    status = serializers.CharField(help_text="pending, done (with the snapshot) or failed (with the error).")
    state = serializers.CharField(help_text="Celery's state of the task (PENDING also means unknown).")
    snapshot = SnapshotOutputSerializer(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class StressPositionSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    pnl = money()


class StressResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    # DRF's metaclass takes declared fields off the class, so a field may be called `source`; mypy cannot know.
    source = serializers.ChoiceField(choices=("builtin", "historical", "operator"))  # type: ignore[assignment]
    description = serializers.CharField(allow_blank=True)
    params = serializers.DictField()
    applied = serializers.BooleanField(help_text="False when the scenario could not run on this data.")
    pnl = money(allow_null=True, help_text="Rupees; negative is a loss.")
    pnl_pct_of_gross = serializers.FloatField(allow_null=True)
    positions = StressPositionSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    error = serializers.CharField(allow_blank=True, help_text="An operator scenario that no longer validates.")


class StressListSerializer(serializers.Serializer):
    results = StressResultSerializer(many=True)


class BacktestFilterSerializer(AccountFilterSerializer):
    window_days = serializers.IntegerField(default=250, min_value=20, max_value=5000)
    confidence = serializers.FloatField(default=0.99, min_value=0.5, max_value=0.9999)


class KupiecSerializer(serializers.Serializer):
    observations = serializers.IntegerField()
    exceptions = serializers.IntegerField()
    expected_rate = serializers.FloatField()
    observed_rate = serializers.FloatField()
    lr = serializers.FloatField()
    p_value = serializers.FloatField()


class ChristoffersenSerializer(serializers.Serializer):
    n00 = serializers.IntegerField()
    n01 = serializers.IntegerField()
    n10 = serializers.IntegerField()
    n11 = serializers.IntegerField()
    lr = serializers.FloatField()
    p_value = serializers.FloatField()


class ExceptionDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    pnl = money()
    var = money()


class BacktestOutputSerializer(serializers.Serializer):
    confidence = serializers.FloatField()
    window_days = serializers.IntegerField()
    observations = serializers.IntegerField()
    first_date = serializers.DateField()
    last_date = serializers.DateField()
    kupiec = KupiecSerializer()
    christoffersen = ChristoffersenSerializer()
    conditional_coverage_lr = serializers.FloatField()
    conditional_coverage_p = serializers.FloatField()
    exceptions = ExceptionDaySerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())


class MetricsFilterSerializer(AccountFilterSerializer):
    window_days = serializers.IntegerField(default=250, min_value=20, max_value=5000)
    risk_free_annual = serializers.FloatField(default=0.0, min_value=-0.5, max_value=1.0)


class MetricsOutputSerializer(serializers.Serializer):
    observations = serializers.IntegerField()
    window_days = serializers.IntegerField()
    first_date = serializers.DateField()
    last_date = serializers.DateField()
    gross_exposure = money()
    volatility = serializers.FloatField(help_text="Annualised.")
    sharpe = serializers.FloatField(allow_null=True)
    sortino = serializers.FloatField(allow_null=True)
    max_drawdown = serializers.FloatField(help_text="Fraction of the peak.")
    max_drawdown_duration_days = serializers.IntegerField()
    drawdown_peak_date = serializers.DateField()
    drawdown_trough_date = serializers.DateField()
    beta = serializers.FloatField(allow_null=True, help_text="To the NIFTY 50 index.")
    total_return = serializers.FloatField()
    annual_return = serializers.FloatField()
    warnings = serializers.ListField(child=serializers.CharField())
