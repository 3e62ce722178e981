"""Backtests: a strategy's targets through the compiled kernel, with Zerodha's charges, into trades and metrics.

    result = run_backtest(get_strategy("sma_crossover", {"fast": 10, "slow": 30}), bars, Settings(cash=1_000_000))
    result.metrics["sharpe"], result.equity, result.trades_json()
    run_grid("sma_crossover", schema.grid({...}), bars, Settings())  # metrics per parameter set, same order

The rules (fills, sizing, stops, costs, capital, the end of the data) are in `kernel.py` and
docs/backtest-engine.md. This module validates settings, prepares the kernel's arrays once per `Bars`
(memoised on it), and turns the kernel's integer records into trades lazily: a grid or a benchmark that
reads only metrics never builds a Python object per trade.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from apps.orders.charges import ChargeSchedule
from apps.strategies.engine import costs as costs_mod
from apps.strategies.engine import kernel
from apps.strategies.engine.bars import IST, Bars, BarsError
from apps.strategies.engine.metrics import METRIC_KEYS, compute_metrics, metrics_core, periods_per_year, years_between
from apps.strategies.engine.params import Params
from apps.strategies.engine.strategy import IndicatorCache, Strategy, get_strategy

__all__ = ["METRIC_KEYS", "BacktestResult", "Settings", "SettingsError", "Trade", "run_backtest", "run_grid"]

Progress = Callable[[int, int], None]
_SIZINGS = {"percent": kernel.PERCENT, "fixed": kernel.FIXED, "volatility": kernel.VOLATILITY}
_DAY_US = 86_400_000_000
_IST_OFFSET_US = 19_800_000_000  # +05:30


class SettingsError(ValueError):
    """A backtest setting that is unknown, of the wrong type or out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_CHOICES: dict[str, tuple[str, ...]] = {
    "capital": ("per_symbol", "shared"),
    "fill": ("next_open", "close"),
    "sizing": ("percent", "fixed", "volatility"),
    "product": ("CNC", "MIS"),
}


