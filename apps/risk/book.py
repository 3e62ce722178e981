"""The book the risk figures are about, read from the database: positions, their prices, and daily returns.

A book is the net quantity per instrument (products and accounts netted: VaR is about what the desk holds, not
how it was booked), priced at the latest price the feeds left in Redis, or at the last daily close in the
database when there is none. Returns are daily simple returns of the closes, aligned on the IST trading date
(never on the row: files differ in their dates, the NIFTY 50 index has fewer than its members).

Other apps are read only through their selectors (import-linter enforces it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from redis.exceptions import RedisError

from apps.brokers import selectors as broker_accounts
from apps.marketdata import selectors as marketdata
from apps.orders import selectors as orders
from tradingsite.exceptions import ApplicationError, NotFound

DAY = "day"  # apps.marketdata.models.Interval.DAY: daily candles
INDEX_SYMBOL = "NSE:NIFTY50_INDEX"  # what import_candles creates from NIFTY50_INDEX.csv
IST = ZoneInfo("Asia/Kolkata")
MAX_GAP_FRACTION = 0.10  # more closes missing than this in a window is stale data, not a holiday
ADV_DAYS = 20  # average daily traded value over this many sessions (the liquidity stress)


class BookError(ApplicationError):
    default_code = "risk_book_invalid"


class HistoryTooShort(BookError):
    default_code = "history_too_short"


@dataclass(frozen=True)
class BookPosition:
    instrument_id: int
    exchange: str
    symbol: str
    quantity: int
    price: Decimal
    price_source: str  # "latest" (Redis) or "close" (the last daily candle)

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    @property
    def exposure(self) -> Decimal:
        return self.quantity * self.price


@dataclass(frozen=True)
class Book:
    """Positions sorted by key, so equal books give equal arrays and equal input hashes."""

    positions: tuple[BookPosition, ...]
    account_id: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.positions

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.positions]

    @property
    def exposures(self) -> NDArray[np.float64]:
        return np.array([float(p.exposure) for p in self.positions], dtype=np.float64)

    @property
    def gross_exposure(self) -> Decimal:
        return sum((abs(p.exposure) for p in self.positions), Decimal(0))


# --- positions ---------------------------------------------------------------------------------------------------


def book_current(*, account_id: int | None = None) -> Book:
    """One account's positions, or every enabled account's when None; net per instrument, zero nets dropped."""
    if account_id is not None:
        broker_accounts.account_get(account_id=account_id)  # NotFound for an unknown id
        wanted = {account_id}
    else:
        wanted = {a.pk for a in broker_accounts.accounts_enabled()}
    rows = orders.positions_of_accounts(account_ids=wanted)
    net: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = net.setdefault(row["instrument"], {**row, "net_quantity": 0})
        entry["net_quantity"] += row["net_quantity"]
    positions = [
        _priced(
            instrument_id=iid,
            exchange=r["exchange"],
            symbol=r["symbol"],
            quantity=r["net_quantity"],
            latest=r.get("last_price"),
        )
        for iid, r in net.items()
        if r["net_quantity"]
    ]
    return Book(positions=tuple(sorted(positions, key=lambda p: p.key)), account_id=account_id)


def _priced(*, instrument_id: int, exchange: str, symbol: str, quantity: int, latest: Decimal | None) -> BookPosition:
    if latest is not None:
        return BookPosition(instrument_id, exchange, symbol, quantity, Decimal(latest), "latest")
    instrument = marketdata.instrument_list().get(pk=instrument_id)
    bar = marketdata.candle_range(instrument=instrument, interval=DAY).last()
    if bar is None:
        raise BookError(
            f"{exchange}:{symbol}: no latest price and no daily candle to price the position",
            code="no_price",
            details={"symbol": f"{exchange}:{symbol}"},
        )
    return BookPosition(instrument_id, exchange, symbol, quantity, bar.close, "close")


def _latest_prices(keys: Iterable[str]) -> tuple[dict[str, Decimal], list[str]]:
    """Latest prices, or none with a warning when Redis cannot be read: a what-if report still has the closes."""
    try:
        latest = marketdata.latest_prices(keys=sorted(set(keys)))
    except RedisError as exc:
        return {}, [f"latest prices unavailable ({type(exc).__name__}): every position priced at its last close"]
    return {k.upper(): v.price for k, v in latest.items()}, []


def _split_key(raw: str) -> tuple[str, str]:
    """`RELIANCE` (NSE) or `NSE:RELIANCE` -> (exchange, symbol)."""
    exchange, _, symbol = raw.strip().rpartition(":")
    return (exchange.strip().upper() or "NSE"), symbol.strip().upper()


def _parse_quantity(raw: str | None, *, row: int) -> int:
    text = (raw or "").strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BookError(
            f"row {row}: quantity {text!r} is not a number", code="bad_quantity", details={"row": row, "value": text}
        ) from None
    if not value.is_finite() or value != value.to_integral_value():
        raise BookError(
            f"row {row}: quantity {text!r} is not a whole number of shares",
            code="bad_quantity",
            details={"row": row, "value": text},
        )
    return int(value)


def book_from_rows(rows: Sequence[Mapping[str, str | None]]) -> Book:
    """A book from (symbol, quantity) rows, as var_report reads them from a CSV file.

    Rows are numbered from 1 after the header; every error names the row and its value. A symbol listed twice
    is netted. Prices as for book_current: latest in Redis, else the last daily close.
    """
    quantities: dict[tuple[str, str], int] = {}
    instruments: dict[tuple[str, str], Any] = {}
    for number, row in enumerate(rows, start=1):
        raw_symbol = (row.get("symbol") or "").strip()
        if not raw_symbol:
            raise BookError(f"row {number}: empty symbol", code="bad_symbol", details={"row": number, "value": ""})
        exchange, symbol = _split_key(raw_symbol)
        quantity = _parse_quantity(row.get("quantity"), row=number)
        if (exchange, symbol) not in instruments:
            try:
                instruments[(exchange, symbol)] = marketdata.instrument_get(symbol=symbol, exchange=exchange)
            except NotFound:
                raise BookError(
                    f"row {number}: unknown symbol {raw_symbol!r} (no instrument {exchange}:{symbol})",
                    code="unknown_symbol",
                    details={"row": number, "value": raw_symbol},
                ) from None
        quantities[(exchange, symbol)] = quantities.get((exchange, symbol), 0) + quantity
    latest, warnings = _latest_prices(f"{e}:{s}" for e, s in quantities)
    positions = [
        _priced(
            instrument_id=instruments[(e, s)].pk,
            exchange=instruments[(e, s)].exchange,
            symbol=instruments[(e, s)].tradingsymbol,
            quantity=q,
            latest=latest.get(f"{e}:{s}"),
        )
        for (e, s), q in quantities.items()
        if q
    ]
    return Book(positions=tuple(sorted(positions, key=lambda p: p.key)), warnings=tuple(warnings))


# --- daily history -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Daily closes (and volumes when asked) of some instruments on the union of their IST trading dates."""

    keys: tuple[str, ...]
    dates: NDArray[np.datetime64]  # (T,) datetime64[D], IST dates
    closes: NDArray[np.float64]  # (T, N), NaN where a symbol has no bar
    volumes: NDArray[np.float64] | None
    coverage: dict[str, tuple[date, date, int]]  # key -> first, last close date, number of daily closes


