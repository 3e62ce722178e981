"""Pictures and tables of backtest runs for the admin: inline SVG built server-side, no JavaScript, nothing fetched.

Drawn from the stored shapes of `apps.strategies.runs` (the packed equity series, the grid table, walk-forward
folds, Monte Carlo distributions) and from plain arrays, so each function can be checked on hand-made data.
A long curve is min-max downsampled first (`downsample`): every bucket keeps its lowest and highest point, so
a drawdown's trough survives the thinning.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from numpy.typing import NDArray

from apps.marketdata.calendar import IST

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 78, 16, 30, 36
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# viridis, dark (low) to light (high): readable in print and by colour-blind readers
PALETTE = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
           "#fde725")  # fmt: skip
PERCENT_METRICS = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure"}
RUPEE_METRICS = {"final_equity", "charges"}
TRADE_COLUMNS = ("symbol", "entry_time", "exit_time", "quantity", "entry_price", "exit_price", "pnl", "charges",
                 "exit_reason")  # fmt: skip


def iso_ist(us: int) -> str:
    """Microseconds since the epoch (UTC) as ISO 8601 in Asia/Kolkata."""
    return (EPOCH + timedelta(microseconds=int(us))).astimezone(IST).isoformat()


def _day(us: float) -> str:
    return (EPOCH + timedelta(microseconds=int(us))).astimezone(IST).strftime("%Y-%m-%d")


def downsample(
    times: NDArray[np.int64], values: NDArray[np.float64], max_points: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """At most `max_points` points in time order: the first, the last, and each bucket's minimum and maximum."""
    n = len(values)
    if n <= max_points:
        return times, values
    buckets = max(1, (max_points - 2) // 2)
    edges = np.linspace(1, n - 1, buckets + 1).astype(np.int64)
    keep = [0, n - 1]
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            part = values[lo:hi]
            keep += [int(lo + np.nanargmin(part)), int(lo + np.nanargmax(part))] if np.isfinite(part).any() else [lo]
    index = np.unique(np.array(keep, dtype=np.int64))
    return times[index], values[index]


# --- formatting ----------------------------------------------------------------------------------------------------


def metric_text(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-" if value is None else str(value)
    if not isinstance(value, int | float):
        return str(value)
    if name in PERCENT_METRICS:
        return f"{100.0 * value:.2f}%"
    if name in RUPEE_METRICS:
        return f"₹{value:,.2f}"
    if name == "trades":
        return f"{int(value):d}"
    return f"{value:.3f}"


def _colour(fraction: float) -> str:
    """The palette at `fraction` in [0, 1], interpolated in RGB."""
    f = min(max(fraction, 0.0), 1.0) * (len(PALETTE) - 1)
    i = min(int(f), len(PALETTE) - 2)
    a, b = PALETTE[i], PALETTE[i + 1]
    mix = [round(int(a[k : k + 2], 16) * (1 - (f - i)) + int(b[k : k + 2], 16) * (f - i)) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def _svg(label: str, body: SafeString, *, width: int = WIDTH, height: int = HEIGHT) -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="{}" '
        'font-family="sans-serif" font-size="11"><title>{}</title>{}</svg>',
        width, height, label, label, body,
    )  # fmt: skip


def _text(
    x: float, y: float, text: str, *, anchor: str = "start", bold: bool = False, turn: bool = False
) -> SafeString:
    """A label at (x, y); `turn` rotates it a quarter turn anticlockwise about that point (a y-axis title)."""
    return format_html(
        '<text x="{0}" y="{1}" text-anchor="{2}" font-weight="{3}"{4}>{5}</text>',
        f"{x:.1f}", f"{y:.1f}", anchor, "bold" if bold else "normal",
        format_html(' transform="rotate(-90 {} {})"', f"{x:.1f}", f"{y:.1f}") if turn else "", text,
    )  # fmt: skip


def _none(message: str) -> SafeString:
    return format_html("<p>{}</p>", message)


# --- line charts ---------------------------------------------------------------------------------------------------


def line_svg(
    times: NDArray[np.int64],
    values: NDArray[np.float64],
    *,
    title: str,
    colour: str = "#2c6fbb",
    fill: str = "none",
    y_text: Callable[[float], str] = lambda v: f"{v:,.0f}",
    zero_line: bool = False,
) -> SafeString:
    """A time series as one path, with y ticks (5) and the first, middle and last dates on x."""
    times, values = downsample(np.asarray(times, np.int64), np.asarray(values, np.float64), 1500)
    ok = np.isfinite(values)
    if len(values) < 2 or not ok.any():
        return _none(f"{title}: nothing stored.")
    lo, hi = float(np.min(values[ok])), float(np.max(values[ok]))
    if zero_line:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = (hi - lo) or max(abs(hi), 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    t0, t1 = float(times[0]), float(times[-1])
    xs = LEFT + (times.astype(np.float64) - t0) / ((t1 - t0) or 1.0) * plot_w
    ys = TOP + (hi - values) / span * plot_h
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y, good in zip(xs, ys, ok, strict=True) if good)
    base = TOP + (hi - max(lo, 0.0 if zero_line else lo)) / span * plot_h
    area = ""
    if fill != "none":
        area = f"M{xs[ok][0]:.1f},{base:.1f} L" + points.replace(" ", " L") + f" L{xs[ok][-1]:.1f},{base:.1f} Z"
    ticks = format_html_join(
        "",
        '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#ddd"/><text x="{3}" y="{4}" text-anchor="end">{5}</text>',
        (
            (LEFT, f"{TOP + k / 4 * plot_h:.1f}", WIDTH - RIGHT, LEFT - 4, f"{TOP + k / 4 * plot_h + 4:.1f}",
             y_text(hi - k / 4 * span))
            for k in range(5)
        ),
    )  # fmt: skip
    dates = format_html_join(
        "",
        '<text x="{}" y="{}" text-anchor="{}">{}</text>',
        (
            (f"{LEFT + f * plot_w:.1f}", HEIGHT - BOTTOM + 16, anchor, _day(t0 + f * (t1 - t0)))
            for f, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end"))
        ),
    )
    body = format_html(
        '{}{}<path d="{}" fill="{}" stroke="none" opacity="0.35"/><polyline points="{}" fill="none" stroke="{}" '
        'stroke-width="1.5"/>{}',
        ticks, dates, area, fill, points, colour, _text(LEFT, TOP - 10, title),
    )  # fmt: skip
    return _svg(title, body)


def drawdown_series(equity: NDArray[np.float64]) -> NDArray[np.float64]:
    """Equity below its running peak, as a (negative) fraction of the peak."""
    equity = np.asarray(equity, np.float64)
    peak = np.fmax.accumulate(np.where(np.isfinite(equity), equity, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, equity / peak - 1.0, np.nan)


def equity_svg(times: NDArray[np.int64], equity: NDArray[np.float64], *, title: str = "Equity (₹)") -> SafeString:
    return line_svg(times, equity, title=title, colour="#2c6fbb")


def drawdown_svg(times: NDArray[np.int64], equity: NDArray[np.float64]) -> SafeString:
    dd = drawdown_series(equity)
    worst = float(np.nanmin(dd)) if np.isfinite(dd).any() else 0.0
    return line_svg(
        times, dd, title=f"Drawdown (worst {100 * worst:.2f}%)", colour="#c0392b", fill="#c0392b",
        y_text=lambda v: f"{100 * v:.1f}%", zero_line=True,
    )  # fmt: skip


# --- grid heatmap --------------------------------------------------------------------------------------------------


def _grid_table(results: Mapping[str, Any]) -> tuple[str, str, list[Any], list[Any], dict[tuple[Any, Any], Any], str]:
    """(y name, x name, y values, x values, {(y, x): objective}, note) of the first two axes."""
    objective = str(results.get("objective") or "sharpe")
    axes = list((results.get("axes") or {}).items())
    best = (results.get("best") or {}).get("params") or {}
    if len(axes) == 1:
        axes = [("", [""]), axes[0]]
    (y_name, y_values), (x_name, x_values) = axes[0], axes[1]
    others = {name: best.get(name) for name, _ in axes[2:]}
    cells: dict[tuple[Any, Any], Any] = {}
    for row in results.get("rows") or []:
        params = row.get("params") or {}
        if all(params.get(k) == v for k, v in others.items()):
            cells[(params.get(y_name, ""), params.get(x_name))] = (row.get("metrics") or {}).get(objective)
    note = ", ".join(f"{k} = {v}" for k, v in others.items())
    return y_name, x_name, list(y_values), list(x_values), cells, note


def _every(count: int, room: float, need: float) -> int:
    return max(1, math.ceil(need / max(room / max(count, 1), 1e-9)))


def heatmap_svg(results: Mapping[str, Any]) -> SafeString:
    """The objective over the grid's two axes: a colour per cell, labelled axes, a colour scale, the best outlined."""
    if len(results.get("axes") or {}) < 1 or not results.get("rows"):
        return _none("No grid table stored.")
    objective = str(results.get("objective") or "sharpe")
    y_name, x_name, ys, xs, cells, note = _grid_table(results)
    found = [float(v) for v in cells.values() if isinstance(v, int | float) and math.isfinite(v)]
    lo, hi = (min(found), max(found)) if found else (0.0, 1.0)
    plot_w, plot_h = WIDTH - LEFT - 110, min(22 * len(ys), 340)
    cw, ch = plot_w / len(xs), plot_h / len(ys)
    best = (results.get("best") or {}).get("params") or {}
    best_cell = (best.get(y_name, ""), best.get(x_name))
    rects, marks = [], []
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            value = cells.get((yv, xv))
            x, y = LEFT + j * cw, TOP + i * ch
            ok = isinstance(value, int | float) and math.isfinite(value)
            colour = _colour((float(value or 0.0) - lo) / ((hi - lo) or 1.0)) if ok else "#eeeeee"
            label = f"{y_name}={yv} {x_name}={xv}: {objective} {metric_text(objective, value) if ok else 'not run'}"
            rects.append((f"{x:.1f}", f"{y:.1f}", f"{cw:.1f}", f"{ch:.1f}", colour, label))
            if (yv, xv) == best_cell:
                marks.append((f"{x + 1:.1f}", f"{y + 1:.1f}", f"{max(cw - 2, 1):.1f}", f"{max(ch - 2, 1):.1f}", label))
    cells_svg = format_html_join(
        "", '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="#fff" stroke-width="0.5"><title>{}</title>'
        "</rect>", rects,
    )  # fmt: skip
    best_svg = format_html_join(
        "",
        '<rect class="best" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#e4002b" stroke-width="2.5">'
        "<title>best: {}</title></rect>",
        marks,
    )
    base = TOP + plot_h
    x_every, y_every = _every(len(xs), plot_w, 30), _every(len(ys), plot_h, 12)
    x_labels = format_html_join(
        "", '<text x="{}" y="{}" text-anchor="middle">{}</text>',
        ((f"{LEFT + (j + 0.5) * cw:.1f}", f"{base + 14:.1f}", xv) for j, xv in enumerate(xs) if j % x_every == 0),
    )  # fmt: skip
    y_labels = format_html_join(
        "", '<text x="{}" y="{}" text-anchor="end">{}</text>',
        ((LEFT - 4, f"{TOP + (i + 0.5) * ch + 4:.1f}", yv) for i, yv in enumerate(ys) if i % y_every == 0),
    )  # fmt: skip
    titles = format_html(
        "{}{}{}",
        _text(LEFT + plot_w / 2, base + 30, x_name, anchor="middle", bold=True),
        _text(14, TOP + plot_h / 2, y_name, anchor="middle", bold=True, turn=True),
        _text(LEFT, TOP - 12, f"{objective} over {y_name} by {x_name}" + (f" ({note})" if note else "")),
    )  # fmt: skip
    body = format_html("{}{}{}{}{}{}", cells_svg, best_svg, x_labels, y_labels, titles, _scale(lo, hi, objective, base))
    return _svg(f"Grid heatmap of {objective}", body, height=int(base + 44))


def _scale(lo: float, hi: float, objective: str, base: float) -> SafeString:
    """A vertical colour bar right of the map, low at the bottom, with its end values."""
    x, steps, top = WIDTH - 90, 10, TOP
    h = (base - top) / steps
    bar = format_html_join(
        "",
        '<rect class="scale" x="{}" y="{}" width="14" height="{}" fill="{}"/>',
        ((x, f"{top + (steps - 1 - k) * h:.1f}", f"{h + 0.5:.1f}", _colour(k / (steps - 1))) for k in range(steps)),
    )
    return format_html(
        "{}{}{}",
        bar,
        _text(x + 18, top + 8, metric_text(objective, hi)),
        _text(x + 18, base, metric_text(objective, lo)),
    )


# --- histograms ----------------------------------------------------------------------------------------------------


def histogram_svg(
    distribution: Mapping[str, Any], *, title: str, value_text: Callable[[float], str] = lambda v: f"{v:,.0f}"
) -> SafeString:
    """Bars of `distribution["histogram"]` with its percentiles (5, 25, 50, 75, 95) as labelled lines."""
    histogram = distribution.get("histogram") or {}
    edges, counts = list(histogram.get("edges") or []), list(histogram.get("counts") or [])
    if not counts or len(edges) != len(counts) + 1:
        return _none(f"{title}: no distribution stored.")
    lo, hi = float(edges[0]), float(edges[-1])
    plot_w, base = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM
    top = TOP + 26

    def x(v: float) -> float:
        return LEFT + (v - lo) / ((hi - lo) or 1.0) * plot_w

    peak = max(counts) or 1
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#7f8fa6"><title>{} from {} to {}</title></rect>',
        (
            (f"{x(edges[i]):.1f}", f"{base - c / peak * (base - top):.1f}",
             f"{max(x(edges[i + 1]) - x(edges[i]) - 0.6, 0.4):.1f}", f"{c / peak * (base - top):.1f}", c,
             value_text(edges[i]), value_text(edges[i + 1]))
            for i, c in enumerate(counts)
        ),
    )  # fmt: skip
    percentiles = sorted(((float(k), float(v)) for k, v in (distribution.get("percentiles") or {}).items()))
    lines = format_html_join(
        "",
        '<line class="percentile" x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#c0392b" stroke-dasharray="4,3"/>'
        '<text x="{0}" y="{3}" fill="#c0392b" text-anchor="middle">p{4} {5}</text>',
        (
            (f"{x(v):.1f}", top, base, f"{top - 4 - 11 * (i % 2):.1f}", f"{p:g}", value_text(v))
            for i, (p, v) in enumerate(percentiles)
        ),
    )  # fmt: skip
    axis = format_html(
        '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#333"/>{3}{4}{5}',
        LEFT, base, WIDTH - RIGHT,
        _text(LEFT, base + 16, value_text(lo)), _text(WIDTH - RIGHT, base + 16, value_text(hi), anchor="end"),
        _text(LEFT, TOP - 10, title),
    )  # fmt: skip
    return _svg(title, format_html("{}{}{}", bars, lines, axis))


# --- tables --------------------------------------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], *, css: str = "") -> SafeString:
    header = format_html_join("", "<th>{}</th>", ((h,) for h in head))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),) for row in rows)
    )
    return format_html('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', css, header, body)


