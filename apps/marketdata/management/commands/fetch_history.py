"""`manage.py fetch_history`: Kite historical candles into the Candle table, resumable and rate-limited."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.marketdata.history import (
    FetchInputError,
    fetch_job_create,
    fetch_job_run,
    fetch_job_submit,
    history_universe_symbols,
)
from apps.marketdata.kite_history import IST
from apps.marketdata.models import FetchJob, Interval


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option}: expected YYYY-MM-DD, got {text!r}") from None


class Command(BaseCommand):
    help = (
        "Fetch historical candles from Kite (at most KITE_HISTORICAL_REQUESTS_PER_SECOND requests per second "
        "across all processes), skipping ranges already fetched. Progress is kept in a FetchJob (admin)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--symbols", help="comma-separated tradingsymbols (NSE, or EXCHANGE:SYMBOL)")
        which.add_argument("--universe", help="every member of this universe within the range, e.g. 'NIFTY 50'")
        parser.add_argument("--interval", required=True, choices=Interval.values)
        parser.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", help="last day, YYYY-MM-DD (today)")
        parser.add_argument("--async", dest="run_async", action="store_true", help="run on the default queue")

    def handle(self, *args: Any, **options: Any) -> None:
        start = _day(options["start"], "--from")
        end = _day(options["end"], "--to") if options["end"] else timezone.localdate(timezone=IST)
        try:
            if options["symbols"]:
                symbols = options["symbols"].split(",")
            else:
                symbols = history_universe_symbols(name=options["universe"], start=start, end=end)
            job_args = {"symbols": symbols, "interval": options["interval"], "start": start, "end": end}
            if options["run_async"]:
                job = fetch_job_submit(**job_args)
                self.stdout.write(f"fetch job {job.pk} queued ({job.requests_total} requests planned)")
                return
            job = fetch_job_create(**job_args)
        except FetchInputError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"fetch job {job.pk}: {job.requests_total} requests planned")
        fetch_job_run(job_id=job.pk)
        self._report(FetchJob.objects.get(pk=job.pk))

    def _report(self, job: FetchJob) -> None:
        self.stdout.write(
            f"fetch job {job.pk} {job.status}: {job.requests_done} requests, {job.requests_skipped} skipped "
            f"(already stored), {job.rows_written} candles written"
        )
        for symbol, error in sorted(job.errors.items()):
            self.stderr.write(f"  {symbol}: {error}")
        if job.status != FetchJob.Status.DONE:
            raise CommandError(f"fetch job {job.pk} {job.status}: {len(job.errors)} symbol(s) failed; run it again")
