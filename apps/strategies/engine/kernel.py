"""The compiled simulation: one pass over the bars, every symbol, whole paise and whole shares.

Money is exact here: prices are whole paise (int64), quantities whole shares, charges whole paise
(`costs.py`), so cash and equity are exact int64 paise and a backtest of the same data always ends on
the same paisa. Only the sizing rule (a fraction of an allocation divided by a price) uses float64,
the way backtesting.py does, and its result is floored to whole shares.

The rules (docs/backtest-engine.md has them with the reasons):

- A position follows the target from its first CHANGE after the warm-up: the first target a symbol
  has (a regime already under way) is not acted on. Changes are between consecutive bars of that
  symbol that have a target; a bar without a bar (NaN close) or without a target neither signals nor
  fills.
- A change at bar t fills at the symbol's next bar's open (`fill_close=False`) or at t's close. It
  closes the open trade (if any) and opens a new one sized at the fill price (if the target is not 0).
- Stop-loss / take-profit levels are fixed at entry (rounded to the tick) and checked on every bar
  after the entry bar against its low/high; a bar that opens beyond a level fills at the open; when a
  bar reaches both, the stop-loss is assumed first. After a stop exit the symbol waits for the next
  change of its target.
- Within a bar, exits fill before entries (it matters only with shared capital).
- Capital: `shared=False` gives each symbol its own cash (independent columns, like backtesting.py run
  symbol by symbol); `shared=True` one cash pool, each entry allocated total equity / N at fill time.
- An entry never spends more than is available: quantity * price + charges <= cash (per symbol), or
  <= equity - gross position value (shared, which is cash when there is no short).
"""

# ruff: noqa: PLR0917 - compiled functions call each other positionally (numba has no keyword-only arguments)
from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = [
    "ALL_IN",
    "REASONS",
    "STATS",
    "TRADE_COLUMNS",
    "charge_components",
    "order_charges",
    "simulate",
]

# backtesting.py's default `buy()` size: "all in" is 1 - machine epsilon of the available cash.
ALL_IN = 1.0 - 2.220446049250313e-16
SIGNAL, STOP_LOSS, TAKE_PROFIT, OPEN = 0, 1, 2, 3
REASONS = ("signal", "stop_loss", "take_profit", "open")
TRADE_COLUMNS = ("symbol", "entry_bar", "exit_bar", "quantity", "entry_paise", "exit_paise", "entry_charges",
                 "exit_charges", "reason")  # fmt: skip
STATS = ("traded_paise", "charges_paise", "exposed", "valid", "closed", "wins", "gross_profit", "gross_loss", "open")
BUY, SELL = 0, 1
PERCENT, FIXED, VOLATILITY = 0, 1, 2


@njit(cache=True, inline="always")
def _half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


@njit(cache=True, inline="always")
def charge_components(
    rates: NDArray[np.int64],
    caps: NDArray[np.int64],
    gst: NDArray[np.int64],
    denominator: int,
    version: int,
    product: int,
    side: int,
    value: int,
) -> tuple[int, int, int, int, int, int]:
    """(brokerage, stt, exchange_txn, sebi, stamp_duty, gst) in paise of one order of `value` paise (costs.py)."""
    r = rates[version, product, side]
    brokerage = value * r[0]
    cap = caps[version, product]
    brokerage = min(brokerage, cap)
    transaction = value * r[2]
    sebi = value * r[4]
    return (
        _half_up(brokerage, denominator),
        _half_up(value * r[1], denominator),
        _half_up(transaction + value * r[3], denominator),
        _half_up(sebi, denominator),
        _half_up(value * r[5], denominator),
        _half_up(gst[version, 0] * (brokerage + transaction + sebi), gst[version, 1] * denominator),
    )


