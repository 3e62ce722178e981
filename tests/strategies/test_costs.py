"""The backtester charges what the Orders service charges: every fill against `charges_for_order`, to the paisa."""

from __future__ import annotations

import json
import random
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from apps.orders.charges import DEFAULT_SCHEDULE_PATH, ChargeSchedule, charges_for_order, default_schedule
from apps.strategies.engine.backtest import BacktestResult, Settings, Trade, run_backtest
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.costs import CHARGE_NAMES, order_charges_paise, rate_table
from apps.strategies.engine.params import ParamSchema
from apps.strategies.engine.strategy import IndicatorCache, Strategy, get_strategy

D = Decimal


def _rupees(paise: int) -> Decimal:
    return D(paise) / 100


def _expected(
    product: str, side: str, quantity: int, price: float, day: date, *, schedule: ChargeSchedule | None = None
) -> Decimal:
    paise = round(price * 100)
    assert abs(price * 100 - paise) < 1e-6, f"fill price {price} is not whole paise"
    order = charges_for_order(product=product, side=side, fills=[(quantity, _rupees(paise))], trade_date=day,
                              schedule=schedule)  # fmt: skip
    return order.total


def _check_trade(trade: Trade, product: str, schedule: ChargeSchedule | None = None) -> None:
    q = abs(trade.quantity)
    buy, sell = ("BUY", "SELL") if trade.quantity > 0 else ("SELL", "BUY")
    entry = _expected(product, buy, q, trade.entry_price, trade.entry_time.date(), schedule=schedule)
    assert D(str(trade.entry_charges)) == entry, f"{trade}: entry charges {trade.entry_charges} != {entry}"
    if trade.exit_reason == "open":
        assert trade.exit_charges == 0
        return
    exit_ = _expected(product, sell, q, trade.exit_price, trade.exit_time.date(), schedule=schedule)
    assert D(str(trade.exit_charges)) == exit_, f"{trade}: exit charges {trade.exit_charges} != {exit_}"
    assert D(str(trade.charges)) == entry + exit_
    pnl = trade.quantity * (_rupees(round(trade.exit_price * 100)) - _rupees(round(trade.entry_price * 100)))
    assert abs(D(str(trade.pnl)) - (pnl - entry - exit_)) < D("0.000001")


@pytest.fixture(scope="module")
def costly(daily_bars: Bars) -> BacktestResult:
    strategy = get_strategy("sma_crossover", {"fast": 10, "slow": 30, "long_short": True})
    return run_backtest(strategy, daily_bars, Settings(cash=1_000_000, costs=True, slippage_ticks=1))


def test_every_fill_of_a_real_run_is_charged_like_the_orders_service(costly: BacktestResult) -> None:
    trades = costly.trades
    assert len(trades) > 1000 and any(t.quantity < 0 for t in trades) and any(t.quantity > 0 for t in trades)
    years = {t.entry_time.year for t in trades}
    assert {2020, 2021, 2022, 2023, 2024} <= years  # fills under four schedule versions
    for trade in trades:
        _check_trade(trade, "CNC")
    assert costly.metrics["charges"] == pytest.approx(sum(t.charges for t in trades), abs=1e-6)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_mis_and_shared_capital_fills_too(daily_bars: Bars, fill: str) -> None:
    bars = daily_bars.select(daily_bars.symbols[:10])
    settings = Settings(cash=500_000, capital="shared", product="MIS", fill=fill, stop_loss=0.04)
    result = run_backtest(get_strategy("sma_crossover", {"fast": 5, "slow": 20}), bars, settings)
    assert any(t.exit_reason == "stop_loss" for t in result.trades)
    assert any(t.entry_charges > 0 and t.quantity * t.entry_price * 0.0003 > 20 for t in result.trades)  # capped
    for trade in result.trades:
        _check_trade(trade, "MIS")


