"""VaR snapshots of the book in the database: figures against hand computations from the CSV files, the stored
fingerprint and histogram, breaches and their alerts, the task, the beat entries; stress, backtest and metrics."""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from apps.brokers.models import BrokerAccount
from apps.marketdata import events
from apps.marketdata.importers import candles_import
from apps.marketdata.models import Instrument
from apps.orders.models import Position
from apps.risk.models import RiskBreach, RiskLimit, RiskSnapshot
from tradingsite.redis_client import get_redis

BOOK = {"RELIANCE": 100, "INFY": -40, "HDFCBANK": 150}
INDEX = "NIFTY50_INDEX"


# --- shared by the risk test modules (imported by name from here) ----------------------------------------------


def import_daily(shared_data: Path, *symbols: str) -> None:
    """The project's own importer, only the files a test needs."""
    for symbol in symbols:
        candles_import(path=shared_data / "nifty50-daily" / f"{symbol}.csv", interval="day")


def csv_closes(shared_data: Path, symbol: str) -> dict[date, float]:
    """Close per date, read with the csv module (the hand computation's own reading of the data)."""
    with (shared_data / "nifty50-daily" / f"{symbol}.csv").open(newline="") as f:
        return {date.fromisoformat(row["timestamp"][:10]): float(row["close"]) for row in csv.DictReader(f)}


def hand_window(shared_data: Path, book: dict[str, int], window: int) -> tuple[np.ndarray, np.ndarray, list[date]]:
    """(returns (window, N), exposures at the last close, return dates) on the dates every symbol has a close."""
    closes = {s: csv_closes(shared_data, s) for s in book}
    days = sorted(set.intersection(*(set(c) for c in closes.values())))[-(window + 1) :]
    prices = np.array([[closes[s][d] for s in book] for d in days])
    returns = prices[1:] / prices[:-1] - 1.0
    exposures = np.array([book[s] * closes[s][days[-1]] for s in book])
    return returns, exposures, days[1:]


def hand_historical_var(pnl: np.ndarray, confidence: float) -> float:
    """The ceil(c n)-th smallest scenario loss (docs/risk-var.md): 500 days at 99% -> the 6th worst day."""
    losses = sorted(-float(x) for x in pnl)
    return losses[math.ceil(round(confidence * len(losses), 9)) - 1]


def hand_historical_es(pnl: np.ndarray, confidence: float) -> float:
    """Acerbi-Tasche: VaR plus the mean excess over it, the excess summed over n(1 - c) scenarios."""
    var = hand_historical_var(pnl, confidence)
    return var + sum(max(-float(x) - var, 0.0) for x in pnl) / (len(pnl) * (1.0 - confidence))


def forget_latest_prices(*symbols: str) -> None:
    """Positions are priced at the latest Redis price when there is one: these tests price at the last close."""
    get_redis().hdel(events.LATEST_PRICES, *(f"NSE:{s}" for s in symbols))


def daily_book_data(shared_data: Path) -> Iterator[Path]:
    """The book's candles and the index imported, no latest prices: each module's `daily` fixture."""
    import_daily(shared_data, *BOOK, INDEX)
    forget_latest_prices(*BOOK)
    yield shared_data
    forget_latest_prices(*BOOK)


def make_positions(account: BrokerAccount, book: dict[str, int]) -> None:
    """Each symbol split over two products, so the book must net them."""
    for symbol, quantity in book.items():
        instrument = Instrument.objects.get(tradingsymbol=symbol)
        Position.objects.create(account=account, instrument=instrument, product="CNC", net_quantity=quantity - 10)
        Position.objects.create(account=account, instrument=instrument, product="MIS", net_quantity=10)


def paper_account_with_book() -> BrokerAccount:
    """A paper account holding BOOK: each module's `account` fixture."""
    account = BrokerAccount.objects.create(name="paper-risk", kind="paper")
    make_positions(account, BOOK)
    return account


