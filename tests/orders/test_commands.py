"""manage.py kill_switch, reconcile_orders and broker_account: what they print and what they refuse."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.brokers.models import BrokerAccount
from apps.orders.models import KillSwitch, Order, Position
from apps.orders.placement import OrderInput, order_execute, order_place
from tests.orders.desk import Desk, make_desk

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk(settings) -> Iterator[Desk]:
    settings.PAPER_MARKET_HOURS = False
    desk = make_desk()
    yield desk
    desk.reset()


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _queued(desk: Desk, cid: str, price: str = "1500.05") -> Order:
    return order_place(
        order=OrderInput(
            account=desk.account,
            instrument=desk.infy,
            client_order_id=cid,
            side="BUY",
            quantity=2,
            product="MIS",
            order_type="LIMIT",
            price=Decimal(price),
        )
    )


def test_kill_switch_on_for_an_account_prints_what_it_did(desk) -> None:
    order = _queued(desk, "k-1")
    Position.objects.create(account=desk.account, instrument=desk.infy, product="MIS", net_quantity=5)
    out = _run("kill_switch", "on", "--account", "paper-desk", "--reason", "drill", "--square-off")
    assert f"kill switch account:{desk.account.pk}: ON" in out
    assert f"cancelled 1 order(s): {order.pk}" in out
    [square_off] = Order.objects.filter(client_order_id__startswith="sqoff-")
    assert f"square-off: 1 order(s): {square_off.pk}" in out
    row = KillSwitch.objects.get(scope=f"account:{desk.account.pk}")
    assert row.active and row.reason == "drill" and row.changed_by.startswith("manage.py")
    assert "(was already ON)" in _run("kill_switch", "on", "--account", "paper-desk")
    assert f"account:{desk.account.pk}: off" in _run("kill_switch", "off", "--account", "paper-desk")


def test_kill_switch_global_and_bad_input(desk) -> None:
    assert "kill switch global: ON" in _run("kill_switch", "on")
    with pytest.raises(CommandError, match="no broker account named 'nope'"):
        _run("kill_switch", "on", "--account", "nope")
    with pytest.raises(CommandError, match="--square-off only goes with 'on'"):
        _run("kill_switch", "off", "--square-off")
    with pytest.raises(CommandError, match="invalid choice"):
        _run("kill_switch", "maybe")


def test_reconcile_orders_prints_each_enabled_account(desk) -> None:
    order = order_execute(order_id=_queued(desk, "r-1").pk)  # fills at once on the paper book
    assert order.status == "OPEN"
    BrokerAccount.objects.create(name="paper-off", kind="paper", enabled=False)
    out = _run("reconcile_orders")
    lines = out.splitlines()
    assert any(line.startswith("paper-desk: broker orders 1") for line in lines), out
    assert any(line.startswith("paper-other: broker orders 0") for line in lines)
    assert "paper-off" not in out
    assert Order.objects.get(pk=order.pk).status == "COMPLETE"  # reconciliation applied the book
    assert _run("reconcile_orders", "--account", "paper-other").startswith("paper-other:")
    with pytest.raises(CommandError, match="no broker account named"):
        _run("reconcile_orders", "--account", "nope")


def test_broker_account_add_and_list_never_print_secrets(desk) -> None:
    out = _run(
        "broker_account",
        "add",
        "--name",
        "zerodha-1",
        "--kind",
        "kite",
        "--api-key",
        "kitekey123",
        "--api-secret",
        "s3cr3t-value",
        "--access-token",
        "t0ken-value",
        "--algo-id",
        "ALGO9",
        "--user",
        "trader",
        "--user",
        "other",
    )
    assert "'zerodha-1' (kite) created" in out
    listing = _run("broker_account", "list")
    for text in (out, listing):
        assert "s3cr3t-value" not in text and "t0ken-value" not in text and "kitekey123" not in text
    line = next(line for line in listing.splitlines() if "zerodha-1" in line)
    assert "api_secret set" in line and "access_token set" in line and "users other, trader" in line
    assert "api_secret not set" in next(line for line in listing.splitlines() if "paper-desk" in line)
    account = BrokerAccount.objects.get(name="zerodha-1")
    assert account.api_secret == "s3cr3t-value" and account.algo_id == "ALGO9"
    assert set(account.users.values_list("username", flat=True)) == {"trader", "other"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--name", "paper-desk", "--kind", "paper"), "exists already"),
        (("--name", "k2", "--kind", "kite"), "needs --api-key"),
        (("--name", "p2", "--kind", "paper", "--user", "ghost"), "no such user: ghost"),
        (("--name", "p3", "--kind", "fix"), "invalid choice"),
    ],
)
def test_broker_account_add_refuses_bad_input(desk, args, message) -> None:
    before = BrokerAccount.objects.count()
    with pytest.raises(CommandError, match=message):
        _run("broker_account", "add", *args)
    assert BrokerAccount.objects.count() == before
