"""REST: strategy configs (list, read, enable, disable), the strategy library, live signals, and backtest runs
(submit, follow, read the results). See docs/strategies-operations.md.

Configs and signals are read through the accounts the user is granted (superusers: all); a config on another
account answers 404, as one that does not exist. Enabling and disabling need `strategies.change_strategyconfig`;
submitting a backtest needs `strategies.add_backtestrun`. Backtest runs are research, readable by every
authenticated user.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.strategies import configs, runs
from apps.strategies.serializers import (
    BacktestAcceptedSerializer,
    BacktestDetailFilterSerializer,
    BacktestDetailSerializer,
    BacktestFilterSerializer,
    BacktestPageSerializer,
    BacktestRunOutputSerializer,
    BacktestSubmitInputSerializer,
    ConfigDetailSerializer,
    ConfigFilterSerializer,
    ConfigListSerializer,
    ConfigOutputSerializer,
    ConfigSwitchInputSerializer,
    SignalFilterSerializer,
    SignalOutputSerializer,
    SignalPageSerializer,
    StrategyLibrarySerializer,
)

ERROR = OpenApiResponse(description='{"error": {"code", "message", "details"}}')


def _filters(serializer_class: type, request: Request) -> dict[str, Any]:
    filters = serializer_class(data=request.query_params)
    filters.is_valid(raise_exception=True)
    return dict(filters.validated_data)


def _next_url(request: Request, rows: list[Any], limit: int) -> str | None:
    """The URL of the next page (keyset: `before` = the last row's id), or None on the last page."""
    if len(rows) <= limit:
        return None
    params = request.query_params.copy()
    params["before"] = str(rows[limit - 1].pk)
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


# --- strategies ----------------------------------------------------------------------------------------------------


class StrategyListApi(APIView):
    @extend_schema(operation_id="strategies_list", parameters=[ConfigFilterSerializer], responses=ConfigListSerializer)
    def get(self, request: Request) -> Response:
        f = _filters(ConfigFilterSerializer, request)
        rows = configs.configs_list(user=request.user, enabled=f.get("enabled"), mode=f.get("mode"))
        return Response({"results": ConfigOutputSerializer(rows, many=True).data})


class StrategyLibraryApi(APIView):
    @extend_schema(operation_id="strategies_library", responses=StrategyLibrarySerializer)
    def get(self, request: Request) -> Response:
        return Response(StrategyLibrarySerializer({"results": configs.strategy_library()}).data)


class StrategyDetailApi(APIView):
    @extend_schema(operation_id="strategies_get", responses={200: ConfigDetailSerializer, 404: ERROR})
    def get(self, request: Request, config_id: int) -> Response:
        config = configs.config_get_for_user(user=request.user, config_id=config_id)
        events = configs.config_events(config_id=config.pk)
        return Response(ConfigDetailSerializer(config, context={"events": events}).data)


class _SwitchApi(APIView):
    parser_classes = [JSONParser]
    enable = True

    def post(self, request: Request, config_id: int) -> Response:
        if not request.user.has_perm("strategies.change_strategyconfig"):
            raise PermissionDenied("switching a strategy config needs the strategies.change_strategyconfig permission")
        body = ConfigSwitchInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        config = configs.config_get_for_user(user=request.user, config_id=config_id)  # 404 unless granted
        service = configs.config_enable if self.enable else configs.config_disable
        saved = service(
            config_id=config.pk, by=request.user.get_username(), expected_version=body.validated_data.get("version")
        )
        events = configs.config_events(config_id=saved.pk)
        return Response(ConfigDetailSerializer(saved, context={"events": events}).data)


SWITCH_RESPONSES = {200: ConfigDetailSerializer, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR}


class StrategyEnableApi(_SwitchApi):
    enable = True

    @extend_schema(operation_id="strategies_enable", request=ConfigSwitchInputSerializer, responses=SWITCH_RESPONSES)
    def post(self, request: Request, config_id: int) -> Response:
        return super().post(request, config_id)


class StrategyDisableApi(_SwitchApi):
    enable = False

    @extend_schema(operation_id="strategies_disable", request=ConfigSwitchInputSerializer, responses=SWITCH_RESPONSES)
    def post(self, request: Request, config_id: int) -> Response:
        return super().post(request, config_id)


# --- signals -------------------------------------------------------------------------------------------------------


class SignalListApi(APIView):
    @extend_schema(operation_id="signals_list", parameters=[SignalFilterSerializer], responses=SignalPageSerializer)
    def get(self, request: Request) -> Response:
        f = _filters(SignalFilterSerializer, request)
        qs = configs.signals_list(
            user=request.user,
            config_id=f.get("config"),
            symbol=f.get("symbol"),
            since=f.get("since"),
            before_id=f.get("before"),
        )
        rows = list(qs[: f["limit"] + 1])
        body = {"results": SignalOutputSerializer(rows[: f["limit"]], many=True).data}
        return Response(body | {"next": _next_url(request, rows, f["limit"])})


# --- backtests -----------------------------------------------------------------------------------------------------


class BacktestListCreateApi(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="backtests_submit",
        request=BacktestSubmitInputSerializer,
        responses={
            202: BacktestAcceptedSerializer,
            200: OpenApiResponse(BacktestAcceptedSerializer, description="an identical finished run: no new work"),
            400: ERROR,
            403: ERROR,
            404: ERROR,
        },
    )
    def post(self, request: Request) -> Response:
        if not request.user.has_perm("strategies.add_backtestrun"):
            raise PermissionDenied("submitting a backtest needs the strategies.add_backtestrun permission")
        serializer = BacktestSubmitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        run, cached = runs.run_submit(
            kind=data["kind"], strategy=data["strategy"], params=data.get("params"), symbols=data.get("symbols"),
            universe=data.get("universe"), interval=data["interval"], start=data["start"], end=data["end"],
            settings=data.get("settings"), grid=data.get("grid"), walk_forward=data.get("walk_forward"),
            monte_carlo=data.get("monte_carlo"), source_run_id=data.get("source_run"), user=request.user,
        )  # fmt: skip
        body = {
            "id": run.pk,
            "status": run.status,
            "cached": cached,
            "url": reverse("backtest-detail", args=[run.pk], request=request),
        }
        code = status.HTTP_200_OK if cached else status.HTTP_202_ACCEPTED
        return Response(BacktestAcceptedSerializer(body).data, status=code)

    @extend_schema(
        operation_id="backtests_list", parameters=[BacktestFilterSerializer], responses=BacktestPageSerializer
    )
    def get(self, request: Request) -> Response:
        f = _filters(BacktestFilterSerializer, request)
        qs = configs.runs_list(
            kind=f.get("kind"), status=f.get("status"), strategy=f.get("strategy"), before_id=f.get("before")
        )
        rows = list(qs[: f["limit"] + 1])
        results = BacktestRunOutputSerializer(rows[: f["limit"]], many=True, context={"request": request}).data
        return Response({"results": results, "next": _next_url(request, rows, f["limit"])})


class BacktestDetailApi(APIView):
    @extend_schema(
        operation_id="backtests_get",
        parameters=[BacktestDetailFilterSerializer],
        responses={200: BacktestDetailSerializer, 404: ERROR},
    )
    def get(self, request: Request, run_id: int) -> Response:
        f = _filters(BacktestDetailFilterSerializer, request)
        run = runs.run_get(run_id)
        context = {"request": request, "chunks": runs.run_chunks(run.pk), "trades_limit": f["trades"]}
        return Response(BacktestDetailSerializer(run, context=context).data)
