"""Historical candles from Kite into the Candle table, as resumable, rate-limited fetch jobs.

A FetchJob names symbols, an interval and a date range. Each symbol's range is
split into requests within Kite's per-interval limit (`kite_history.plan_chunks`);
every request first takes a slot from the Redis rate limiter shared by all
processes (`kite:historical`, KITE_HISTORICAL_REQUESTS_PER_SECOND), and each
answer is upserted together with the job's progress in one transaction.

Resumable: when a chunk's candles are committed, a completion marker (the row
count) goes into the Redis hash `kite:history:done:<token>:<interval>`, field
`<first day>/<last day>`. A later run skips a chunk whose marker exists AND
whose rows are still in the Candle table (count >= marker), so a lost marker
only costs a re-fetch and deleted candles are fetched again. Chunks that reach
today are never marked: their data is still growing. See docs/kite-history.md.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kiteconnect import exceptions as kite_errors

from apps.brokers.services import KiteNotConfigured, kite_client
from apps.marketdata.kite_history import IST, Bar, CandleDataError, Chunk, bars_from_kite, max_days, plan_chunks
from apps.marketdata.models import Candle, FetchJob, Instrument, SeriesSource, Universe
from tradingsite.exceptions import ApplicationError
from tradingsite.ratelimit import RateLimiter, RateLimitTimeout
from tradingsite.redis_client import get_redis

log = logging.getLogger(__name__)

LIMITER_KEY = "kite:historical"
LIMITER_MARGIN_SECONDS = 0.3  # 3 grants per 1.3 s: Kite counts arrivals, and on a loaded 2-core CI
# machine a request left its process up to ~0.1 s after its grant (a 429 seen with a 0.1 s margin).
DONE_KEY = "kite:history:done:{token}:{interval}"
RETRY_DELAYS_SECONDS = (1.0, 2.0, 4.0)  # after a 429 / network error / timeout; then the symbol stops
ACQUIRE_TIMEOUT_SECONDS = 120.0
FINAL_STATUSES = (FetchJob.Status.DONE, FetchJob.Status.PARTIAL, FetchJob.Status.FAILED)
RETRYABLE = (kite_errors.NetworkException, requests.Timeout, requests.ConnectionError)


class FetchInputError(ApplicationError):
    default_code = "fetch_history_input"


class SymbolFailed(Exception):
    """This symbol cannot go on; the message is recorded in FetchJob.errors[symbol]."""


@dataclass(frozen=True)
class Target:
    symbol: str
    instrument_id: int
    token: int


def historical_limiter() -> RateLimiter:
    rate = settings.KITE_HISTORICAL_REQUESTS_PER_SECOND
    return RateLimiter(get_redis(), LIMITER_KEY, rate=rate, per_seconds=1, margin_seconds=LIMITER_MARGIN_SECONDS)


# --- creating jobs --------------------------------------------------------------------------------


def history_universe_symbols(*, name: str, start: date, end: date) -> list[str]:
    """Symbols of the universe's members at any time within start..end (constituents change)."""
    universe = Universe.objects.filter(name=name).first()
    if universe is None:
        raise FetchInputError(f"no universe named {name!r}", code="unknown_universe")
    members = universe.memberships.filter(Q(end_date__isnull=True) | Q(end_date__gte=start), start_date__lte=end)
    pairs = members.values_list("instrument__exchange", "instrument__tradingsymbol").distinct()
    return sorted({symbol if exchange == "NSE" else f"{exchange}:{symbol}" for exchange, symbol in pairs})


def fetch_job_create(*, symbols: Sequence[str], interval: str, start: date, end: date) -> FetchJob:
    """A PENDING job; requests_total counts every planned request, skipped ones included."""
    cleaned = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
    if not cleaned:
        raise FetchInputError("no symbols to fetch", code="no_symbols")
    try:
        chunks = plan_chunks(start, end, interval)
    except ValueError as exc:
        raise FetchInputError(str(exc), code="bad_range") from exc
    return FetchJob.objects.create(
        interval=interval,
        start=datetime.combine(start, datetime.min.time(), IST),
        end=datetime.combine(end, datetime.max.time().replace(microsecond=0), IST),
        symbols=cleaned,
        requests_total=len(cleaned) * len(chunks),
    )