# --- the book ------------------------------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def test_the_window_is_the_last_closes_aligned_on_the_date(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.book import book_current, returns_window

    book = book_current(account_id=account.pk)
    assert book.keys == sorted(f"NSE:{s}" for s in BOOK)
    assert {p.symbol: p.quantity for p in book.positions} == BOOK  # products netted
    window = returns_window(symbols=book.keys, window_days=250)
    order = [k.split(":")[1] for k in book.keys]
    returns, exposures, days = hand_window(daily, {s: BOOK[s] for s in order}, 250)
    assert [d.astype(date) for d in window.dates] == days
    np.testing.assert_allclose(window.returns, returns, rtol=1e-9)
    np.testing.assert_allclose(book.exposures, exposures, rtol=1e-12)
    assert all(p.price_source == "close" for p in book.positions)


def test_a_latest_price_in_redis_prices_the_position(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.book import book_current

    price = events.LatestPrice(Decimal("1234.5"), timezone.now(), None, "test")
    events.set_latest_prices(get_redis(), {"NSE:INFY": price})
    infy = next(p for p in book_current(account_id=account.pk).positions if p.symbol == "INFY")
    assert (infy.price, infy.price_source, infy.exposure) == (Decimal("1234.5"), "latest", Decimal("-49380.0"))


def test_index_returns_align_on_the_date_with_gaps_as_nan(daily: Path) -> None:
    from apps.risk.book import index_returns_on, returns_window

    window = returns_window(symbols=["NSE:RELIANCE"], window_days=900)
    index, notes = index_returns_on(dates=window.all_dates)
    closes = csv_closes(daily, INDEX)
    days = [d.astype(date) for d in window.all_dates]
    expected = [
        closes[b] / closes[a] - 1.0 if a in closes and b in closes else math.nan for a, b in itertools.pairwise(days)
    ]
    np.testing.assert_allclose(index, expected, rtol=1e-9)
    missing = sum(math.isnan(x) for x in expected)
    assert missing > 0 and notes and f"{missing} of 900" in notes[0]


def test_too_little_history_names_the_symbol(shared_data: Path) -> None:
    from apps.risk.book import HistoryTooShort, returns_window

    import_daily(shared_data, "JIOFIN", "RELIANCE")
    with pytest.raises(HistoryTooShort, match=r"too little history for NSE:JIOFIN: 277 daily closes from 2023-08-21"):
        returns_window(symbols=["NSE:RELIANCE", "NSE:JIOFIN"], window_days=300)
    assert len(returns_window(symbols=["NSE:RELIANCE", "NSE:JIOFIN"], window_days=250).dates) == 250


# --- snapshots ---------------------------------------------------------------------------------------------------


def ordered_book() -> dict[str, int]:
    """BOOK in the snapshot's order (by NSE:SYMBOL)."""
    return {s: BOOK[s] for s in sorted(BOOK)}


def test_a_snapshot_stores_the_figure_its_histogram_and_a_fingerprint(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.snapshots import var_compute

    snapshot = var_compute(account_id=account.pk, method="historical", window_days=500, trigger="api")
    returns, exposures, _ = hand_window(daily, ordered_book(), 500)
    pnl = returns @ exposures
    assert float(snapshot.var) == pytest.approx(hand_historical_var(pnl, 0.99), abs=0.006)
    assert snapshot.var == snapshot.var.quantize(Decimal("0.01")) and snapshot.es >= snapshot.var
    counts, edges = snapshot.histogram["counts"], snapshot.histogram["edges"]
    assert len(counts) == 50 and len(edges) == 51 and sum(counts) == 500
    assert edges[0] == pytest.approx(pnl.min(), abs=0.01) and edges[-1] == pytest.approx(pnl.max(), abs=0.01)
    assert re.fullmatch(r"[0-9a-f]{64}", snapshot.inputs_hash)
    assert [p["symbol"] for p in snapshot.positions] == [f"NSE:{s}" for s in sorted(BOOK)]
    component = sum(Decimal(p["component_var"]) for p in snapshot.positions)
    assert float(component) == pytest.approx(float(snapshot.var), rel=1e-3)
    assert snapshot.gross_exposure == Decimal(str(round(float(np.abs(exposures).sum()), 2)))
    assert (snapshot.account_id, snapshot.trigger, snapshot.var_limit, snapshot.breached) == (
        account.pk,
        "api",
        Decimal("1000000.00"),
        False,
    )
    again = var_compute(account_id=account.pk, method="historical", window_days=500, trigger="beat")
    assert again.inputs_hash == snapshot.inputs_hash  # same positions, prices, window and parameters
    Position.objects.filter(account=account, product="MIS").update(net_quantity=11)
    moved = var_compute(account_id=account.pk, method="historical", window_days=500, trigger="beat")
    assert moved.inputs_hash != snapshot.inputs_hash


def test_a_var_over_its_limit_is_a_breach_with_an_alert(
    daily: Path, account: BrokerAccount, django_capture_on_commit_callbacks: Any
) -> None:
    from apps.monitoring.services import alerts_recent
    from apps.risk.snapshots import var_compute

    RiskLimit.objects.create(scope="account", account=account, var_limit=Decimal("1000"))
    with django_capture_on_commit_callbacks(execute=True):
        snapshot = var_compute(account_id=account.pk, method="parametric", trigger="beat")
    assert snapshot.breached and snapshot.var_limit == Decimal("1000") and snapshot.var > 1000
    breach = RiskBreach.objects.get(snapshot=snapshot)
    assert (breach.kind, breach.account_id, breach.value, breach.limit) == (
        "var_limit",
        account.pk,
        snapshot.var,
        Decimal("1000"),
    )
    alert = next(a for a in alerts_recent(kind="var_limit") if f"(snapshot {snapshot.pk})" in a["message"])
    assert alert["source"] == "risk" and str(snapshot.var) in alert["message"]
    assert json.loads(alert["details"])["breach"] == breach.pk


def test_the_desk_book_uses_the_global_limit_and_enabled_accounts(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.snapshots import var_compute

    disabled = BrokerAccount.objects.create(name="paper-off", kind="paper", enabled=False)
    make_positions(disabled, {"RELIANCE": 100_000})
    RiskLimit.objects.filter(scope="global").update(var_limit=Decimal("123456"))
    desk = var_compute(method="parametric", trigger="beat")
    mine = var_compute(account_id=account.pk, method="parametric", trigger="beat")
    assert desk.account_id is None and desk.var == mine.var  # the disabled account's positions are left out
    assert desk.var_limit == Decimal("123456")


def test_an_empty_book_is_a_zero_snapshot_with_a_warning() -> None:
    from apps.risk.snapshots import var_compute

    account = BrokerAccount.objects.create(name="paper-empty", kind="paper")
    snapshot = var_compute(account_id=account.pk, method="montecarlo", trigger="api")
    assert (snapshot.var, snapshot.es, snapshot.positions, snapshot.breached) == (0, 0, [], False)
    assert snapshot.warnings == ["the book is empty (no open positions): VaR 0"]


# --- the task and its schedule -------------------------------------------------------------------------------------


def test_the_task_stores_one_snapshot_per_task_id(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.tasks import compute_var, compute_var_close

    kwargs = {"account_id": account.pk, "method": "montecarlo", "paths": 5_000, "seed": 3, "trigger": "api"}
    first = compute_var.apply(kwargs=kwargs, task_id="risk-task-1").get()
    again = compute_var.apply(kwargs=kwargs, task_id="risk-task-1").get()  # a redelivered message
    assert first == again and RiskSnapshot.objects.filter(task_id="risk-task-1").count() == 1
    snapshot = RiskSnapshot.objects.get(pk=first)
    assert (snapshot.method, snapshot.paths, snapshot.trigger) == ("montecarlo", 5_000, "api")
    ids = compute_var_close.apply(kwargs={"account_id": account.pk}, task_id="close-1").get()
    closing = RiskSnapshot.objects.filter(pk__in=ids)
    assert sorted(closing.values_list("method", flat=True)) == ["historical", "montecarlo", "parametric"]
    assert set(closing.values_list("trigger", flat=True)) == {"close"}


def test_the_beat_entries_run_in_market_hours_and_at_the_close() -> None:
    from workers.routing import queue_for
    from workers.schedule import DEFAULT_SCHEDULE, Crontab

    entries = {e.name: e for e in DEFAULT_SCHEDULE}
    every = entries["risk.compute_var"]
    assert every.crontab == Crontab(minute="*/15", hour="9-15", day_of_week="mon-fri")
    assert every.expires == 1350 and queue_for(every.task).value == "risk"
    close = entries["risk.compute_var_close"]
    assert close.crontab == Crontab(minute="35", hour="15", day_of_week="mon-fri")
    assert close.task == "risk.compute_var_close" and close.expires


# --- stress, backtest and metrics ----------------------------------------------------------------------------------


def test_stress_replays_a_real_day_on_the_current_book(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.analysis import stress_current

    results = {r["name"]: r for r in stress_current(account_id=account.pk)}
    book = ordered_book()
    closes = {s: csv_closes(daily, s) for s in book}
    last = {s: max(closes[s]) for s in book}
    exposures = {s: book[s] * closes[s][last[s]] for s in book}
    day, before = date(2024, 6, 4), date(2024, 6, 3)
    expected = sum(exposures[s] * (closes[s][day] / closes[s][before] - 1.0) for s in book)
    replay = results["2024-06-04"]
    assert replay["source"] == "historical" and float(replay["pnl"]) == pytest.approx(expected, abs=0.02)
    assert float(results["flash_crash"]["pnl"]) == pytest.approx(-0.05 * sum(exposures.values()), abs=0.01)
    assert results["covid_2020_03_23"]["kind"] == "index_beta"


def test_the_backtest_counts_the_exceptions_of_the_rolling_var(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.analysis import var_backtest_current

    report = var_backtest_current(account_id=account.pk, window_days=250, confidence=0.99)
    book = ordered_book()
    closes = {s: csv_closes(daily, s) for s in book}
    days = sorted(set.intersection(*(set(c) for c in closes.values())))
    prices = np.array([[closes[s][d] for s in book] for d in days])
    exposures = np.array([book[s] * closes[s][days[-1]] for s in book])
    pnl = (prices[1:] / prices[:-1] - 1.0) @ exposures
    exceptions = [
        days[t + 1] for t in range(250, len(pnl)) if -pnl[t] > -np.quantile(pnl[t - 250 : t], 0.01, method="lower")
    ]
    assert report["observations"] == len(pnl) - 250
    assert [e["date"] for e in report["exceptions"]] == [d.isoformat() for d in exceptions]
    assert report["kupiec"]["exceptions"] == len(exceptions)


def test_metrics_beta_is_the_covariance_with_the_index_on_shared_dates(daily: Path, account: BrokerAccount) -> None:
    from apps.risk.analysis import metrics_current

    report = metrics_current(account_id=account.pk, window_days=500)
    book = ordered_book()
    returns, exposures, days = hand_window(daily, book, 500)
    portfolio = returns @ exposures / np.abs(exposures).sum()
    index = csv_closes(daily, INDEX)
    all_days = sorted(set.intersection(*(set(csv_closes(daily, s)) for s in book)))[-501:]
    pairs = [
        (portfolio[i], index[b] / index[a] - 1.0)
        for i, (a, b) in enumerate(itertools.pairwise(all_days))
        if a in index and b in index
    ]
    p, m = np.array(pairs).T
    assert report["beta"] == pytest.approx(np.cov(p, m)[0, 1] / np.var(m, ddof=1), rel=1e-9)
    assert report["observations"] == 500 and report["volatility"] == pytest.approx(portfolio.std(ddof=1) * 252**0.5)
    assert report["first_date"] == days[0].isoformat()
