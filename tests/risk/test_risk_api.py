"""The risk REST API: the latest snapshot, a computation in the background followed by its task id, stress tests,
the VaR backtest and portfolio metrics; scoped to the accounts a user is granted (the desk's book: staff)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from apps.brokers.models import BrokerAccount
from apps.risk import snapshots
from apps.risk.models import RiskSnapshot
from apps.risk.tasks import compute_var
from tests.risk.test_var_service import (
    BOOK,
    hand_window,
)
from tests.support.stack import start_workers
from tradingsite.celery import app as celery_app
from workers.queues import Queue
from workers.supervision import stop_all, wait_until

VAR_URL = "/api/v1/risk/var/"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def trader(account: BrokerAccount) -> Any:
    user = get_user_model().objects.create_user("risk-trader")
    account.users.add(user)
    return user


@pytest.fixture
def staff() -> Any:
    return get_user_model().objects.create_user("risk-officer", is_staff=True)


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Celery eager, with results stored (the status endpoint reads failures from the backend), in this scope only.

    The task reads store_eager_result from the configuration once, when first bound: set it on the task too.
    """
    conf = celery_app.conf
    monkeypatch.setattr(compute_var, "store_eager_result", True)
    conf.task_always_eager, conf.task_store_eager_result = True, True
    try:
        yield
    finally:
        conf.task_always_eager, conf.task_store_eager_result = False, False


@pytest.mark.django_db
def test_latest_snapshot_is_scoped_to_granted_accounts(account: BrokerAccount, trader: Any, staff: Any) -> None:
    client = client_for(trader)
    missing = client.get(VAR_URL, {"account": account.pk})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_snapshot"
    historical = snapshots.var_compute(account_id=account.pk, method="historical", trigger="api")
    parametric = snapshots.var_compute(account_id=account.pk, method="parametric", trigger="api")
    body: dict[str, Any] = client.get(VAR_URL, {"account": account.pk}).json()
    assert body["id"] == parametric.pk and body["var"] == str(parametric.var)
    assert client.get(VAR_URL, {"account": str(account.pk), "method": "historical"}).json()["id"] == historical.pk
    assert len(body["histogram"]["counts"]) == 50 and body["positions"][0]["symbol"] == "NSE:HDFCBANK"
    other = BrokerAccount.objects.create(name="not-granted", kind="paper")
    assert client.get(VAR_URL, {"account": other.pk}).status_code == 404
    assert client.get(VAR_URL).status_code == 403  # the desk's book is for staff
    assert client_for(staff).get(VAR_URL).json()["error"]["code"] == "no_snapshot"


@pytest.mark.django_db
def test_post_returns_a_task_id_whose_status_shows_the_snapshot(
    account: BrokerAccount, trader: Any, eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(trader)
    body = {"account": account.pk, "method": "montecarlo", "paths": 20_000, "confidence": "0.975"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(VAR_URL, body, format="json")
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status_url"].endswith(f"/api/v1/risk/var/tasks/{accepted['task_id']}/")
    status = client.get(accepted["status_url"]).json()
    snapshot = RiskSnapshot.objects.get(task_id=accepted["task_id"])
    assert status["status"] == "done" and status["snapshot"]["id"] == snapshot.pk
    assert (snapshot.method, snapshot.paths, str(snapshot.confidence), snapshot.trigger) == (
        "montecarlo",
        20_000,
        "0.9750",
        "api",
    )
    assert snapshot.var_se is not None and snapshot.var_se > 0


@pytest.mark.django_db
def test_a_failed_computation_shows_its_error(
    account: BrokerAccount, trader: Any, eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(trader)
    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.post(VAR_URL, {"account": account.pk, "window_days": 4000}, format="json").json()
    status = client.get(accepted["status_url"]).json()
    assert status["status"] == "failed" and status["state"] == "FAILURE"
    assert "too little history" in status["error"] and status["snapshot"] is None
    unknown = client.get("/api/v1/risk/var/tasks/no-such-task/").json()
    assert unknown["status"] == "pending"


@pytest.mark.django_db
def test_bad_input_is_refused_by_name(account: BrokerAccount, trader: Any) -> None:
    client = client_for(trader)
    response = client.post(VAR_URL, {"account": account.pk, "confidance": "0.99"}, format="json")
    assert response.status_code == 400 and "confidance" in response.json()["error"]["details"]
    response = client.post(VAR_URL, {"account": account.pk, "method": "guess"}, format="json")
    assert response.status_code == 400 and "method" in response.json()["error"]["details"]
    assert client.post(VAR_URL, {"method": "historical"}, format="json").status_code == 403


@pytest.mark.django_db
def test_stress_backtest_and_metrics_of_the_current_book(daily: Path, account: BrokerAccount, trader: Any) -> None:
    client = client_for(trader)
    order = ["HDFCBANK", "INFY", "RELIANCE"]
    _, exposures, _ = hand_window(daily, {s: BOOK[s] for s in order}, 250)
    stress = client.get("/api/v1/risk/stress/", {"account": account.pk}).json()["results"]
    crash = next(r for r in stress if r["name"] == "market_crash")
    assert float(crash["pnl"]) == pytest.approx(-0.20 * exposures.sum(), abs=0.01)
    assert any(r["name"] == "2024-06-04" and r["source"] == "historical" for r in stress)
    backtest = client.get("/api/v1/risk/backtest/", {"account": account.pk, "window_days": 250}).json()
    assert backtest["observations"] > 500 and 0 <= backtest["kupiec"]["p_value"] <= 1
    assert backtest["kupiec"]["exceptions"] == len(backtest["exceptions"])
    metrics = client.get("/api/v1/risk/metrics/", {"account": account.pk}).json()
    assert metrics["observations"] == 250 and metrics["beta"] is not None and metrics["volatility"] > 0


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_real_risk_worker_computes_the_snapshot(account: BrokerAccount, trader: Any, tmp_path: Path) -> None:
    workers = start_workers([Queue.RISK], tmp_path)
    try:
        accepted = client_for(trader).post(VAR_URL, {"account": account.pk}, format="json").json()

        def done() -> bool:
            return client_for(trader).get(accepted["status_url"]).json()["status"] != "pending"

        wait_until(done, timeout=120, what="the risk worker's snapshot", interval=0.5)
        status = client_for(trader).get(accepted["status_url"]).json()
        assert status["status"] == "done", workers[Queue.RISK].log_tail()
        assert status["snapshot"]["account"] == account.pk and status["snapshot"]["trigger"] == "api"
    finally:
        stop_all(workers.values())
