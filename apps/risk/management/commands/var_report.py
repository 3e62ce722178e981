"""`manage.py var_report`: VaR, ES and their standard errors of a book, from the daily candles in the database.

The book is a CSV file of `symbol,quantity` rows (a what-if), one account's positions (`--account`), or, with
neither, every enabled account's positions (the desk's book). Everything is computed before anything is
printed: a bad row or too little history ends the command with an error naming it, and no figures.
Nothing is stored unless `--save` (which needs a real book: an account or the desk).
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.brokers import selectors as broker_accounts
from apps.risk import snapshots
from apps.risk.book import Book, ReturnsWindow, book_current, book_from_rows, returns_window
from apps.risk.quant.var import METHODS, VarResult
from tradingsite.exceptions import ApplicationError

COLUMNS = ("symbol", "quantity")


class Command(BaseCommand):
    help = (
        "VaR, expected shortfall and standard errors of a book from the daily candles in the database. The book: "
        "--positions FILE.csv (header symbol,quantity; rows counted from 1 after the header; short = negative), "
        "--account NAME (its positions), or neither (every enabled account). See docs/risk.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        book = parser.add_mutually_exclusive_group()
        book.add_argument("--positions", type=Path, metavar="FILE.csv", help="CSV of symbol,quantity rows")
        book.add_argument("--account", metavar="NAME", help="that broker account's positions")
        parser.add_argument("--method", choices=(*METHODS, "all"), default="historical", help="(default: historical)")
        parser.add_argument("--confidence", type=float, default=0.99, help="(default: 0.99)")
        parser.add_argument("--horizon-days", type=int, default=1, help="(default: 1)")
        parser.add_argument("--window-days", type=int, default=250, help="daily returns in the window (default: 250)")
        parser.add_argument("--paths", type=int, default=100_000, help="Monte Carlo paths (default: 100000)")
        parser.add_argument("--distribution", choices=("normal", "t"), default="normal", help="Monte Carlo")
        parser.add_argument("--seed", type=int, default=0, help="Monte Carlo seed (default: 0)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--save", action="store_true", help="store a snapshot per method (not with --positions)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["save"] and options["positions"]:
            raise CommandError("--save stores snapshots of a real book: use it with --account, or with no book option")
        methods = list(METHODS) if options["method"] == "all" else [options["method"]]
        try:
            book = self._book(options)
            window, results = _compute(book, methods, options)
            saved = _save(book, window, results, options) if options["save"] else []
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        report = _report(book, window, results, options, saved)
        self.stdout.write(json.dumps(report, indent=2) if options["json"] else _table(report))

    @staticmethod
    def _book(options: dict[str, Any]) -> Book:
        if options["positions"]:
            return book_from_rows(read_positions(options["positions"]))
        if options["account"]:
            return book_current(account_id=broker_accounts.account_get_by_name(name=options["account"]).pk)
        return book_current()


def read_positions(path: Path) -> list[dict[str, str | None]]:
    """The CSV's rows with lower-case column names; a missing file or header is an error before any row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [(name or "").strip().lower() for name in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CommandError(
            f"{path}: the header must name the columns symbol,quantity; missing {', '.join(missing)} "
            f"(first line: {','.join(reader.fieldnames or []) or 'empty'})"
        )
    return [{(k or "").strip().lower(): v for k, v in row.items()} for row in reader]


def _compute(book: Book, methods: list[str], options: dict[str, Any]) -> tuple[ReturnsWindow | None, list[VarResult]]:
    if book.empty:
        return None, []
    window = returns_window(symbols=book.keys, window_days=options["window_days"])
    results = [
        snapshots.engine_run(
            book=book,
            window=window,
            method=method,
            confidence=options["confidence"],
            horizon_days=options["horizon_days"],
            paths=options["paths"],
            distribution=options["distribution"],
            seed=options["seed"],
        )
        for method in methods
    ]
    return window, results


def _params(method: str, options: dict[str, Any]) -> dict[str, Any]:
    keys = ("confidence", "horizon_days", "window_days", "paths", "distribution", "seed")
    return snapshots.snapshot_params(method=method, **{k: options[k] for k in keys})


