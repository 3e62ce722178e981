"""Stress tests, the VaR backtest and portfolio metrics of the current book, for the API and the admin.

The book is today's (apps.risk.book); the history is every daily close in the database. Money comes out as
Decimal to the paisa, ratios and p-values as floats.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from apps.risk.book import (
    Book,
    BookError,
    adv_value,
    book_current,
    history_load,
    index_returns_on,
    returns_history,
    returns_window,
)
from apps.risk.models import StressScenario
from apps.risk.quant import backtest, metrics, stress
from apps.risk.snapshots import as_dict, money


def stress_context(keys: list[str]) -> tuple[stress.StressContext, list[str]]:
    """Every daily return in the database (NaN where a symbol had no bar that day or the day before)."""
    history = history_load(keys=keys, volume=True)
    returns = history.closes[1:] / history.closes[:-1] - 1.0
    index, notes = index_returns_on(dates=history.dates)
    context = stress.StressContext(
        symbols=list(keys), dates=history.dates[1:], returns=returns, index_returns=index, adv_value=adv_value(history)
    )
    return context, notes


def _stress_row(result: stress.StressResult, *, book: Book, source: str) -> dict[str, Any]:
    gross = float(book.gross_exposure)
    return {
        "name": result.name,
        "kind": result.kind,
        "source": source,
        "description": result.description,
        "params": dict(result.params),
        "applied": result.applied,
        "pnl": money(result.pnl),
        "pnl_pct_of_gross": round(100.0 * result.pnl / gross, 4) if gross else None,
        "positions": [
            {"symbol": key, "pnl": money(float(value))}
            for key, value in zip(book.keys, result.position_pnl, strict=True)
        ],
        "warnings": list(result.warnings),
        "error": "",
    }


def _operator_scenarios(book: Book, context: stress.StressContext) -> list[dict[str, Any]]:
    """The operators' enabled scenarios; one that no longer validates is reported, not fatal to the others."""
    rows = []
    for row in StressScenario.objects.filter(enabled=True).order_by("name"):
        try:
            scenario = stress.Scenario(row.name, row.kind, row.params, row.description)
            result = stress.stress_run(scenario=scenario, exposures=book.exposures, context=context)
        except stress.StressInputError as exc:
            rows.append(
                {
                    "name": row.name,
                    "kind": row.kind,
                    "source": "operator",
                    "description": row.description,
                    "params": row.params,
                    "applied": False,
                    "pnl": None,
                    "pnl_pct_of_gross": None,
                    "positions": [],
                    "warnings": [],
                    "error": str(exc),
                }
            )
            continue
        rows.append(_stress_row(result, book=book, source="operator"))
    return rows


def stress_current(*, account_id: int | None = None) -> list[dict[str, Any]]:
    """Built-in scenarios, replays of the worst index days in the data, and the operators' own, on today's book."""
    book = book_current(account_id=account_id)
    if book.empty:
        return []
    context, notes = stress_context(book.keys)
    builtin = {s.name for s in stress.BUILTIN_SCENARIOS}
    rows = [
        _stress_row(r, book=book, source="builtin" if r.name in builtin else "historical")
        for r in stress.stress_all(exposures=book.exposures, context=context)
    ]
    rows.extend(_operator_scenarios(book, context))
    for row in rows:
        if row["kind"] in ("index_beta", "historical"):
            row["warnings"].extend(notes)
    return rows


def _book_or_error(account_id: int | None, what: str) -> Book:
    book = book_current(account_id=account_id)
    if book.empty:
        raise BookError(f"the book is empty (no open positions): no {what}", code="empty_book")
    return book


def var_backtest_current(
    *, account_id: int | None = None, window_days: int = 250, confidence: float = 0.99
) -> dict[str, Any]:
    """Rolling historical VaR of today's book over its history, against that book's P&L on each day.

    Today's quantities are held fixed over the history (a hypothetical P&L): it tests the model, not the trading.
    """
    book = _book_or_error(account_id, "backtest")
    history = returns_history(symbols=book.keys, min_days=window_days + 2)
    pnl = history.returns @ book.exposures
    forecasts = backtest.rolling_historical_var(portfolio_pnl=pnl, window=window_days, confidence=confidence)
    result = backtest.var_backtest(pnl=pnl[window_days:], var_forecasts=forecasts[window_days:], confidence=confidence)
    dates = history.dates[window_days:]
    warnings = list(history.warnings)
    if len(dates) < 250:
        warnings.append(f"only {len(dates)} days backtested: the tests have little power below 250")
    return {
        "confidence": confidence,
        "window_days": window_days,
        "observations": len(dates),
        "first_date": as_dict(dates[0].astype(date)),
        "last_date": as_dict(dates[-1].astype(date)),
        "kupiec": as_dict(result.kupiec),
        "christoffersen": as_dict(result.christoffersen),
        "conditional_coverage_lr": result.conditional_coverage_lr,
        "conditional_coverage_p": result.conditional_coverage_p,
        "exceptions": [
            {
                "date": as_dict(dates[i].astype(date)),
                "pnl": money(pnl[window_days + i]),
                "var": money(forecasts[window_days + i]),
            }
            for i in result.exception_indices
        ],
        "warnings": warnings,
    }


def metrics_current(
    *, account_id: int | None = None, window_days: int = 250, risk_free_annual: float = 0.0
) -> dict[str, Any]:
    """Metrics of today's book over the window: daily P&L over gross exposure, beta to the NIFTY 50 index."""
    book = _book_or_error(account_id, "metrics")
    window = returns_window(symbols=book.keys, window_days=window_days)
    returns = (window.returns @ book.exposures) / float(book.gross_exposure)
    index, notes = index_returns_on(dates=window.all_dates)
    result = metrics.portfolio_metrics(returns=returns, index_returns=index, risk_free_annual=risk_free_annual)
    wealth_dates = window.all_dates
    return {
        **as_dict(result),
        "window_days": window_days,
        "first_date": as_dict(window.dates[0].astype(date)),
        "last_date": as_dict(window.dates[-1].astype(date)),
        "drawdown_peak_date": as_dict(wealth_dates[result.drawdown_peak_index].astype(date)),
        "drawdown_trough_date": as_dict(wealth_dates[result.drawdown_trough_index].astype(date)),
        "gross_exposure": money(book.gross_exposure),
        "warnings": [*window.warnings, *notes],
    }
