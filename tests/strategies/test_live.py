"""Live evaluation through the database: the live target at bar t is the backtest's, orders on changes only.

The shared daily candles of three symbols are imported with the project's importer; each bar is published
as the replay feed would (its close becomes the latest price) and then evaluated, as a `signals.evaluate`
task does. Orders stay QUEUED (no orders worker here): what is checked is what the strategy asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.brokers.models import BrokerAccount
from apps.marketdata import events
from apps.marketdata.importers import candles_import
from apps.marketdata.models import Instrument
from apps.orders.models import Order
from apps.risk.models import RiskLimit
from apps.strategies import dispatch, live
from apps.strategies.engine.bars import IST, read_csv_dir
from apps.strategies.engine.strategy import get_strategy
from apps.strategies.models import Signal, SignalAction, StrategyConfig
from tradingsite.redis_client import get_redis

pytestmark = pytest.mark.django_db
SYMBOLS = ["RELIANCE", "INFY", "TCS"]
CAPITAL = Decimal("1500000")


@pytest.fixture
def config(shared_data: Path, settings: Any) -> Iterator[StrategyConfig]:
    settings.PAPER_MARKET_HOURS = False
    settings.RISK_MARKET_HOURS = False
    for symbol in SYMBOLS:
        candles_import(path=shared_data / "nifty50-daily" / f"{symbol}.csv", interval="day")
    RiskLimit.objects.filter(scope="global").update(orders_per_second=10_000, orders_per_day=10**6)
    account = BrokerAccount.objects.create(name="paper-live", kind="paper")
    yield StrategyConfig.objects.create(
        name="sma-live",
        strategy="sma_crossover",
        parameters={"fast": 10, "slow": 30},
        symbols=SYMBOLS,
        interval="day",
        capital=CAPITAL,
        account=account,
        enabled=True,
    )
    get_redis().hdel(events.LATEST_PRICES, *(f"NSE:{s}" for s in SYMBOLS))  # later tests price these themselves


def dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def publish(bars: Any, row: int) -> datetime:
    """Publish row `row` of the CSV bars as bar-close events (the close becomes the latest price)."""
    at = bars.times_ist()[row]
    events.publish_bars(
        get_redis(),
        [
            events.BarEvent(
                exchange="NSE", symbol=s, interval="day", time=at,
                open=dec(bars.open[row, j]), high=dec(bars.high[row, j]),
                low=dec(bars.low[row, j]), close=dec(bars.close[row, j]),
                volume=int(bars.volume[row, j]), source="replay",
            )
            for j, s in enumerate(bars.symbols)
        ],
    )  # fmt: skip
    return at


def test_live_targets_equal_the_backtest_and_orders_follow_changes(config: StrategyConfig, shared_data: Path) -> None:
    bars = read_csv_dir(shared_data / "nifty50-daily", SYMBOLS)
    whole = get_strategy("sma_crossover", {"fast": 10, "slow": 30}).targets(bars)
    rows = range(bars.n_times - 150, bars.n_times)
    for row in rows:
        result = live.evaluate(config_id=config.pk, bar_time=publish(bars, row))
        assert result.status == "evaluated", result.reason
        assert result.compute_ms < 1000

    instruments = {i.pk: i.tradingsymbol for i in Instrument.objects.filter(tradingsymbol__in=SYMBOLS)}
    signals = list(Signal.objects.filter(config=config).order_by("bar_time"))
    assert len(signals) == 150 * len(SYMBOLS)
    changes = orders = 0
    held = dict.fromkeys(SYMBOLS, 0)
    for s in signals:
        symbol = instruments[s.instrument_id]
        j = SYMBOLS.index(symbol)
        row = int(np.searchsorted(bars.times.astype(np.int64), int(s.bar_time.timestamp() * 1_000_000)))
        assert s.target == whole[row, j], (symbol, s.bar_time)  # the parity, through the live path
        if whole[row - 1, j] == whole[row, j]:
            assert s.order_id is None and s.action in (SignalAction.NONE, SignalAction.FIRST)
            continue
        changes += 1
        if s.target == 0.0 and held[symbol] == 0:  # a cross down before the config ever bought
            assert s.order_id is None and s.action == SignalAction.NOTHING_TO_DO
            continue
        assert s.action == SignalAction.ORDERED, (s.bar_time, s.detail)
        order = s.order
        assert order is not None and order.strategy == "sma-live" and order.signal_id == s.pk
        orders += 1
        if s.target == 1.0:
            want = int((CAPITAL / len(SYMBOLS) / s.price).to_integral_value(rounding=ROUND_FLOOR))
            assert (order.side, order.quantity) == ("BUY", want)
            held[symbol] = want
        else:
            assert (order.side, order.quantity) == ("SELL", held[symbol])
            held[symbol] = 0
    assert changes >= 3 and orders >= 2
    assert Order.objects.filter(strategy="sma-live").count() == orders

    # The same bar again: nothing new stored, nothing placed.
    before = (Signal.objects.count(), Order.objects.count())
    again = live.evaluate(config_id=config.pk, bar_time=bars.times_ist()[rows[-1]])
    assert again.signals == 0 and again.orders == 0
    assert (Signal.objects.count(), Order.objects.count()) == before


def test_a_late_bar_is_stored_stale_and_places_nothing(config: StrategyConfig, shared_data: Path) -> None:
    bars = read_csv_dir(shared_data / "nifty50-daily", SYMBOLS)
    last = bars.n_times - 1
    live.evaluate(config_id=config.pk, bar_time=publish(bars, last))
    late = live.evaluate(config_id=config.pk, bar_time=bars.times_ist()[last - 5])
    assert late.signals == len(SYMBOLS) and late.orders == 0
    stale = Signal.objects.filter(config=config, bar_time=bars.times_ist()[last - 5])
    assert {s.action for s in stale} == {SignalAction.STALE}


def test_disabled_or_bad_configs_are_skipped(config: StrategyConfig, shared_data: Path) -> None:
    bars = read_csv_dir(shared_data / "nifty50-daily", SYMBOLS)
    at = bars.times_ist()[-1]
    StrategyConfig.objects.filter(pk=config.pk).update(enabled=False)
    assert live.evaluate(config_id=config.pk, bar_time=at).reason == "config disabled"
    StrategyConfig.objects.filter(pk=config.pk).update(enabled=True, parameters={"fast": 50, "slow": 30})
    skipped = live.evaluate(config_id=config.pk, bar_time=at)
    assert skipped.status == "skipped" and "fast" in skipped.reason
    StrategyConfig.objects.filter(pk=config.pk).update(parameters={"fast": 10, "slow": 30})
    assert live.evaluate(config_id=config.pk, bar_time=datetime(2030, 1, 1, tzinfo=IST)).status == "skipped"
    assert not Signal.objects.exists()


def test_dispatch_enqueues_each_config_once_per_bar_time(config: StrategyConfig) -> None:
    other = StrategyConfig.objects.create(
        name="minute-one", strategy="sma_crossover", symbols=["INFY"], interval="minute",
        capital=Decimal(100000), account=config.account, enabled=True,
    )  # fmt: skip
    StrategyConfig.objects.create(
        name="off", strategy="sma_crossover", symbols=["INFY"], interval="day",
        capital=Decimal(100000), account=config.account, enabled=False,
    )  # fmt: skip
    redis = get_redis()
    for key in redis.scan_iter(match="strategies:dispatched:*"):
        redis.delete(key)
    day = "2024-09-30T00:00:00+05:30"
    minute = "2024-09-30T10:15:00+05:30"
    entries = [
        (b"1-0", {b"interval": b"day", b"time": day.encode(), b"symbol": b"INFY"}),
        (b"1-1", {b"interval": b"day", b"time": day.encode(), b"symbol": b"TCS"}),
        (b"1-2", {b"interval": b"minute", b"time": minute.encode(), b"symbol": b"INFY"}),
    ]
    sent: list[tuple[int, str]] = []
    assert dispatch.dispatch_steps(redis, dispatch.bar_steps(entries), lambda c, t: sent.append((c, t))) == 2
    assert sorted(sent) == sorted([(config.pk, day), (other.pk, minute)])
    # The same bars again (a repeated event, a second dispatcher): nothing more.
    assert dispatch.dispatch_steps(redis, dispatch.bar_steps(entries), lambda c, t: sent.append((c, t))) == 0
