from django.urls import path

from apps.orders.apis import (
    KillSwitchApi,
    OrderCancelApi,
    OrderDetailApi,
    OrderListCreateApi,
    PortfolioApi,
    PositionListApi,
)

urlpatterns = [
    path("orders/", OrderListCreateApi.as_view(), name="orders"),
    path("orders/<int:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel/", OrderCancelApi.as_view(), name="order-cancel"),
    path("positions/", PositionListApi.as_view(), name="positions"),
    path("portfolio/", PortfolioApi.as_view(), name="portfolio"),
    path("kill-switch/", KillSwitchApi.as_view(), name="kill-switch"),
]