def _save(book: Book, window: ReturnsWindow | None, results: list[VarResult], options: dict[str, Any]) -> list[int]:
    if not results:  # the empty book: one zero snapshot per method, as the service stores it
        methods = list(METHODS) if options["method"] == "all" else [options["method"]]
        return [
            snapshots.snapshot_store(
                book=book,
                window=None,
                result=None,
                params=_params(m, options),
                warnings=["the book is empty (no open positions): VaR 0"],
                trigger="command",
            ).pk
            for m in methods
        ]
    warnings = [*book.warnings, *(window.warnings if window else [])]
    return [
        snapshots.snapshot_store(
            book=book,
            window=window,
            result=r,
            params=_params(r.method, options),
            warnings=[*warnings, *r.warnings],
            trigger="command",
        ).pk
        for r in results
    ]


def _money(value: float | Decimal | None) -> str | None:
    amount = snapshots.money(value)
    return None if amount is None else str(amount)


def _report(
    book: Book, window: ReturnsWindow | None, results: list[VarResult], options: dict[str, Any], saved: list[int]
) -> dict[str, Any]:
    positions = [
        {
            "symbol": p.key,
            "quantity": p.quantity,
            "price": str(p.price),
            "price_source": p.price_source,
            "exposure": _money(p.exposure),
        }
        for p in book.positions
    ]
    return {
        "book": {"positions": positions, "gross_exposure": _money(book.gross_exposure)},
        "window": None
        if window is None
        else {"days": len(window.dates), "first": str(window.dates[0]), "last": str(window.dates[-1])},
        "confidence": options["confidence"],
        "horizon_days": options["horizon_days"],
        "results": [_result(r, book) for r in results],
        "warnings": [
            *book.warnings,
            *(window.warnings if window else ["the book is empty (no open positions): VaR 0"]),
        ],
        "saved_snapshots": saved,
    }


def _result(result: VarResult, book: Book) -> dict[str, Any]:
    return {
        "method": result.method,
        "var": _money(result.var),
        "es": _money(result.es),
        "var_se": _money(result.var_se),
        "es_se": _money(result.es_se),
        "paths": result.paths,
        "distribution": result.distribution,
        "component_var": {k: _money(float(c)) for k, c in zip(book.keys, result.component, strict=True)},
        "warnings": list(result.warnings),
    }


def _amount(text: str | None) -> str:
    return "-" if text is None else f"{Decimal(text):,.2f}"


def _table(report: dict[str, Any]) -> str:
    """The report for a person: the book, the window, then one line per method."""
    book = report["book"]
    lines = [f"Book: {len(book['positions'])} position(s), gross exposure {_amount(book['gross_exposure'])}"]
    lines.append(f"  {'symbol':<22}{'quantity':>10}{'price':>14}{'exposure':>18}  price from")
    for p in book["positions"]:
        lines.append(
            f"  {p['symbol']:<22}{p['quantity']:>10}{_amount(p['price']):>14}{_amount(p['exposure']):>18}  "
            f"{'latest price' if p['price_source'] == 'latest' else 'last daily close'}"
        )
    window = report["window"]
    if window:
        lines.append(
            f"Window: {window['days']} daily returns, {window['first']} to {window['last']}; "
            f"confidence {report['confidence']:.2%}; horizon {report['horizon_days']} day(s)"
        )
    lines.append(f"  {'method':<12}{'VaR':>18}{'ES':>18}{'VaR s.e.':>14}{'ES s.e.':>14}")
    for r in report["results"]:
        extra = f"  ({r['paths']:,} paths, {r['distribution']})" if r["paths"] else ""
        lines.append(
            f"  {r['method']:<12}{_amount(r['var']):>18}{_amount(r['es']):>18}"
            f"{_amount(r['var_se']):>14}{_amount(r['es_se']):>14}{extra}"
        )
    notes = [*report["warnings"], *(f"{r['method']}: {w}" for r in report["results"] for w in r["warnings"])]
    lines.extend(["Warnings:", *(f"  - {w}" for w in notes)] if notes else [])
    if report["saved_snapshots"]:
        lines.append(f"Saved snapshot(s): {', '.join(map(str, report['saved_snapshots']))}")
    return "\n".join(lines)
