"""Bars from the database for strategies and backtests: symbols or a universe, an interval, a date range.

`bars_load` is the one way the Django side builds an engine `Bars`: live evaluation (the latest window),
the backtest tasks and the `backtest` command all read through it, so they see the same prices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np

from apps.marketdata import selectors as marketdata
from apps.marketdata.calendar import IST
from apps.strategies.engine.bars import Bars
from tradingsite.exceptions import ApplicationError

__all__ = ["NoData", "bars_load", "bars_window", "resolve_symbols"]


class NoData(ApplicationError):
    """A range with no (or not enough) bars; `details["symbols"]` lists the symbols that lack them."""

    def __init__(self, message: str, *, symbols: Sequence[str]) -> None:
        super().__init__(message, code="no_data", details={"symbols": list(symbols)})


class BadSymbols(ApplicationError):
    def __init__(self, message: str, *, symbols: Sequence[str]) -> None:
        super().__init__(message, code="unknown_symbols", details={"symbols": list(symbols)})


def resolve_symbols(*, symbols: Sequence[str] | None = None, universe: str | None = None) -> list[str]:
    """Upper-cased NSE symbols, from a list or a universe's members today; unknown ones are an error."""
    if universe:
        return [i.tradingsymbol for i in marketdata.universe_members(universe=universe)]
    names = [s.strip().upper() for s in symbols or [] if s.strip()]
    if not names:
        raise BadSymbols("give at least one symbol or a universe", symbols=[])
    known = {i.tradingsymbol for i in marketdata.instrument_list(exchange="NSE").filter(tradingsymbol__in=names)}
    unknown = [s for s in names if s not in known]
    if unknown:
        raise BadSymbols(f"unknown NSE symbols: {', '.join(unknown)}", symbols=unknown)
    return list(dict.fromkeys(names))


def _instruments(symbols: Sequence[str]) -> list[Any]:
    by_symbol = {
        i.tradingsymbol: i for i in marketdata.instrument_list(exchange="NSE").filter(tradingsymbol__in=symbols)
    }
    unknown = [s for s in symbols if s not in by_symbol]
    if unknown:
        raise BadSymbols(f"unknown NSE symbols: {', '.join(unknown)}", symbols=unknown)
    return [by_symbol[s] for s in symbols]


def _to_bars(aligned: marketdata.AlignedBars) -> Bars:
    d = aligned.data
    return Bars(
        aligned.interval, aligned.times, tuple(aligned.symbols), d["open"], d["high"], d["low"], d["close"], d["volume"]
    )


def bars_load(*, symbols: Sequence[str], interval: str, start: date | datetime, end: date | datetime) -> Bars:
    """Every bar of `symbols` with start <= time <= end (dates are whole IST days); `NoData` names the empty ones."""
    lo = start if isinstance(start, datetime) else datetime.combine(start, time.min, tzinfo=IST)
    hi = end if isinstance(end, datetime) else datetime.combine(end, time.max, tzinfo=IST)
    if hi < lo:
        raise ApplicationError(f"the range ends ({end}) before it starts ({start})", code="bad_range")
    aligned = marketdata.aligned_bars(instruments=_instruments(symbols), interval=interval, start=lo, end=hi)
    bars = _to_bars(aligned)
    empty = (
        [s for j, s in enumerate(bars.symbols) if not bool(np.any(bars.valid()[:, j]))]
        if bars.n_times
        else list(symbols)
    )
    if empty:
        raise NoData(f"no {interval} bars from {start} to {end} for {', '.join(empty)}", symbols=empty)
    return bars


def bars_window(*, symbols: Sequence[str], interval: str, until: datetime, rows: int) -> Bars:
    """The latest `rows` bar times up to and including `until`: what live evaluation computes on.

    Reads a calendar span generous enough for `rows` bars (weekends, holidays, a short session), then
    keeps the last `rows` times.
    """
    per_day = {"day": 1.0, "minute": 375.0}.get(interval, 375.0 / max(1, _minutes(interval)))
    days = math.ceil(rows / per_day * 1.5) + (7 if interval == "day" else 4)
    bars = bars_load(symbols=symbols, interval=interval, start=until - timedelta(days=days), end=until)
    return bars.tail(rows)


def _minutes(interval: str) -> int:
    digits = interval.removesuffix("minute")
    return int(digits) if digits.isdigit() else 1
