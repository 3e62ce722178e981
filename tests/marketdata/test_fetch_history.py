"""`fetch_history` against the fake Kite through the real client: limits, rate, resume, errors, the worker."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from apps.marketdata.history import fetch_job_create, fetch_job_run
from apps.marketdata.instruments import instrument_rows_from_file, instruments_sync
from apps.marketdata.kite_history import MAX_DAYS_PER_REQUEST, Chunk, plan_chunks
from apps.marketdata.models import Candle, FetchJob, Instrument, SeriesSource, Universe
from tests.support.fake_kite import FakeKite, FakeKiteError, RecordedRequest, synthetic_candles
from tests.support.stack import queue_nodes_alive, start_workers
from tradingsite.redis_client import get_redis
from workers.queues import Queue
from workers.supervision import ManagedProcess, wait_until

BARS_PER_DAY = 2  # the test is about planning and limits, not volume
TOKENS = {"ADANIPORTS": 3861249, "CDSL": 5420545, "IGL": 2883073, "ENDURANCE": 4818433}


# --- the pure planner -----------------------------------------------------------------------------------


def test_plan_splits_a_range_into_consecutive_chunks_within_the_limit() -> None:
    chunks = plan_chunks(date(2021, 1, 1), date(2024, 6, 30), "minute")
    assert chunks[0] == Chunk(date(2021, 1, 1), date(2021, 3, 1)) and chunks[0].days == 60
    assert chunks[-1].end == date(2024, 6, 30)
    assert all(c.days <= 60 for c in chunks) and len(chunks) == 22  # 1277 days
    assert all(b.start == a.end + timedelta(days=1) for a, b in pairwise(chunks))
    assert plan_chunks(date(2024, 1, 1), date(2024, 1, 1), "day") == [Chunk(date(2024, 1, 1), date(2024, 1, 1))]
    for interval, limit in MAX_DAYS_PER_REQUEST.items():
        assert all(c.days <= limit for c in plan_chunks(date(2015, 1, 1), date(2024, 12, 31), interval))


def test_plan_refuses_an_empty_range_or_an_unknown_interval() -> None:
    with pytest.raises(ValueError, match="empty range: 2024-02-01 is after 2024-01-01"):
        plan_chunks(date(2024, 2, 1), date(2024, 1, 1), "minute")
    with pytest.raises(ValueError, match="unknown Kite interval '2minute'"):
        plan_chunks(date(2024, 1, 1), date(2024, 2, 1), "2minute")


def test_chunk_bounds_span_whole_days_in_ist() -> None:
    chunk = Chunk(date(2024, 1, 1), date(2024, 2, 29))
    assert chunk.request_bounds() == (datetime(2024, 1, 1), datetime(2024, 2, 29, 23, 59, 59))
    assert chunk.aware_bounds()[0].isoformat() == "2024-01-01T00:00:00+05:30"


# --- fetching -----------------------------------------------------------------------------------------


def weekdays(start: date, end: date) -> int:
    return sum((start + timedelta(days=n)).weekday() < 5 for n in range((end - start).days + 1))


def requested_range(request: RecordedRequest) -> tuple[int, date, date]:
    token = int(request.path.split("/")[3])
    start, end = (datetime.strptime(request.query[k], "%Y-%m-%d %H:%M:%S") for k in ("from", "to"))
    return token, start.date(), end.date()


def assert_within_kite_limits(requests: list[RecordedRequest], interval: str = "minute") -> None:
    """No refusal, no 429, every range within the limit, never more than 3 arrivals in any 1-second window."""
    assert [r.status for r in requests if r.status != 200] == []
    for request in requests:
        _, start, end = requested_range(request)
        assert (end - start).days + 1 <= MAX_DAYS_PER_REQUEST[interval]
        assert request.query["oi"] == "1" and request.query["continuous"] == "0"
    times = sorted(r.time for r in requests)
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 1.0, f"4 requests within {times[i + 3] - times[i]:.3f}s"


def fetch(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("fetch_history", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def stored(symbol: str) -> int:
    return Candle.objects.filter(instrument__tradingsymbol=symbol, interval="minute", source=SeriesSource.KITE).count()


def _clear_markers() -> None:
    redis = get_redis()
    for key in redis.scan_iter("kite:history:done:*"):
        redis.delete(key)


@pytest.fixture
def kite(fake_kite_settings: FakeKite, shared_data: Path) -> Iterator[FakeKite]:
    """The fake Kite with sparse candles, and instruments synced from Kite's NSE dump."""
    _clear_markers()
    instruments_sync(rows=instrument_rows_from_file(shared_data / "kite-mocks" / "instruments_nse.csv"))
    fake_kite_settings.candles = synthetic_candles(bars_per_day=BARS_PER_DAY)
    yield fake_kite_settings
    _clear_markers()


