"""Fixtures the VaR service, command, API and admin tests share: real NIFTY candles and a paper book."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.brokers.models import BrokerAccount
from tests.risk.test_var_service import daily_book_data, paper_account_with_book


@pytest.fixture
def daily(shared_data: Path) -> Iterator[Path]:
    yield from daily_book_data(shared_data)


@pytest.fixture
def account(daily: Path) -> BrokerAccount:
    return paper_account_with_book()
