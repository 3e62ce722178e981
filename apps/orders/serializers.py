"""Input and output shapes of the orders API. Validation of shape only: the rules live in the services.

Money is a Decimal rendered as a string, never a float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from apps.orders.models import Fill, Order, OrderEvent, OrderType, Product, Side, Validity, Variety
from tradingsite.api_helpers import StrictSerializer


def money(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=18, decimal_places=4, **kwargs)


class OrderPlaceInputSerializer(StrictSerializer):
    unknown_message = "not accepted: unknown or set by the server"

    account = serializers.IntegerField(min_value=1, help_text="Broker account id (one granted to you).")
    symbol = serializers.CharField(required=False, max_length=40, help_text="Trading symbol, e.g. INFY.")
    exchange = serializers.CharField(required=False, default="NSE", max_length=8)
    instrument = serializers.IntegerField(required=False, min_value=1, help_text="Instrument id, instead of symbol.")
    side = serializers.ChoiceField(choices=Side.choices)
    quantity = serializers.IntegerField(min_value=1)
    product = serializers.ChoiceField(choices=Product.choices)
    order_type = serializers.ChoiceField(choices=OrderType.choices)
    price = money(required=False, allow_null=True, min_value=Decimal("0.0001"))
    trigger_price = money(required=False, allow_null=True, min_value=Decimal("0.0001"))
    validity = serializers.ChoiceField(choices=Validity.choices, default=Validity.DAY)
    variety = serializers.ChoiceField(choices=Variety.choices, default=Variety.REGULAR)
    market_protection = serializers.DecimalField(
        required=False, allow_null=True, max_digits=5, decimal_places=2, help_text="Percent, or -1 for automatic."
    )
    client_order_id = serializers.CharField(
        required=False,
        max_length=64,
        help_text="Your id for the order; by default derived from the Idempotency-Key, so retries map to one order.",
    )
    strategy = serializers.CharField(required=False, default="", allow_blank=True, max_length=64)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("symbol" in attrs) == ("instrument" in attrs):
            raise serializers.ValidationError({"symbol": ["give either symbol (with exchange) or instrument"]})
        return attrs


class FillSerializer(serializers.ModelSerializer):
    class Meta:
        model = Fill
        fields = ("trade_id", "quantity", "price", "filled_at", "charges_total")


class OrderEventSerializer(serializers.ModelSerializer):
    # Plain strings: the order's own `status` documents the enum once.
    from_status = serializers.CharField()
    to_status = serializers.CharField()

    class Meta:
        model = OrderEvent
        fields = ("id", "created_at", "from_status", "to_status", "source", "message", "payload")


class OrderOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", read_only=True)
    exchange = serializers.CharField(source="instrument.exchange", read_only=True)
    symbol = serializers.CharField(source="instrument.tradingsymbol", read_only=True)

    class Meta:
        model = Order
        fields: tuple[str, ...] = (
            "id",
            "uuid",
            "client_order_id",
            "tag",
            "account",
            "account_name",
            "instrument",
            "exchange",
            "symbol",
            "side",
            "quantity",
            "product",
            "order_type",
            "variety",
            "validity",
            "price",
            "trigger_price",
            "market_protection",
            "strategy",
            "status",
            "status_message",
            "filled_quantity",
            "average_price",
            "broker_order_id",
            "created_at",
            "updated_at",
            "submitted_at",
        )
        read_only_fields: tuple[str, ...] = fields


class RiskFailureSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class OrderDetailOutputSerializer(OrderOutputSerializer):
    failures = serializers.SerializerMethodField(help_text="Why risk checks refused it (RISK_REJECTED only).")
    events = OrderEventSerializer(many=True, read_only=True)
    fills = FillSerializer(many=True, read_only=True)

    class Meta(OrderOutputSerializer.Meta):
        fields = (*OrderOutputSerializer.Meta.fields, "failures", "events", "fills")
        read_only_fields = fields

    def get_failures(self, order: Order) -> list[dict[str, str]]:
        for event in order.events.all():
            if event.to_status == "RISK_REJECTED":
                return list(event.payload.get("failures", []))
        return []


class OrderFilterSerializer(serializers.Serializer):
    status = serializers.CharField(required=False, help_text="One status or several, comma-separated.")
    account = serializers.IntegerField(required=False, min_value=1)
    symbol = serializers.CharField(required=False, max_length=40)
    strategy = serializers.CharField(required=False, max_length=64)
    before = serializers.IntegerField(required=False, min_value=1, help_text="Keyset cursor: orders with a lower id.")
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=500)


class PositionOutputSerializer(serializers.Serializer):
    account = serializers.IntegerField()
    account_name = serializers.CharField()
    instrument = serializers.IntegerField()
    exchange = serializers.CharField()
    symbol = serializers.CharField()
    product = serializers.CharField()
    net_quantity = serializers.IntegerField()
    average_price = money()
    last_price = money(allow_null=True)
    unrealised_pnl = money(allow_null=True)
    realised_pnl = money(help_text="Gross of charges.")
    charges = money()
    net_pnl = money(allow_null=True)


class PnlRowSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="The day (ISO date) or the strategy ('' for manual orders).")
    realised = money()
    charges = money()
    unrealised = money(allow_null=True)
    net = money()


class PortfolioFiguresSerializer(serializers.Serializer):
    cash = money(allow_null=True)
    cash_error = serializers.CharField(allow_null=True)
    gross_exposure = money()
    net_exposure = money()
    realised_pnl = money()
    unrealised_pnl = money()
    charges = money()
    net_pnl = money()
    prices_missing = serializers.ListField(child=serializers.CharField())


class PortfolioAccountSerializer(PortfolioFiguresSerializer):
    account = serializers.IntegerField()
    account_name = serializers.CharField()
    kind = serializers.CharField()


class PortfolioOutputSerializer(serializers.Serializer):
    accounts = PortfolioAccountSerializer(many=True)
    total = PortfolioFiguresSerializer()
    by_day = PnlRowSerializer(many=True)
    by_strategy = PnlRowSerializer(many=True)


class KillSwitchOutputSerializer(serializers.Serializer):
    scope = serializers.CharField()
    account = serializers.IntegerField(source="account_id", allow_null=True)
    active = serializers.BooleanField()
    reason = serializers.CharField()
    changed_by = serializers.CharField()
    changed_at = serializers.DateTimeField()


class KillSwitchInputSerializer(StrictSerializer):
    unknown_message = "not accepted: unknown or set by the server"

    active = serializers.BooleanField()
    account = serializers.IntegerField(required=False, allow_null=True, min_value=1, help_text="Omit for global.")
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    square_off = serializers.BooleanField(required=False, default=False)


class KillSwitchResultSerializer(serializers.Serializer):
    scope = serializers.CharField()
    active = serializers.BooleanField()
    changed = serializers.BooleanField()
    cancelled = serializers.ListField(child=serializers.IntegerField())
    not_cancelled = serializers.DictField(child=serializers.CharField())
    square_off_orders = serializers.ListField(child=serializers.IntegerField())
    square_off_skipped = serializers.DictField(child=serializers.CharField())


class OrderPageSerializer(serializers.Serializer):
    results = OrderOutputSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next (older) page; null on the last one.")


class PositionPageSerializer(serializers.Serializer):
    results = PositionOutputSerializer(many=True)


class KillSwitchListSerializer(serializers.Serializer):
    results = KillSwitchOutputSerializer(many=True)
