"""REST: instruments, candles (rows or a compact columnar form) and the latest quotes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.marketdata import selectors
from apps.marketdata.calendar_rules import parse_moment
from apps.marketdata.models import Instrument, Interval

MAX_CANDLES = 10_000


class InstrumentPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


class InstrumentListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        exchange = serializers.CharField(required=False, max_length=8)
        q = serializers.CharField(required=False, max_length=40)
        universe = serializers.CharField(required=False, max_length=64)

    class OutputSerializer(serializers.ModelSerializer):
        class Meta:
            model = Instrument
            fields = (
                "instrument_token",
                "exchange_token",
                "exchange",
                "tradingsymbol",
                "name",
                "segment",
                "instrument_type",
                "tick_size",
                "lot_size",
                "freeze_quantity",
                "provisional",
            )

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.instrument_list(
            exchange=filters.validated_data.get("exchange"),
            search=filters.validated_data.get("q"),
            universe=filters.validated_data.get("universe"),
        )
        paginator = InstrumentPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class DateOrDateTimeField(serializers.Field):
    """`2024-06-04` (a whole IST day) or an ISO datetime with offset; naive datetimes are read as IST."""

    def __init__(self, *, end_of_day: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.end_of_day = end_of_day

    def to_internal_value(self, data: Any) -> datetime:
        # A '+' in an unencoded query string arrives as a space: put the offset's sign back.
        text = str(data).strip().replace(" ", "+", 1) if "T" in str(data) else str(data)
        try:
            return parse_moment(text, end_of_day=self.end_of_day)
        except ValueError:
            raise serializers.ValidationError(
                "expected a date YYYY-MM-DD or an ISO 8601 datetime such as 2024-06-04T09:15:00+05:30"
            ) from None


class CandleListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=40)
        exchange = serializers.CharField(required=False, default="NSE", max_length=8)
        interval = serializers.ChoiceField(choices=Interval.choices, default=Interval.DAY)
        from_ = DateOrDateTimeField(required=False)
        to = DateOrDateTimeField(required=False, end_of_day=True)
        after = DateOrDateTimeField(required=False, help_text="keyset cursor: bars strictly after this time")
        limit = serializers.IntegerField(required=False, default=1000, min_value=1, max_value=MAX_CANDLES)
        # Not `format`: DRF reserves that query parameter for choosing a renderer.
        layout = serializers.ChoiceField(choices=("rows", "columnar"), default="rows")

        def get_fields(self) -> dict[str, serializers.Field]:
            fields = super().get_fields()
            fields["from"] = fields.pop("from_")
            return fields

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs.get("from") and attrs.get("to") and attrs["from"] > attrs["to"]:
                raise serializers.ValidationError({"to": "must not be before from"})
            return attrs

    class RowSerializer(serializers.Serializer):
        time = serializers.DateTimeField()
        open = serializers.DecimalField(max_digits=14, decimal_places=4)
        high = serializers.DecimalField(max_digits=14, decimal_places=4)
        low = serializers.DecimalField(max_digits=14, decimal_places=4)
        close = serializers.DecimalField(max_digits=14, decimal_places=4)
        volume = serializers.IntegerField()
        oi = serializers.IntegerField()
        source = serializers.CharField()  # type: ignore[assignment]

    @extend_schema(
        parameters=[
            OpenApiParameter("symbol", str, required=True),
            OpenApiParameter("exchange", str),
            OpenApiParameter("interval", str, enum=list(Interval.values)),
            OpenApiParameter("from", str, description="date or ISO datetime, inclusive"),
            OpenApiParameter("to", str, description="date or ISO datetime, inclusive"),
            OpenApiParameter("after", str, description="cursor from `next`"),
            OpenApiParameter("limit", int),
            OpenApiParameter("layout", str, enum=["rows", "columnar"], description="columnar: one array per field"),
        ]
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        instrument = selectors.instrument_get(symbol=f["symbol"], exchange=f["exchange"])
        qs = selectors.candle_range(instrument=instrument, interval=f["interval"], start=f.get("from"), end=f.get("to"))
        if f.get("after"):
            qs = qs.filter(time__gt=f["after"])
        bars = list(qs[: f["limit"] + 1])
        more, bars = len(bars) > f["limit"], bars[: f["limit"]]
        rows = self.RowSerializer(bars, many=True).data
        body: dict[str, Any] = {
            "symbol": instrument.tradingsymbol,
            "exchange": instrument.exchange,
            "interval": f["interval"],
            "count": len(rows),
            "next": self._next_url(request, bars[-1].time) if more else None,
        }
        if f["layout"] == "columnar":
            columns = ("time", "open", "high", "low", "close", "volume", "oi", "source")
            body["columns"] = {c: [r[c] for r in rows] for c in columns}
        else:
            body["results"] = rows
        return Response(body)

    @staticmethod
    def _next_url(request: Request, last: datetime) -> str:
        params = request.query_params.copy()
        params["after"] = last.isoformat()
        return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


class LatestQuotesApi(APIView):
    class FilterSerializer(serializers.Serializer):
        symbols = serializers.CharField(required=False, help_text="comma-separated EXCHANGE:SYMBOL keys")

    @extend_schema(parameters=[FilterSerializer])
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        raw = filters.validated_data.get("symbols")
        keys = [k.strip() for k in raw.split(",") if k.strip()] if raw else None
        prices = selectors.latest_prices(keys=keys)
        return Response(
            {
                "quotes": {
                    key: {"price": str(p.price), "time": p.time.isoformat(), "token": p.token, "source": p.source}
                    for key, p in sorted(prices.items())
                }
            }
        )
