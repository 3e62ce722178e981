from django.urls import path

from apps.risk.apis import BacktestApi, MetricsApi, StressApi, VarApi, VarTaskApi
from apps.risk.limits_api import LimitsApi

urlpatterns = [
    path("risk/var/", VarApi.as_view(), name="risk-var"),
    path("risk/var/tasks/<str:task_id>/", VarTaskApi.as_view(), name="risk-var-task"),
    path("risk/stress/", StressApi.as_view(), name="risk-stress"),
    path("risk/backtest/", BacktestApi.as_view(), name="risk-backtest"),
    path("risk/metrics/", MetricsApi.as_view(), name="risk-metrics"),
    path("risk/limits/", LimitsApi.as_view(), name="risk-limits"),
]
