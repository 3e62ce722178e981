"""The peers of the backtest benchmark, each doing what our engine does, and the bare compiled loop.

SMA(10) vs SMA(30) of the close, long only, all in, filled at the next bar's open, no costs, 1,000,000 of
cash per symbol; every peer's final equity per symbol is compared with ours by the caller.

- backtesting.py: one `Backtest` per symbol (pandas rolling means, `crossover`, default all-in `buy()`).
- backtrader: one `Cerebro` per symbol, `cheat_on_open=True`, the order placed in `next_open` so that it is
  sized from the price it fills at: floor(cash * (1 - eps) / open), the same all-in rule.
- vectorbt: `Portfolio.from_signals` once over the 50 columns (signals shifted one bar, `price=open`,
  `size=inf` with `size_granularity=1`: whole shares, all in). Its all-in buys floor(cash / price) shares where
  backtesting.py (and ours) buy floor(cash * (1 - eps) / price): one share fewer when cash / price is whole
  (1,000,000 at 625.00). Starting vectorbt with cash * (1 - eps) makes the first buy agree; the 2e-10 rupee
  this costs is far below a paisa.
- the bare loop: one numba function per call that keeps the running sums, the regime and the position of
  each symbol in registers and returns the final equities; the least any engine can do for this job.
"""

# ruff: noqa: PLR0917 - compiled functions take positional arguments (numba has no keyword-only arguments)
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

CASH = 1_000_000.0
FAST, SLOW = 10, 30
ALL_IN = 1.0 - sys.float_info.epsilon


def symbol_frames(daily_dir: Path, symbols: Sequence[str]) -> dict[str, Any]:
    """Each symbol's own rows (no alignment), as backtesting.py and backtrader read them."""
    import pandas as pd  # type: ignore[import-untyped]

    frames = {}
    for symbol in symbols:
        frame = pd.read_csv(daily_dir / f"{symbol}.csv")
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]).dt.tz_localize(None))
        frames[symbol] = frame[["open", "high", "low", "close", "volume"]]
    return frames


# -- backtesting.py -------------------------------------------------------------------------------------------


def backtesting_py(frames: dict[str, Any]) -> Callable[[], dict[str, float]]:
    import pandas as pd
    from backtesting import Backtest, Strategy  # type: ignore[import-untyped]
    from backtesting.lib import crossover  # type: ignore[import-untyped]

    def sma(values: Any, n: int) -> Any:
        return pd.Series(values).rolling(n).mean()

    class SmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, FAST)
            self.slow = self.I(sma, self.data.Close, SLOW)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    capitalised = {s: f.rename(columns=str.capitalize) for s, f in frames.items()}

    def run() -> dict[str, float]:
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for symbol, frame in capitalised.items():
                stats = Backtest(frame, SmaCross, cash=CASH, commission=0.0).run()
                stats["_trades"]  # the trade records, as ours keeps them
                out[symbol] = float(stats["Equity Final [$]"])
        return out

    return run


# -- backtrader -----------------------------------------------------------------------------------------------


def backtrader(frames: dict[str, Any]) -> Callable[[], dict[str, float]]:
    import backtrader as bt  # type: ignore[import-untyped]

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            fast = bt.ind.SMA(self.data.close, period=FAST)
            slow = bt.ind.SMA(self.data.close, period=SLOW)
            self.cross = bt.ind.CrossOver(fast, slow)
            self.signal = 0.0

        def next_open(self) -> None:  # cheat-on-open: this bar's open, before its close is known
            if self.signal > 0 and not self.position:
                self.buy(size=int((self.broker.getcash() * ALL_IN) // self.data.open[0]))
            elif self.signal < 0 and self.position:
                self.close()
            self.signal = 0.0

        def next(self) -> None:
            self.signal = float(self.cross[0])

    def one(frame: Any) -> float:
        cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame))
        cerebro.addstrategy(SmaCross)
        cerebro.addanalyzer(bt.analyzers.TradeAnalyzer)
        cerebro.broker.setcash(CASH)
        cerebro.broker.setcommission(commission=0.0)
        cerebro.run()
        return float(cerebro.broker.getvalue())

    def run() -> dict[str, float]:
        return {symbol: one(frame) for symbol, frame in frames.items()}

    return run


# -- vectorbt -------------------------------------------------------------------------------------------------


