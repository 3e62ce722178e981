"""The API root, schema and admin pages answer; the API requires authentication."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


def test_api_root_requires_authentication(client) -> None:
    response = client.get("/api/v1/")
    assert response.status_code in {401, 403}
    assert response.json()["error"]["code"] == "not_authenticated"


def test_api_root_lists_queues_and_links_for_an_operator(client) -> None:
    user = get_user_model().objects.create_user("op", password="pw-12345-long")
    client.force_login(user)
    body = client.get("/api/v1/").json()
    assert body["trading_mode"] == "paper"
    assert body["queues"] == ["signals", "orders", "risk", "backtests", "default"]
    assert body["links"]["readyz"].endswith("/readyz")


def test_openapi_schema_is_served(admin_client) -> None:
    response = admin_client.get("/api/schema/")
    assert response.status_code == 200 and b"openapi" in response.content


def test_admin_login_page_loads(client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200 and b"Trading platform operations" in response.content