@dataclass(frozen=True)
class ReturnsWindow:
    """`returns[t]` is the return from the close of `dates[t-1]` (or `base_date`) to the close of `dates[t]`."""

    keys: tuple[str, ...]
    base_date: date
    dates: NDArray[np.datetime64]  # (T,) datetime64[D]
    closes: NDArray[np.float64]  # (T+1, N), gaps filled with the previous close
    returns: NDArray[np.float64]  # (T, N)
    warnings: tuple[str, ...]

    @property
    def all_dates(self) -> NDArray[np.datetime64]:
        """The T+1 close dates, base date first."""
        return np.concatenate([np.array([self.base_date], dtype="datetime64[D]"), self.dates])


def _instruments(keys: Sequence[str]) -> list[Any]:
    found = []
    for key in keys:
        exchange, symbol = _split_key(key)
        try:
            found.append(marketdata.instrument_get(symbol=symbol, exchange=exchange))
        except NotFound:
            raise BookError(f"unknown symbol {key!r}", code="unknown_symbol", details={"symbol": key}) from None
    return found


def _ist_date(moment: datetime) -> date:
    return moment.astimezone(IST).date()


def _coverage(keys: Sequence[str], instruments: Sequence[Any]) -> dict[str, tuple[date, date, int]]:
    rows = marketdata.candle_coverage(instrument_ids=[i.pk for i in instruments])
    by_id = {r["instrument_id"]: r for r in rows if r["interval"] == DAY}
    coverage = {}
    for key, instrument in zip(keys, instruments, strict=True):
        row = by_id.get(instrument.pk)
        if row is None:
            raise HistoryTooShort(f"{key}: no daily candles in the database", details={"symbol": key, "closes": 0})
        coverage[key] = (_ist_date(row["first"]), _ist_date(row["last"]), row["count"])
    return coverage