@pytest.mark.django_db
def test_a_multi_year_minute_range_stays_within_every_kite_limit(kite: FakeKite) -> None:
    output = fetch("--symbols", "ADANIPORTS,CDSL", "--interval", "minute", "--from", "2021-01-01", "--to", "2023-06-30")
    requests = kite.historical_requests()
    assert len(requests) == 2 * 16  # 911 days in 60-day chunks, per symbol
    assert_within_kite_limits(requests)
    for symbol in ("ADANIPORTS", "CDSL"):
        ranges = sorted((s, e) for t, s, e in map(requested_range, requests) if t == TOKENS[symbol])
        assert ranges[0][0] == date(2021, 1, 1) and ranges[-1][1] == date(2023, 6, 30)
        assert all(b[0] == a[1] + timedelta(days=1) for a, b in pairwise(ranges))
        assert stored(symbol) == BARS_PER_DAY * weekdays(date(2021, 1, 1), date(2023, 6, 30))
    job = FetchJob.objects.get()
    assert (job.status, job.requests_total, job.requests_done, job.requests_skipped) == ("done", 32, 32, 0)
    assert job.rows_written == stored("ADANIPORTS") + stored("CDSL") and job.errors == {}
    assert job.started_at is not None and job.finished_at is not None and job.finished_at >= job.started_at
    assert f"fetch job {job.pk} done: 32 requests, 0 skipped" in output
    bar = Candle.objects.filter(instrument__tradingsymbol="CDSL").earliest("time")
    assert bar.time.isoformat() == "2021-01-01T03:45:00+00:00" and bar.high >= bar.close >= bar.low


@pytest.mark.django_db
def test_an_interrupted_fetch_resumes_without_asking_again_for_what_it_stored(kite: FakeKite) -> None:
    healthy = kite.candles
    answered: list[tuple[int, date, date]] = []

    def expires_after_five(token: str, interval: str, start: datetime, end: datetime) -> list[list[Any]]:
        if len(answered) >= 5:
            raise FakeKiteError(403, "TokenException", "Token is invalid or has expired.")
        answered.append((int(token), start.date(), end.date()))
        return healthy(token, interval, start, end)

    kite.candles = expires_after_five
    args = ("--symbols", "ADANIPORTS,CDSL", "--interval", "minute", "--from", "2023-01-01", "--to", "2023-12-31")
    with pytest.raises(CommandError, match="failed"):
        fetch(*args)
    first = FetchJob.objects.get()
    assert (first.status, first.requests_total, first.requests_done) == ("failed", 14, 5)
    assert set(first.errors) == {"ADANIPORTS", "CDSL"}
    assert all("TokenException (403): Token is invalid" in e for e in first.errors.values())
    before = len(kite.historical_requests())

    kite.candles = healthy
    assert "done: 9 requests, 5 skipped" in fetch(*args)
    again = {requested_range(r) for r in kite.historical_requests()[before:]}
    assert len(again) == 9 and again.isdisjoint(answered)
    for symbol in ("ADANIPORTS", "CDSL"):
        assert stored(symbol) == BARS_PER_DAY * weekdays(date(2023, 1, 1), date(2023, 12, 31))

    # A marker alone is not trusted: deleted candles are fetched again, and only those.
    first_chunk = Chunk(date(2023, 1, 1), date(2023, 3, 1)).aware_bounds()
    Candle.objects.filter(instrument__tradingsymbol="CDSL", time__range=first_chunk).delete()
    before = len(kite.historical_requests())
    assert "done: 1 requests, 13 skipped" in fetch(*args)
    assert [requested_range(r) for r in kite.historical_requests()[before:]] == [
        (TOKENS["CDSL"], date(2023, 1, 1), date(2023, 3, 1))
    ]
    assert stored("CDSL") == BARS_PER_DAY * weekdays(date(2023, 1, 1), date(2023, 12, 31))