def test_cash_never_goes_negative_with_shared_capital_and_costs(daily_bars: Bars) -> None:
    result = run_backtest(get_strategy("sma_crossover", {"fast": 5, "slow": 20}), daily_bars,
                          Settings(cash=1_000_000, capital="shared", costs=True))  # fmt: skip
    events: list[tuple[object, int, float]] = []
    for t in result.trades:
        events.append((t.entry_time, 1, -(t.quantity * t.entry_price + t.entry_charges)))
        if t.exit_reason != "open":
            events.append((t.exit_time, 0, t.quantity * t.exit_price - t.exit_charges))
    cash = 1_000_000.0
    for _, _, amount in sorted(events, key=lambda e: (e[0], e[1])):  # exits (0) before entries (1) in a bar
        cash += amount
        assert cash >= -1e-6
    assert len(events) > 500


def test_component_by_component_on_awkward_values() -> None:
    """Half-paisa boundaries, the MIS brokerage cap, every version and side, against Decimal."""
    rng = random.Random(6)
    days = [v.effective_from for v in default_schedule().versions]
    values = [1, 5, 50, 500, 12_345_00, 12_345_50, 66_666_67, 6_666_667, 123_456_789, 10**11 + 1]
    values += [rng.randrange(1, 10**10) for _ in range(400)]
    for value in values:
        for product in ("CNC", "MIS"):
            for side in ("BUY", "SELL"):
                day = rng.choice(days)
                ours = order_charges_paise(value, trade_date=day, product=product, side=side)
                ref = charges_for_order(product=product, side=side, fills=[(1, _rupees(value))], trade_date=day)
                for name in CHARGE_NAMES:
                    assert _rupees(ours[name]) == getattr(ref, name), (value, product, side, day, name)
                assert _rupees(ours["total"]) == ref.total


def test_a_schedule_passed_in_is_the_one_used(tmp_path: Path, daily_bars: Bars) -> None:
    data = json.loads(DEFAULT_SCHEDULE_PATH.read_text(encoding="utf-8"))
    data["versions"] = [data["versions"][0] | {"effective_from": "2020-01-01", "gst_percent": "28"}]
    (tmp_path / "c.json").write_text(json.dumps(data))
    custom = ChargeSchedule.load(tmp_path / "c.json")
    assert rate_table(custom) is rate_table(custom) and rate_table(custom) is not rate_table()
    bars = daily_bars.select(["INFY"])
    strategy = get_strategy("sma_crossover")
    shipped = run_backtest(strategy, bars, Settings())
    mine = run_backtest(strategy, bars, Settings(), schedule=custom)
    assert mine.metrics["charges"] != shipped.metrics["charges"]
    for trade in mine.trades:
        _check_trade(trade, "CNC", custom)


class _Intraday(Strategy):
    name = "intraday_given"
    title = "intraday, given targets"
    schema = ParamSchema()
    intraday = True

    def __init__(self, targets: np.ndarray) -> None:
        super().__init__({})
        self._targets = targets

    def warmup(self) -> int:
        return 0

    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> np.ndarray:
        return self._targets


def test_an_intraday_strategy_is_charged_as_mis() -> None:
    """It squares off every session: Zerodha charges its round trips as intraday, whatever `product` says."""
    start = np.datetime64("2024-06-10T03:45", "us")  # 09:15 IST
    times = start + np.arange(6) * np.timedelta64(1, "m")
    prices = np.array([[1500.0], [1501.0], [1502.5], [1503.0], [1499.0], [1498.0]])
    bars = Bars("minute", times, ("INFY",), prices, prices, prices, prices, prices)
    targets = np.array([[0.0], [1.0], [1.0], [0.0], [0.0], [0.0]])
    result = run_backtest(_Intraday(targets), bars, Settings(cash=100_000, product="CNC"))
    (trade,) = result.trades
    assert result.settings.product == "MIS" and trade.exit_time.date() == trade.entry_time.date()
    _check_trade(trade, "MIS")
    cnc = _expected("CNC", "BUY", trade.quantity, trade.entry_price, trade.entry_time.date())
    assert D(str(trade.entry_charges)) != cnc
