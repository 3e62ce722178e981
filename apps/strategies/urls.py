from django.urls import path

from apps.strategies.apis import (
    BacktestDetailApi,
    BacktestListCreateApi,
    SignalListApi,
    StrategyDetailApi,
    StrategyDisableApi,
    StrategyEnableApi,
    StrategyLibraryApi,
    StrategyListApi,
)

urlpatterns = [
    path("strategies/", StrategyListApi.as_view(), name="strategies"),
    path("strategies/library/", StrategyLibraryApi.as_view(), name="strategies-library"),
    path("strategies/<int:config_id>/", StrategyDetailApi.as_view(), name="strategy-detail"),
    path("strategies/<int:config_id>/enable/", StrategyEnableApi.as_view(), name="strategy-enable"),
    path("strategies/<int:config_id>/disable/", StrategyDisableApi.as_view(), name="strategy-disable"),
    path("signals/", SignalListApi.as_view(), name="signals"),
    path("backtests/", BacktestListCreateApi.as_view(), name="backtests"),
    path("backtests/<int:run_id>/", BacktestDetailApi.as_view(), name="backtest-detail"),
]