@pytest.mark.django_db
def test_an_input_exception_stops_only_that_symbol(kite: FakeKite) -> None:
    body = {"status": "error", "message": "invalid token", "error_type": "InputException"}
    kite.set_response("GET", f"/instruments/historical/{TOKENS['CDSL']}/minute", 400, body)
    with pytest.raises(CommandError, match="partial: 1 symbol"):
        fetch("--symbols", "ADANIPORTS,CDSL,IGL", "--interval", "minute", "--from", "2024-01-01", "--to", "2024-03-31")
    job = FetchJob.objects.get()
    assert job.status == "partial" and list(job.errors) == ["CDSL"]
    assert job.errors["CDSL"] == "InputException (400): invalid token for 2024-01-01/2024-02-29"
    tokens = [requested_range(r)[0] for r in kite.historical_requests()]
    assert tokens.count(TOKENS["CDSL"]) == 1  # never retried
    assert tokens.count(TOKENS["ADANIPORTS"]) == tokens.count(TOKENS["IGL"]) == 2
    assert stored("CDSL") == 0
    assert stored("ADANIPORTS") == stored("IGL") == BARS_PER_DAY * weekdays(date(2024, 1, 1), date(2024, 3, 31))


@pytest.mark.django_db
def test_a_429_is_retried_after_a_pause_and_the_job_completes(kite: FakeKite) -> None:
    healthy = kite.candles
    refused: list[datetime] = []

    def too_many_once(token: str, interval: str, start: datetime, end: datetime) -> list[list[Any]]:
        if not refused:
            refused.append(start)
            raise FakeKiteError(429, "NetworkException", "Too many requests")
        return healthy(token, interval, start, end)

    kite.candles = too_many_once
    assert "done: 2 requests" in fetch(
        "--symbols", "IGL", "--interval", "minute", "--from", "2024-01-01", "--to", "2024-03-31"
    )
    requests = kite.historical_requests()
    assert [r.status for r in requests] == [429, 200, 200]
    assert requested_range(requests[0]) == requested_range(requests[1])
    assert requests[1].time - requests[0].time >= 1.0  # backed off before asking again


@pytest.mark.django_db
def test_symbols_without_a_token_fail_with_a_hint_to_sync(kite: FakeKite) -> None:
    Instrument.objects.create(exchange="NSE", tradingsymbol="NEWCO", provisional=True, source=SeriesSource.CSV)
    with pytest.raises(CommandError, match="failed: 2 symbol"):
        fetch("--symbols", "NEWCO,NOSUCH", "--interval", "day", "--from", "2024-01-01", "--to", "2024-01-31")
    errors = FetchJob.objects.get().errors
    assert errors["NEWCO"] == "NSE:NEWCO has no instrument_token (provisional): run sync_instruments first"
    assert errors["NOSUCH"] == "no instrument NSE:NOSUCH: run sync_instruments first"
    assert kite.historical_requests() == []


@pytest.mark.django_db
def test_a_run_stopped_by_its_deadline_goes_on_from_the_same_symbol(kite: FakeKite) -> None:
    job = fetch_job_create(symbols=["IGL", "CDSL"], interval="minute", start=date(2023, 1, 1), end=date(2023, 12, 31))
    rest = fetch_job_run(job_id=job.pk, deadline=time.monotonic() + 0.3)  # IGL has 7 chunks: not all in 0.3 s
    job.refresh_from_db()
    assert rest == (0, job.requests_done) and job.requests_done < 7
    assert job.status == "running" and job.finished_at is None
    assert fetch_job_run(job_id=job.pk, start_index=rest[0], start_chunk=rest[1]) is None
    job.refresh_from_db()
    assert (job.status, job.requests_done, job.requests_skipped, job.requests_total) == ("done", 14, 0, 14)
    ranges = [requested_range(r) for r in kite.historical_requests()]
    assert len(ranges) == len(set(ranges)) == 14


