"""Fixtures the strategy tests share: the shared NIFTY 50 daily candles as engine Bars."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.strategies.engine.bars import Bars, read_csv_dir


@pytest.fixture(scope="session")
def daily_dir(shared_data: Path) -> Path:
    return shared_data / "nifty50-daily"


@pytest.fixture(scope="session")
def daily_bars(daily_dir: Path) -> Bars:
    """All 50 symbols aligned on the union of their dates (JIOFIN and ETERNAL start later: NaN before)."""
    return read_csv_dir(daily_dir)
