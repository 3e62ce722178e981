from django.urls import path

from apps.marketdata.apis import CandleListApi, InstrumentListApi, LatestQuotesApi

urlpatterns = [
    path("instruments/", InstrumentListApi.as_view(), name="instruments"),
    path("candles/", CandleListApi.as_view(), name="candles"),
    path("quotes/latest/", LatestQuotesApi.as_view(), name="quotes-latest"),
]
