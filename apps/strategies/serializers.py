"""Input and output shapes of the strategies API. Shape only: the rules are in apps.strategies.configs and .runs.

Capital is a Decimal rendered as a string (to the paisa); backtest figures are floats (analytics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from apps.strategies.admin_charts import downsample, iso_ist
from apps.strategies.configs import strategy_describe
from apps.strategies.engine.packing import unpack_series
from apps.strategies.models import (
    BacktestChunk,
    BacktestRun,
    Mode,
    RunKind,
    RunStatus,
    Signal,
    StrategyConfig,
    StrategyConfigEvent,
)
from tradingsite.api_helpers import StrictSerializer

EQUITY_POINTS = 2000  # at most this many equity points in an answer (min-max buckets keep the drawdowns)
TRADES_DEFAULT = 1000


# --- strategies (configs) and the library --------------------------------------------------------------------------


class ParamDescriptionSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    default = serializers.JSONField()
    minimum = serializers.FloatField(required=False)
    maximum = serializers.FloatField(required=False)
    choices = serializers.ListField(child=serializers.JSONField(), required=False)
    help = serializers.CharField(required=False)


class SchemaDescriptionSerializer(serializers.Serializer):
    params = ParamDescriptionSerializer(many=True)
    rules = serializers.ListField(child=serializers.CharField(), help_text="Rules across parameters, in words.")


class StrategyDescriptionSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    intervals = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="Bar intervals it is meant for; null: any."
    )
    intraday = serializers.BooleanField(help_text="Squares off before the close: configs trade MIS.")
    warmup = serializers.IntegerField(help_text="Bars before the first target, with the default parameters.")
    lookback = serializers.IntegerField(help_text="Bars live evaluation loads, with the default parameters.")
    schema = SchemaDescriptionSerializer()


class StrategyLibrarySerializer(serializers.Serializer):
    results = StrategyDescriptionSerializer(many=True)


class ConfigFilterSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    mode = serializers.ChoiceField(choices=Mode.choices, required=False)


class ConfigOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    universe = serializers.CharField(source="universe.name", read_only=True, default=None)
    strategy_info = serializers.SerializerMethodField(help_text="The strategy's title, intervals and schema.")
    # Plain strings: choice fields named like the orders' (product, status, kind) would collide in the schema's enums.
    product = serializers.CharField(read_only=True, help_text="CNC or MIS.")
    mode = serializers.CharField(read_only=True, help_text="paper or live.")

    class Meta:
        model = StrategyConfig
        fields: tuple[str, ...] = (
            "id", "name", "strategy", "strategy_info", "parameters", "universe", "symbols", "interval", "capital",
            "product", "mode", "enabled", "account", "account_name", "last_bar_time", "version", "created_at",
            "updated_at",
        )  # fmt: skip

    @extend_schema_field(StrategyDescriptionSerializer(allow_null=True))
    def get_strategy_info(self, config: StrategyConfig) -> dict[str, Any] | None:
        return strategy_describe(config.strategy)


class ConfigListSerializer(serializers.Serializer):
    results = ConfigOutputSerializer(many=True)


class ConfigEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = StrategyConfigEvent
        fields = ("kind", "version", "by", "detail", "at")


class ConfigDetailSerializer(ConfigOutputSerializer):
    events = serializers.SerializerMethodField(help_text="The latest changes, newest first.")

    class Meta(ConfigOutputSerializer.Meta):
        fields = (*ConfigOutputSerializer.Meta.fields, "events")

    @extend_schema_field(ConfigEventSerializer(many=True))
    def get_events(self, config: StrategyConfig) -> list[dict[str, Any]]:
        return list(ConfigEventSerializer(self.context.get("events", []), many=True).data)


class ConfigSwitchInputSerializer(StrictSerializer):
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="The version you read; a different current version answers 409."
    )


# --- signals -------------------------------------------------------------------------------------------------------


class SignalFilterSerializer(serializers.Serializer):
    config = serializers.IntegerField(required=False, min_value=1)
    symbol = serializers.CharField(required=False, max_length=40)
    since = serializers.DateTimeField(required=False, help_text="Bars at or after this time (ISO 8601).")
    before = serializers.IntegerField(required=False, min_value=1, help_text="Keyset cursor: the page after this id.")
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=500)


class SignalOutputSerializer(serializers.ModelSerializer):
    config_name = serializers.CharField(source="config.name", read_only=True)
    exchange = serializers.CharField(source="instrument.exchange", read_only=True)
    symbol = serializers.CharField(source="instrument.tradingsymbol", read_only=True)

    class Meta:
        model = Signal
        fields = (
            "id", "config", "config_name", "exchange", "symbol", "bar_time", "target", "previous_target", "price",
            "inputs", "action", "order", "detail", "created_at",
        )  # fmt: skip


class SignalPageSerializer(serializers.Serializer):
    results = SignalOutputSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next (older) page; null on the last one.")


# --- backtests -----------------------------------------------------------------------------------------------------


class BacktestSubmitInputSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=RunKind.choices, default=RunKind.SINGLE)
    strategy = serializers.CharField(max_length=64)
    params = serializers.DictField(required=False, help_text="Parameters (a grid's fixed ones); defaults fill in.")
    symbols = serializers.ListField(child=serializers.CharField(max_length=40), required=False, allow_empty=False)
    universe = serializers.CharField(required=False, max_length=64)
    interval = serializers.CharField(default="day", max_length=10)
    start = serializers.DateField()
    end = serializers.DateField()
    settings = serializers.DictField(required=False, help_text="Engine settings (cash, fill, sizing, costs, ...).")
    grid = serializers.DictField(
        required=False, help_text='Ranges per parameter: [5, 10] or {"start", "stop", "step"}.'
    )
    walk_forward = serializers.DictField(required=False)
    monte_carlo = serializers.DictField(required=False)
    source_run = serializers.IntegerField(required=False, min_value=1, help_text="Monte Carlo: the run to resample.")


class BacktestAcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    cached = serializers.BooleanField(help_text="An identical finished run was found: nothing new was computed.")
    url = serializers.URLField()


class BacktestFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=RunKind.choices, required=False)
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    strategy = serializers.CharField(required=False, max_length=64)
    before = serializers.IntegerField(required=False, min_value=1, help_text="Keyset cursor: runs with a lower id.")
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=500)


class BacktestDetailFilterSerializer(serializers.Serializer):
    trades = serializers.IntegerField(
        required=False, default=TRADES_DEFAULT, min_value=0, max_value=100_000, help_text="At most this many trades."
    )


class BacktestRunOutputSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    kind = serializers.CharField(read_only=True, help_text="single, grid, walk_forward or monte_carlo.")
    status = serializers.CharField(read_only=True, help_text="queued, running, done or failed.")

    class Meta:
        model = BacktestRun
        fields: tuple[str, ...] = (
            "id", "url", "kind", "status", "progress", "chunks_total", "chunks_done", "strategy", "parameters",
            "symbols", "interval", "start", "end", "metrics", "error", "created_at", "started_at", "finished_at",
        )  # fmt: skip

    def get_url(self, run: BacktestRun) -> str:
        return str(reverse("backtest-detail", args=[run.pk], request=self.context.get("request")))


class BacktestPageSerializer(serializers.Serializer):
    results = BacktestRunOutputSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class ChunkOutputSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="queued, running, done or failed.")
    items = serializers.SerializerMethodField(help_text="How many parameter sets / folds it computes.")

    class Meta:
        model = BacktestChunk
        fields = ("index", "status", "items", "error", "worker", "started_at", "finished_at")

    def get_items(self, chunk: BacktestChunk) -> int:
        return chunk_items(chunk.work)


def chunk_items(work: Any) -> int:
    """Parameter sets of a grid chunk, else 1 (a fold, a single run)."""
    if isinstance(work, dict) and isinstance(work.get("param_sets"), list):
        return len(work["param_sets"])
    return len(work) if isinstance(work, list) else 1


class InputsSerializer(serializers.Serializer):
    strategy = serializers.CharField()
    parameters = serializers.DictField()
    grid = serializers.DictField()
    options = serializers.DictField()
    symbols = serializers.ListField(child=serializers.CharField())
    interval = serializers.CharField()
    start = serializers.DateField()
    end = serializers.DateField()
    source_run = serializers.IntegerField(allow_null=True)
    code_version = serializers.CharField()
    data_hash = serializers.CharField(allow_blank=True)
    cache_key = serializers.CharField()


class EquitySerializer(serializers.Serializer):
    times = serializers.ListField(child=serializers.DateTimeField(), help_text="Bar times, Asia/Kolkata.")
    values = serializers.ListField(child=serializers.FloatField(), help_text="Equity in rupees.")
    points = serializers.IntegerField(help_text="Points stored; above 2000 the curve is min-max downsampled.")


def equity_points(blob: Any, max_points: int = EQUITY_POINTS) -> dict[str, Any]:
    """The stored equity curve as ISO times (IST) and values, at most `max_points` of them."""
    times_us, values = unpack_series(blob)
    t, v = downsample(times_us, values, max_points)
    return {
        "times": [iso_ist(int(us)) for us in t],
        "values": [float(x) if np.isfinite(x) else None for x in v],
        "points": len(times_us),
    }


class BacktestDetailSerializer(BacktestRunOutputSerializer):
    inputs = serializers.SerializerMethodField()
    chunks = serializers.SerializerMethodField()
    equity = serializers.SerializerMethodField()
    trades = serializers.SerializerMethodField()
    trades_total = serializers.SerializerMethodField()

    class Meta(BacktestRunOutputSerializer.Meta):
        fields = (*BacktestRunOutputSerializer.Meta.fields, "inputs", "results", "trades_total", "trades", "equity",
                  "chunks")  # fmt: skip

    @extend_schema_field(InputsSerializer)
    def get_inputs(self, run: BacktestRun) -> dict[str, Any]:
        return {
            "strategy": run.strategy, "parameters": run.parameters, "grid": run.grid, "options": run.options,
            "symbols": run.symbols, "interval": run.interval, "start": run.start.isoformat(),
            "end": run.end.isoformat(), "source_run": run.source_run_id, "code_version": run.code_version,
            "data_hash": run.data_hash, "cache_key": run.cache_key,
        }  # fmt: skip

    @extend_schema_field(ChunkOutputSerializer(many=True))
    def get_chunks(self, run: BacktestRun) -> list[dict[str, Any]]:
        return list(ChunkOutputSerializer(self.context.get("chunks", []), many=True).data)

    @extend_schema_field(EquitySerializer)
    def get_equity(self, run: BacktestRun) -> dict[str, Any]:
        return equity_points(run.equity)

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_trades(self, run: BacktestRun) -> list[dict[str, Any]]:
        return list(run.trades or [])[: int(self.context.get("trades_limit", TRADES_DEFAULT))]

    def get_trades_total(self, run: BacktestRun) -> int:
        return len(run.trades or [])
