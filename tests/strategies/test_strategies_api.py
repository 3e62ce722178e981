"""The strategies REST API: configs scoped to granted accounts, enable/disable with permissions and versions, the
library with its schemas, signals newest first in keyset pages, and backtests submitted, cached and read back
(equity downsampled to at most 2000 points keeping its extremes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from apps.brokers.models import BrokerAccount
from apps.strategies import configs
from apps.strategies.engine.backtest import Settings, run_backtest
from apps.strategies.engine.bars import read_csv_dir
from apps.strategies.engine.packing import pack_series, unpack_series
from apps.strategies.engine.strategy import REGISTRY, get_strategy
from apps.strategies.models import BacktestChunk, BacktestRun, Signal
from tests.risk.test_var_service import import_daily
from tests.strategies.test_configs import config_kwargs, desk  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

CLOSE_SYMBOLS = ("INFY", "TCS")


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def grant(user: Any, *codenames: str) -> Any:
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="strategies", codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)  # permissions are cached per instance


@pytest.fixture
def trader(desk: dict[str, Any]) -> Any:  # noqa: F811
    user = get_user_model().objects.create_user("ui-trader")
    desk["paper"].users.add(user)
    return user


@pytest.fixture
def daily_db(shared_data: Path, desk: dict[str, Any]) -> Iterator[Path]:  # noqa: F811
    """INFY and TCS daily candles from the shared CSVs in the database (the project's importer)."""
    import_daily(shared_data, *CLOSE_SYMBOLS)
    yield shared_data / "nifty50-daily"


# --- configs -------------------------------------------------------------------------------------------------------


def test_configs_are_listed_and_read_within_granted_accounts(desk: dict[str, Any], trader: Any) -> None:  # noqa: F811
    mine = configs.config_create(**config_kwargs(desk))
    enabled = configs.config_create(**config_kwargs(desk, name="sma-fast", parameters={"fast": 5, "slow": 20}))
    configs.config_enable(config_id=enabled.pk, by="ops")
    other_account = BrokerAccount.objects.create(name="paper-other", kind="paper")
    other = configs.config_create(**config_kwargs(desk, name="not-mine", account=other_account.pk))
    client = client_for(trader)
    listing = client.get("/api/v1/strategies/").json()["results"]
    assert [c["name"] for c in listing] == ["sma-fast", "sma-infy"]
    first = listing[1]
    assert first["parameters"] == {"fast": 12, "slow": 30, "field": "close", "long_short": False}
    assert first["capital"] == "500000.00" and first["account_name"] == "paper-ui" and first["version"] == 1
    assert [p["name"] for p in first["strategy_info"]["schema"]["params"]] == ["fast", "slow", "field", "long_short"]
    assert [c["name"] for c in client.get("/api/v1/strategies/", {"enabled": "true"}).json()["results"]] == ["sma-fast"]
    assert [c["name"] for c in client.get("/api/v1/strategies/", {"enabled": "false"}).json()["results"]] == [
        "sma-infy"
    ]
    assert client.get("/api/v1/strategies/", {"mode": "live"}).json()["results"] == []
    assert client.get("/api/v1/strategies/", {"mode": "demo"}).json()["error"]["details"].keys() == {"mode"}
    detail = client.get(f"/api/v1/strategies/{mine.pk}/").json()
    assert detail["events"][0]["kind"] == "created" and detail["symbols"] == ["INFY", "TCS"]
    missing = client.get(f"/api/v1/strategies/{other.pk}/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_config"
    assert APIClient().get("/api/v1/strategies/").status_code in {401, 403}


def test_the_library_describes_every_registered_strategy(trader: Any) -> None:
    body = client_for(trader).get("/api/v1/strategies/library/").json()["results"]
    assert [s["name"] for s in body] == sorted(REGISTRY)
    sma = next(s for s in body if s["name"] == "sma_crossover")
    assert sma["schema"] == get_strategy("sma_crossover").schema.describe()
    assert sma["warmup"] == 29 and sma["intraday"] is False
    assert "fast ({fast}) must be below slow ({slow})" in sma["schema"]["rules"]


def test_enable_and_disable_need_the_permission_and_honour_the_version(
    desk: dict[str, Any],  # noqa: F811
    trader: Any,
) -> None:
    config = configs.config_create(**config_kwargs(desk))
    url = f"/api/v1/strategies/{config.pk}/"
    refused = client_for(trader).post(url + "enable/", {}, format="json")
    assert refused.status_code == 403 and "change_strategyconfig" in refused.json()["error"]["message"]
    client = client_for(grant(trader, "change_strategyconfig"))
    enabled = client.post(url + "enable/", {"version": 1}, format="json")
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True and enabled.json()["version"] == 2
    assert enabled.json()["events"][0]["kind"] == "enabled" and enabled.json()["events"][0]["by"] == "ui-trader"
    stale = client.post(url + "disable/", {"version": 1}, format="json")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "config_version_conflict"
    typo = client.post(url + "disable/", {"verison": 2}, format="json")
    assert typo.status_code == 400 and "verison" in typo.json()["error"]["details"]
    disabled = client.post(url + "disable/", {"version": 2}, format="json").json()
    assert disabled["enabled"] is False and disabled["version"] == 3
    config.refresh_from_db()
    assert not config.enabled and config.version == 3
    other = configs.config_create(
        **config_kwargs(desk, name="not-mine", account=BrokerAccount.objects.create(name="p2", kind="paper").pk)
    )
    assert client.post(f"/api/v1/strategies/{other.pk}/enable/", {}, format="json").status_code == 404
    other.refresh_from_db()
    assert not other.enabled


# --- signals -------------------------------------------------------------------------------------------------------


def test_signals_newest_first_in_keyset_pages_with_filters(desk: dict[str, Any], trader: Any) -> None:  # noqa: F811
    config = configs.config_create(**config_kwargs(desk))
    other = configs.config_create(**config_kwargs(desk, name="second"))
    day0 = datetime(2024, 9, 2, 3, 45, tzinfo=UTC)
    made = []
    for d in range(4):
        for symbol in ("INFY", "TCS"):
            made.append(
                Signal.objects.create(
                    config=config if d % 2 == 0 else other,
                    instrument=desk["instruments"][symbol],
                    bar_time=day0 + timedelta(days=d),
                    target=float(d % 2),
                    price=Decimal("100.5"),
                    action="none",
                )
            )
    expected = sorted(made, key=lambda s: (s.bar_time, s.pk), reverse=True)
    client = client_for(trader)
    seen: list[int] = []
    url: str | None = "/api/v1/signals/?limit=3"
    pages = 0
    while url:
        page = client.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url, pages = page["next"], pages + 1
    assert seen == [s.pk for s in expected] and pages == 3
    by_symbol = client.get("/api/v1/signals/", {"symbol": "tcs", "config": str(config.pk)}).json()["results"]
    assert [(r["symbol"], r["config_name"], r["bar_time"][:10]) for r in by_symbol] == [
        ("TCS", "sma-infy", "2024-09-04"),
        ("TCS", "sma-infy", "2024-09-02"),
    ]
    since = client.get("/api/v1/signals/", {"since": "2024-09-04T00:00:00Z"}).json()["results"]
    assert {r["bar_time"][:10] for r in since} == {"2024-09-04", "2024-09-05"} and len(since) == 4
    bad = client.get("/api/v1/signals/", {"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["details"]
    stranger = get_user_model().objects.create_user("stranger")
    assert client_for(stranger).get("/api/v1/signals/").json()["results"] == []


# --- backtests -----------------------------------------------------------------------------------------------------

RUN_BODY = {
    "kind": "single",
    "strategy": "sma_crossover",
    "params": {"fast": 10, "slow": 30},
    "symbols": list(CLOSE_SYMBOLS),
    "interval": "day",
    "start": "2020-10-01",
    "end": "2024-09-30",
    "settings": {"cash": 500_000, "costs": False},
}


@pytest.mark.parametrize(
    ("change", "code", "detail"),
    [
        ({"strat": "x"}, "invalid", ("strat", None)),
        ({"kind": "best"}, "invalid", ("kind", None)),
        ({"start": "2021-13-01"}, "invalid", ("start", None)),
        ({"params": {"fast": 40}}, "invalid_params", ("param", "fast")),
        ({"settings": {"cahs": 1}}, "invalid_settings", ("field", "cahs")),
        ({"symbols": ["INFY", "NOPE"]}, "unknown_symbols", ("symbols", ["NOPE"])),
        ({"start": "2015-01-01", "end": "2015-12-31"}, "no_data", ("symbols", ["INFY", "TCS"])),
        ({"strategy": "nope"}, None, None),
    ],
)
def test_bad_backtest_input_is_refused_by_name(
    daily_db: Path, trader: Any, change: dict[str, Any], code: str | None, detail: tuple[str, Any] | None
) -> None:
    client = client_for(grant(trader, "add_backtestrun"))
    response = client.post("/api/v1/backtests/", RUN_BODY | change, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    if code is not None:
        assert error["code"] == code
    if detail is not None:
        key, value = detail
        assert key in error["details"] and (value is None or error["details"][key] == value)
    if change == {"strategy": "nope"}:
        assert "nope" in error["message"]
    assert not BacktestRun.objects.exists()


def test_submitting_needs_the_permission(daily_db: Path, trader: Any) -> None:
    response = client_for(trader).post("/api/v1/backtests/", RUN_BODY, format="json")
    assert response.status_code == 403 and not BacktestRun.objects.exists()


def test_a_submitted_run_is_followed_to_its_results_and_then_cached(
    daily_db: Path, trader: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.strategies import run_tasks

    client = client_for(grant(trader, "add_backtestrun"))
    with django_capture_on_commit_callbacks(execute=False) as sent:
        accepted = client.post("/api/v1/backtests/", RUN_BODY, format="json")
    assert accepted.status_code == 202 and len(sent) == 1  # enqueued once the row commits
    body = accepted.json()
    assert body["status"] == "queued" and body["cached"] is False
    assert body["url"].endswith(f"/api/v1/backtests/{body['id']}/")
    queued = client.get(body["url"]).json()
    assert queued["status"] == "queued" and queued["equity"]["points"] == 0 and queued["trades"] == []
    run_tasks.run_single(run_id=body["id"])  # the task as a function (through a real worker: test_runs_workers)
    done = client.get(body["url"], {"trades": 5}).json()
    bars = read_csv_dir(daily_db, list(CLOSE_SYMBOLS))
    expected = run_backtest(
        get_strategy("sma_crossover", {"fast": 10, "slow": 30}), bars, Settings(500_000, costs=False)
    )
    assert done["status"] == "done" and done["progress"] == 1.0
    assert done["metrics"]["final_equity"] == pytest.approx(expected.metrics["final_equity"], abs=0.005)
    assert done["trades_total"] == len(expected.trades_json()) and len(done["trades"]) == 5
    assert done["trades"][0]["entry_time"] == expected.trades_json()[0]["entry_time"]
    assert done["equity"]["points"] == len(expected.equity) == len(done["equity"]["values"])  # 992 < 2000: all
    assert done["equity"]["values"][-1] == pytest.approx(float(expected.equity[-1]), abs=0.005)
    assert done["equity"]["times"][0].startswith("2020-10-01T") and done["equity"]["times"][0].endswith("+05:30")
    assert done["inputs"]["symbols"] == list(CLOSE_SYMBOLS) and done["inputs"]["parameters"]["slow"] == 30
    again = client.post("/api/v1/backtests/", RUN_BODY, format="json")
    assert again.status_code == 200 and again.json() == {**body, "status": "done", "cached": True}
    listing = client.get("/api/v1/backtests/", {"status": "done"}).json()
    assert [r["id"] for r in listing["results"]] == [body["id"]] and listing["next"] is None


def test_run_detail_downsamples_equity_and_lists_chunks(trader: Any) -> None:
    n = 5000
    times = np.datetime64("2020-01-01T03:45", "us").astype(np.int64) + np.arange(n, dtype=np.int64) * 60_000_000
    values = 1e6 + np.cumsum(np.random.default_rng(7).normal(0, 500, n))
    values[1234], values[3210] = values.min() - 10_000, values.max() + 10_000  # a trough and a peak to keep
    run = BacktestRun.objects.create(
        kind="grid", strategy="sma_crossover", status="failed", start=date(2020, 1, 1), end=date(2020, 1, 5),
        code_version="x", cache_key="k", equity=pack_series(times, values), chunks_total=2, chunks_done=1,
        trades=[{"symbol": "INFY", "pnl": float(i)} for i in range(30)], error="chunk 1 failed: boom",
    )  # fmt: skip
    BacktestChunk.objects.create(run=run, index=0, status="done", work={"param_sets": [{"fast": 5}]})
    BacktestChunk.objects.create(run=run, index=1, status="failed", error="ValueError: boom", work={"param_sets": []})
    body = client_for(trader).get(f"/api/v1/backtests/{run.pk}/", {"trades": 3}).json()
    equity = body["equity"]
    assert equity["points"] == n and 1000 < len(equity["values"]) <= 2000
    assert min(equity["values"]) == values[1234] and max(equity["values"]) == values[3210]
    assert equity["values"][0] == values[0] and equity["values"][-1] == values[-1]
    stamps = [datetime.fromisoformat(t) for t in equity["times"]]
    assert stamps == sorted(stamps) and stamps[0] == datetime(2020, 1, 1, 3, 45, tzinfo=UTC)
    t, v = unpack_series(run.equity)
    stored = {
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us)): val for us, val in zip(t, v, strict=True)
    }
    assert all(stored[s] == val for s, val in zip(stamps, equity["values"], strict=True))  # only stored points
    assert body["trades_total"] == 30 and [x["pnl"] for x in body["trades"]] == [0.0, 1.0, 2.0]
    assert [(c["index"], c["status"], c["error"]) for c in body["chunks"]] == [
        (0, "done", ""),
        (1, "failed", "ValueError: boom"),
    ]
    assert body["error"] == "chunk 1 failed: boom" and body["chunks_done"] == 1
    assert client_for(trader).get("/api/v1/backtests/999999/").json()["error"]["code"] == "unknown_run"


def test_the_schema_documents_the_strategies_api(admin_client: Any) -> None:
    schema = admin_client.get("/api/schema/").content.decode()
    for path in ("/api/v1/strategies/", "/api/v1/strategies/{config_id}/enable/", "/api/v1/strategies/library/",
                 "/api/v1/signals/", "/api/v1/backtests/", "/api/v1/backtests/{run_id}/"):  # fmt: skip
        assert path in schema, path
