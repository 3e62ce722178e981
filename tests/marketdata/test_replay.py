"""The replay feed publishes stored bars in time order as bar-close events, and moves the latest prices."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from apps.marketdata import events
from apps.marketdata.demo import demo_seed
from apps.marketdata.models import Candle, Interval
from apps.marketdata.replay import replay_bars
from apps.marketdata.selectors import universe_members
from tradingsite.redis_client import get_redis

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")
DAY = date(2024, 6, 7)


@pytest.fixture
def feed() -> None:
    demo_seed(daily_days=5, minute_days=1, end=DAY)
    redis = get_redis()
    redis.delete(events.BAR_STREAM, events.LATEST_PRICES)


def read_stream() -> list[events.BarEvent]:
    entries = get_redis().xrange(events.BAR_STREAM) or []
    return [events.BarEvent.from_fields(dict(fields or {})) for _, fields in entries]


def test_replay_publishes_each_minute_in_order_and_paces_by_speed(feed: None) -> None:
    waits: list[float] = []
    steps: list[tuple[datetime, int]] = []
    result = replay_bars(
        instruments=universe_members(universe="NIFTY 50", on=DAY),
        interval=Interval.MINUTE,
        start=datetime.combine(DAY, time(9, 15), IST),
        end=datetime.combine(DAY, time(9, 19), IST),
        speed=60,
        sleep=waits.append,
        on_step=lambda at, n: steps.append((at, n)),
    )
    assert (result.steps, result.bars) == (5, 250)
    assert waits == [1.0] * 4  # a market minute per second at speed 60, no wait before the first step
    published = read_stream()
    assert len(published) == 250 and [e.time for e in published] == sorted(e.time for e in published)
    assert {e.source for e in published} == {"replay"} and published[0].time == datetime.combine(DAY, time(9, 15), IST)
    stored = Candle.objects.get(instrument__tradingsymbol="TCS", interval="minute", time=published[-1].time)
    tcs = [e for e in published if e.symbol == "TCS"][-1]
    assert (tcs.open, tcs.high, tcs.low, tcs.close, tcs.volume) == (
        stored.open,
        stored.high,
        stored.low,
        stored.close,
        stored.volume,
    )
    assert events.latest_prices(get_redis())["NSE:TCS"].price == stored.close


def test_replay_command_checks_its_input(feed: None, capsys: pytest.CaptureFixture[str]) -> None:
    call_command(
        "replay",
        "--from",
        "2024-06-07T09:15",
        "--to",
        "2024-06-07T09:16",
        "--speed",
        "0",
        "--symbols",
        "INFY,TCS",
        verbosity=0,
    )
    assert "4 bars in 2 steps (2024-06-07 09:15 .. 2024-06-07 09:16 IST)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="--from: expected YYYY-MM-DD"):
        call_command("replay", "--from", "June", "--to", "2024-06-07")
    with pytest.raises(CommandError, match="no instrument NSE:NOPE"):
        call_command("replay", "--from", "2024-06-07", "--to", "2024-06-07", "--symbols", "NOPE")
    with pytest.raises(CommandError, match="speed must be 0"):
        call_command("replay", "--from", "2024-06-07", "--to", "2024-06-07", "--speed", "-1")
