"""Health endpoints for load balancers and operators, and the API root."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.monitoring.selectors import readiness_report
from workers.queues import DEDICATED_QUEUES


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: 200 while the process can answer at all; touches nothing else."""
    return JsonResponse({"status": "alive"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: database, Redis and a live worker on every dedicated queue; 503 if any fails."""
    report = readiness_report()
    return JsonResponse(report, status=200 if report["status"] == "ready" else 503)


class ApiRootApi(APIView):
    class OutputSerializer(serializers.Serializer):
        trading_mode = serializers.CharField()
        queues = serializers.ListField(child=serializers.CharField())
        links = serializers.DictField(child=serializers.URLField())

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        from django.conf import settings

        data = {
            "trading_mode": settings.TRADING_MODE,
            "queues": [q.value for q in DEDICATED_QUEUES],
            "links": {
                "schema": reverse("api-schema", request=request),
                "docs": reverse("api-docs", request=request),
                "readyz": reverse("readyz", request=request),
            },
        }
        return Response(self.OutputSerializer(data).data)
