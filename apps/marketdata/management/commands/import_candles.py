"""`manage.py import_candles PATH...`: Kite-format candle CSV files into the Candle table, as upserts.

Thin: it expands paths, shows progress and prints what the service did. The
rules (validation, upserts, provisional instruments) are in
`apps.marketdata.importers` and `apps.marketdata.candle_csv`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from apps.marketdata.importers import CandleFileRejected, ImportResult, candles_import_files
from apps.marketdata.models import Interval
from tradingsite.exceptions import ApplicationError

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Import candles from Kite-format CSV files (timestamp,open,high,low,close,volume,oi). "
        "A directory means its *.csv files; the symbol is the file name (M&M.csv -> M&M). Existing bars are "
        "updated only where values differ; a file with any bad row is rejected whole and the command exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="CSV files or directories of them")
        parser.add_argument("--interval", default=Interval.DAY.value, choices=Interval.values, help="(default: day)")
        parser.add_argument("--symbol", help="trading symbol of the one file given (default: the file name)")
        parser.add_argument("--exchange", default="NSE", help="(default: NSE)")

    def handle(self, *args: Any, **options: Any) -> None:
        files = csv_files(options["paths"])
        if options["symbol"] and len(files) != 1:
            raise CommandError(f"--symbol names one file's instrument, but {len(files)} files were given")
        started = time.monotonic()
        outcomes = candles_import_files(
            paths=files, interval=options["interval"], symbol=options["symbol"], exchange=options["exchange"]
        )
        progress = ProgressBar(self.stderr, total=len(files)) if len(files) > 1 else None
        results: list[ImportResult] = []
        rejected: list[CandleFileRejected] = []
        try:
            for done, path in enumerate(files):
                if progress:
                    progress.show(done, path.name)
                outcome = next(outcomes)
                if progress:
                    progress.clear()
                self._report(outcome, results, rejected)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if progress:
            progress.done()
        self.stdout.write(summary(results, rejected, seconds=time.monotonic() - started))
        if rejected:
            names = ", ".join(str(r.details["file"]) for r in rejected)
            raise CommandError(f"{len(rejected)} of {len(files)} files rejected, nothing of them written: {names}")

    def _report(
        self,
        outcome: ImportResult | CandleFileRejected,
        results: list[ImportResult],
        rejected: list[CandleFileRejected],
    ) -> None:
        if isinstance(outcome, CandleFileRejected):
            rejected.append(outcome)
            self.stderr.write(f"{outcome.message} -- file rejected, nothing of it written")
            return
        results.append(outcome)
        self.stdout.write(describe(outcome))


def csv_files(paths: list[Path]) -> list[Path]:
    """Files as given and each directory's *.csv (sorted), each once; a missing path or empty directory is an error."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.csv") if p.is_file())
            if not found:
                raise CommandError(f"{path}: no *.csv files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"{path}: no such file or directory")
    return list(dict.fromkeys(p.absolute() for p in files))


def describe(result: ImportResult) -> str:
    text = (
        f"{result.file}: {result.rows} rows, {result.new} new, {result.changed} changed, {result.unchanged} unchanged"
    )
    if result.duplicates:
        text += f" ({result.duplicates} exact repeated rows skipped)"
    if result.instrument_created:
        text += f"; instrument {result.instrument} created provisionally"
    return text


def summary(results: list[ImportResult], rejected: list[CandleFileRejected], *, seconds: float) -> str:
    rows = sum(r.rows for r in results)
    new, changed, unchanged = (sum(getattr(r, k) for r in results) for k in ("new", "changed", "unchanged"))
    created = sum(r.instrument_created for r in results)
    text = (
        f"Total: {len(results)} files imported, {len(rejected)} rejected; {rows} rows, {new} new, "
        f"{changed} changed, {unchanged} unchanged in {seconds:.1f}s"
    )
    if created:
        text += f"; {created} instruments created provisionally"
    return text


class ProgressBar:
    """`[#####-----] 23/51 RELIANCE.csv` on stderr: redrawn in place on a terminal, one line per file otherwise."""

    def __init__(self, stream: OutputWrapper, *, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()
        self.shown = 0

    def show(self, done: int, label: str) -> None:
        filled = BAR_WIDTH * done // self.total if self.total else BAR_WIDTH
        line = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{self.total} {label}"
        if self.tty:
            self._write("\r" + line.ljust(self.shown))
            self.shown = len(line)
        else:
            self._write(line + "\n")

    def clear(self) -> None:
        """Wipe the bar on a terminal, so a result line printed next does not land in the middle of it."""
        if self.tty and self.shown:
            self._write("\r" + " " * self.shown + "\r")
            self.shown = 0

    def done(self) -> None:
        self.show(self.total, "done")
        if self.tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        self.stream.write(text, style_func=lambda s: s, ending="")
        self.stream.flush()