def metrics_table(metrics: Mapping[str, Any]) -> SafeString:
    if not metrics:
        return _none("No metrics yet.")
    return _table(("metric", "value"), [(k, metric_text(k, v)) for k, v in metrics.items()], css="metrics")


def trades_table(trades: Sequence[Mapping[str, Any]], *, limit: int = 200) -> SafeString:
    if not trades:
        return _none("No trades.")
    rows = [[_cell(name, t.get(name)) for name in TRADE_COLUMNS] for t in trades[:limit]]
    more = format_html("<p>First {} of {} trades.</p>", limit, len(trades)) if len(trades) > limit else ""
    return format_html("{}{}", _table(TRADE_COLUMNS, rows, css="trades"), more)


def _cell(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, str) and name.endswith("_time"):
        return value.replace("T", " ")[:16]
    return "" if value is None else str(value)


def folds_table(results: Mapping[str, Any]) -> SafeString:
    folds = results.get("folds") or []
    if not folds:
        return _none("No folds stored.")
    objective = str(results.get("objective") or "sharpe")
    rows = [
        (
            f.get("index"), " → ".join(str(d)[:10] for d in f.get("train") or []),
            " → ".join(str(d)[:10] for d in f.get("test") or []),
            ", ".join(f"{k}={v}" for k, v in (f.get("params") or {}).items()),
            metric_text(objective, (f.get("in_sample") or {}).get(objective)),
            metric_text(objective, (f.get("out_of_sample") or {}).get(objective)),
            metric_text("total_return", (f.get("out_of_sample") or {}).get("total_return")),
        )
        for f in folds
    ]  # fmt: skip
    head = ("fold", "train", "test", "chosen parameters", f"in-sample {objective}", f"out-of-sample {objective}",
            "out-of-sample return")  # fmt: skip
    return _table(head, rows, css="folds")


def monte_carlo_summary(results: Mapping[str, Any]) -> SafeString:
    ruin = results.get("probability_of_ruin")
    threshold = results.get("ruin_threshold")
    return format_html(
        "<p>{} simulations ({}). Probability of ruin (losing {} of the starting equity): <strong>{}</strong>.</p>",
        results.get("simulations", "?"), results.get("method", "?"),
        metric_text("total_return", threshold) if threshold is not None else "?",
        metric_text("win_rate", ruin) if ruin is not None else "?",
    )  # fmt: skip
