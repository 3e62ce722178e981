"""Ticks into one-minute bars: scripted sequences, and the REAL Kite packets through the real parser."""

from __future__ import annotations

import base64
import json
import struct
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from kiteconnect import KiteTicker

from apps.marketdata.aggregation import (
    IST,
    Bar,
    FeedClock,
    MinuteAggregator,
    Tick,
    minute_of,
    price_decimal,
    tick_from_kite,
)

INFY, RELIANCE = 408065, 738561
D = Decimal


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2024, 7, 5, hh, mm, ss, tzinfo=IST)


def tick(token: int, price: str, when: datetime, volume: int | None) -> Tick:
    return Tick(token, D(price), when, volume)


def run(agg: MinuteAggregator, ticks: list[Tick]) -> list[Bar]:
    closed: list[Bar] = []
    for t in ticks:
        closed += agg.add(t)
    return closed


def test_two_instruments_over_several_minutes_give_exactly_the_expected_bars() -> None:
    agg = MinuteAggregator()
    closed = run(
        agg,
        [
            tick(INFY, "1573.70", at(10, 41, 27), 1_000_000),  # first tick of the session: baseline only
            tick(RELIANCE, "2900.00", at(10, 41, 30), 50_000),
            tick(INFY, "1574.50", at(10, 41, 40), 1_000_120),
            tick(INFY, "1572.10", at(10, 41, 59), 1_000_200),
            tick(RELIANCE, "2901.00", at(10, 41, 59), 50_010),
            tick(INFY, "1573.00", at(10, 42, 0), 1_000_260),  # closes INFY 10:41
            tick(INFY, "1999.00", at(10, 41, 58), 1_000_999),  # late: 10:41 is closed, dropped
            tick(INFY, "1573.25", at(10, 42, 30), 1_000_300),
            tick(RELIANCE, "2899.50", at(10, 43, 5), 50_060),  # closes RELIANCE 10:41 (nothing at 10:42)
            tick(INFY, "1575.00", at(10, 44, 1), 1_000_400),  # closes INFY 10:42
        ],
    )
    assert closed == [
        Bar(INFY, at(10, 41), D("1573.70"), D("1574.50"), D("1572.10"), D("1572.10"), 200, 3),
        Bar(RELIANCE, at(10, 41), D("2900.00"), D("2901.00"), D("2900.00"), D("2901.00"), 10, 2),
        Bar(INFY, at(10, 42), D("1573.00"), D("1573.25"), D("1573.00"), D("1573.25"), 100, 2),
    ]
    assert agg.stats.late_ticks == 1
    # The late tick's volume was not counted: the next bar's delta is from the last accepted tick.
    assert agg.open_bars() == [
        Bar(INFY, at(10, 44), D("1575.00"), D("1575.00"), D("1575.00"), D("1575.00"), 100, 1),
        Bar(RELIANCE, at(10, 43), D("2899.50"), D("2899.50"), D("2899.50"), D("2899.50"), 50, 1),
    ]


def test_timer_closes_a_quiet_instruments_bar_after_the_grace_and_its_late_ticks_are_dropped() -> None:
    agg = MinuteAggregator(grace=timedelta(seconds=2))
    run(agg, [tick(INFY, "100.00", at(9, 15, 10), 10), tick(RELIANCE, "200.00", at(9, 15, 50), 5)])
    assert agg.close_due(at(9, 16, 1)) == []  # the minute ended, but the grace has not passed
    closed = agg.close_due(at(9, 16, 2))
    assert [(b.token, b.time) for b in closed] == [(INFY, at(9, 15)), (RELIANCE, at(9, 15))]
    assert agg.add(tick(INFY, "101.00", at(9, 15, 59), 20)) == []
    assert agg.stats.late_ticks == 1
    assert agg.close_due(at(10, 0)) == []  # nothing is open any more


def test_cumulative_volume_going_down_never_gives_negative_volume() -> None:
    agg = MinuteAggregator()
    closed = run(
        agg,
        [
            tick(INFY, "10.00", at(15, 29, 0), 5_000_000),
            tick(INFY, "10.05", at(15, 29, 30), 5_000_100),
            tick(INFY, "10.10", at(15, 30, 10), 300),  # the exchange reset the day's volume
            tick(INFY, "10.15", at(15, 30, 20), 450),
            tick(INFY, "10.20", at(15, 31, 0), 470),
        ],
    )
    assert [(b.time, b.volume) for b in closed] == [(at(15, 29), 100), (at(15, 30), 150)]
    assert agg.stats.volume_resets == 1
    assert all(b.volume >= 0 for b in closed)


