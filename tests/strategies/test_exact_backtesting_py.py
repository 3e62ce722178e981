"""The engine against backtesting.py, trade for trade, on every symbol of the shared NIFTY 50 daily candles.

backtesting.py runs SMA(10) vs SMA(30) of the close (pandas rolling means), long only: buy() all in on
crossover(fast, slow), position.close() on crossover(slow, fast), cash 1,000,000, no commission, market
orders filled at the next open. Ours runs `sma_crossover` 10/30 with Settings(cash=1_000_000, costs=False).
Both must give the same trades (entry and exit time, size, entry and exit price) and the same final equity
to the paisa: a position still open at the end is backtesting.py's open trade (its default
finalize_trades=False), marked at the last close in both.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from apps.strategies.engine.backtest import BacktestResult, Settings, Trade, run_backtest
from apps.strategies.engine.bars import Bars, read_csv_dir
from apps.strategies.engine.strategy import get_strategy
from tests.conftest import SHARED_DATA

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest  # type: ignore[import-untyped]  # noqa: E402
from backtesting import Strategy as BtStrategy  # noqa: E402
from backtesting.lib import crossover  # type: ignore[import-untyped]  # noqa: E402

CASH = 1_000_000
FAST, SLOW = 10, 30
DAILY = SHARED_DATA / "nifty50-daily"
SYMBOLS = sorted(p.stem for p in DAILY.glob("*.csv") if not p.stem.endswith("_INDEX")) if DAILY.is_dir() else []


def _sma(values: Any, n: int) -> pd.Series:
    return pd.Series(values).rolling(n).mean()


class SmaCross(BtStrategy):
    def init(self) -> None:
        self.fast = self.I(_sma, self.data.Close, FAST)
        self.slow = self.I(_sma, self.data.Close, SLOW)

    def next(self) -> None:
        if crossover(self.fast, self.slow):
            self.buy()
        elif crossover(self.slow, self.fast):
            self.position.close()


@dataclass(frozen=True)
class Reference:
    closed: list[tuple[datetime, datetime, int, float, float]]
    open: list[tuple[datetime, int, float]]
    final_equity: float
    last_close: float


def _reference(path: Path) -> Reference:
    frame = pd.read_csv(path)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]))
    frame = frame.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": on purpose (see the module docstring)
        stats = Backtest(frame, SmaCross, cash=CASH, commission=0.0, trade_on_close=False).run()
    trades = stats["_trades"]
    closed = [
        (row.EntryTime.to_pydatetime(), row.ExitTime.to_pydatetime(), int(row.Size), float(row.EntryPrice),
         float(row.ExitPrice))
        for row in trades.itertuples()
    ]  # fmt: skip
    still_open = [
        (frame.index[t.entry_bar].to_pydatetime(), int(t.size), float(t.entry_price)) for t in stats["_strategy"].trades
    ]
    return Reference(closed, still_open, float(stats["Equity Final [$]"]), float(frame["Close"].iloc[-1]))


def _ours(trades: list[Trade]) -> tuple[list[tuple[datetime, datetime, int, float, float]], list[tuple[Any, ...]]]:
    closed = [
        (t.entry_time, t.exit_time, t.quantity, t.entry_price, t.exit_price) for t in trades if t.exit_reason != "open"
    ]
    still_open = [(t.entry_time, t.quantity, t.entry_price, t.exit_price) for t in trades if t.exit_reason == "open"]
    return closed, still_open


def _assert_same(symbol: str, ref: Reference, trades: list[Trade], final_equity: float) -> None:
    closed, still_open = _ours(trades)
    assert all(t.exit_reason == "signal" for t in trades if t.exit_reason != "open"), symbol
    assert closed == ref.closed, f"{symbol}: closed trades differ"
    assert still_open == [(*o, ref.last_close) for o in ref.open], f"{symbol}: open trades differ"
    assert abs(final_equity - ref.final_equity) < 0.005, f"{symbol}: final equity {final_equity} != {ref.final_equity}"


@pytest.fixture(scope="module")
def references(daily_dir: Path) -> dict[str, Reference]:
    return {symbol: _reference(daily_dir / f"{symbol}.csv") for symbol in SYMBOLS}


@pytest.fixture(scope="module")
def aligned(daily_bars: Bars) -> BacktestResult:
    strategy = get_strategy("sma_crossover", {"fast": FAST, "slow": SLOW})
    return run_backtest(strategy, daily_bars, Settings(cash=CASH, costs=False))


def test_all_fifty_symbols_are_here() -> None:
    if not SYMBOLS:
        pytest.skip(f"{DAILY} is absent")
    assert len(SYMBOLS) == 50


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_same_trades_and_equity_as_backtesting_py(
    symbol: str, daily_dir: Path, references: dict[str, Reference]
) -> None:
    bars = read_csv_dir(daily_dir, [symbol])
    strategy = get_strategy("sma_crossover", {"fast": FAST, "slow": SLOW})
    result = run_backtest(strategy, bars, Settings(cash=CASH, costs=False))
    ref = references[symbol]
    assert ref.closed, f"{symbol}: backtesting.py made no trade; the comparison would prove nothing"
    _assert_same(symbol, ref, result.trades, float(result.equity[-1]))
    assert result.metrics["trades"] == len(ref.closed) + len(ref.open)


def test_fifty_aligned_per_symbol_equal_fifty_single_runs(
    aligned: BacktestResult, references: dict[str, Reference]
) -> None:
    """All 50 in one run (capital per symbol): each symbol's trades and final equity are its own run's."""
    assert aligned.equity_by_symbol is not None
    assert set(aligned.symbols) == set(references)
    for j, symbol in enumerate(aligned.symbols):
        mine = [t for t in aligned.trades if t.symbol == symbol]
        _assert_same(symbol, references[symbol], mine, float(aligned.equity_by_symbol[-1, j]))
    total = sum(ref.final_equity for ref in references.values())
    assert abs(float(aligned.equity[-1]) - total) < 0.005 * len(references)
    assert np.allclose(aligned.equity, aligned.equity_by_symbol.sum(axis=1), rtol=0, atol=1e-6)
    exits = [t.exit_time for t in aligned.trades if t.exit_reason != "open"]
    assert exits == sorted(exits), "closed trades come in exit order"