def _crossings(fast: NDArray[np.float64], slow: NDArray[np.float64]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(entries, exits) one bar after fast crosses above / below slow, for fills at that bar's open."""
    above = fast > slow
    defined = ~np.isnan(slow) & ~np.isnan(fast)
    both = defined[1:] & defined[:-1]
    up = above[1:] & ~above[:-1] & both
    down = ~above[1:] & above[:-1] & both
    entries = np.zeros(fast.shape, dtype=bool)
    exits = np.zeros(fast.shape, dtype=bool)
    entries[2:] = up[:-1]
    exits[2:] = down[:-1]
    return entries, exits


def vectorbt_one_call(close: NDArray[np.float64], open_: NDArray[np.float64]) -> Callable[[], NDArray[np.float64]]:
    """One from_signals over the 50 columns, with its means, signals, trade records and metrics."""
    import pandas as pd
    import vectorbt as vbt  # type: ignore[import-untyped]

    close_df = pd.DataFrame(close)

    def run() -> NDArray[np.float64]:
        fast = close_df.rolling(FAST).mean().to_numpy()
        slow = close_df.rolling(SLOW).mean().to_numpy()
        entries, exits = _crossings(fast, slow)
        pf = vbt.Portfolio.from_signals(close, entries, exits, price=open_, init_cash=CASH * ALL_IN, size=np.inf,
                                        size_granularity=1, freq="1D")  # fmt: skip
        pf.trades.records  # noqa: B018 - the trade records, as ours keeps them
        pf.sharpe_ratio()
        pf.max_drawdown()
        final: NDArray[np.float64] = np.asarray(pf.final_value(), dtype=np.float64)
        return final

    return run


def vectorbt_grid(
    close: NDArray[np.float64], open_: NDArray[np.float64], pairs: Sequence[tuple[int, int]]
) -> Callable[[], NDArray[np.float64]]:
    """The grid as one from_signals over pairs x symbols columns; each window's mean computed once (vbt.MA)."""
    import pandas as pd
    import vectorbt as vbt

    n_t, n_s = close.shape
    windows = sorted({w for pair in pairs for w in pair})
    close_df = pd.DataFrame(close)
    tiled_close = np.tile(close, len(pairs))
    tiled_open = np.tile(open_, len(pairs))

    def run() -> NDArray[np.float64]:
        ma = vbt.MA.run(close_df, window=windows).ma.to_numpy().reshape(n_t, len(windows), n_s)
        index = {w: k for k, w in enumerate(windows)}
        entries = np.empty((n_t, len(pairs) * n_s), dtype=bool)
        exits = np.empty_like(entries)
        for k, (f, s) in enumerate(pairs):
            cols = slice(k * n_s, (k + 1) * n_s)
            entries[:, cols], exits[:, cols] = _crossings(ma[:, index[f]], ma[:, index[s]])
        pf = vbt.Portfolio.from_signals(tiled_close, entries, exits, price=tiled_open, init_cash=CASH * ALL_IN,
                                        size=np.inf, size_granularity=1, freq="1D")  # fmt: skip
        pf.sharpe_ratio()
        pf.max_drawdown()
        pf.trades.count()
        final: NDArray[np.float64] = np.asarray(pf.final_value(), dtype=np.float64)
        return final.reshape(len(pairs), n_s).sum(axis=1)

    return run


# -- the bare compiled loop -----------------------------------------------------------------------------------


@njit(cache=True)
def bare_loop(
    open_p: NDArray[np.int64], close_p: NDArray[np.int64], valid: NDArray[np.bool_], fast: int, slow: int, cash: int
) -> NDArray[np.int64]:  # pragma: no cover - compiled
    """Final equity (paise) per symbol: exact running sums, the crossover, all-in fills at the next open."""
    n_t, n_s = close_p.shape
    out = np.empty(n_s, dtype=np.int64)
    for j in range(n_s):
        sum_f = sum_s = cnt_f = cnt_s = 0
        regime = -1  # no opinion yet
        pending = -1
        c = cash
        q = 0
        last = 0
        for t in range(n_t):
            ok = valid[t, j]
            if ok and pending >= 0:
                px = open_p[t, j]
                if pending == 1 and q == 0:
                    q = int((c / 100.0 * ALL_IN) // (px / 100.0))
                    c -= q * px
                elif pending == 0 and q != 0:
                    c += q * px
                    q = 0
                pending = -1
            if ok:
                sum_f += close_p[t, j]
                sum_s += close_p[t, j]
                cnt_f += 1
                cnt_s += 1
                last = close_p[t, j]
            if t >= fast and valid[t - fast, j]:
                sum_f -= close_p[t - fast, j]
                cnt_f -= 1
            if t >= slow and valid[t - slow, j]:
                sum_s -= close_p[t - slow, j]
                cnt_s -= 1
            if ok and cnt_f == fast and cnt_s == slow:
                now = 1 if sum_f * slow > sum_s * fast else 0
                if regime >= 0 and now != regime:
                    pending = now
                regime = now
        out[j] = c + q * last
    return out


@njit(cache=True)
def exact_ties(
    sums: NDArray[np.int64], full: NDArray[np.bool_], windows: NDArray[np.int64], pairs: NDArray[np.int64]
) -> NDArray[np.bool_]:  # pragma: no cover - compiled
    """(pairs, symbols): whether the fast and slow averages are EXACTLY equal at some bar of that backtest."""
    _, n_t, n_s = sums.shape
    out = np.zeros((pairs.shape[0], n_s), dtype=np.bool_)
    for k in range(pairs.shape[0]):
        a, b = pairs[k, 0], pairs[k, 1]
        f, s = windows[a], windows[b]
        for j in range(n_s):
            for t in range(n_t):
                if full[a, t, j] and full[b, t, j] and sums[a, t, j] * s == sums[b, t, j] * f:
                    out[k, j] = True
                    break
    return out
