"""Limits: scopes resolve most specific first; every change is kept with who and when; compare-and-set on version;
the REST API (risk officers only) and the admin go through the same service."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from apps.brokers.models import BrokerAccount
from apps.risk.limits import LimitInvalid, limit_create, limit_update, limits_effective
from apps.risk.models import RiskLimit, RiskLimitChange
from apps.risk.pretrade import DEFAULT_LIMITS
from tradingsite.exceptions import Conflict

pytestmark = pytest.mark.django_db
URL = "/api/v1/risk/limits/"


@pytest.fixture
def account() -> BrokerAccount:
    return BrokerAccount.objects.create(name="paper-r", kind="paper")


def _global() -> RiskLimit:
    return RiskLimit.objects.get(scope="global")


def test_the_migration_seeds_global_defaults_with_their_history() -> None:
    row = _global()
    assert row.orders_per_second == 10 and row.max_concentration_pct == Decimal("40")
    assert RiskLimitChange.objects.filter(limit=row, changed_by="migration").count() == 12
    assert limits_effective(account_id=999) == DEFAULT_LIMITS  # the code's fallback equals the seeded row


def test_most_specific_set_value_wins(account) -> None:
    limit_create(scope="account", account_id=account.pk, values={"max_quantity": 500, "max_open_orders": 7},
                 changed_by="r", source="test")  # fmt: skip
    limit_create(scope="strategy", strategy="alpha", values={"max_quantity": 50}, changed_by="r", source="test")
    limit_create(scope="strategy", strategy="alpha", account_id=account.pk, values={"max_quantity": 5},
                 changed_by="r", source="test")  # fmt: skip
    other = BrokerAccount.objects.create(name="paper-s", kind="paper")
    assert limits_effective(account_id=account.pk).max_quantity == 500
    assert limits_effective(account_id=account.pk, strategy="alpha").max_quantity == 5
    assert limits_effective(account_id=other.pk, strategy="alpha").max_quantity == 50
    assert limits_effective(account_id=other.pk).max_quantity == DEFAULT_LIMITS.max_quantity
    inherited = limits_effective(account_id=account.pk, strategy="alpha")
    assert inherited.max_open_orders == 7 and inherited.orders_per_second == 10  # blanks inherit


def test_a_change_is_recorded_field_by_field_and_the_version_moves() -> None:
    row = _global()
    updated = limit_update(limit_id=row.pk, changes={"max_order_value": "100000", "max_quantity": 10},
                           changed_by="riskofficer", source="test")  # fmt: skip
    assert updated.version == row.version + 1 and updated.max_order_value == Decimal("100000")
    changes = {c.field: c for c in RiskLimitChange.objects.filter(limit=row, version=updated.version)}
    assert set(changes) == {"max_order_value", "max_quantity"}
    assert changes["max_order_value"].old_value == "5000000.00" and changes["max_order_value"].new_value == "100000"
    assert changes["max_quantity"].changed_by == "riskofficer"
    unchanged = limit_update(limit_id=row.pk, changes={"max_quantity": "10"}, changed_by="x", source="test")
    assert unchanged.version == updated.version  # no change, no history row, no new version


def test_a_stale_version_is_refused_and_nothing_changes() -> None:
    row = _global()
    limit_update(limit_id=row.pk, changes={"max_quantity": 10}, changed_by="a", source="test")
    with pytest.raises(Conflict, match="changed meanwhile"):
        limit_update(limit_id=row.pk, changes={"max_quantity": 99}, changed_by="b", source="test",
                     expected_version=row.version)  # fmt: skip
    assert _global().max_quantity == 10


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_quantity", "ten", "is not a number"),
        ("orders_per_second", "0", "must be positive"),
        ("max_concentration_pct", "140", "cannot exceed 100"),
        ("colour", "red", "unknown limit field"),
        ("max_quantity", None, "must set every limit"),
    ],
)
def test_bad_values_are_refused_naming_the_field(field, value, message) -> None:
    with pytest.raises(LimitInvalid, match=message):
        limit_update(limit_id=_global().pk, changes={field: value}, changed_by="a", source="test")
    assert RiskLimitChange.objects.exclude(changed_by="migration").count() == 0


def _client(*, officer: bool) -> APIClient:
    user = get_user_model().objects.create_user("officer" if officer else "trader")
    if officer:
        user.user_permissions.add(Permission.objects.get(codename="change_risklimit"))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_lists_rows_with_history_and_officers_change_them(account) -> None:
    trader = _client(officer=False)
    body = trader.get(URL).json()
    row = next(r for r in body["results"] if r["scope"] == "global")
    assert row["orders_per_second"] == 10 and len(row["history"]) == 12
    refused = trader.put(URL, {"scope": "global", "values": {"max_quantity": "1"}}, format="json")
    assert refused.status_code == 403 and _global().max_quantity == DEFAULT_LIMITS.max_quantity

    officer = _client(officer=True)
    ok = officer.put(URL, {"scope": "global", "version": row["version"], "values": {"max_quantity": "250"}},
                     format="json")  # fmt: skip
    assert ok.status_code == 200, ok.content
    assert ok.json()["max_quantity"] == 250 and ok.json()["history"][0]["changed_by"] == "officer"
    stale = officer.put(URL, {"scope": "global", "version": row["version"], "values": {"max_quantity": "9"}},
                        format="json")  # fmt: skip
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "limit_version_conflict"
    bad = officer.put(URL, {"scope": "global", "values": {"max_quantity": "lots"}}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "max_quantity"


def test_api_creates_an_account_row_the_officer_is_granted(account) -> None:
    officer = _client(officer=True)
    missing = officer.put(URL, {"scope": "account", "account": account.pk, "values": {"max_open_orders": "3"}},
                          format="json")  # fmt: skip
    assert missing.status_code == 404  # not granted to this officer
    account.users.add(get_user_model().objects.get(username="officer"))
    made = officer.put(URL, {"scope": "account", "account": account.pk, "values": {"max_open_orders": "3"}},
                       format="json")  # fmt: skip
    assert made.status_code == 200 and made.json()["account_name"] == "paper-r"
    assert officer.get(URL).json()["effective"][str(account.pk)]["max_open_orders"] == "3"


def test_admin_edit_keeps_history_and_refuses_a_stale_form(client) -> None:
    admin = get_user_model().objects.create_superuser("ops", password="pw")
    client.force_login(admin)
    row = _global()
    url = f"/admin/risk/risklimit/{row.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and b"History (who changed what, when)" in page.content
    form = {name: ("" if getattr(row, name) is None else str(getattr(row, name))) for name in _fields()}
    response = client.post(url, {**form, "max_open_orders": "42", "loaded_version": row.version,
                                 "_save": "Save", **_inline_management()})  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    assert _global().max_open_orders == 42
    change = RiskLimitChange.objects.get(limit=row, field="max_open_orders", source="admin")
    assert change.changed_by == "ops" and change.source == "admin" and change.new_value == "42"
    stale = client.post(url, {**form, "max_open_orders": "7", "loaded_version": row.version, "_save": "Save",
                              **_inline_management()}, follow=True)  # fmt: skip
    assert b"changed meanwhile" in stale.content and _global().max_open_orders == 42


def _fields() -> list[str]:
    from apps.risk.models import LIMIT_FIELDS

    return list(LIMIT_FIELDS)


def _inline_management() -> dict[str, str]:
    prefix = "changes"
    return {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000"}  # fmt: skip