def _day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    return datetime.combine(first, time.min, IST), datetime.combine(last, time.max, IST)


def history_load(
    *, keys: Sequence[str], start: date | None = None, end: date | None = None, volume: bool = False
) -> History:
    """Daily closes from `start` (default: the first close of any of them) to `end` (default: the last one)."""
    keys = tuple(keys)
    instruments = _instruments(keys)
    coverage = _coverage(keys, instruments)
    first = start or min(c[0] for c in coverage.values())
    last = min(end, max(c[1] for c in coverage.values())) if end else max(c[1] for c in coverage.values())
    lo, hi = _day_bounds(first, last)
    fields = ("close", "volume") if volume else ("close",)
    bars = marketdata.aligned_bars(instruments=instruments, interval=DAY, start=lo, end=hi, fields=fields)
    ist = (bars.times + np.timedelta64(330, "m")).astype("datetime64[D]")
    dates, starts = np.unique(ist, return_index=True)
    data = {f: bars[f] for f in fields}
    if len(dates) != len(ist) and len(ist):
        # Two bars on one IST date (bar times that differ between sources): one row per date, NaN-aware max.
        data = {f: np.fmax.reduceat(v, starts, axis=0) for f, v in data.items()}
    return History(keys, dates, data["close"], data.get("volume"), coverage)


