"""Instruments, universes, candles, the exchange calendar's exceptions, and history fetch jobs.

Unique constraints carry idempotency: an instrument is one row per Kite token
and per exchange + tradingsymbol; a candle is one row per instrument,
interval and start time, so every import and fetch is an upsert.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class Interval(models.TextChoices):
    """Kite's candle intervals."""

    MINUTE = "minute", "1 minute"
    MINUTE_3 = "3minute", "3 minutes"
    MINUTE_5 = "5minute", "5 minutes"
    MINUTE_10 = "10minute", "10 minutes"
    MINUTE_15 = "15minute", "15 minutes"
    MINUTE_30 = "30minute", "30 minutes"
    MINUTE_60 = "60minute", "60 minutes"
    DAY = "day", "1 day"


class SeriesSource(models.TextChoices):
    """Where a row came from, so synthetic demo data is never mistaken for the market."""

    KITE = "kite", "Kite"
    CSV = "csv", "CSV import"
    SYNTHETIC = "synthetic", "Synthetic demo"
    TICKER = "ticker", "Live ticker"


class Instrument(models.Model):
    instrument_token = models.BigIntegerField(
        unique=True, null=True, blank=True, help_text="Kite's instrument_token; empty until synced from Kite."
    )
    exchange_token = models.BigIntegerField(null=True, blank=True)
    exchange = models.CharField(max_length=8, default="NSE")
    tradingsymbol = models.CharField(max_length=40)
    name = models.CharField(max_length=120, blank=True)
    segment = models.CharField(max_length=16, blank=True, default="NSE")
    instrument_type = models.CharField(max_length=8, default="EQ")
    tick_size = models.DecimalField(max_digits=10, decimal_places=4, default="0.05")
    lot_size = models.PositiveIntegerField(default=1)
    freeze_quantity = models.PositiveIntegerField(null=True, blank=True)
    has_derivatives = models.BooleanField(
        default=False,
        help_text="Has listed F&O: since 2026-08-03 it closes in SEBI's closing auction (15:15-15:35).",
    )
    provisional = models.BooleanField(
        default=False, help_text="Created from a file name, not from Kite's instrument list; sync to complete it."
    )
    source = models.CharField(max_length=10, choices=SeriesSource.choices, default=SeriesSource.KITE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("exchange", "tradingsymbol")
        constraints = [
            models.UniqueConstraint(fields=("exchange", "tradingsymbol"), name="instrument_unique_exchange_symbol"),
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="instrument_tick_size_positive"),
            models.CheckConstraint(condition=Q(lot_size__gte=1), name="instrument_lot_size_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


class Universe(models.Model):
    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    instruments = models.ManyToManyField(Instrument, through="UniverseMembership", related_name="universes")

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class UniverseMembership(models.Model):
    """A dated membership: index constituents change, and backtests must see the list as it was."""

    universe = models.ForeignKey(Universe, on_delete=models.CASCADE, related_name="memberships")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="memberships")
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True, help_text="Last day of membership; empty while a member.")

    class Meta:
        ordering = ("universe", "instrument__tradingsymbol", "start_date")
        constraints = [
            models.UniqueConstraint(fields=("universe", "instrument", "start_date"), name="membership_unique_start"),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=F("start_date")),
                name="membership_end_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.universe} ∋ {self.instrument} from {self.start_date}"


class Candle(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (instrument, interval, time) index serves lookups by instrument,
    # and every index costs the importer (measured in benchmarks/candle_import.py).
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="candles", db_index=False)
    interval = models.CharField(max_length=10, choices=Interval.choices)
    time = models.DateTimeField(help_text="Start of the bar, timezone-aware.")
    open = models.DecimalField(max_digits=14, decimal_places=4)
    high = models.DecimalField(max_digits=14, decimal_places=4)
    low = models.DecimalField(max_digits=14, decimal_places=4)
    close = models.DecimalField(max_digits=14, decimal_places=4)
    volume = models.BigIntegerField(default=0)
    oi = models.BigIntegerField(default=0)
    source = models.CharField(max_length=10, choices=SeriesSource.choices)

    class Meta:
        # The unique index (instrument, interval, time) is also the index range reads use.
        constraints = [
            models.UniqueConstraint(fields=("instrument", "interval", "time"), name="candle_unique_bar"),
            models.CheckConstraint(
                condition=Q(high__gte=F("low"))
                & Q(open__gte=F("low"))
                & Q(open__lte=F("high"))
                & Q(close__gte=F("low"))
                & Q(close__lte=F("high"))
                & Q(volume__gte=0),
                name="candle_ohlcv_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.interval} {self.time:%Y-%m-%d %H:%M}"


class CalendarDay(models.Model):
    """A day that differs from the weekly rule: a weekday closure or a special (weekend, Muhurat) session."""

    class Kind(models.TextChoices):
        CLOSED = "closed", "Closed (trading holiday)"
        SPECIAL_SESSION = "special", "Special session"

    exchange = models.CharField(max_length=8, default="NSE")
    date = models.DateField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    description = models.CharField(max_length=120, blank=True)
    open_time = models.TimeField(null=True, blank=True, help_text="Special sessions only: start of trading (IST).")
    close_time = models.TimeField(null=True, blank=True, help_text="Special sessions only: end of trading (IST).")
    source = models.CharField(max_length=64, blank=True, help_text="Where this entry comes from.")

    class Meta:
        ordering = ("exchange", "date")
        constraints = [
            models.UniqueConstraint(fields=("exchange", "date"), name="calendarday_unique_date"),
            models.CheckConstraint(
                condition=Q(open_time__isnull=True) | Q(close_time__isnull=True) | Q(close_time__gt=F("open_time")),
                name="calendarday_close_after_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.exchange} {self.date} {self.get_kind_display()}"

    def clean(self) -> None:
        """A special session needs both of its times; a closure needs neither."""
        from django.core.exceptions import ValidationError

        times = (self.open_time is None, self.close_time is None)
        if self.kind == self.Kind.SPECIAL_SESSION and any(times):
            raise ValidationError("A special session needs both an open time and a close time.")
        if self.kind == self.Kind.CLOSED and not all(times):
            raise ValidationError("A closed day has no session times; leave both empty.")


class FetchJob(models.Model):
    """One `fetch_history` run: what it covers and how far it got, shown in the admin."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        PARTIAL = "partial", "Done with errors"
        FAILED = "failed", "Failed"

    interval = models.CharField(max_length=10, choices=Interval.choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    symbols = models.JSONField(default=list)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    requests_total = models.PositiveIntegerField(default=0)
    requests_done = models.PositiveIntegerField(default=0)
    requests_skipped = models.PositiveIntegerField(default=0, help_text="Ranges already stored, not fetched again.")
    rows_written = models.PositiveBigIntegerField(default=0)
    errors = models.JSONField(default=dict, blank=True, help_text="symbol -> the error that stopped it")
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        start, end = timezone.localtime(self.start), timezone.localtime(self.end)
        return f"fetch {self.interval} {len(self.symbols)} symbols {start:%Y-%m-%d}..{end:%Y-%m-%d}"

    @property
    def progress(self) -> float:
        total = self.requests_total
        return 1.0 if total == 0 else (self.requests_done + self.requests_skipped) / total
