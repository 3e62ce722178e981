"""Live evaluation: a closed bar -> every enabled config's targets for its whole universe -> signals -> orders.

One `signals.evaluate` task per enabled config and bar time (see `dispatch.py`). It loads the latest
`lookback() + 1` bars of the config's symbols from the database (every bar event refers to a stored
candle), runs the SAME `Strategy.targets` the backtester runs, and reads the last row: the live target at
bar t is the backtest's target at t.

What it stores and does, per symbol that has a bar at t:
- a `Signal` (config, instrument, bar time: unique), so a bar evaluated twice stores nothing new;
- an order when the target CHANGED from the previous signal (a fresh config compares with the target the
  window gives for the bar before: a regime already under way is not entered, as in the backtest). The
  order moves the strategy's holdings on the account (its own orders only) to target x allocation /
  price, allocation = capital / number of symbols; it goes through the Orders service, so the risk checks
  apply, and its client order id is derived from the signal, so it is never placed twice.
- The Signal and its order are written in one transaction: a worker that dies between them leaves neither.
- A bar older than the newest one the config evaluated (a late or replayed event) is stored as STALE and
  places nothing.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery

from apps.marketdata import selectors as marketdata
from apps.orders import selectors as orders_read
from apps.orders import services as orders
from apps.strategies.data import NoData, bars_window
from apps.strategies.engine.params import ParamError
from apps.strategies.engine.strategy import IndicatorCache, Strategy, UnknownStrategy, get_strategy
from apps.strategies.models import Signal, SignalAction, StrategyConfig
from tradingsite.exceptions import ApplicationError

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    config_id: int
    bar_time: datetime
    status: str = "evaluated"  # or "skipped"
    reason: str = ""
    signals: int = 0
    orders: int = 0
    compute_ms: float = 0.0
    actions: dict[str, int] = field(default_factory=dict)


def config_symbols(config: StrategyConfig) -> list[str]:
    if config.universe is not None:
        return [i.tradingsymbol for i in marketdata.universe_members(universe=config.universe.name)]
    return [str(s).upper() for s in config.symbols]


def config_strategy(config: StrategyConfig) -> Strategy:
    return get_strategy(config.strategy, config.parameters)


def evaluate(*, config_id: int, bar_time: datetime) -> Evaluation:
    """Evaluate one config at one closed bar; safe to run twice or late (see the module docstring)."""
    result = Evaluation(config_id, bar_time)
    config = StrategyConfig.objects.select_related("account", "universe").filter(pk=config_id).first()
    if config is None or not config.enabled:
        return _skip(result, "config gone" if config is None else "config disabled")
    try:
        strategy = config_strategy(config)
        symbols = config_symbols(config)
        bars = bars_window(symbols=symbols, interval=config.interval, until=bar_time, rows=strategy.lookback() + 1)
    except (ParamError, UnknownStrategy, NoData, ApplicationError) as exc:
        return _skip(result, str(exc))
    last_us = int(bars.times[-1].astype(np.int64)) if bars.n_times else None
    if last_us != int(bar_time.timestamp() * 1_000_000):
        return _skip(result, "no stored bar at that time")

    started = time.perf_counter()
    cache = IndicatorCache(bars)
    targets = strategy.targets(bars, cache)
    inputs = strategy.inputs(bars, cache)
    result.compute_ms = (time.perf_counter() - started) * 1000

    stale = not _advance(config, bar_time)
    instruments = {
        i.tradingsymbol: i for i in marketdata.instrument_list(exchange="NSE").filter(tradingsymbol__in=bars.symbols)
    }
    done = set(Signal.objects.filter(config=config, bar_time=bar_time).values_list("instrument_id", flat=True))
    previous = _previous_targets(config, bar_time, [i.pk for i in instruments.values()])
    holdings: dict[int, int] | None = None
    valid = bars.valid()[-1]
    for j, symbol in enumerate(bars.symbols):
        instrument = instruments.get(symbol)
        target = float(targets[-1, j])
        if instrument is None or instrument.pk in done or not valid[j] or math.isnan(target):
            continue
        before = previous.get(instrument.pk)
        window_before = float(targets[-2, j]) if bars.n_times > 1 else math.nan
        compare = before if before is not None else window_before
        changed = not math.isnan(compare) and compare != target
        price = Decimal(repr(float(bars.close[-1, j]))).quantize(Decimal("0.01"))
        signal = Signal(
            config=config,
            instrument=instrument,
            bar_time=bar_time,
            target=target,
            previous_target=None if math.isnan(compare) else compare,
            price=price,
            inputs={k: _number(v[-1, j]) for k, v in inputs.items()},
        )
        if stale:
            signal.action, signal.detail = SignalAction.STALE, "a newer bar was evaluated already"
        elif not changed:
            signal.action = SignalAction.NONE if before is not None else SignalAction.FIRST
        if stale or not changed:
            if _store(signal):
                result.signals += 1
            continue
        if holdings is None:
            holdings = orders_read.strategy_holdings(
                account_id=config.account_id, strategy=config.name, instrument_ids=[i.pk for i in instruments.values()]
            )
        if _act(config, signal, len(bars.symbols), holdings.get(instrument.pk, 0)):
            result.signals += 1
            result.orders += signal.order_id is not None
            result.actions[signal.action] = result.actions.get(signal.action, 0) + 1
            if signal.action == SignalAction.ORDERED:
                holdings[instrument.pk] = _desired(config, target, len(bars.symbols), price)
    return result


def _skip(result: Evaluation, reason: str) -> Evaluation:
    result.status, result.reason = "skipped", reason
    log.info("signals: config %s at %s skipped: %s", result.config_id, result.bar_time, reason)
    return result


def _advance(config: StrategyConfig, bar_time: datetime) -> bool:
    """Move `last_bar_time` forward (compare-and-set); False when a newer bar was evaluated already."""
    moved = (
        StrategyConfig.objects.filter(pk=config.pk)
        .filter(Q(last_bar_time__isnull=True) | Q(last_bar_time__lte=bar_time))
        .update(last_bar_time=bar_time)
    )
    return moved == 1


def _previous_targets(config: StrategyConfig, bar_time: datetime, instrument_ids: list[int]) -> dict[int, float]:
    """Each instrument's latest stored target before `bar_time` (one query; the signal_latest index serves it)."""
    latest = Signal.objects.filter(config=config, instrument_id=OuterRef("instrument_id"), bar_time__lt=bar_time)
    rows = (
        Signal.objects.filter(config=config, instrument_id__in=instrument_ids, bar_time__lt=bar_time)
        .values("instrument_id")
        .distinct()
        .annotate(last=Subquery(latest.order_by("-bar_time").values("target")[:1]))
        .values_list("instrument_id", "last")
    )
    return {iid: float(last) for iid, last in rows if last is not None}


