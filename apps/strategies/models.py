"""Strategy configs and their events, live signals, and stored backtest runs with their chunks.

- `StrategyConfig`: which built-in strategy runs, with which (schema-validated) parameters, on which
  universe and bar interval, with how much capital, in paper or live mode, on which broker account.
  Its `name` is the strategy label its orders carry (and the scope of strategy risk limits).
- `StrategyConfigEvent`: append-only record of every change of a config (enabled, disabled, edited).
- `Signal`: one target per config, instrument and bar time (unique), so evaluating a bar twice
  stores nothing new and places nothing new; the order it led to, if any.
- `BacktestRun`: a single backtest, a grid, a walk-forward or a Monte Carlo run, with status and progress,
  what it ran on (strategy, parameters, symbols, interval, data range, code version, data hash), and what
  came out (metrics, compressed equity curve, trades, the grid table / folds / distributions). Runs are
  cached by `cache_key`, a hash of all of that input.
- `BacktestChunk`: one Celery task's share of a fanned-out run; a failed chunk keeps its error while the
  chunks that finished keep their results.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Mode(models.TextChoices):
    PAPER = "paper", "Paper"
    LIVE = "live", "Live"


class ConfigEventKind(models.TextChoices):
    CREATED = "created", "Created"
    EDITED = "edited", "Edited"
    ENABLED = "enabled", "Enabled"
    DISABLED = "disabled", "Disabled"


class StrategyConfig(models.Model):
    name = models.SlugField(
        max_length=64, unique=True, help_text="Label of its orders and the scope of its strategy risk limits."
    )
    strategy = models.CharField(max_length=64, help_text="A built-in strategy (apps.strategies.engine.library).")
    parameters = models.JSONField(default=dict, blank=True, help_text="Validated against the strategy's schema.")
    universe = models.ForeignKey(
        "marketdata.Universe", null=True, blank=True, on_delete=models.PROTECT, related_name="strategy_configs"
    )
    symbols = models.JSONField(
        default=list, blank=True, help_text='NSE symbols, e.g. ["RELIANCE", "INFY"]; used when no universe is set.'
    )
    interval = models.CharField(max_length=10, default="day", help_text="Bar interval it evaluates on.")
    capital = models.DecimalField(max_digits=18, decimal_places=2, help_text="Rupees, shared equally by the symbols.")
    product = models.CharField(max_length=4, default="CNC", choices=(("CNC", "CNC"), ("MIS", "MIS")))
    mode = models.CharField(max_length=5, choices=Mode.choices, default=Mode.PAPER)
    enabled = models.BooleanField(default=False)
    account = models.ForeignKey("brokers.BrokerAccount", on_delete=models.PROTECT, related_name="strategy_configs")
    last_bar_time = models.DateTimeField(
        null=True, blank=True, help_text="Newest bar evaluated; an older bar arriving late places no orders."
    )
    version = models.PositiveIntegerField(default=1, help_text="Moves by one on every change (compare-and-set).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.CheckConstraint(condition=Q(capital__gt=0), name="strategyconfig_capital_positive"),
            models.CheckConstraint(
                condition=Q(mode__in=("paper", "live")) & Q(product__in=("CNC", "MIS")),
                name="strategyconfig_mode_product",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.strategy}, {self.mode})"


class StrategyConfigEvent(models.Model):
    config = models.ForeignKey(StrategyConfig, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=10, choices=ConfigEventKind.choices)
    version = models.PositiveIntegerField(help_text="The config's version after the change.")
    by = models.CharField(max_length=150, blank=True, help_text="User name, or the process that did it.")
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-at", "-id")

    def __str__(self) -> str:
        return f"{self.config_id} {self.kind} v{self.version}"


class SignalAction(models.TextChoices):
    NONE = "none", "No change of target"
    FIRST = "first", "First signal (no order: a regime under way is not entered)"
    ORDERED = "ordered", "Order placed"
    REJECTED = "rejected", "Order refused"
    NOTHING_TO_DO = "nothing", "Already at the target"
    STALE = "stale", "Late bar (a newer one was evaluated): no order"
    DISABLED = "disabled", "Config disabled meanwhile: no order"


class Signal(models.Model):
    config = models.ForeignKey(StrategyConfig, on_delete=models.CASCADE, related_name="signals")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    bar_time = models.DateTimeField(help_text="Start of the bar that closed.")
    target = models.FloatField(help_text="Target position in sizing units: +1 long, -1 short, 0 flat.")
    previous_target = models.FloatField(null=True, blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=4, help_text="The bar's close.")
    inputs = models.JSONField(default=dict, blank=True, help_text="Indicator values behind the target.")
    action = models.CharField(max_length=10, choices=SignalAction.choices, default=SignalAction.NONE)
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-bar_time", "config_id", "instrument_id")
        constraints = [
            models.UniqueConstraint(fields=("config", "instrument", "bar_time"), name="signal_unique_bar"),
        ]
        indexes = [models.Index(fields=("config", "instrument", "-bar_time"), name="signal_latest")]

    def __str__(self) -> str:
        return f"{self.config_id} {self.instrument_id} {self.bar_time:%Y-%m-%d %H:%M} -> {self.target:g}"


class RunKind(models.TextChoices):
    SINGLE = "single", "Single backtest"
    GRID = "grid", "Grid search"
    WALK_FORWARD = "walk_forward", "Walk-forward"
    MONTE_CARLO = "monte_carlo", "Monte Carlo robustness"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class BacktestRun(models.Model):
    kind = models.CharField(max_length=12, choices=RunKind.choices)
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    strategy = models.CharField(max_length=64)
    parameters = models.JSONField(default=dict, blank=True, help_text="The parameters (a grid's fixed ones).")
    grid = models.JSONField(default=dict, blank=True, help_text="Grid ranges: name -> list of values.")
    options = models.JSONField(default=dict, blank=True, help_text="Engine settings and the kind's own options.")
    symbols = models.JSONField(default=list)
    interval = models.CharField(max_length=10, default="day")
    start = models.DateField()
    end = models.DateField()
    code_version = models.CharField(max_length=64)
    data_hash = models.CharField(max_length=64, blank=True)
    cache_key = models.CharField(max_length=64, db_index=True)
    metrics = models.JSONField(default=dict, blank=True)
    equity = models.BinaryField(null=True, blank=True, help_text="zlib-compressed bar times and equity values.")
    trades = models.JSONField(default=list, blank=True)
    results = models.JSONField(default=dict, blank=True, help_text="Grid table, walk-forward folds, MC distributions.")
    error = models.TextField(blank=True)
    source_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived_runs",
        help_text="The run whose trades a Monte Carlo run resamples.",
    )  # fmt: skip
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="backtestrun_progress"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} {self.kind} {self.strategy} ({self.status})"


class BacktestChunk(models.Model):
    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED)
    work = models.JSONField(default=list, help_text="What this chunk computes (parameter sets, a fold, ...).")
    results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("run_id", "index")
        constraints = [models.UniqueConstraint(fields=("run", "index"), name="backtestchunk_unique_index")]

    def __str__(self) -> str:
        return f"run {self.run_id} chunk {self.index} ({self.status})"
