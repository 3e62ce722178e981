"""Admin pages of risk: a snapshot with its SVG histogram and component VaR, operators' stress scenarios validated
by the engine's rules and run on the current book, breaches acknowledged."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.brokers.models import BrokerAccount
from apps.risk import snapshots
from apps.risk.models import RiskBreach, StressScenario

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("risk-admin", "risk@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_the_snapshot_page_draws_the_distribution_with_var_and_es(admin_client: Client, account: BrokerAccount) -> None:
    snapshot = snapshots.var_compute(account_id=account.pk, method="historical", trigger="api")
    page = admin_client.get(f"/admin/risk/risksnapshot/{snapshot.pk}/change/").content.decode()
    svg = re.search(r'<svg xmlns="http://www.w3.org/2000/svg" [^>]*role="img".*?</svg>', page, re.S)
    assert svg, page[:2000]
    bars = re.findall(r"<rect [^>]*>", svg.group(0))
    assert len(bars) == len(snapshot.histogram["counts"]) == 50
    assert f"VaR {float(snapshot.var):,.0f}" in svg.group(0) and f"ES {float(snapshot.es):,.0f}" in svg.group(0)
    assert svg.group(0).count("<line ") == 3  # the axis, the VaR line, the ES line
    for position in snapshot.positions:
        assert position["symbol"] in page and position["component_var"] in page
    listing = admin_client.get("/admin/risk/risksnapshot/").content.decode()
    assert str(snapshot.var) in listing or f"{snapshot.var:,}" in listing


def test_an_empty_book_snapshot_page_says_so(admin_client: Client) -> None:
    snapshot = snapshots.var_compute(method="parametric", trigger="api")
    assert snapshot.var == 0 and "the book is empty" in snapshot.warnings[0]
    page = admin_client.get(f"/admin/risk/risksnapshot/{snapshot.pk}/change/").content.decode()
    assert "No P&amp;L distribution stored" in page and 'role="img"' not in page


def test_a_scenario_with_bad_params_is_refused_on_the_params_field(admin_client: Client) -> None:
    url = "/admin/risk/stressscenario/add/"
    bad = {"name": "deep-crash", "kind": "shock", "params": '{"shock": -3}', "description": "", "enabled": "on"}
    response = admin_client.post(url, bad)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "shock must be in [-1.0, 1.0]" in errors["params"][0] and not StressScenario.objects.exists()
    good = {**bad, "params": '{"shock": -0.3}'}
    assert admin_client.post(url, good).status_code == 302
    assert StressScenario.objects.get(name="deep-crash").created_by == "risk-admin"


def test_run_stress_tests_now_shows_every_scenario_on_the_book(admin_client: Client, account: BrokerAccount) -> None:
    StressScenario.objects.create(name="operator-crash", kind="shock", params={"shock": -0.3})
    StressScenario.objects.create(name="broken", kind="shock", params={"shock": "a lot"})  # saved around the form
    listing = admin_client.get("/admin/risk/stressscenario/").content.decode()
    assert 'href="/admin/risk/stressscenario/run/"' in listing
    page = admin_client.get("/admin/risk/stressscenario/run/", {"account": account.pk}).content.decode()
    for name in ("market_crash", "flash_crash", "vol_x3", "six_sigma", "2024-06-04", "operator-crash"):
        assert f">{name}</td>" in page, name
    assert "shock must be a finite number" in page  # the broken one is reported, the others still run


def test_breaches_are_acknowledged_once(admin_client: Client) -> None:
    breach = RiskBreach.objects.create(kind="var_limit", message="over", value=Decimal(2), limit=Decimal(1))
    admin_client.post(
        "/admin/risk/riskbreach/", {"action": "acknowledge", "_selected_action": [breach.pk]}, follow=True
    )
    breach.refresh_from_db()
    assert breach.acknowledged_by == "risk-admin" and breach.acknowledged_at is not None
    first = breach.acknowledged_at
    assert snapshots.breaches_acknowledge(breach_ids=[breach.pk], by="someone-else") == 0
    breach.refresh_from_db()
    assert (breach.acknowledged_by, breach.acknowledged_at) == ("risk-admin", first)
    assert "risk-admin" in admin_client.get("/admin/risk/riskbreach/?kind__exact=var_limit").content.decode()