@dataclass(frozen=True)
class Settings:
    cash: float = 1_000_000.0  # per symbol when capital="per_symbol", in all when "shared"
    capital: str = "per_symbol"
    fill: str = "next_open"  # "next_open" | "close" (the signal bar's close)
    sizing: str = "percent"  # "percent" | "fixed" | "volatility"
    percent: float = 100.0  # % of the allocation per unit of |target|
    quantity: int = 1  # shares per unit of |target| ("fixed")
    vol_target: float = 0.20  # annualised ("volatility")
    vol_window: int = 20  # returns behind the realised volatility
    stop_loss: float | None = None  # fraction of the entry price
    take_profit: float | None = None
    costs: bool = True
    product: str = "CNC"
    slippage_ticks: int = 0
    tick_size: float = 0.05

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise SettingsError(name, f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        _check(self.cash > 0 and math.isfinite(self.cash), "cash", f"must be a positive amount, got {self.cash!r}")
        _check(0 < self.percent <= 100, "percent", f"must be above 0 and at most 100, got {self.percent!r}")
        _check(self.quantity >= 1, "quantity", f"must be at least 1, got {self.quantity!r}")
        _check(0 < self.vol_target <= 10, "vol_target", f"must be above 0 (0.2 is 20%), got {self.vol_target!r}")
        _check(self.vol_window >= 2, "vol_window", f"must be at least 2, got {self.vol_window!r}")
        for name in ("stop_loss", "take_profit"):
            value = getattr(self, name)
            _check(value is None or 0 < value < 1, name, f"must be a fraction above 0 and below 1, got {value!r}")
        _check(self.slippage_ticks >= 0, "slippage_ticks", f"must be at least 0, got {self.slippage_ticks!r}")
        ok_tick = self.tick_size > 0 and abs(self.tick_size * 100 - round(self.tick_size * 100)) < 1e-9
        _check(ok_tick, "tick_size", f"must be a positive whole number of paise, got {self.tick_size!r}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Settings:
        """Settings from JSON-like input; `SettingsError` names the first unknown or bad field."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise SettingsError("settings", f"must be an object of name: value, got {type(raw).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SettingsError(str(unknown[0]), f"unknown setting; known: {', '.join(known)}")
        values = {name: _coerce(name, known[name].type, value) for name, value in raw.items()}
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise SettingsError(name, message)


def _coerce(name: str, kind: Any, value: Any) -> Any:
    optional = "None" in str(kind)
    if value is None:
        if optional:
            return None
        raise SettingsError(name, "must not be null")
    base = str(kind).replace(" | None", "")
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise SettingsError(name, f"must be true or false, got {value!r}")
    if base == "str":
        if isinstance(value, str):
            return value
        raise SettingsError(name, f"must be a string, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingsError(name, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SettingsError(name, f"must be a finite number, got {value!r}")
    if base == "int":
        if not number.is_integer():
            raise SettingsError(name, f"must be a whole number, got {value!r}")
        return int(number)
    return number


@dataclass(slots=True)
class Trade:
    symbol: str
    entry_time: datetime  # IST
    exit_time: datetime  # IST; for an "open" trade, the last bar's time
    quantity: int  # signed: negative is short
    entry_price: float  # rupees, the fill (slippage included)
    exit_price: float  # rupees; for an "open" trade, the last close (marked, not sold)
    pnl: float  # rupees, net of the entry's and exit's charges
    charges: float  # entry + exit charges, rupees
    entry_charges: float
    exit_charges: float
    exit_reason: str  # "signal" | "stop_loss" | "take_profit" | "open"

    def as_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "entry_time": self.entry_time.isoformat(),
            "exit_time": self.exit_time.isoformat(),
            "quantity": self.quantity,
            "entry_price": self.entry_price,
            "exit_price": self.exit_price,
            "pnl": self.pnl,
            "charges": self.charges,
            "exit_reason": self.exit_reason,
        }


@dataclass
class BacktestResult:
    symbols: tuple[str, ...]
    times: NDArray[np.datetime64]  # (T,)
    equity: NDArray[np.float64]  # (T,) total equity, rupees
    equity_by_symbol: NDArray[np.float64] | None  # (T, N) with capital="per_symbol"
    metrics: dict[str, float]
    settings: Settings
    records: NDArray[np.int64] = field(repr=False)  # the kernel's trade rows (kernel.TRADE_COLUMNS)
    _trades: list[Trade] | None = field(default=None, repr=False)

    @property
    def trades(self) -> list[Trade]:
        """Closed trades in exit order, then those still open at the end (exit_reason "open")."""
        if self._trades is None:
            self._trades = _trades_from(self.records, self.symbols, self.times)
        return self._trades

    def trades_json(self) -> list[dict[str, Any]]:
        return [t.as_json() for t in self.trades]


def _trades_from(records: NDArray[np.int64], symbols: tuple[str, ...], times: NDArray[np.datetime64]) -> list[Trade]:
    micros = times.astype("datetime64[us]").astype(np.int64)
    stamps: dict[int, datetime] = {}

    def at(bar: int) -> datetime:
        if bar not in stamps:
            stamps[bar] = datetime.fromtimestamp(int(micros[bar]) / 1_000_000, tz=IST)
        return stamps[bar]

    out = []
    for sym, e_bar, x_bar, qty, e_px, x_px, e_ch, x_ch, reason in records.tolist():
        out.append(
            Trade(
                symbol=symbols[sym],
                entry_time=at(e_bar),
                exit_time=at(x_bar),
                quantity=qty,
                entry_price=e_px / 100,
                exit_price=x_px / 100,
                pnl=(qty * (x_px - e_px) - e_ch - x_ch) / 100,
                charges=(e_ch + x_ch) / 100,
                entry_charges=e_ch / 100,
                exit_charges=x_ch / 100,
                exit_reason=kernel.REASONS[reason],
            )
        )
    return out


@dataclass(frozen=True)
class _Prepared:
    """What the kernel reads from one `Bars`, whatever the strategy: memoised on the Bars."""

    open: NDArray[np.int64]
    high: NDArray[np.int64]
    low: NDArray[np.int64]
    close: NDArray[np.int64]
    valid: NDArray[np.bool_]
    days: NDArray[np.int64]  # the exchange's (IST) date of each bar, days since the epoch
    marks: NDArray[np.float64]  # (N, T) last close in paise, carried over missing bars (0 before the first)
    counts: NDArray[np.int64]  # (N, T + 1) bars each symbol has before each bar
    periods: float
    years: float


def _prepared(bars: Bars) -> _Prepared:
    memo = bars._memo
    if "engine:prepared" not in memo:
        if bars.n_times == 0:
            raise BarsError("no bars to backtest")
        valid = np.ascontiguousarray(bars.valid())
        for name in ("open", "high", "low"):
            holes = valid & np.isnan(bars[name])
            if holes.any():
                t, j = (int(x[0]) for x in np.nonzero(holes))
                raise BarsError(f"{bars.symbols[j]}: bar {bars.times[t]} has a close but no {name}")
        micros = bars.times.astype(np.int64)
        close = bars.paise("close")
        rows = np.where(valid, np.arange(bars.n_times)[:, None], -1)
        np.maximum.accumulate(rows, axis=0, out=rows)
        carried = np.where(rows >= 0, np.take_along_axis(close, np.maximum(rows, 0), axis=0), 0)
        counts = np.zeros((bars.n_symbols, bars.n_times + 1), dtype=np.int64)
        np.cumsum(valid.T, axis=1, out=counts[:, 1:])
        memo["engine:prepared"] = _Prepared(
            open=np.ascontiguousarray(bars.paise("open")),
            high=np.ascontiguousarray(bars.paise("high")),
            low=np.ascontiguousarray(bars.paise("low")),
            close=np.ascontiguousarray(bars.paise("close")),
            valid=valid,
            days=(micros + _IST_OFFSET_US) // _DAY_US,
            marks=np.ascontiguousarray(carried.T, dtype=np.float64),
            counts=counts,
            periods=periods_per_year(bars.interval),
            years=years_between(bars.times),
        )
    prepared: _Prepared = memo["engine:prepared"]
    return prepared


def _realised_vol(bars: Bars, window: int, periods: float) -> NDArray[np.float64]:
    """Annualised sample std of the last `window` close-to-close returns at each bar (NaN if any is missing)."""
    key = f"engine:vol:{window}"
    if key not in bars._memo:
        close = bars.close
        returns = np.full(close.shape, np.nan)
        returns[1:] = close[1:] / close[:-1] - 1.0
        ok = ~np.isnan(returns)
        r = np.where(ok, returns, 0.0)
        zero = np.zeros((1, close.shape[1]))
        s1 = np.concatenate([zero, np.cumsum(r, axis=0)])
        s2 = np.concatenate([zero, np.cumsum(r * r, axis=0)])
        cnt = np.concatenate([zero, np.cumsum(ok, axis=0)])
        vol = np.full(close.shape, np.nan)
        if window < close.shape[0]:
            n = window
            sum1, sum2 = s1[n + 1 :] - s1[1:-n], s2[n + 1 :] - s2[1:-n]
            full = (cnt[n + 1 :] - cnt[1:-n]) == n
            var = np.maximum(sum2 - sum1 * sum1 / n, 0.0) / (n - 1)
            vol[n:] = np.where(full, np.sqrt(var * periods), np.nan)
        bars._memo[key] = vol
    out: NDArray[np.float64] = bars._memo[key]
    return out


_NO_VOL = np.zeros((1, 1))


Outputs = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]
_SIMULATE: Callable[..., Outputs] = kernel.simulate


@dataclass(frozen=True)
class _Plan:
    """Everything the kernel reads but the targets, for one (bars, settings): built once per run or grid."""

    shape: tuple[int, int]
    before: tuple[Any, ...]  # kernel arguments before the targets
    after: tuple[Any, ...]  # and after

    def run(self, targets: NDArray[np.float64]) -> Outputs:
        if targets.shape != self.shape:
            raise ValueError(f"targets are shaped {targets.shape}, expected (times, symbols) = {self.shape}")
        return _SIMULATE(*self.before, np.ascontiguousarray(targets, dtype=np.float64), *self.after)


def _plan(bars: Bars, settings: Settings, schedule: ChargeSchedule | None, *, record: bool) -> _Plan:
    p = _prepared(bars)
    table = costs_mod.rate_table(schedule)
    version = _versions(bars, table, p) if settings.costs else np.zeros(len(p.days), dtype=np.int64)
    vol = _realised_vol(bars, settings.vol_window, p.periods) if settings.sizing == "volatility" else _NO_VOL
    tick = round(settings.tick_size * 100)
    cfg = np.array(
        [settings.costs, costs_mod.product_index(settings.product), settings.capital == "shared",
         settings.fill == "close", _SIZINGS[settings.sizing], settings.quantity, settings.slippage_ticks * tick, tick,
         round(settings.cash * 100), record, table.denominator],
        dtype=np.int64,
    )  # fmt: skip
    fcfg = np.array([settings.percent / 100.0, settings.vol_target, settings.stop_loss or 0.0,
                     settings.take_profit or 0.0])  # fmt: skip
    return _Plan(
        shape=p.close.shape,
        before=(p.open, p.high, p.low, p.close, p.valid),
        after=(vol, version, table.rates, table.caps, table.gst, cfg, fcfg, p.marks, p.counts),
    )


def _simulate(
    targets: NDArray[np.float64], bars: Bars, settings: Settings, schedule: ChargeSchedule | None, *, record: bool
) -> Outputs:
    return _plan(bars, settings, schedule, record=record).run(targets)


def _versions(bars: Bars, table: costs_mod.RateTable, p: _Prepared) -> NDArray[np.int64]:
    key = f"engine:versions:{id(table)}"
    if key not in bars._memo:
        bars._memo[key] = np.ascontiguousarray(table.version_index(p.days))
    out: NDArray[np.int64] = bars._memo[key]
    return out


def _initial(bars: Bars, settings: Settings) -> float:
    return float(round(settings.cash * 100) / 100 * (bars.n_symbols if settings.capital == "per_symbol" else 1))


def run_backtest(
    strategy: Strategy,
    bars: Bars,
    settings: Settings | None = None,
    *,
    cache: IndicatorCache | None = None,
    schedule: ChargeSchedule | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """One backtest of `strategy` over every symbol of `bars` (see the module and kernel docstrings)."""
    settings = settings or Settings()
    if strategy.intraday and settings.product != "MIS":
        settings = dataclasses.replace(settings, product="MIS")  # it squares off every session: intraday charges
    total = bars.n_symbols
    if progress is not None:
        progress(0, total)
    targets = strategy.targets(bars, cache if cache is not None and cache.bars is bars else None)
    equity, by_symbol, records, stats = _simulate(targets, bars, settings, schedule, record=True)
    if settings.capital == "per_symbol" and len(records) > 1:
        # The kernel runs symbol by symbol: put the closed trades in exit order (then the open ones).
        key = np.where(records[:, 8] == kernel.OPEN, len(bars.times), records[:, 2])
        records = records[np.argsort(key, kind="stable")]
    p = _prepared(bars)
    metrics = compute_metrics(equity, initial=_initial(bars, settings), periods=p.periods, years=p.years, stats=stats)
    if progress is not None:
        progress(total, total)
    return BacktestResult(
        symbols=bars.symbols,
        times=bars.times,
        equity=equity,
        equity_by_symbol=by_symbol if settings.capital == "per_symbol" else None,
        metrics=metrics,
        settings=settings,
        records=records,
    )


def run_grid(
    strategy_name: str,
    param_sets: Sequence[Params | Mapping[str, Any]],
    bars: Bars,
    settings: Settings | None = None,
    *,
    cache: IndicatorCache | None = None,
    schedule: ChargeSchedule | None = None,
    progress: Progress | None = None,
) -> list[dict[str, float]]:
    """Metrics of each parameter set, in order; every indicator window is computed once (`IndicatorCache`)."""
    settings = settings or Settings()
    cache = cache if cache is not None and cache.bars is bars else IndicatorCache(bars)
    strategies = [get_strategy(strategy_name, params) for params in param_sets]  # all validated before any work
    if strategies and strategies[0].intraday and settings.product != "MIS":
        settings = dataclasses.replace(settings, product="MIS")
    p = _prepared(bars)
    plan = _plan(bars, settings, schedule, record=False)
    initial = _initial(bars, settings)
    out: list[dict[str, float]] = []
    for done, strategy in enumerate(strategies, start=1):
        equity, _, _, stats = plan.run(strategy.targets(bars, cache))
        values = metrics_core(equity, initial, p.periods, p.years, stats)
        out.append(dict(zip(METRIC_KEYS, values.tolist(), strict=True)))
        if progress is not None:
            progress(done, len(strategies))
    return out