def test_ltp_mode_ticks_without_volume_give_zero_volume_bars() -> None:
    agg = MinuteAggregator()
    closed = run(agg, [tick(INFY, "10.00", at(9, 20, 1), None), tick(INFY, "10.50", at(9, 21, 0), None)])
    assert closed == [Bar(INFY, at(9, 20), D("10.00"), D("10.00"), D("10.00"), D("10.00"), 0, 1)]


def test_minutes_are_ist_minutes_whatever_the_offset_of_the_input() -> None:
    moment = datetime.fromisoformat("2024-07-05T04:12:45+00:00")  # 09:42:45 IST
    assert minute_of(moment) == at(9, 42)
    assert minute_of(moment).utcoffset() == timedelta(hours=5, minutes=30)


def test_naive_tick_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Tick(INFY, D("1"), datetime(2024, 7, 5, 9, 15), 1)


def test_prices_keep_the_packets_precision_without_float_noise() -> None:
    assert price_decimal(INFY, 1573.15) == D("1573.15")
    assert str(price_decimal(INFY, 0.1 + 0.2)) == "0.30"
    cds_token = (1234 << 8) | 3  # currency derivatives: Kite divides by 10^7
    assert str(price_decimal(cds_token, 74.1234567)) == "74.1234567"


def test_quote_ticks_use_arrival_time_and_malformed_ticks_name_the_problem() -> None:
    received = at(11, 0, 5)
    parsed = tick_from_kite({"instrument_token": INFY, "last_price": 1573.15, "volume_traded": 7}, received_at=received)
    assert parsed == Tick(INFY, D("1573.15"), received, 7)
    with pytest.raises(ValueError, match=r"malformed Kite tick.*last_price"):
        tick_from_kite({"instrument_token": INFY}, received_at=received)
    with pytest.raises(ValueError, match=r"malformed Kite tick.*TypeError"):
        tick_from_kite({"instrument_token": INFY, "last_price": None}, received_at=received)


def test_feed_clock_follows_the_latest_tick_and_never_goes_back() -> None:
    clock = FeedClock()
    assert clock.now(100.0) is None
    clock.observe(at(10, 41, 27), 100.0)
    assert clock.now(103.5) == at(10, 41, 30) + timedelta(seconds=0.5)
    clock.observe(at(10, 41, 20), 104.0)  # an older stamp does not pull the clock back
    assert clock.now(104.0) == at(10, 41, 31)
    clock.observe(at(10, 45, 0), 105.0)
    assert clock.now(106.0) == at(10, 45, 1)


def _parse_real_packet(shared_data: Path, name: str) -> list[dict[str, object]]:
    packet = base64.b64decode((shared_data / "kite-mocks" / f"{name}.packet").read_text())
    frame = struct.pack(">HH", 1, len(packet)) + packet
    return KiteTicker("key", "token")._parse_binary(frame)


@pytest.mark.parametrize("name", ["ticker_quote", "ticker_full"])
def test_real_packets_through_kiteconnects_parser_give_a_bar_closing_at_the_packets_price(
    shared_data: Path, name: str
) -> None:
    twin = json.loads((shared_data / "kite-mocks" / f"{name}.json").read_text())
    ticks = _parse_real_packet(shared_data, name)
    received = at(12, 0, 30)
    agg = MinuteAggregator()
    for raw in ticks:
        agg.add(tick_from_kite(raw, received_at=received))
    [bar] = agg.close_due(at(23, 59))
    assert bar.token == twin["instrument_token"]
    assert bar.close == Decimal(str(twin["last_price"]))
    assert bar.volume == 0  # one tick: the session's baseline, no delta yet
    if "timestamp" in twin:  # full mode: the exchange's time, not the arrival time
        assert bar.time == minute_of(datetime.fromisoformat(twin["timestamp"]))
        assert bar.time == datetime(2021, 7, 5, 10, 41, tzinfo=IST)
    else:
        assert bar.time == at(12, 0)
