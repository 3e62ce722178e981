"""Orders, their append-only events, fills with their charges, and positions derived from fills.

`client_order_id` is unique and the Kite `tag` is derived from it and unique
too: the tag is how an order whose placement outcome is unknown is found in the
broker's order book, so it must never be shared. A fill is unique by the
broker's trade id, so a fill reported twice (postback and reconciliation) is
stored once.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from apps.orders.lifecycle import Status


class OrderStatus(models.TextChoices):
    NEW = Status.NEW, "New"
    QUEUED = Status.QUEUED, "Queued"
    RISK_REJECTED = Status.RISK_REJECTED, "Rejected by risk checks"
    SUBMITTING = Status.SUBMITTING, "Submitting"
    OPEN = Status.OPEN, "Open"
    PARTIALLY_FILLED = Status.PARTIALLY_FILLED, "Partially filled"
    COMPLETE = Status.COMPLETE, "Complete"
    CANCELLED = Status.CANCELLED, "Cancelled"
    REJECTED = Status.REJECTED, "Rejected"
    UNKNOWN = Status.UNKNOWN, "Unknown (being resolved)"
    EXTERNAL = Status.EXTERNAL, "External (not placed by the OMS)"


class Side(models.TextChoices):
    BUY = "BUY", "Buy"
    SELL = "SELL", "Sell"


class Product(models.TextChoices):
    CNC = "CNC", "CNC (delivery)"
    MIS = "MIS", "MIS (intraday)"
    NRML = "NRML", "NRML"


class OrderType(models.TextChoices):
    MARKET = "MARKET", "Market"
    LIMIT = "LIMIT", "Limit"
    SL = "SL", "Stop-loss limit"
    SL_M = "SL-M", "Stop-loss market"


class Variety(models.TextChoices):
    REGULAR = "regular", "Regular"
    AMO = "amo", "After market"
    ICEBERG = "iceberg", "Iceberg"
    AUCTION = "auction", "Auction"


class Validity(models.TextChoices):
    DAY = "DAY", "Day"
    IOC = "IOC", "Immediate or cancel"
    TTL = "TTL", "Minutes (TTL)"


class EventSource(models.TextChoices):
    API = "api", "API"
    TASK = "task", "Task"
    POSTBACK = "postback", "Postback"
    RECONCILIATION = "reconciliation", "Reconciliation"
    OPERATOR = "operator", "Operator"
    RISK = "risk", "Risk checks"


def _money(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=18, decimal_places=4, **kwargs)  # type: ignore[arg-type]


class Order(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    client_order_id = models.CharField(max_length=64, unique=True)
    tag = models.CharField(max_length=20, unique=True, help_text="Kite tag: alphanumeric, from client_order_id.")
    account = models.ForeignKey("brokers.BrokerAccount", on_delete=models.PROTECT, related_name="orders")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.PositiveIntegerField()
    product = models.CharField(max_length=4, choices=Product.choices)
    order_type = models.CharField(max_length=6, choices=OrderType.choices)
    variety = models.CharField(max_length=8, choices=Variety.choices, default=Variety.REGULAR)
    validity = models.CharField(max_length=3, choices=Validity.choices, default=Validity.DAY)
    price = _money(null=True, blank=True)
    trigger_price = _money(null=True, blank=True)
    market_protection = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True, help_text="Percent; Kite refuses 0 on MARKET / SL-M."
    )
    algo_id = models.CharField(max_length=32, blank=True)
    # The strategies issue adds StrategyConfig/Signal; until then a strategy is named and a signal referred to by id.
    strategy = models.CharField(max_length=64, blank=True, db_index=True, help_text="The strategy that placed it.")
    signal_id = models.BigIntegerField(null=True, blank=True, help_text="The signal it carries out, if any.")
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.NEW, db_index=True)
    broker_order_id = models.CharField(max_length=32, null=True, blank=True, unique=True)
    filled_quantity = models.PositiveIntegerField(default=0)
    average_price = _money(null=True, blank=True)
    status_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("status", "updated_at"), name="order_status_updated")]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(condition=Q(filled_quantity__lte=F("quantity")), name="order_fill_within_quantity"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.instrument_id} [{self.status}] {self.client_order_id}"


class OrderEvent(models.Model):
    """Append-only: one row per status change (and per fill or modification), never updated."""

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
    from_status = models.CharField(max_length=16, choices=OrderStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=OrderStatus.choices)
    source = models.CharField(max_length=16, choices=EventSource.choices)
    message = models.CharField(max_length=255, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("order", "id")

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status or '-'} -> {self.to_status} ({self.source})"


class Fill(models.Model):
    """One trade; its charges are the order's charges allocated to it by value."""

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    trade_id = models.CharField(max_length=32, unique=True, help_text="The broker's trade id.")
    quantity = models.PositiveIntegerField()
    price = _money()
    filled_at = models.DateTimeField()
    brokerage = _money(default=0)
    stt = _money(default=0)
    exchange_txn = _money(default=0)
    sebi = _money(default=0)
    stamp_duty = _money(default=0)
    gst = _money(default=0)
    charges_total = _money(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("order", "filled_at", "id")
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0), name="fill_quantity_positive")]

    def __str__(self) -> str:
        return f"{self.trade_id}: {self.quantity} @ {self.price}"


class Position(models.Model):
    """Net holding per account, instrument and product; derived from fills and recomputable from them."""

    account = models.ForeignKey("brokers.BrokerAccount", on_delete=models.PROTECT, related_name="positions")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="positions")
    product = models.CharField(max_length=4, choices=Product.choices)
    net_quantity = models.IntegerField(default=0)
    average_price = _money(default=0)
    realised_pnl = _money(default=0, help_text="Gross of charges.")
    charges = _money(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("account", "instrument", "product"), name="position_unique_holding")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}/{self.instrument_id}/{self.product}: {self.net_quantity}"


class KillSwitch(models.Model):
    """While on, no order leaves: one row for everything (`scope="global"`) and one per account."""

    scope = models.CharField(max_length=32, unique=True, help_text='"global" or "account:<id>"')
    account = models.OneToOneField(
        "brokers.BrokerAccount", null=True, blank=True, on_delete=models.CASCADE, related_name="kill_switch"
    )
    active = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"kill switch {self.scope}: {'ON' if self.active else 'off'}"


class IdempotencyKey(models.Model):
    """One `Idempotency-Key` of one user: the request it first came with and the response it got.

    The row is created (status in_progress) in its own transaction before the work starts, so a concurrent
    request with the same key finds it and answers 409; the finished response is stored with it and replayed.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, help_text="sha256 of the method, path and canonical body.")
    state = models.CharField(max_length=12, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("user", "key"), name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key} [{self.state}]"
