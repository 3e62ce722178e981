from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.monitoring.apis import ApiRootApi, healthz, readyz
from apps.orders.postback import kite_postback

admin.site.site_header = "Trading platform operations"
admin.site.site_title = "Trading operations"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("kite/postback/", kite_postback, name="kite-postback"),
    path("api/v1/", ApiRootApi.as_view(), name="api-root"),
    path("api/v1/", include("apps.marketdata.urls")),
    path("api/v1/", include("apps.orders.urls")),
    path("api/v1/", include("apps.risk.urls")),
    path("api/v1/", include("apps.strategies.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