def fetch_job_submit(*, symbols: Sequence[str], interval: str, start: date, end: date) -> FetchJob:
    """Create the job and enqueue `marketdata.fetch_history` once the row is committed."""
    from apps.marketdata.tasks import fetch_history

    with transaction.atomic():
        job = fetch_job_create(symbols=symbols, interval=interval, start=start, end=end)
        job.task_id = uuid.uuid4().hex
        job.save(update_fields=["task_id"])
        transaction.on_commit(lambda: fetch_history.apply_async(args=(job.pk,), task_id=job.task_id))
    return job


# --- running jobs -----------------------------------------------------------------------------------


def fetch_job_run(
    *, job_id: int, start_index: int = 0, start_chunk: int = 0, deadline: float | None = None, client: Any = None
) -> tuple[int, int] | None:
    """Fetch the job's symbols from symbol `start_index`, chunk `start_chunk` on; None when the job is finished.

    With a `deadline` (time.monotonic()) it stops between requests once the
    deadline passed and returns where to go on (symbol index, chunk index), so
    a task can hand the rest to a fresh task long before its time limit.
    """
    job = FetchJob.objects.get(pk=job_id)
    if job.status in FINAL_STATUSES:
        return None
    _mark_running(job_id)
    try:
        kite = client or kite_client()
    except KiteNotConfigured as exc:
        for symbol in job.symbols[start_index:]:
            _record_error(job_id, symbol, str(exc))
        _finish(job_id)
        return None
    _warm_up(kite)
    limiter = historical_limiter()
    for index in range(start_index, len(job.symbols)):
        symbol, first_chunk = job.symbols[index], start_chunk if index == start_index else 0
        try:
            stopped_at = _fetch_symbol(
                job, symbol, kite=kite, limiter=limiter, first_chunk=first_chunk, deadline=deadline
            )
        except SymbolFailed as exc:
            log.warning("fetch job %s: %s stopped: %s", job_id, symbol, exc)
            _record_error(job_id, symbol, str(exc))
            continue
        if stopped_at is not None:
            return index, stopped_at
    _finish(job_id)
    return None


def _warm_up(kite: Any) -> None:
    """Open the HTTP(S) connection with a cheap call before the first rate-limited request.

    The limiter counts grants, Kite counts arrivals. A fresh client's first
    request spends tens of milliseconds on the connection (TLS, lazy imports)
    after its grant, which lets it arrive closer to later requests than their
    grants were (seen as 429s against the fake server). A warm connection keeps
    the grant-to-arrival delay small and even; a failure here is left for the
    historical requests to report, per symbol.
    """
    try:
        kite.profile()
    except (kite_errors.KiteException, requests.RequestException) as exc:
        log.warning("Kite profile call before fetching failed: %s", _describe(exc))


def _fetch_symbol(
    job: FetchJob, symbol: str, *, kite: Any, limiter: RateLimiter, first_chunk: int, deadline: float | None
) -> int | None:
    """One symbol's chunks from `first_chunk` on; the chunk index the deadline stopped it at, if it did."""
    target = _target(symbol)
    start, end = job.start.astimezone(IST).date(), job.end.astimezone(IST).date()
    markers = _markers(target, job.interval)
    chunks = plan_chunks(start, end, job.interval)
    for index in range(first_chunk, len(chunks)):
        chunk = chunks[index]
        if deadline is not None and time.monotonic() > deadline:
            return index
        if _already_stored(target, job.interval, chunk, markers):
            FetchJob.objects.filter(pk=job.pk).update(requests_skipped=F("requests_skipped") + 1)
            continue
        records = _request(kite, limiter, target, job.interval, chunk)
        try:
            bars = bars_from_kite(records)
        except CandleDataError as exc:
            raise SymbolFailed(f"bad candle from Kite for {chunk.key}: {exc}") from exc
        rows = _store(job.pk, target, job.interval, bars)
        _mark_done(target, job.interval, chunk, rows)
    return None


