"""Aligned bars: one (time, symbol) float64 array per field, NaN where a symbol has no bar.

The one input of every strategy and of the backtester. Rows are bar times (UTC, microseconds, oldest
first), columns are symbols. A symbol that is listed later (JIOFIN) has NaN rows before its first bar;
a missing bar in the middle is NaN too, and indicators treat a window that holds one as having no
value (see `apps.strategies.engine.indicators`).

Prices are whole paise on NSE, so `paise(field)` gives them as exact int64: averages compared through
integer sums can tie exactly, which float averages cannot promise.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

IST = ZoneInfo("Asia/Kolkata")
FIELDS = ("open", "high", "low", "close", "volume")


class BarsError(ValueError):
    """Bars that cannot be used: wrong shapes, unsorted times, a symbol with no data."""


@dataclass(frozen=True, eq=False)
class Bars:
    interval: str
    times: NDArray[np.datetime64]  # (T,) datetime64[us], UTC, strictly increasing
    symbols: tuple[str, ...]
    open: NDArray[np.float64]  # (T, N)
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = (len(self.times), len(self.symbols))
        for name in FIELDS:
            array = getattr(self, name)
            if array.shape != shape:
                raise BarsError(f"{name} is shaped {array.shape}, expected (times, symbols) = {shape}")
        if self.times.dtype != np.dtype("datetime64[us]"):
            object.__setattr__(self, "times", self.times.astype("datetime64[us]"))
        if len(self.times) > 1 and not bool(np.all(np.diff(self.times.astype(np.int64)) > 0)):
            raise BarsError("bar times must strictly increase")
        if len(set(self.symbols)) != len(self.symbols):
            raise BarsError("symbols repeat")

    @property
    def n_times(self) -> int:
        return len(self.times)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    def __getitem__(self, name: str) -> NDArray[np.float64]:
        if name not in FIELDS:
            raise KeyError(f"no bar field {name!r}; fields are {', '.join(FIELDS)}")
        array: NDArray[np.float64] = getattr(self, name)
        return array

    def valid(self) -> NDArray[np.bool_]:
        """(T, N): True where the symbol has a bar (its close is a number)."""
        if "valid" not in self._memo:
            self._memo["valid"] = ~np.isnan(self.close)
        out: NDArray[np.bool_] = self._memo["valid"]
        return out

    def paise(self, name: str = "close") -> NDArray[np.int64]:
        """A price field in whole paise as int64 (0 where there is no bar; see `valid()`)."""
        key = f"paise:{name}"
        if key not in self._memo:
            values = self[name]
            self._memo[key] = np.where(np.isnan(values), 0, np.rint(values * 100.0)).astype(np.int64)
        out: NDArray[np.int64] = self._memo[key]
        return out

    def slice(self, start: int, stop: int) -> Bars:
        """Rows `start:stop` (views, no copy)."""
        s = np.s_[start:stop]
        return Bars(
            self.interval,
            self.times[s],
            self.symbols,
            self.open[s],
            self.high[s],
            self.low[s],
            self.close[s],
            self.volume[s],
        )

    def tail(self, rows: int) -> Bars:
        """The latest `rows` bars: the window live evaluation sees."""
        return self.slice(max(0, self.n_times - rows), self.n_times)

    def select(self, symbols: Sequence[str]) -> Bars:
        """Only these symbols, in this order; rows where none of them has a bar are dropped."""
        missing = [s for s in symbols if s not in self.symbols]
        if missing:
            raise BarsError(f"no bars for {', '.join(missing)}")
        cols = [self.symbols.index(s) for s in symbols]
        keep = ~np.all(np.isnan(self.close[:, cols]), axis=1)
        o, h, lo, c, v = (getattr(self, f)[np.ix_(keep, cols)] for f in FIELDS)
        return Bars(self.interval, self.times[keep], tuple(symbols), o, h, lo, c, v)

    def times_ist(self) -> list[datetime]:
        """Bar times as timezone-aware datetimes in Asia/Kolkata."""
        return [datetime.fromtimestamp(int(us) / 1_000_000, tz=IST) for us in self.times.astype(np.int64)]

    def index_of(self, at: datetime) -> int:
        """The row of the bar that starts at `at` (timezone-aware); KeyError if there is none."""
        if at.tzinfo is None:
            raise ValueError(f"bar time must be timezone-aware, got {at!r}")
        micros = int(at.timestamp() * 1_000_000)
        row = int(np.searchsorted(self.times.astype(np.int64), micros))
        if row >= self.n_times or int(self.times[row].astype(np.int64)) != micros:
            raise KeyError(f"no bar at {at.isoformat()}")
        return row


def bars_from_series(
    interval: str,
    series: dict[str, tuple[NDArray[np.int64], dict[str, NDArray[np.float64]]]],
    symbols: Iterable[str] | None = None,
) -> Bars:
    """Align per-symbol series `{symbol: (micros UTC, {field: values})}` on the union of their times."""
    names = list(symbols) if symbols is not None else list(series)
    missing = [s for s in names if s not in series or len(series[s][0]) == 0]
    if missing:
        raise BarsError(f"no bars for {', '.join(missing)}")
    times = np.unique(np.concatenate([series[s][0] for s in names]))
    data = {f: np.full((len(times), len(names)), np.nan) for f in FIELDS}
    for j, name in enumerate(names):
        micros, columns = series[name]
        rows = np.searchsorted(times, micros)
        for f in FIELDS:
            data[f][rows, j] = columns[f]
    o, h, lo, c, v = (data[f] for f in FIELDS)
    return Bars(interval, times.astype("datetime64[us]"), tuple(names), o, h, lo, c, v)


def read_csv_series(path: Path) -> tuple[NDArray[np.int64], dict[str, NDArray[np.float64]]]:
    """One Kite-format candle CSV (`timestamp,open,high,low,close,volume[,oi]`) as (micros UTC, fields)."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:6]] != ["timestamp", *FIELDS]:
            raise BarsError(f"{path}: expected the header timestamp,open,high,low,close,volume[,oi]")
        rows = [r for r in reader if r]
    micros = np.array([int(datetime.fromisoformat(r[0]).timestamp() * 1_000_000) for r in rows], dtype=np.int64)
    values = np.array([[float(x) for x in r[1:6]] for r in rows], dtype=np.float64).reshape(len(rows), 5)
    return micros, {f: values[:, k] for k, f in enumerate(FIELDS)}


def read_csv_dir(directory: Path, symbols: Sequence[str] | None = None, *, interval: str = "day") -> Bars:
    """Every `SYMBOL.csv` of a directory (or only `symbols`), aligned; `NIFTY50_INDEX.csv` is left out.

    What tests and benchmarks read from `../shared/data/nifty50-daily` (never copied into the project).
    """
    if symbols is None:
        names = sorted(p.stem for p in directory.glob("*.csv") if not p.stem.endswith("_INDEX"))
    else:
        names = list(symbols)
    missing = [s for s in names if not (directory / f"{s}.csv").is_file()]
    if missing:
        raise BarsError(f"no file for {', '.join(missing)} in {directory}")
    return bars_from_series(interval, {s: read_csv_series(directory / f"{s}.csv") for s in names}, names)