def _store(signal: Signal) -> bool:
    try:
        with transaction.atomic():
            signal.save()
    except IntegrityError:  # another evaluation of the same bar stored it first
        return False
    return True


def _desired(config: StrategyConfig, target: float, n_symbols: int, price: Decimal) -> int:
    allocation = Decimal(config.capital) / n_symbols
    shares = int((allocation * Decimal(repr(abs(target))) / price).to_integral_value(rounding=ROUND_FLOOR))
    return shares if target >= 0 else -shares


def _act(config: StrategyConfig, signal: Signal, n_symbols: int, held: int) -> bool:
    """Store the signal and place the order it calls for, in one transaction; False if it was stored already."""
    desired = _desired(config, signal.target, n_symbols, signal.price)
    if desired < 0 and config.product == "CNC":
        desired, note = 0, "short selling needs MIS (intraday): flat instead"
    else:
        note = ""
    delta = desired - held
    try:
        with transaction.atomic():
            if delta == 0:
                signal.action, signal.detail = SignalAction.NOTHING_TO_DO, note or f"holding {held} already"
                signal.save()
                return True
            signal.save()
            try:
                order = orders.order_place_from_task(
                    account=config.account,
                    instrument=signal.instrument,
                    side="BUY" if delta > 0 else "SELL",
                    quantity=abs(delta),
                    product=config.product,
                    order_type="MARKET",
                    client_order_id=f"sig-{config.pk}-{signal.pk}",
                    strategy=config.name,
                    signal_id=signal.pk,
                )
            except ApplicationError as exc:
                signal.action, signal.detail = SignalAction.REJECTED, str(exc)[:300]
            else:
                signal.order = order
                refused = order.status in ("RISK_REJECTED", "REJECTED")
                signal.action = SignalAction.REJECTED if refused else SignalAction.ORDERED
                detail = order.status_message if refused else f"{order.side} {order.quantity} (held {held})"
                signal.detail = "; ".join(x for x in (note, detail) if x)[:300]
            signal.save(update_fields=["action", "order", "detail"])
    except IntegrityError:
        return False
    return True


def _number(value: Any) -> float | None:
    v = float(value)
    return None if math.isnan(v) or math.isinf(v) else round(v, 6)