def _target(symbol: str) -> Target:
    exchange, _, tradingsymbol = symbol.rpartition(":")
    exchange = exchange or "NSE"
    instrument = Instrument.objects.filter(exchange=exchange, tradingsymbol=tradingsymbol).first()
    if instrument is None:
        raise SymbolFailed(f"no instrument {exchange}:{tradingsymbol}: run sync_instruments first")
    if instrument.instrument_token is None:
        raise SymbolFailed(f"{instrument} has no instrument_token (provisional): run sync_instruments first")
    return Target(symbol=symbol, instrument_id=instrument.pk, token=instrument.instrument_token)


def _request(kite: Any, limiter: RateLimiter, target: Target, interval: str, chunk: Chunk) -> list[Any]:
    """One historical request through the shared limiter; retries only what clears by itself."""
    assert chunk.days <= max_days(interval)
    start, end = chunk.request_bounds()
    for attempt, delay in enumerate((*RETRY_DELAYS_SECONDS, None), start=1):
        try:
            limiter.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS)
        except RateLimitTimeout as exc:
            raise SymbolFailed(str(exc)) from exc
        try:
            records: list[Any] = kite.historical_data(target.token, start, end, interval, continuous=False, oi=True)
            return records
        except RETRYABLE as exc:
            if delay is None:
                raise SymbolFailed(f"{_describe(exc)} for {chunk.key}, {attempt} attempts") from exc
            log.info("%s %s: %s; retrying in %.0fs", target.symbol, chunk.key, _describe(exc), delay)
            time.sleep(delay)
        except kite_errors.KiteException as exc:
            raise SymbolFailed(f"{_describe(exc)} for {chunk.key}") from exc
    raise AssertionError("unreachable")


def _describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}{f' ({code})' if code else ''}: {exc}"


def _store(job_id: int, target: Target, interval: str, bars: list[Bar]) -> int:
    """Upsert one answer's candles and count it in the job, in one transaction."""
    candles = [
        Candle(
            instrument_id=target.instrument_id,
            interval=interval,
            time=bar.time,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            oi=bar.oi,
            source=SeriesSource.KITE,
        )
        for bar in bars
    ]
    with transaction.atomic():
        Candle.objects.bulk_create(
            candles,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["instrument", "interval", "time"],
            update_fields=["open", "high", "low", "close", "volume", "oi", "source"],
        )
        FetchJob.objects.filter(pk=job_id).update(
            requests_done=F("requests_done") + 1, rows_written=F("rows_written") + len(candles)
        )
    return len(candles)


def _markers(target: Target, interval: str) -> dict[str, int]:
    raw = get_redis().hgetall(DONE_KEY.format(token=target.token, interval=interval))
    return {(key.decode() if isinstance(key, bytes) else key): int(value) for key, value in raw.items()}


def _already_stored(target: Target, interval: str, chunk: Chunk, markers: dict[str, int]) -> bool:
    rows = markers.get(chunk.key)
    if rows is None:
        return False
    start, end = chunk.aware_bounds()
    stored = Candle.objects.filter(instrument_id=target.instrument_id, interval=interval, time__range=(start, end))
    return stored.count() >= rows


def _mark_done(target: Target, interval: str, chunk: Chunk, rows: int) -> None:
    if chunk.end < timezone.localdate(timezone=IST):
        get_redis().hset(DONE_KEY.format(token=target.token, interval=interval), chunk.key, rows)


def _mark_running(job_id: int) -> None:
    FetchJob.objects.filter(pk=job_id, started_at__isnull=True).update(started_at=timezone.now())
    FetchJob.objects.filter(pk=job_id).update(status=FetchJob.Status.RUNNING)


def _record_error(job_id: int, symbol: str, message: str) -> None:
    with transaction.atomic():
        job = FetchJob.objects.select_for_update().get(pk=job_id)
        job.errors = {**job.errors, symbol: message}
        job.save(update_fields=["errors"])


def _finish(job_id: int) -> None:
    """DONE, PARTIAL (some symbols failed) or FAILED (all did)."""
    with transaction.atomic():
        job = FetchJob.objects.select_for_update().get(pk=job_id)
        failed = set(job.errors) & set(job.symbols)
        if not failed:
            job.status = FetchJob.Status.DONE
        elif failed == set(job.symbols):
            job.status = FetchJob.Status.FAILED
        else:
            job.status = FetchJob.Status.PARTIAL
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "finished_at"])
    log.info("fetch job %s finished: %s", job_id, job.status)