@pytest.mark.django_db
def test_a_universe_fetches_the_members_it_had_within_the_range(kite: FakeKite) -> None:
    universe = Universe.objects.create(name="NIFTY 50")
    for symbol, start, end in [
        ("ADANIPORTS", date(2020, 1, 1), None),
        ("CDSL", date(2020, 1, 1), date(2023, 12, 31)),  # left before the range
        ("IGL", date(2024, 3, 1), None),  # joined within it
        ("ENDURANCE", date(2024, 6, 1), None),  # joined after it
    ]:
        instrument = Instrument.objects.get(tradingsymbol=symbol)
        universe.memberships.create(instrument=instrument, start_date=start, end_date=end)
    assert "done: 2 requests" in fetch(
        "--universe", "NIFTY 50", "--interval", "day", "--from", "2024-01-01", "--to", "2024-03-31"
    )
    assert FetchJob.objects.get().symbols == ["ADANIPORTS", "IGL"]
    day_bars = Candle.objects.filter(interval="day", instrument__tradingsymbol="IGL")
    assert day_bars.count() == weekdays(date(2024, 1, 1), date(2024, 3, 31))
    with pytest.raises(CommandError, match="no universe named 'NIFTY 100'"):
        fetch("--universe", "NIFTY 100", "--interval", "day", "--from", "2024-01-01")


def test_bad_command_input_is_refused() -> None:
    with pytest.raises(CommandError, match="--from: expected YYYY-MM-DD, got '2024-13-01'"):
        fetch("--symbols", "IGL", "--interval", "minute", "--from", "2024-13-01")
    with pytest.raises(CommandError, match="empty range"):
        fetch("--symbols", "IGL", "--interval", "minute", "--from", "2024-02-01", "--to", "2024-01-01")


# --- the Celery task on a real default worker ---------------------------------------------------------


@pytest.fixture
def kite_default_worker(
    live_workers: dict[Queue, ManagedProcess], kite: FakeKite, tmp_path: Path
) -> Iterator[ManagedProcess]:
    """The session's default worker, restarted with the fake Kite's URL and credentials in its environment.

    Settings are read once per process, and the fake listens on a new port per
    test, so the worker must be (re)started after the fake: stop the session's
    default worker, start one with KITE_* set, and put back a plain one after.
    """

    def restart(env: dict[str, str]) -> ManagedProcess:
        live_workers[Queue.DEFAULT].stop()
        wait_until(lambda: not queue_nodes_alive([Queue.DEFAULT]), timeout=30, what="default worker gone")
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            live_workers.update(start_workers([Queue.DEFAULT], tmp_path))
        return live_workers[Queue.DEFAULT]

    env = {"KITE_API_ROOT": kite.url, "KITE_API_KEY": "fake-api-key", "KITE_ACCESS_TOKEN": "fake-access-token"}
    yield restart(env)
    restart({})


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_the_task_on_a_default_worker_shares_the_rate_limit_with_this_process(
    kite: FakeKite, kite_default_worker: ManagedProcess
) -> None:
    output = fetch(
        "--symbols", "ADANIPORTS,CDSL", "--interval", "minute", "--from", "2023-01-01", "--to", "2023-12-31", "--async"
    )
    queued = FetchJob.objects.get(symbols=["ADANIPORTS", "CDSL"])
    assert output == f"fetch job {queued.pk} queued (14 requests planned)\n" and queued.task_id
    # Meanwhile this process fetches two other symbols: both go through the one Redis limiter.
    local = fetch_job_create(
        symbols=["IGL", "ENDURANCE"], interval="minute", start=date(2023, 1, 1), end=date(2023, 12, 31)
    )

    def run_local() -> None:
        try:
            fetch_job_run(job_id=local.pk)
        finally:
            connections.close_all()  # this thread's own connection, or the test database cannot be dropped

    runner = threading.Thread(target=run_local)
    runner.start()
    runner.join(timeout=120)

    def finished() -> bool:
        return FetchJob.objects.get(pk=queued.pk).status not in ("pending", "running")

    wait_until(finished, timeout=120, what="the worker's fetch job", interval=0.5)
    queued.refresh_from_db()
    local.refresh_from_db()
    assert (queued.status, queued.requests_done, queued.errors) == ("done", 14, {}), kite_default_worker.log_tail()
    assert (local.status, local.requests_done) == ("done", 14)
    requests = kite.historical_requests()
    assert len(requests) == 28
    assert_within_kite_limits(requests)
    for symbol in TOKENS:
        assert stored(symbol) == BARS_PER_DAY * weekdays(date(2023, 1, 1), date(2023, 12, 31))
