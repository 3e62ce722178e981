"""The live feed: bars into Candle and the bar stream, latest prices, the watchdog, reconnects.

The end-to-end tests run the real `manage.py run_ticker` in a subprocess
against the test database and Redis, with the REAL KiteTicker connecting to
`tests.support.fake_ticker` (real Kite packets, rewritten) and the real Kite
client polling `tests.support.fake_kite`.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.marketdata import events
from apps.marketdata.aggregation import IST, Bar
from apps.marketdata.management.commands.run_ticker import market_hours
from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource, Universe, UniverseMembership
from apps.marketdata.ticker import (
    ALERT_STREAM,
    FeedOptions,
    LiveFeed,
    StaleWatchdog,
    bars_persist,
    record_alert,
    subscriptions_for,
)
from tests.support.fake_kite import FakeKite, RecordedRequest
from tests.support.fake_ticker import FakeTicker, TickSpec
from tests.support.stack import subprocess_env
from tradingsite.redis_client import get_redis
from workers.supervision import ManagedProcess

INFY, RELIANCE, TCS, NO_TOKEN_SYMBOL = 408065, 738561, 2953217, "NOTOKEN"
UNIVERSE = "TICKER TEST"
D = Decimal


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2021, 7, 5, hh, mm, ss, tzinfo=IST)


# --- fixtures and helpers ----------------------------------------------------------


@pytest.fixture
def universe(transactional_db: None) -> dict[str, Instrument]:
    """INFY and RELIANCE are current members; TCS left yesterday; one member has no instrument_token yet."""
    today = date.today()
    rows = {
        "INFY": Instrument.objects.create(tradingsymbol="INFY", instrument_token=INFY),
        "RELIANCE": Instrument.objects.create(tradingsymbol="RELIANCE", instrument_token=RELIANCE),
        "TCS": Instrument.objects.create(tradingsymbol="TCS", instrument_token=TCS),
        NO_TOKEN_SYMBOL: Instrument.objects.create(tradingsymbol=NO_TOKEN_SYMBOL, instrument_token=None),
    }
    u = Universe.objects.create(name=UNIVERSE)
    for symbol, inst in rows.items():
        end = today - timedelta(days=1) if symbol == "TCS" else None
        UniverseMembership.objects.create(
            universe=u, instrument=inst, start_date=today - timedelta(days=30), end_date=end
        )
    get_redis().hdel(events.LATEST_PRICES, "NSE:INFY", "NSE:RELIANCE", "NSE:TCS")
    return rows


@pytest.fixture
def fake_ticker(shared_data: Path) -> Iterator[FakeTicker]:
    fake = FakeTicker(shared_data / "kite-mocks", heartbeat_seconds=0.5).start()
    yield fake
    fake.stop()


def stream_tail(stream: str) -> str:
    last: Any = get_redis().xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"


def stream_since(stream: str, marker: str) -> list[dict[str, str]]:
    entries: Any = get_redis().xrange(stream, min=marker)
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for entry_id, fields in entries
        if entry_id.decode() != marker
    ]


def latest(key: str) -> events.LatestPrice | None:
    return events.latest_prices(get_redis()).get(key)


def wait_for(what: str, predicate: Callable[[], Any], proc: ManagedProcess | None = None, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and not proc.alive():
            pytest.fail(f"the ticker exited while waiting for {what}:\n{proc.log_tail()}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}" + (f"\n{proc.log_tail()}" if proc else ""))


def start_ticker(fake: FakeTicker, tmp_path: Path, *args: str, **env: str) -> ManagedProcess:
    argv = [sys.executable, "manage.py", "run_ticker", "--universe", UNIVERSE, "--ignore-market-hours", *args]
    environment = subprocess_env(
        KITE_API_KEY="ticker-test-key",
        KITE_ACCESS_TOKEN="ticker-test-token",
        KITE_TICKER_ROOT=fake.url,
        LOG_LEVEL="INFO",
        **env,
    )
    return ManagedProcess("ticker", argv, environment, tmp_path / "ticker.log").start()


def stop_ticker(proc: ManagedProcess) -> str:
    proc.stop()
    assert proc.popen is not None
    assert proc.popen.returncode == 0, proc.log_tail()
    return proc.log_path.read_text()


# --- end to end: the real command, the real KiteTicker, the fake WebSocket server ----------


@pytest.mark.processes
def test_subscribes_current_members_in_quote_mode_and_keeps_the_latest_price(
    universe: dict[str, Instrument], fake_ticker: FakeTicker, tmp_path: Path
) -> None:
    proc = start_ticker(fake_ticker, tmp_path)
    try:
        wait_for("the subscription", lambda: len(fake_ticker.modes) == 2, proc)
        assert fake_ticker.handshakes == ["api_key=ticker-test-key&access_token=ticker-test-token"]
        assert fake_ticker.messages == [
            {"a": "subscribe", "v": [INFY, RELIANCE]},
            {"a": "mode", "v": ["quote", [INFY, RELIANCE]]},
        ]
        fake_ticker.send_ticks([TickSpec(INFY, D("1580.25"), 1_175_986), TickSpec(TCS, D("3999.00"), 10)])
        price = wait_for("INFY's latest price", lambda: latest("NSE:INFY"), proc)
        assert (price.price, price.token, price.source) == (D("1580.25"), INFY, "ticker")
        assert price.time.tzinfo is not None
    finally:
        log = stop_ticker(proc)
    assert latest("NSE:TCS") is None  # not subscribed: its ticks are ignored
    assert "SIGTERM received: stopping the ticker" in log
    assert "1 unknown-token ticks" in log


@pytest.mark.processes
def test_full_mode_ticks_across_minutes_become_candles_and_bar_events(
    universe: dict[str, Instrument], fake_ticker: FakeTicker, tmp_path: Path
) -> None:
    bars_marker = stream_tail(events.BAR_STREAM)
    proc = start_ticker(fake_ticker, tmp_path, "--mode", "full")
    try:
        wait_for("full mode", lambda: set(fake_ticker.modes.values()) == {"full"} and len(fake_ticker.modes) == 2, proc)
        script = [
            TickSpec(INFY, D("1573.70"), 1_192_471, at(10, 41, 27)),  # the real packet's own values
            TickSpec(RELIANCE, D("2100.00"), 5_000, at(10, 41, 30)),
            TickSpec(INFY, D("1574.00"), 1_192_600, at(10, 41, 50)),
            TickSpec(INFY, D("1572.50"), 1_192_700, at(10, 42, 5)),  # closes INFY 10:41
            TickSpec(RELIANCE, D("2101.50"), 5_100, at(10, 42, 10)),  # closes RELIANCE 10:41
            TickSpec(INFY, D("9999.00"), 1_192_999, at(10, 41, 59)),  # late for a closed minute: dropped
            TickSpec(INFY, D("1574.90"), 1_192_900, at(10, 43, 10)),  # closes INFY 10:42; the feed clock
            # is now past 10:43:02, so the timer closes RELIANCE 10:42 too (a quiet instrument)
        ]
        for spec in script:
            fake_ticker.send_ticks([spec])
        wait_for("four candles", lambda: Candle.objects.filter(source=SeriesSource.TICKER).count() >= 4, proc)
        wait_for("INFY's latest tick price", lambda: (p := latest("NSE:INFY")) and p.price == D("1574.90"), proc)
    finally:
        log = stop_ticker(proc)

    rows = list(
        Candle.objects.filter(interval=Interval.MINUTE)
        .order_by("time", "instrument__tradingsymbol")
        .values_list("instrument__tradingsymbol", "time", "open", "high", "low", "close", "volume", "source")
    )
    expected = [
        ("INFY", at(10, 41), D("1573.70"), D("1574.00"), D("1573.70"), D("1574.00"), 129, "ticker"),
        ("RELIANCE", at(10, 41), D("2100.00"), D("2100.00"), D("2100.00"), D("2100.00"), 0, "ticker"),
        ("INFY", at(10, 42), D("1572.50"), D("1572.50"), D("1572.50"), D("1572.50"), 100, "ticker"),
        ("RELIANCE", at(10, 42), D("2101.50"), D("2101.50"), D("2101.50"), D("2101.50"), 100, "ticker"),
    ]
    assert rows == expected  # INFY 10:43 was still in its minute at shutdown: not kept
    published = [e for e in stream_since(events.BAR_STREAM, bars_marker) if e["source"] == "ticker"]
    bar_events = [events.BarEvent.from_fields(e) for e in published]
    assert sorted((b.symbol, b.time, b.open, b.high, b.low, b.close, b.volume, b.source) for b in bar_events) == sorted(
        expected
    )
    assert {e["interval"] for e in published} == {"minute"}
    assert {e["token"] for e in published if e["symbol"] == "INFY"} == {str(INFY)}
    # The latest price is the latest tick, not the close of the last published bar.
    assert latest("NSE:INFY") == events.LatestPrice(D("1574.90"), at(10, 43, 10), INFY, "ticker")
    assert latest("NSE:RELIANCE") == events.LatestPrice(D("2101.50"), at(10, 42, 10), RELIANCE, "ticker")
    assert "1 late ticks dropped" in log
    assert "1 bars still in their minute not kept" in log


@pytest.mark.processes
def test_reconnects_after_the_connection_drops_and_logs_the_attempts(
    universe: dict[str, Instrument], fake_ticker: FakeTicker, tmp_path: Path
) -> None:
    proc = start_ticker(fake_ticker, tmp_path)
    try:
        wait_for("the first connection", lambda: fake_ticker.connected() == 1 and len(fake_ticker.messages) == 2, proc)
        fake_ticker.refusing = True
        fake_ticker.drop_connections()
        wait_for("a refused reconnect", lambda: fake_ticker.refused >= 1, proc)
        fake_ticker.refusing = False
        wait_for("a second connection", lambda: len(fake_ticker.handshakes) == 2 and fake_ticker.connected(), proc)
        wait_for("the re-subscription", lambda: len(fake_ticker.messages) >= 4, proc)
        fake_ticker.send_ticks([TickSpec(RELIANCE, D("2950.05"), 1)])
        wait_for("a tick after the reconnect", lambda: latest("NSE:RELIANCE"), proc)
    finally:
        log = stop_ticker(proc)
    assert fake_ticker.messages[2:] == [
        {"a": "subscribe", "v": [INFY, RELIANCE]},
        {"a": "mode", "v": ["quote", [INFY, RELIANCE]]},
    ]
    assert "KiteTicker reconnect attempt" in log
    assert "KiteTicker reconnected" in log


@pytest.mark.processes
def test_stale_feed_alerts_polls_ltp_at_most_once_a_second_and_recovers(
    universe: dict[str, Instrument], fake_ticker: FakeTicker, fake_kite: FakeKite, tmp_path: Path
) -> None:
    alerts_marker = stream_tail(ALERT_STREAM)
    proc = start_ticker(fake_ticker, tmp_path, "--stale-seconds", "1", KITE_API_ROOT=fake_kite.url)
    try:
        wait_for("the subscription", lambda: len(fake_ticker.modes) == 2, proc)
        fake_ticker.send_ticks([TickSpec(INFY, D("1580.00"), 100)])
        wait_for("the first tick", lambda: latest("NSE:INFY"), proc)
        # Silence (heartbeats only): the watchdog alerts and falls back to /quote/ltp.
        stale = wait_for("a feed_stale alert", lambda: _alerts(alerts_marker, "feed_stale"), proc)
        wait_for("three LTP polls", lambda: len(_ltp_requests(fake_kite)) >= 3, proc)
        polled = wait_for("the polled price", lambda: (p := latest("NSE:INFY")) and p.source == "ltp" and p, proc)
        assert polled.price == D("1074.35")  # ltp.json's INFY
        fake_ticker.send_ticks([TickSpec(INFY, D("1581.00"), 200)])
        recovered = wait_for("a feed_recovered alert", lambda: _alerts(alerts_marker, "feed_recovered"), proc)
        polls_at_recovery = len(_ltp_requests(fake_kite))
        for n in range(10):  # ticks flow for 2.5 s, well past the poll interval: no poll may show up
            fake_ticker.send_ticks([TickSpec(INFY, D("1581.00") + n, 300 + n)])
            time.sleep(0.25)
        wait_for("the last tick", lambda: (p := latest("NSE:INFY")) and p.price == D("1590.00"), proc)
        polls_after = len(_ltp_requests(fake_kite))
        assert len(_alerts(alerts_marker, "feed_stale")) == 1
    finally:
        stop_ticker(proc)
    assert stale[0]["source"] == "ticker" and "no tick for 1s" in stale[0]["message"]
    assert datetime.fromisoformat(stale[0]["time"]) <= datetime.fromisoformat(recovered[0]["time"])
    assert polls_after == polls_at_recovery
    requests = _ltp_requests(fake_kite)
    assert {tuple(v for k, v in r.params if k == "i") for r in requests} == {("NSE:INFY", "NSE:RELIANCE")}
    assert {r.status for r in requests} == {200}
    gaps = [b.time - a.time for a, b in itertools.pairwise(requests)]
    assert gaps and min(gaps) >= 1.0, gaps  # KITE_LTP_POLL_PER_SECOND = 1
    assert (final := latest("NSE:INFY")) is not None and final.source == "ticker"


def _alerts(marker: str, kind: str) -> list[dict[str, str]]:
    return [a for a in stream_since(ALERT_STREAM, marker) if a["kind"] == kind]


def _ltp_requests(fake_kite: FakeKite) -> list[RecordedRequest]:
    return [r for r in fake_kite.requests if r.path == "/quote/ltp"]


# --- in process: persistence, the feed loop with an injected clock, the watchdog ----------


def test_bars_persist_upserts_and_leaves_kites_own_candles_alone(universe: dict[str, Instrument]) -> None:
    subs = subscriptions_for(list(universe.values()))
    infy = universe["INFY"]
    Candle.objects.create(
        instrument=infy, interval="minute", time=at(9, 16), open=1, high=1, low=1, close=1, source=SeriesSource.KITE
    )
    first = Bar(INFY, at(9, 15), D("10.00"), D("11.00"), D("9.50"), D("10.50"), 7, 3)
    assert bars_persist(bars=[first], subscriptions=subs) == 1
    resent = Bar(INFY, at(9, 15), D("10.00"), D("11.50"), D("9.50"), D("11.25"), 9, 4)
    other = Bar(INFY, at(9, 16), D("20.00"), D("20.00"), D("20.00"), D("20.00"), 1, 1)
    assert bars_persist(bars=[resent, resent, other], subscriptions=subs) == 1  # listed twice: one upsert
    rows = list(Candle.objects.filter(instrument=infy).order_by("time").values_list("close", "volume", "source"))
    assert rows == [(D("11.25"), 9, "ticker"), (D("1"), 0, "kite")]
    assert set(subs) == {INFY, RELIANCE, TCS}  # the instrument without a token cannot stream


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.wall, self.mono = start, 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def _feed(universe: dict[str, Instrument], clock: FakeClock, **options: Any) -> LiveFeed:
    def no_polls(keys: list[str]) -> dict[str, Any]:
        raise AssertionError(f"unexpected LTP poll for {keys}")

    return LiveFeed(
        subscriptions=subscriptions_for([universe["INFY"], universe["RELIANCE"]]),
        redis_client=get_redis(),
        options=FeedOptions(now=lambda: clock.wall, monotonic=lambda: clock.mono, stale_seconds=3600, **options),
        ltp_fetch=no_polls,
    )


def test_quote_mode_bars_follow_arrival_time_and_shutdown_keeps_only_finished_minutes(
    universe: dict[str, Instrument],
) -> None:
    clock = FakeClock(datetime(2024, 7, 5, 9, 15, 20, tzinfo=IST))
    feed = _feed(universe, clock)
    marker = stream_tail(events.BAR_STREAM)

    def quote(token: int, price: float, volume: int) -> None:
        feed.on_ticks(None, [{"instrument_token": token, "last_price": price, "volume_traded": volume}])
        feed.step()

    quote(INFY, 1500.05, 1000)
    quote(RELIANCE, 2900.10, 50)
    quote(RELIANCE, 0.0, 50)  # not traded yet: no price, ignored
    clock.advance(30)  # 09:15:50
    quote(INFY, 1501.10, 1040)
    clock.advance(11)  # 09:16:01: the 09:15 bars are over, but RELIANCE's is within the 2 s grace
    quote(INFY, 1499.95, 1100)  # closes INFY 09:15 by tick
    assert Candle.objects.count() == 1
    clock.advance(1)  # 09:16:02
    feed.step()  # the timer closes RELIANCE 09:15: its minute ended 2 s ago on the feed clock
    assert Candle.objects.count() == 2
    clock.advance(30)  # 09:16:32: INFY 09:16 is still in its minute
    feed.shutdown()
    bars = {(c.instrument.tradingsymbol, c.time): (c.open, c.close, c.volume) for c in Candle.objects.all()}
    assert bars == {
        ("INFY", datetime(2024, 7, 5, 9, 15, tzinfo=IST)): (D("1500.05"), D("1501.10"), 40),
        ("RELIANCE", datetime(2024, 7, 5, 9, 15, tzinfo=IST)): (D("2900.10"), D("2900.10"), 0),
    }
    assert len([e for e in stream_since(events.BAR_STREAM, marker) if e["source"] == "ticker"]) == 2
    assert latest("NSE:INFY") == events.LatestPrice(
        D("1499.95"), datetime(2024, 7, 5, 9, 16, 1, tzinfo=IST), INFY, "ticker"
    )
    assert feed.unpriced_ticks == 1


def test_record_alert_writes_the_monitoring_stream(caplog: pytest.LogCaptureFixture) -> None:
    marker = stream_tail(ALERT_STREAM)
    record_alert(get_redis(), kind="feed_stale", message="no tick for 30s", at=at(10, 0))
    assert stream_since(ALERT_STREAM, marker) == [
        {"kind": "feed_stale", "source": "ticker", "message": "no tick for 30s", "time": "2021-07-05T10:00:00+05:30"}
    ]
    assert any(r.levelname == "WARNING" and "feed_stale" in r.getMessage() for r in caplog.records)


def test_watchdog_counts_silence_only_in_market_hours() -> None:
    open_from = at(9, 15)
    dog = StaleWatchdog(stale_after=30, market_open=lambda now: now >= open_from, started=0.0)
    assert dog.check(monotonic=100.0, now=at(9, 0)) is None  # closed: silence does not count
    assert dog.check(monotonic=200.0, now=at(9, 15)) is None  # opens: the clock starts now, not at start-up
    assert dog.check(monotonic=229.0, now=at(9, 15, 29)) is None
    assert dog.check(monotonic=230.0, now=at(9, 15, 30)) == "stale"
    assert dog.check(monotonic=240.0, now=at(9, 15, 40)) is None  # stays stale, no second alert
    dog.tick_seen(241.0)
    assert dog.check(monotonic=241.5, now=at(9, 15, 41)) == "recovered"
    assert not dog.stale


def test_watchdog_stale_spell_ends_when_the_market_closes() -> None:
    closes_at = at(15, 30)
    dog = StaleWatchdog(stale_after=10, market_open=lambda now: now < closes_at, started=0.0)
    assert dog.check(monotonic=0.0, now=at(15, 28, 50)) is None
    assert dog.check(monotonic=10.0, now=at(15, 29)) == "stale"
    assert dog.check(monotonic=70.0, now=at(15, 30)) == "market_closed"
    assert dog.check(monotonic=500.0, now=at(16, 0)) is None


def test_market_hours_are_continuous_trading_by_the_nse_calendar(db: None) -> None:
    # `db`, not the transactional `universe`: the calendar rows come from a data migration, which a
    # transactional test's flush removes.
    is_open = market_hours([Instrument.objects.create(tradingsymbol="INFY", instrument_token=INFY)])
    assert is_open(datetime(2024, 7, 5, 10, 0, tzinfo=IST))  # a Friday session
    assert not is_open(datetime(2024, 7, 5, 9, 5, tzinfo=IST))  # pre-open: few ticks, silence is normal
    assert not is_open(datetime(2024, 7, 5, 15, 45, tzinfo=IST))
    assert not is_open(datetime(2024, 7, 6, 10, 0, tzinfo=IST))  # Saturday
    assert not is_open(datetime(2024, 8, 15, 10, 0, tzinfo=IST))  # Independence Day, a trading holiday


@pytest.mark.parametrize(
    "case",
    [
        ({"KITE_API_KEY": ""}, [], "KITE_API_KEY is not set"),
        ({"KITE_ACCESS_TOKEN": ""}, [], "KITE_ACCESS_TOKEN is not set"),
        ({}, ["--universe", "NO SUCH UNIVERSE"], "no universe named 'NO SUCH UNIVERSE'"),
        ({}, ["--stale-seconds", "0"], "--stale-seconds must be positive"),
    ],
)
def test_run_ticker_refuses_to_start_without_what_it_needs(
    db: None, settings: Any, monkeypatch: pytest.MonkeyPatch, case: tuple[dict[str, str], list[str], str]
) -> None:
    env, args, error = case
    universe = Universe.objects.create(name=UNIVERSE)
    inst = Instrument.objects.create(tradingsymbol="INFY", instrument_token=INFY)
    UniverseMembership.objects.create(universe=universe, instrument=inst, start_date=date(2020, 1, 1))
    settings.KITE_API_KEY = env.get("KITE_API_KEY", "key")
    monkeypatch.setenv("KITE_ACCESS_TOKEN", env.get("KITE_ACCESS_TOKEN", "token"))
    with pytest.raises(CommandError, match=re.escape(error)):
        call_command("run_ticker", "--universe", UNIVERSE, *args)


def test_run_ticker_refuses_a_universe_without_streamable_members(
    db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    universe = Universe.objects.create(name=UNIVERSE)
    inst = Instrument.objects.create(tradingsymbol="NEWLISTING", instrument_token=None)
    UniverseMembership.objects.create(universe=universe, instrument=inst, start_date=date(2020, 1, 1))
    settings.KITE_API_KEY = "key"
    monkeypatch.setenv("KITE_ACCESS_TOKEN", "token")
    with pytest.raises(CommandError, match="no current member with an instrument_token"):
        call_command("run_ticker", "--universe", UNIVERSE)
