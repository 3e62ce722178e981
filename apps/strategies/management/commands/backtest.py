"""`manage.py backtest`: one backtest in this process, on the candles in the database, printed as a summary or JSON.

Thin: it parses the options, loads the bars through `apps.strategies.data.bars_load` (the same prices the
backtest tasks and live evaluation read) and runs the engine (`run_backtest`). Research at scale (grids,
walk-forward, Monte Carlo on the `backtests` queue) goes through the API or the admin instead.

Engine settings are `--engine-settings JSON` (plus the `--cash` and `--no-costs` shortcuts), not `--settings`:
manage.py reads `--settings` as the Django settings module before the command runs.

Every bad option is a CommandError naming it (the parameter, setting or symbol inside it too) before any
work, and nothing is written to stdout then: a script reading `--json` gets one JSON object or an exit code.
"""

from __future__ import annotations

import json
import math
import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from apps.strategies.configs import KITE_INTERVALS
from apps.strategies.data import bars_load, resolve_symbols
from apps.strategies.engine.backtest import BacktestResult, Settings, SettingsError, run_backtest
from apps.strategies.engine.bars import Bars
from apps.strategies.engine.params import ParamError
from apps.strategies.engine.strategy import Strategy, UnknownStrategy, get_strategy
from tradingsite.exceptions import ApplicationError

BAR_WIDTH = 30
SUMMARY_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate", "profit_factor",
                   "exposure", "turnover", "charges")  # fmt: skip
PERCENT = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure"}


class Command(BaseCommand):
    help = (
        "Backtest a built-in strategy on the candles in the database, in this process. Prints the metrics, the "
        "trade count and the final equity, or with --json one object {trades, final_equity, metrics}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--strategy", required=True, help="a built-in strategy, e.g. sma_crossover")
        parser.add_argument("--params", default="{}", help='parameters as JSON, e.g. \'{"fast": 10, "slow": 30}\'')
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--symbols", help="comma-separated NSE symbols, e.g. INFY,TCS")
        where.add_argument("--universe", help='a universe, e.g. "NIFTY 50" (its members today)')
        parser.add_argument("--interval", default="day", choices=KITE_INTERVALS, help="(default: day)")
        parser.add_argument("--from", dest="start", required=True, metavar="DATE", help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", required=True, metavar="DATE", help="last day, YYYY-MM-DD")
        parser.add_argument("--cash", help="rupees per symbol (per_symbol capital) or in all (shared); default 1e6")
        parser.add_argument("--no-costs", action="store_true", help="leave Zerodha's charges out")
        # Not --settings: Django's manage.py takes that for the settings module before any command sees it.
        parser.add_argument(
            "--engine-settings", default="{}", help='engine settings as JSON, e.g. \'{"fill": "close"}\''
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")

    def handle(self, *args: Any, **options: Any) -> None:
        strategy = _strategy(options["strategy"], _json_object(options["params"], "--params"))
        settings = _settings(options)
        if strategy.intervals is not None and options["interval"] not in strategy.intervals:
            raise CommandError(f"--interval: {strategy.name} runs on {', '.join(strategy.intervals)} bars")
        start, end = _date(options["start"], "--from"), _date(options["end"], "--to")
        if end < start:
            raise CommandError(f"--to: the range ends ({end}) before it starts ({start})")
        bars = _bars(options, start, end)
        progress = ProgressBar(self.stderr, total=bars.n_symbols)
        started = time.monotonic()
        result = run_backtest(strategy, bars, settings, progress=progress.show)
        progress.done()
        if options["json"]:
            self.stdout.write(json.dumps(as_json(result), allow_nan=False))
        else:
            self.stdout.write(summary(strategy, bars, result, seconds=time.monotonic() - started))


def _json_object(raw: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option}: not JSON ({exc.msg} at character {exc.pos}): {raw!r}") from None
    if not isinstance(value, dict):
        raise CommandError(f"{option}: must be a JSON object of name: value, got {raw!r}")
    return value


def _strategy(name: str, params: dict[str, Any]) -> Strategy:
    try:
        return get_strategy(name, params)
    except UnknownStrategy as exc:
        raise CommandError(f"--strategy: {exc}") from None
    except ParamError as exc:
        raise CommandError(f"--params: {exc}") from None


def _settings(options: dict[str, Any]) -> Settings:
    raw = _json_object(options["engine_settings"], "--engine-settings")
    if options["cash"] is not None:
        try:
            raw["cash"] = float(options["cash"])
        except ValueError:
            raise CommandError(f"--cash: not a number: {options['cash']!r}") from None
    if options["no_costs"]:
        raw["costs"] = False
    try:
        return Settings.from_dict(raw)
    except SettingsError as exc:
        option = "--cash" if exc.field == "cash" and options["cash"] is not None else "--engine-settings"
        raise CommandError(f"{option}: {exc}") from None


def _date(raw: str, option: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"{option}: not a date (YYYY-MM-DD): {raw!r}") from None


def _bars(options: dict[str, Any], start: date, end: date) -> Bars:
    option = "--universe" if options["universe"] else "--symbols"
    try:
        names = resolve_symbols(symbols=(options["symbols"] or "").split(","), universe=options["universe"])
    except ApplicationError as exc:
        raise CommandError(f"{option}: {exc.message}") from None
    try:
        return bars_load(symbols=names, interval=options["interval"], start=start, end=end)
    except ApplicationError as exc:
        raise CommandError(exc.message) from None


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a metric that is not a number (no trades, no losses) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_json(result: BacktestResult) -> dict[str, Any]:
    metrics = {k: _finite(v) for k, v in result.metrics.items()}
    trades = [{k: _finite(v) for k, v in t.items()} for t in result.trades_json()]
    return {"trades": trades, "final_equity": metrics.get("final_equity"), "metrics": metrics}


def _metric(name: str, value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if name in PERCENT:
        return f"{100 * value:.2f}%"
    return f"{value:,.2f}" if name == "charges" else f"{value:.3f}"


def summary(strategy: Strategy, bars: Bars, result: BacktestResult, *, seconds: float) -> str:
    m = result.metrics
    times = bars.times_ist()
    lines = [
        f"{strategy!r} on {bars.n_symbols} symbols, {bars.interval} bars {times[0]:%Y-%m-%d} to {times[-1]:%Y-%m-%d} "
        f"({bars.n_times} bars) in {seconds:.2f}s",
        f"  trades        {len(result.trades)} ({sum(t.exit_reason == 'open' for t in result.trades)} still open)",
        f"  final equity  ₹{m['final_equity']:,.2f}",
    ]
    lines += [f"  {name:<13} {_metric(name, float(m[name]))}" for name in SUMMARY_METRICS if name in m]
    return "\n".join(lines)


class ProgressBar:
    """`[#####-----] 23/50 symbols` on stderr: redrawn in place on a terminal, one line per update otherwise."""

    def __init__(self, stream: OutputWrapper, *, total: int) -> None:
        self.stream, self.total, self.tty, self.last = stream, total, stream.isatty(), -1

    def show(self, done: int, total: int) -> None:
        if done == self.last:
            return
        self.last = done
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        line = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{total} symbols"
        self.stream.write(("\r" + line) if self.tty else line, style_func=lambda s: s, ending="" if self.tty else "\n")
        self.stream.flush()

    def done(self) -> None:
        self.show(self.total, self.total)
        if self.tty:
            self.stream.write("", ending="\n")
