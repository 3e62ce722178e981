"""REST: place (with Idempotency-Key), list, read and cancel orders; positions; portfolio; the kill switch.

Every read goes through the accounts the user is granted (superusers: all);
an order or account outside them answers 404, as one that does not exist.
See docs/orders-api.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.brokers import selectors as broker_accounts
from apps.marketdata import selectors as marketdata
from apps.orders import control, idempotency, selectors
from apps.orders.models import EventSource
from apps.orders.placement import OrderInput, order_place
from apps.orders.serializers import (
    KillSwitchInputSerializer,
    KillSwitchListSerializer,
    KillSwitchOutputSerializer,
    KillSwitchResultSerializer,
    OrderDetailOutputSerializer,
    OrderFilterSerializer,
    OrderOutputSerializer,
    OrderPageSerializer,
    OrderPlaceInputSerializer,
    PortfolioOutputSerializer,
    PositionOutputSerializer,
    PositionPageSerializer,
)
from tradingsite.exceptions import Conflict, NotFound

IDEMPOTENCY_HEADER = OpenApiParameter(
    idempotency.HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="A unique value per order (a UUID); send the same one when retrying the same request.",
)
ERROR = OpenApiResponse(description='{"error": {"code", "message", "details"}}')


def default_client_order_id(*, user_id: int, key: str) -> str:
    """Derived from the user and the Idempotency-Key: a retry after a lost answer finds the same order."""
    return "api-" + hashlib.sha256(f"{user_id}:{key}".encode()).hexdigest()[:32]


def _instrument(data: dict[str, Any]) -> Any:
    if "instrument" in data:
        row = marketdata.instrument_list().filter(pk=data["instrument"]).first()
        if row is None:
            raise NotFound(f"no instrument {data['instrument']}", code="unknown_instrument")
        return row
    return marketdata.instrument_get(symbol=data["symbol"], exchange=data["exchange"])


def _order_input(*, user: Any, key: str, data: dict[str, Any]) -> tuple[OrderInput, bool]:
    """The placement's input from the request, and whether its client_order_id already names an order."""
    account = broker_accounts.account_get_for_user(user=user, account_id=data["account"])
    client_order_id = data.get("client_order_id") or default_client_order_id(user_id=user.pk, key=key)
    existing = selectors.order_by_client_order_id(client_order_id=client_order_id)
    if existing is not None and existing.account_id != account.pk:
        # Placing returns the order a client_order_id already names: never let that be another account's.
        raise Conflict(
            "this client_order_id names an order of another account; choose another", code="client_order_id_taken"
        )
    order_input = OrderInput(
        account=account,
        instrument=_instrument(data),
        side=data["side"],
        quantity=data["quantity"],
        product=data["product"],
        order_type=data["order_type"],
        client_order_id=client_order_id,
        price=data.get("price"),
        trigger_price=data.get("trigger_price"),
        validity=data["validity"],
        variety=data["variety"],
        market_protection=data.get("market_protection"),
        strategy=data["strategy"],
    )
    return order_input, existing is not None


class OrderListCreateApi(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="orders_place",
        parameters=[IDEMPOTENCY_HEADER],
        request=OrderPlaceInputSerializer,
        responses={
            201: OrderDetailOutputSerializer,
            200: OpenApiResponse(OrderDetailOutputSerializer, description="the client_order_id named an order"),
            400: ERROR,
            404: ERROR,
            409: ERROR,
            422: ERROR,
        },
    )
    def post(self, request: Request) -> HttpResponse:
        if request.user.pk is None:
            raise NotAuthenticated()
        key = idempotency.key_validate(request.headers.get(idempotency.HEADER))
        body = request.data
        stored = idempotency.idempotent_call(
            user_id=request.user.pk,
            key=key,
            fingerprint=idempotency.request_fingerprint(method="POST", path=request.path, body=body),
            work=lambda: self._place(request.user, key, body),
        )
        response = HttpResponse(stored.content, status=stored.status, content_type="application/json")
        if stored.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @staticmethod
    def _place(user: Any, key: str, body: Any) -> idempotency.Outcome:
        serializer = OrderPlaceInputSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        order_input, existed = _order_input(user=user, key=key, data=serializer.validated_data)
        order = order_place(order=order_input, source=EventSource.API)
        detail = selectors.order_get_for_user(user=user, order_id=order.pk)
        code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return idempotency.Outcome(status=code, body=OrderDetailOutputSerializer(detail).data, order_id=order.pk)

    @extend_schema(operation_id="orders_list", parameters=[OrderFilterSerializer], responses=OrderPageSerializer)
    def get(self, request: Request) -> Response:
        filters = OrderFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        qs = selectors.orders_for_user(
            user=request.user,
            statuses=[s for s in f.get("status", "").split(",") if s.strip()] or None,
            account_id=f.get("account"),
            symbol=f.get("symbol"),
            strategy=f.get("strategy"),
            before_id=f.get("before"),
        )
        orders = list(qs[: f["limit"] + 1])
        more, orders = len(orders) > f["limit"], orders[: f["limit"]]
        next_url = None
        if more:
            params = request.query_params.copy()
            params["before"] = str(orders[-1].pk)
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        return Response({"results": OrderOutputSerializer(orders, many=True).data, "next": next_url})


class OrderDetailApi(APIView):
    @extend_schema(operation_id="orders_get", responses={200: OrderDetailOutputSerializer, 404: ERROR})
    def get(self, request: Request, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        return Response(OrderDetailOutputSerializer(order).data)


class OrderCancelApi(APIView):
    @extend_schema(
        operation_id="orders_cancel", request=None, responses={200: OrderDetailOutputSerializer, 404: ERROR, 409: ERROR}
    )
    def post(self, request: Request, order_id: int) -> Response:
        selectors.order_get_for_user(user=request.user, order_id=order_id)  # 404 unless granted
        control.order_cancel(order_id=order_id, source=EventSource.API, by=request.user.get_username())
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        return Response(OrderDetailOutputSerializer(order).data)


class PositionListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        account = serializers.IntegerField(required=False, min_value=1)
        open = serializers.BooleanField(required=False, default=False, help_text="only non-zero net quantity")

    @extend_schema(parameters=[FilterSerializer], responses=PositionPageSerializer)
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = selectors.positions_for_user(
            user=request.user,
            account_id=filters.validated_data.get("account"),
            open_only=filters.validated_data["open"],
        )
        return Response({"results": PositionOutputSerializer(rows, many=True).data})


class PortfolioApi(APIView):
    @extend_schema(responses=PortfolioOutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(PortfolioOutputSerializer(selectors.portfolio_for_user(user=request.user)).data)


class KillSwitchApi(APIView):
    parser_classes = [JSONParser]

    @extend_schema(operation_id="kill_switch_list", responses=KillSwitchListSerializer)
    def get(self, request: Request) -> Response:
        rows = selectors.kill_switch_states_for_user(user=request.user)
        return Response({"results": KillSwitchOutputSerializer(rows, many=True).data})

    @extend_schema(
        operation_id="kill_switch_set",
        request=KillSwitchInputSerializer,
        responses={200: KillSwitchResultSerializer, 403: ERROR, 404: ERROR},
    )
    def post(self, request: Request) -> Response:
        if not request.user.is_staff:
            raise PermissionDenied("only staff may switch the kill switch")
        serializer = KillSwitchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = control.kill_switch_set(
            active=data["active"],
            account_id=data.get("account"),
            reason=data["reason"],
            by=request.user.get_username(),
            square_off=data["square_off"],
        )
        return Response(KillSwitchResultSerializer(asdict(result)).data)