def _ffill(closes: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each gap filled with the symbol's previous close (a missing day is a zero return); leading gaps stay NaN."""
    if closes.size == 0:
        return closes.copy()
    rows = np.where(np.isnan(closes), 0, np.arange(closes.shape[0])[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    return closes[rows, np.arange(closes.shape[1])]


def _too_short(history: History, needed_from: date | None, need: int, what: str, key: str = "") -> HistoryTooShort:
    """Name the symbol (by default the one whose history starts last: it is the one that limits the window)."""
    key = key or max(history.keys, key=lambda k: history.coverage[k][0])
    first, last, count = history.coverage[key]
    since = f" from {needed_from}" if needed_from else ""
    return HistoryTooShort(
        f"too little history for {key}: {count} daily closes from {first} to {last}; {what} needs {need} closes{since}",
        details={"symbol": key, "closes": count, "needed": need},
    )


def _span(need: int, end: date, history_first: date) -> date:
    """Calendar days to ask for: trading days are ~250 a year, so twice the count (plus a month) is plenty."""
    return max(history_first, end - timedelta(days=2 * need + 30))


def returns_window(*, symbols: Sequence[str], window_days: int, end: date | None = None) -> ReturnsWindow:
    """The last `window_days` daily returns up to `end` (default: the latest close in the database)."""
    if window_days < 2:
        raise BookError(f"window_days must be at least 2, got {window_days}", code="bad_window")
    keys = tuple(symbols)
    probe = _coverage(keys, _instruments(keys))
    last = min(end, max(c[1] for c in probe.values())) if end else max(c[1] for c in probe.values())
    first_any = min(c[0] for c in probe.values())
    need = window_days + 1
    history = history_load(keys=keys, start=_span(need, last, first_any), end=last)
    if len(history.dates) < need and history.dates.size and history.dates[0] > np.datetime64(first_any):
        history = history_load(keys=keys, start=first_any, end=last)
    return _window_from(history, window_days=window_days, end=last)


def _window_from(history: History, *, window_days: int, end: date) -> ReturnsWindow:
    need = window_days + 1
    what = f"a {window_days}-day window ending {end}"
    if len(history.dates) < need:
        raise _too_short(history, None, need, what)
    filled = _ffill(history.closes)[-need:]
    raw = history.closes[-need:]
    dates = history.dates[-need:]
    missing_start = np.flatnonzero(np.isnan(filled[0]))
    if missing_start.size:
        late = max((history.keys[j] for j in missing_start), key=lambda k: history.coverage[k][0])
        raise _too_short(history, dates[0].astype(date), need, what, key=late)
    warnings = _gap_warnings(history.keys, raw, window_days)
    returns = filled[1:] / filled[:-1] - 1.0
    return ReturnsWindow(history.keys, dates[0].astype(date), dates[1:], filled, returns, tuple(warnings))


def _gap_warnings(keys: Sequence[str], raw: NDArray[np.float64], window_days: int) -> list[str]:
    warnings = []
    for j, key in enumerate(keys):
        gaps = int(np.isnan(raw[:, j]).sum())
        if gaps > MAX_GAP_FRACTION * raw.shape[0]:
            raise HistoryTooShort(
                f"{key}: {gaps} of the {raw.shape[0]} daily closes of the {window_days}-day window are missing "
                "(stale or incomplete data)",
                details={"symbol": key, "missing": gaps},
            )
        if gaps:
            warnings.append(f"{key}: {gaps} missing daily close(s) in the window, filled with the previous close")
    return warnings


def returns_history(*, symbols: Sequence[str], end: date | None = None, min_days: int = 2) -> ReturnsWindow:
    """The longest common history of daily returns (from the date every symbol has a close) up to `end`."""
    keys = tuple(symbols)
    probe = _coverage(keys, _instruments(keys))
    common = max(c[0] for c in probe.values())
    history = history_load(keys=keys, start=common, end=end)
    days = len(history.dates) - 1
    if days < min_days:
        raise _too_short(history, None, min_days + 1, "the history")
    last = history.dates[-1].astype(date)
    return _window_from(history, window_days=days, end=last)


def index_returns_on(*, dates: NDArray[np.datetime64]) -> tuple[NDArray[np.float64], list[str]]:
    """NIFTY 50 index returns between consecutive `dates` (T+1 close dates -> T returns), NaN where it has no bar."""
    count = max(len(dates) - 1, 0)
    try:
        index = history_load(keys=[INDEX_SYMBOL], start=dates[0].astype(date), end=dates[-1].astype(date))
    except BookError as exc:
        return np.full(count, np.nan), [f"no NIFTY 50 index series ({INDEX_SYMBOL}): {exc.message}"]
    position = np.searchsorted(index.dates, dates)
    found = (position < len(index.dates)) & (index.dates[np.minimum(position, len(index.dates) - 1)] == dates)
    closes = np.where(found, index.closes[np.minimum(position, len(index.dates) - 1), 0], np.nan)
    returns = closes[1:] / closes[:-1] - 1.0
    missing = int(np.isnan(returns).sum())
    warnings = [f"NIFTY 50 index: no return on {missing} of {count} dates (no bar that day or the day before)"]
    return returns, (warnings if missing else [])


def adv_value(history: History, *, days: int = ADV_DAYS) -> NDArray[np.float64]:
    """Average daily traded value (close x volume) over the last `days` sessions each symbol traded."""
    assert history.volumes is not None
    traded = history.closes * history.volumes
    out = np.full(len(history.keys), np.nan)
    for j in range(len(history.keys)):
        column = traded[:, j][~np.isnan(traded[:, j])]
        if column.size:
            out[j] = float(column[-days:].mean())
    return out