@njit(cache=True)
def order_charges(
    rates: NDArray[np.int64],
    caps: NDArray[np.int64],
    gst: NDArray[np.int64],
    denominator: int,
    version: int,
    product: int,
    side: int,
    value: int,
) -> int:
    """Total charges in paise of one executed order of `value` paise: the sum of the rounded components."""
    b, stt, txn, sebi, stamp, tax = charge_components(rates, caps, gst, denominator, version, product, side, value)
    return b + stt + txn + sebi + stamp + tax


@njit(cache=True)
def _affordable(
    want: int,
    price: int,
    budget: int,
    costs: bool,
    rates: NDArray[np.int64],
    caps: NDArray[np.int64],
    gst: NDArray[np.int64],
    denominator: int,
    version: int,
    product: int,
    side: int,
) -> int:
    """The most shares up to `want` whose value plus charges fit in `budget` paise."""
    if want <= 0 or budget <= 0:
        return 0
    if not costs:
        return min(want, budget // price)
    if want * price + order_charges(rates, caps, gst, denominator, version, product, side, want * price) <= budget:
        return want
    upper = 0.0
    for k in range(rates.shape[3]):
        upper += rates[version, product, side, k]
    upper = upper / denominator * (1.0 + gst[version, 0] / gst[version, 1]) + 1e-9
    q = min(want, int(budget / (price * (1.0 + upper))))
    while (
        q > 0 and q * price + order_charges(rates, caps, gst, denominator, version, product, side, q * price) > budget
    ):
        q -= 1
    while (
        q + 1 <= want
        and (q + 1) * price + order_charges(rates, caps, gst, denominator, version, product, side, (q + 1) * price)
        <= budget
    ):
        q += 1
    return q


@njit(cache=True)
def _size(
    sizing: int, fraction: float, quantity: int, vol_target: float, vol: float, weight: float, alloc: float, price: int
) -> int:
    """Whole shares wanted before the cash check: floor(allocation * fraction / price) for percent sizing."""
    if sizing == FIXED:
        return int(np.floor(quantity * weight))
    if sizing == VOLATILITY:
        if not vol > 0.0:  # NaN (too little history) or zero: no estimate, no position
            return 0
        f = min(1.0, vol_target / vol) * weight
    else:
        f = fraction * weight
    f = min(f, ALL_IN)
    return int((alloc * f) // (price / 100.0))


@njit(cache=True)
def _tick_round(price: float, tick: int) -> int:
    return max(tick, int(np.floor(price / tick + 0.5)) * tick)


@njit(cache=True, inline="always")
def _exit_price(q: int, raw: int, slip: int) -> int:
    """A closing fill's price: slippage against us (a long sells lower, a short buys back higher)."""
    return max(1, raw - slip) if q > 0 else raw + slip


@njit(cache=True, inline="always")
def _stop_fill(q: int, o: int, h: int, lo: int, sl: int, tp: int) -> tuple[int, int]:
    """(price, reason) of a stop-loss or take-profit exit in this bar, or (0, SIGNAL) when neither is reached."""
    if q > 0:
        hit_sl = sl > 0 and lo <= sl
        hit_tp = tp > 0 and h >= tp
        gap_sl = hit_sl and o <= sl
        gap_tp = hit_tp and o >= tp
    else:
        hit_sl = sl > 0 and h >= sl
        hit_tp = tp > 0 and lo <= tp
        gap_sl = hit_sl and o >= sl
        gap_tp = hit_tp and o <= tp
    if gap_sl:
        return o, STOP_LOSS
    if gap_tp:
        return o, TAKE_PROFIT
    if hit_sl:  # both reached inside one bar: the stop-loss is assumed first (the pessimistic order)
        return sl, STOP_LOSS
    if hit_tp:
        return tp, TAKE_PROFIT
    return 0, SIGNAL


@njit(cache=True)
def _levels(q: int, px: int, stop_loss: float, take_profit: float, tick: int) -> tuple[int, int]:
    direction = 1.0 if q > 0 else -1.0
    sl = _tick_round(px * (1.0 - direction * stop_loss), tick) if stop_loss > 0.0 else 0
    tp = _tick_round(px * (1.0 + direction * take_profit), tick) if take_profit > 0.0 else 0
    return sl, tp


@njit(cache=True)
def _entry(
    tgt: float,
    raw: int,
    alloc: float,
    budget: int,
    vol: float,
    cfg: NDArray[np.int64],
    fcfg: NDArray[np.float64],
    rates: NDArray[np.int64],
    caps: NDArray[np.int64],
    gst: NDArray[np.int64],
    v: int,
) -> tuple[int, int, int]:
    """(signed quantity, fill price, charges) of an entry at `raw` paise; quantity 0 when none is affordable."""
    long = tgt > 0
    px = raw + cfg[SLIP] if long else max(1, raw - cfg[SLIP])
    side = BUY if long else SELL
    want = _size(cfg[SIZING], fcfg[FRACTION], cfg[QUANTITY], fcfg[VOL_TARGET], vol, abs(tgt), alloc, px)
    costs = cfg[COSTS] != 0
    n = _affordable(want, px, budget, costs, rates, caps, gst, cfg[DENOMINATOR], v, cfg[PRODUCT], side)
    if n <= 0:
        return 0, px, 0
    ch = order_charges(rates, caps, gst, cfg[DENOMINATOR], v, cfg[PRODUCT], side, n * px) if costs else 0
    return (n if long else -n), px, ch


@njit(cache=True)
def _exit_charges(
    q: int, px: int, cfg: NDArray[np.int64], rates: NDArray[np.int64], caps: NDArray[np.int64],
    gst: NDArray[np.int64], v: int,
) -> int:  # fmt: skip
    if cfg[COSTS] == 0:
        return 0
    return order_charges(rates, caps, gst, cfg[DENOMINATOR], v, cfg[PRODUCT], SELL if q > 0 else BUY, abs(q) * px)


@njit(cache=True)
def _close(
    trades: NDArray[np.int64],
    used: int,
    stats: NDArray[np.int64],
    record: bool,
    j: int,
    e_bar: int,
    t: int,
    q: int,
    e_px: int,
    px: int,
    e_ch: int,
    ch: int,
    reason: int,
) -> int:
    """Tally a closed trade (and write its row when recording); returns the rows used."""
    pnl = q * (px - e_px) - e_ch - ch
    stats[ST_TRADED] += abs(q) * px
    stats[ST_CHARGES] += ch
    stats[ST_CLOSED] += 1
    if pnl > 0:
        stats[ST_WINS] += 1
        stats[ST_PROFIT] += pnl
    else:
        stats[ST_LOSS] -= pnl
    if not record:
        return used
    _write(trades, used, j, e_bar, t, q, e_px, px, e_ch, ch, reason)
    return used + 1


@njit(cache=True)
def _write(
    trades: NDArray[np.int64], row: int, j: int, e_bar: int, x_bar: int, q: int, e_px: int, x_px: int, e_ch: int,
    x_ch: int, reason: int,
) -> None:  # fmt: skip
    trades[row, 0] = j
    trades[row, 1] = e_bar
    trades[row, 2] = x_bar
    trades[row, 3] = q
    trades[row, 4] = e_px
    trades[row, 5] = x_px
    trades[row, 6] = e_ch
    trades[row, 7] = x_ch
    trades[row, 8] = reason


@njit(cache=True)
def _grow(buffer: NDArray[np.int64], used: int) -> NDArray[np.int64]:
    """The trade rows with room for two more (doubled when full)."""
    if used + 2 < buffer.shape[0]:
        return buffer
    bigger = np.empty((2 * buffer.shape[0] + 2, buffer.shape[1]), dtype=np.int64)
    bigger[:used] = buffer[:used]
    return bigger


@njit(cache=True)
def _changes(valid: NDArray[np.bool_], targets: NDArray[np.float64]) -> int:
    """How many target changes there are: no more trades than that can open."""
    n_t, n_s = targets.shape
    count = 0
    for j in range(n_s):
        prev = np.nan
        for t in range(n_t):
            tgt = targets[t, j]
            if valid[t, j] and not math.isnan(tgt):
                if not math.isnan(prev) and tgt != prev:
                    count += 1
                prev = tgt
    return count


# Indices into the integer and float configuration arrays (see `simulate`).
COSTS, PRODUCT, SHARED, FILL_CLOSE, SIZING, QUANTITY, SLIP, TICK, CASH, RECORD, DENOMINATOR = range(11)
FRACTION, VOL_TARGET, STOP, TAKE = range(4)
ST_TRADED, ST_CHARGES, ST_EXPOSED, ST_VALID, ST_CLOSED, ST_WINS, ST_PROFIT, ST_LOSS, ST_OPEN = range(9)


@njit(cache=True)
def simulate(
    open_p: NDArray[np.int64],
    high_p: NDArray[np.int64],
    low_p: NDArray[np.int64],
    close_p: NDArray[np.int64],
    valid: NDArray[np.bool_],
    targets: NDArray[np.float64],
    vol: NDArray[np.float64],
    version: NDArray[np.int64],
    rates: NDArray[np.int64],
    caps: NDArray[np.int64],
    gst: NDArray[np.int64],
    cfg: NDArray[np.int64],
    fcfg: NDArray[np.float64],
    marks: NDArray[np.float64],
    counts: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """(equity (T,) rupees, equity by symbol (T, N) rupees or (0, 0), trades (M, 9), stats (9,)).

    `cfg` (int64): costs, product (0 CNC, 1 MIS), shared, fill_close, sizing, quantity, slippage (paise),
    tick (paise), cash (paise), record, the rate table's denominator; `fcfg` (float64): percent / 100,
    vol_target, stop_loss, take_profit (0 = none). `marks` (N, T): each symbol's last close in paise, carried
    over bars it lacks (0 before its first); `counts` (N, T + 1): how many bars it has before each bar.
    `trades` rows follow TRADE_COLUMNS, `stats` STATS.
    """
    n_t, n_s = close_p.shape
    record = cfg[RECORD] != 0
    if not record:
        trades = np.empty((1, 9), dtype=np.int64)
    elif cfg[SHARED] != 0:
        trades = np.empty((_changes(valid, targets) + 1, 9), dtype=np.int64)
    else:
        trades = np.empty((16 * n_s, 9), dtype=np.int64)  # grown by `_column` as needed
    stats = np.zeros(9, dtype=np.int64)
    eq = np.zeros(n_t)  # paise: whole numbers, exact in float64 below 2**53 paise
    by_symbol = np.empty((n_s, n_t) if record and cfg[SHARED] == 0 else (0, 0))  # returned transposed: (T, N)
    if cfg[SHARED] != 0:
        used = _shared(open_p, high_p, low_p, close_p, valid, targets, vol, version, rates, caps, gst, cfg, fcfg,
                       trades, stats, eq)  # fmt: skip
    else:
        used = 0
        for j in range(n_s):
            trades, used = _column(j, open_p, high_p, low_p, close_p, valid, targets, vol, version, rates, caps, gst,
                                   cfg, fcfg, marks, counts, trades, used, stats, eq, by_symbol)  # fmt: skip
    equity = eq / 100.0
    return equity, by_symbol.T, trades[:used].copy(), stats


@njit(cache=True, inline="always")
def _mark(
    j: int, start: int, stop: int, cash: int, q: int, marks: NDArray[np.float64], eq: NDArray[np.float64],
    by_symbol: NDArray[np.float64], record: bool,
) -> None:  # fmt: skip
    """Bars [start, stop) of symbol j hold (cash, q): their equity, marked to each close (SIMD: no branch)."""
    row = marks[j]
    c = float(cash)
    n = float(q)
    for t in range(start, stop):
        eq[t] += c + n * row[t]
    if record:
        out = by_symbol[j]
        for t in range(start, stop):
            out[t] = (c + n * row[t]) / 100.0


@njit(cache=True)
def _column(  # noqa: PLR0912, PLR0915 - the per-bar rules in one place, the common path out of their way
    j: int,
    open_p: NDArray[np.int64],
    high_p: NDArray[np.int64],
    low_p: NDArray[np.int64],
    close_p: NDArray[np.int64],
    valid: NDArray[np.bool_],
    targets: NDArray[np.float64],
    vol: NDArray[np.float64],
    version: NDArray[np.int64],
    rates: NDArray[np.int64],
    caps: NDArray[np.int64],
    gst: NDArray[np.int64],
    cfg: NDArray[np.int64],
    fcfg: NDArray[np.float64],
    marks: NDArray[np.float64],
    counts: NDArray[np.int64],
    trades: NDArray[np.int64],
    used: int,
    stats: NDArray[np.int64],
    eq: NDArray[np.float64],
    by_symbol: NDArray[np.float64],
) -> tuple[NDArray[np.int64], int]:
    """One symbol with its own cash (capital per symbol), from event to event.

    Between two bars where something may happen (an order waiting for the open, a position with stops, a
    target that differs from the last one) cash and quantity are constant, so that stretch's equity is marked
    in one branch-free pass (`_mark`) and the scan for the next event reads only `valid` and `targets`.
    """
    n_t = close_p.shape[0]
    record = cfg[RECORD] != 0
    fill_close = cfg[FILL_CLOSE] != 0
    use_vol = cfg[SIZING] == VOLATILITY
    has_stops = fcfg[STOP] > 0.0 or fcfg[TAKE] > 0.0
    slip = cfg[SLIP]
    cash = cfg[CASH]
    q = e_px = e_bar = e_ch = sl = tp = 0
    prev = np.nan
    pending = False
    p_tgt = p_vol = 0.0
    exposed = 0
    start = 0  # the first bar not marked yet
    tcol = targets[:, j]
    vcol = valid[:, j]
    t = 0
    while t < n_t:
        # The scan: the next bar where something may happen.
        if pending or (has_stops and q != 0):  # every bar the symbol has
            while t < n_t and not vcol[t]:
                t += 1
        else:  # a target that differs from the last one, on a bar the symbol has
            while t < n_t:
                tgt = tcol[t]
                if tgt != prev and not math.isnan(tgt) and vcol[t]:
                    break
                t += 1
        _mark(j, start, t, cash, q, marks, eq, by_symbol, record)
        if q != 0:
            exposed += counts[j, t] - counts[j, start]
        if t == n_t:
            break
        v = version[t]
        if record and used + 2 >= trades.shape[0]:  # at most two rows a bar (a stop, then the close's exit)
            trades = _grow(trades, used)
        if pending:  # next-open mode: the change waiting for this bar
            pending = False
            raw = open_p[t, j]
            if q != 0:
                px = _exit_price(q, raw, slip)
                ch = _exit_charges(q, px, cfg, rates, caps, gst, v)
                cash += q * px - ch
                used = _close(trades, used, stats, record, j, e_bar, t, q, e_px, px, e_ch, ch, SIGNAL)
                q = 0
            if p_tgt != 0.0:
                q, e_px, e_ch = _entry(p_tgt, raw, cash / 100.0, cash, p_vol, cfg, fcfg, rates, caps, gst, v)
                if q != 0:
                    cash -= q * e_px + e_ch
                    stats[ST_TRADED] += abs(q) * e_px
                    stats[ST_CHARGES] += e_ch
                    e_bar = t
                    sl, tp = _levels(q, e_px, fcfg[STOP], fcfg[TAKE], cfg[TICK])
        if has_stops and q != 0 and e_bar < t:
            raw, reason = _stop_fill(q, open_p[t, j], high_p[t, j], low_p[t, j], sl, tp)
            if raw > 0:
                px = _exit_price(q, raw, slip)
                ch = _exit_charges(q, px, cfg, rates, caps, gst, v)
                cash += q * px - ch
                used = _close(trades, used, stats, record, j, e_bar, t, q, e_px, px, e_ch, ch, reason)
                q = 0
        tgt = targets[t, j]
        if not math.isnan(tgt):
            if math.isnan(prev):
                prev = tgt  # the first opinion: a regime under way is not entered half-way
            elif tgt != prev:
                prev = tgt
                if not fill_close:
                    pending = True
                    p_tgt = tgt
                    p_vol = vol[t, j] if use_vol else 0.0
                else:
                    raw = close_p[t, j]
                    if q != 0:
                        px = _exit_price(q, raw, slip)
                        ch = _exit_charges(q, px, cfg, rates, caps, gst, v)
                        cash += q * px - ch
                        used = _close(trades, used, stats, record, j, e_bar, t, q, e_px, px, e_ch, ch, SIGNAL)
                        q = 0
                    if tgt != 0.0:
                        vol_now = vol[t, j] if use_vol else 0.0
                        q, e_px, e_ch = _entry(tgt, raw, cash / 100.0, cash, vol_now, cfg, fcfg, rates, caps,
                                               gst, v)  # fmt: skip
                        if q != 0:
                            cash -= q * e_px + e_ch
                            stats[ST_TRADED] += abs(q) * e_px
                            stats[ST_CHARGES] += e_ch
                            e_bar = t
                            sl, tp = _levels(q, e_px, fcfg[STOP], fcfg[TAKE], cfg[TICK])
        _mark(j, t, t + 1, cash, q, marks, eq, by_symbol, record)
        if q != 0:
            exposed += 1
        t += 1
        start = t
    stats[ST_EXPOSED] += exposed
    stats[ST_VALID] += counts[j, n_t]
    if q != 0:  # still open at the end: marked at the last close, no exit charges
        stats[ST_OPEN] += 1
        if record:
            trades = _grow(trades, used)
            last = n_t - 1
            while not valid[last, j]:
                last -= 1
            _write(trades, used, j, e_bar, last, q, e_px, close_p[last, j], e_ch, 0, OPEN)
            used += 1
    return trades, used


@njit(cache=True)
def _shared(  # noqa: PLR0912, PLR0915 - the per-bar rules in one place
    open_p: NDArray[np.int64],
    high_p: NDArray[np.int64],
    low_p: NDArray[np.int64],
    close_p: NDArray[np.int64],
    valid: NDArray[np.bool_],
    targets: NDArray[np.float64],
    vol: NDArray[np.float64],
    version: NDArray[np.int64],
    rates: NDArray[np.int64],
    caps: NDArray[np.int64],
    gst: NDArray[np.int64],
    cfg: NDArray[np.int64],
    fcfg: NDArray[np.float64],
    trades: NDArray[np.int64],
    stats: NDArray[np.int64],
    eq: NDArray[np.float64],
) -> int:
    """One cash pool: bar by bar, all symbols; within a fill, every exit before any entry."""
    n_t, n_s = close_p.shape
    record = cfg[RECORD] != 0
    fill_close = cfg[FILL_CLOSE] != 0
    use_vol = cfg[SIZING] == VOLATILITY
    has_stops = fcfg[STOP] > 0.0 or fcfg[TAKE] > 0.0
    slip = cfg[SLIP]
    cash = cfg[CASH]
    qty = np.zeros(n_s, dtype=np.int64)
    e_px = np.zeros(n_s, dtype=np.int64)
    e_bar = np.zeros(n_s, dtype=np.int64)
    e_ch = np.zeros(n_s, dtype=np.int64)
    sl = np.zeros(n_s, dtype=np.int64)
    tp = np.zeros(n_s, dtype=np.int64)
    lc = np.zeros(n_s, dtype=np.int64)
    lb = np.full(n_s, -1, dtype=np.int64)
    prev = np.full(n_s, np.nan)
    pending = np.zeros(n_s, dtype=np.bool_)
    p_tgt = np.zeros(n_s)
    p_vol = np.zeros(n_s)
    n_pending = 0
    used = 0
    for t in range(n_t):
        v = version[t]
        for phase in range(2):
            if phase == 1:
                # During the bar: stops; at its close: this bar's changes.
                for j in range(n_s):
                    if not valid[t, j]:
                        continue
                    q = qty[j]
                    if has_stops and q != 0 and e_bar[j] < t:
                        raw, reason = _stop_fill(q, open_p[t, j], high_p[t, j], low_p[t, j], sl[j], tp[j])
                        if raw > 0:
                            px = _exit_price(q, raw, slip)
                            ch = _exit_charges(q, px, cfg, rates, caps, gst, v)
                            cash += q * px - ch
                            used = _close(trades, used, stats, record, j, e_bar[j], t, q, e_px[j], px, e_ch[j], ch,
                                          reason)  # fmt: skip
                            qty[j] = 0
                    tgt = targets[t, j]
                    if not math.isnan(tgt):
                        if math.isnan(prev[j]):
                            prev[j] = tgt
                        elif tgt != prev[j]:
                            prev[j] = tgt
                            if not pending[j]:
                                n_pending += 1
                            pending[j] = True
                            p_tgt[j] = tgt
                            p_vol[j] = vol[t, j] if use_vol else 0.0
                if not fill_close:
                    continue
            elif fill_close:
                continue
            if n_pending == 0:
                continue
            fill_p = close_p if phase == 1 else open_p
            for j in range(n_s):  # exits
                q = qty[j]
                if pending[j] and valid[t, j] and q != 0:
                    px = _exit_price(q, fill_p[t, j], slip)
                    ch = _exit_charges(q, px, cfg, rates, caps, gst, v)
                    cash += q * px - ch
                    used = _close(trades, used, stats, record, j, e_bar[j], t, q, e_px[j], px, e_ch[j], ch, SIGNAL)
                    qty[j] = 0
            # Equity and what is free after the exits, positions marked at this fill's prices.
            equity = cash
            gross = 0
            for j in range(n_s):
                if qty[j] != 0:
                    mark = fill_p[t, j] if valid[t, j] else lc[j]
                    equity += qty[j] * mark
                    gross += abs(qty[j]) * mark
            alloc = equity / 100.0 / n_s
            available = max(0, equity - gross)
            for j in range(n_s):  # entries
                if not pending[j] or not valid[t, j]:
                    continue
                pending[j] = False
                n_pending -= 1
                if p_tgt[j] == 0.0:
                    continue
                q, px, ch = _entry(p_tgt[j], fill_p[t, j], alloc, available, p_vol[j], cfg, fcfg, rates, caps, gst, v)
                if q == 0:
                    continue
                cash -= q * px + ch
                available -= abs(q) * px + ch
                stats[ST_TRADED] += abs(q) * px
                stats[ST_CHARGES] += ch
                qty[j], e_px[j], e_ch[j], e_bar[j] = q, px, ch, t
                sl[j], tp[j] = _levels(q, px, fcfg[STOP], fcfg[TAKE], cfg[TICK])
        total = cash
        for j in range(n_s):
            if valid[t, j]:
                lc[j] = close_p[t, j]
                lb[j] = t
                stats[ST_VALID] += 1
                if qty[j] != 0:
                    stats[ST_EXPOSED] += 1
            total += qty[j] * lc[j]
        eq[t] = total
    for j in range(n_s):
        if qty[j] != 0:
            stats[ST_OPEN] += 1
            if record:
                _write(trades, used, j, e_bar[j], lb[j], qty[j], e_px[j], lc[j], e_ch[j], 0, OPEN)
                used += 1
    return used
