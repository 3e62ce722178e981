"""REST: VaR snapshots (read the latest, compute one in the background and follow it), stress tests, the VaR
backtest and portfolio metrics of the current book.

Scope: `?account=<id>` (or `"account"` in a body) is one account, which must be granted to the user (404
otherwise, as for one that does not exist); without it the figures are of the desk's book, every enabled
account together, which only staff may see. See docs/risk.md.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from celery.result import AsyncResult
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.brokers import selectors as broker_accounts
from apps.risk import analysis, snapshots
from apps.risk.serializers import (
    AccountFilterSerializer,
    BacktestFilterSerializer,
    BacktestOutputSerializer,
    MetricsFilterSerializer,
    MetricsOutputSerializer,
    SnapshotOutputSerializer,
    StressListSerializer,
    TaskAcceptedSerializer,
    TaskStatusSerializer,
    VarComputeInputSerializer,
    VarFilterSerializer,
)
from apps.risk.tasks import compute_var
from tradingsite.celery import app as celery_app
from tradingsite.exceptions import NotFound

ERROR = OpenApiResponse(description='{"error": {"code", "message", "details"}}')


def book_scope(user: Any, account_id: int | None) -> int | None:
    """The account the user asked for, if granted to them; None (the desk's book) for staff only."""
    if account_id is None:
        if not getattr(user, "is_staff", False):
            raise PermissionDenied("the desk's book (every account) is for staff: ask for ?account=<id> of yours")
        return None
    return broker_accounts.account_get_for_user(user=user, account_id=account_id).pk


def _filters(serializer_class: type, request: Request) -> dict[str, Any]:
    filters = serializer_class(data=request.query_params)
    filters.is_valid(raise_exception=True)
    data: dict[str, Any] = dict(filters.validated_data)
    data["account"] = book_scope(request.user, data.get("account"))
    return data


class VarApi(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="risk_var_latest",
        parameters=[VarFilterSerializer],
        responses={200: SnapshotOutputSerializer, 403: ERROR, 404: ERROR},
    )
    def get(self, request: Request) -> Response:
        f = _filters(VarFilterSerializer, request)
        snapshot = snapshots.snapshot_latest(account_id=f["account"], method=f.get("method"))
        if snapshot is None:
            raise NotFound("no VaR snapshot of this book yet: POST to compute one", code="no_snapshot")
        return Response(SnapshotOutputSerializer(snapshot).data)

    @extend_schema(
        operation_id="risk_var_compute",
        request=VarComputeInputSerializer,
        responses={202: TaskAcceptedSerializer, 400: ERROR, 403: ERROR, 404: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = VarComputeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        kwargs = {
            "account_id": book_scope(request.user, data.get("account")),
            "method": data["method"],
            "confidence": float(data["confidence"]),
            "horizon_days": data["horizon_days"],
            "window_days": data["window_days"],
            "paths": data["paths"],
            "distribution": data["distribution"],
            "seed": data["seed"],
            "trigger": "api",
        }
        task_id = str(uuid.uuid4())
        transaction.on_commit(partial(compute_var.apply_async, kwargs=kwargs, task_id=task_id))
        body = {"task_id": task_id, "status_url": reverse("risk-var-task", args=[task_id], request=request)}
        return Response(TaskAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class VarTaskApi(APIView):
    @extend_schema(operation_id="risk_var_task", responses={200: TaskStatusSerializer, 404: ERROR})
    def get(self, request: Request, task_id: str) -> Response:
        body: dict[str, Any] = {"task_id": task_id, "snapshot": None, "error": ""}
        snapshot = snapshots.snapshot_for_task(task_id=task_id)
        if snapshot is not None:
            self._check(request.user, snapshot.account_id)
            body.update(status="done", state="SUCCESS", snapshot=snapshot)
            return Response(TaskStatusSerializer(body).data)
        result: AsyncResult = AsyncResult(task_id, app=celery_app)
        body["state"] = result.state
        if result.state == "FAILURE":
            account = (getattr(result, "kwargs", None) or {}).get("account_id")
            self._check(request.user, account)
            body.update(status="failed", error=f"{type(result.result).__name__}: {result.result}")
        else:
            body["status"] = "pending"
        return Response(TaskStatusSerializer(body).data)

    @staticmethod
    def _check(user: Any, account_id: int | None) -> None:
        try:
            book_scope(user, account_id)
        except PermissionDenied:
            raise NotFound("no such VaR task of a book you may see", code="unknown_task") from None


class StressApi(APIView):
    @extend_schema(
        operation_id="risk_stress", parameters=[AccountFilterSerializer], responses={200: StressListSerializer}
    )
    def get(self, request: Request) -> Response:
        f = _filters(AccountFilterSerializer, request)
        return Response(StressListSerializer({"results": analysis.stress_current(account_id=f["account"])}).data)


class BacktestApi(APIView):
    @extend_schema(
        operation_id="risk_backtest",
        parameters=[BacktestFilterSerializer],
        responses={200: BacktestOutputSerializer, 400: ERROR},
    )
    def get(self, request: Request) -> Response:
        f = _filters(BacktestFilterSerializer, request)
        report = analysis.var_backtest_current(
            account_id=f["account"], window_days=f["window_days"], confidence=f["confidence"]
        )
        return Response(BacktestOutputSerializer(report).data)


class MetricsApi(APIView):
    @extend_schema(
        operation_id="risk_metrics",
        parameters=[MetricsFilterSerializer],
        responses={200: MetricsOutputSerializer, 400: ERROR},
    )
    def get(self, request: Request) -> Response:
        f = _filters(MetricsFilterSerializer, request)
        report = analysis.metrics_current(
            account_id=f["account"], window_days=f["window_days"], risk_free_annual=f["risk_free_annual"]
        )
        return Response(MetricsOutputSerializer(report).data)
