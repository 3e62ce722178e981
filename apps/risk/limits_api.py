"""REST: `GET /api/v1/risk/limits/` (every limit row, its recent history and the effective limits per account)
and `PUT /api/v1/risk/limits/` (change one row; compare-and-set on `version`; a risk officer only).

A risk officer is a user with the `risk.change_risklimit` permission (superusers have it). See docs/risk-limits.md.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.brokers import selectors as broker_accounts
from apps.risk.limits import limit_create, limit_update, limits_effective, limits_list
from apps.risk.models import LIMIT_FIELDS, LimitScope, RiskLimit, RiskLimitChange
from tradingsite.exceptions import NotFound

ERROR = OpenApiResponse(description='{"error": {"code", "message", "details"}}')
HISTORY_PER_ROW = 20


class LimitChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = RiskLimitChange
        fields = ("field", "old_value", "new_value", "version", "changed_by", "source", "changed_at")


class LimitOutputSerializer(serializers.ModelSerializer):
    account_name = serializers.CharField(source="account.name", default=None)
    history = serializers.SerializerMethodField()

    class Meta:
        model = RiskLimit
        fields = (
            "id", "scope", "account", "account_name", "strategy", *LIMIT_FIELDS, "version", "updated_by",
            "updated_at", "history",
        )  # fmt: skip

    def get_history(self, row: RiskLimit) -> list[dict[str, Any]]:
        changes = RiskLimitChange.objects.filter(limit=row)[:HISTORY_PER_ROW]
        return list(LimitChangeSerializer(changes, many=True).data)


class LimitPutSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=LimitScope.choices)
    account = serializers.IntegerField(required=False, allow_null=True)
    strategy = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="The version you read; a different current version answers 409."
    )
    values = serializers.DictField(child=serializers.CharField(allow_null=True, allow_blank=True), allow_empty=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope, account, strategy = attrs["scope"], attrs.get("account"), attrs.get("strategy", "")
        if scope == LimitScope.GLOBAL and (account or strategy):
            raise serializers.ValidationError({"scope": "the global row has no account and no strategy"})
        if scope == LimitScope.ACCOUNT and (not account or strategy):
            raise serializers.ValidationError({"account": "an account row needs an account and no strategy"})
        if scope == LimitScope.STRATEGY and not strategy:
            raise serializers.ValidationError({"strategy": "a strategy row needs a strategy"})
        unknown = sorted(set(attrs["values"]) - set(LIMIT_FIELDS))
        if unknown:
            raise serializers.ValidationError({"values": f"unknown limit fields: {', '.join(unknown)}"})
        return attrs


class LimitListSerializer(serializers.Serializer):
    results = LimitOutputSerializer(many=True)
    effective = serializers.DictField(help_text="Per account id you are granted: its effective limits.")


def _effective(user: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for account in broker_accounts.accounts_for_user(user=user):
        limits = asdict(limits_effective(account_id=account.pk))
        out[str(account.pk)] = {k: (None if v is None else str(v)) for k, v in limits.items()}
    return out


class LimitsApi(APIView):
    parser_classes = [JSONParser]

    @extend_schema(operation_id="risk_limits_list", responses=LimitListSerializer)
    def get(self, request: Request) -> Response:
        rows = LimitOutputSerializer(limits_list(), many=True).data
        return Response({"results": rows, "effective": _effective(request.user)})

    @extend_schema(
        operation_id="risk_limits_put",
        request=LimitPutSerializer,
        responses={200: LimitOutputSerializer, 400: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
    )
    def put(self, request: Request) -> Response:
        if not request.user.has_perm("risk.change_risklimit"):
            raise PermissionDenied("only a risk officer (risk.change_risklimit) may change limits")
        serializer = LimitPutSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        account_id = data.get("account")
        if account_id is not None and not broker_accounts.accounts_for_user(user=request.user).filter(pk=account_id):
            raise NotFound(f"no account {account_id} granted to you", code="unknown_account")
        row = _row(data["scope"], account_id, data.get("strategy", ""))
        by = request.user.get_username()
        if row is None:
            row = limit_create(
                scope=data["scope"], account_id=account_id, strategy=data.get("strategy", ""),
                values=data["values"], changed_by=by, source="api",
            )  # fmt: skip
        else:
            row = limit_update(
                limit_id=row.pk, changes=data["values"], changed_by=by, source="api",
                expected_version=data.get("version"),
            )  # fmt: skip
        return Response(LimitOutputSerializer(row).data)


def _row(scope: str, account_id: int | None, strategy: str) -> RiskLimit | None:
    return RiskLimit.objects.filter(scope=scope, account_id=account_id, strategy=strategy).first()
