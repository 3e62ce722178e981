"""The two grace periods that decide when a stuck order is given up on are configuration, read at call time.

The chaos run shortens them (ORDERS_SUBMITTING_GRACE_SECONDS=8, ORDERS_UNKNOWN_GRACE_SECONDS=4) so it settles
within a minute; these tests pin that the values are validated like every other variable and that the sweep
and reconciliation use the value in force when they run, not one frozen at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.brokers.models import BrokerAccount
from apps.brokers.paper_glue import paper_broker_for
from apps.marketdata.models import Instrument
from apps.orders.models import Order
from apps.orders.placement import OrderInput, order_place, orders_due_for_sweep
from apps.orders.reconciliation import reconcile_account
from tradingsite.config import ConfigError, load_config

BASE_ENV = {"SECRET_KEY": "k"}


def test_the_graces_default_to_three_and_two_minutes() -> None:
    config = load_config(BASE_ENV)
    assert (config.orders_submitting_grace_seconds, config.orders_unknown_grace_seconds) == (180, 120)
    short = load_config({**BASE_ENV, "ORDERS_SUBMITTING_GRACE_SECONDS": "8", "ORDERS_UNKNOWN_GRACE_SECONDS": "4"})
    assert (short.orders_submitting_grace_seconds, short.orders_unknown_grace_seconds) == (8, 4)


@pytest.mark.parametrize("variable", ["ORDERS_SUBMITTING_GRACE_SECONDS", "ORDERS_UNKNOWN_GRACE_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-5", "2.5", "soon"])
def test_a_bad_grace_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE_ENV, variable: value})
    assert info.value.variable == variable and str(info.value).startswith(variable)


@pytest.fixture
def paper(settings) -> Iterator[tuple[BrokerAccount, Instrument]]:
    settings.PAPER_MARKET_HOURS = False
    account = BrokerAccount.objects.create(name="grace desk", kind="paper")
    infy = Instrument.objects.create(tradingsymbol="INFY", instrument_token=408065, lot_size=1)
    paper_broker_for(account).reset()
    yield account, infy
    paper_broker_for(account).reset()


def _aged(account: BrokerAccount, infy: Instrument, cid: str, status: str, seconds: int) -> Order:
    order = order_place(
        order=OrderInput(
            account=account,
            instrument=infy,
            client_order_id=cid,
            side="BUY",
            quantity=1,
            product="CNC",
            order_type="LIMIT",
            price=Decimal("1500"),
        )
    )
    Order.objects.filter(pk=order.pk).update(status=status, updated_at=timezone.now() - timedelta(seconds=seconds))
    return order


@pytest.mark.django_db
def test_the_sweep_reads_the_submitting_grace_when_it_runs(paper, settings, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        stuck = _aged(paper[0], paper[1], "grace-s", "SUBMITTING", seconds=10)
    settings.ORDERS_SUBMITTING_GRACE_SECONDS = 180
    assert orders_due_for_sweep() == ([], [])
    settings.ORDERS_SUBMITTING_GRACE_SECONDS = 8
    assert orders_due_for_sweep() == ([], [stuck.pk])


@pytest.mark.django_db
def test_reconciliation_reads_the_unknown_grace_when_it_runs(
    paper, settings, django_capture_on_commit_callbacks
) -> None:
    account, infy = paper
    with django_capture_on_commit_callbacks(execute=False):
        never = _aged(account, infy, "grace-u", "UNKNOWN", seconds=10)
    settings.ORDERS_UNKNOWN_GRACE_SECONDS = 120
    assert reconcile_account(account_id=account.pk).not_found == 0
    assert Order.objects.get(pk=never.pk).status == "UNKNOWN"
    settings.ORDERS_UNKNOWN_GRACE_SECONDS = 4
    assert reconcile_account(account_id=account.pk).not_found == 1
    assert Order.objects.get(pk=never.pk).status == "REJECTED"
