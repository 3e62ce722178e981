"""VaR snapshots of the current book (stress tests, the backtest and metrics are in apps.risk.analysis).

`var_compute` is what the beat task, the API and `var_report --save` call: gather the book and its daily
returns, run the engine (apps.risk.quant.var), and store one RiskSnapshot with what drove the figure (component
VaR per position, the P&L histogram) and a fingerprint of its inputs. A VaR above the effective `var_limit`
is a breach: a RiskBreach row for the risk officer and an operational alert, raised once the snapshot is
committed. Money is Decimal to the paisa in the database; the numerics run in float64.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from functools import partial
from statistics import NormalDist
from typing import Any

import numpy as np
from django.db import transaction
from numpy.typing import NDArray

from apps.monitoring import services as monitoring
from apps.risk.book import Book, BookError, ReturnsWindow, book_current, returns_window
from apps.risk.limits import limits_effective
from apps.risk.models import BreachKind, LimitScope, RiskBreach, RiskLimit, RiskSnapshot
from apps.risk.pretrade import DEFAULT_LIMITS
from apps.risk.quant import var as engine

log = logging.getLogger(__name__)

CENT = Decimal("0.01")
HISTOGRAM_BINS = 50
NORMAL_SCENARIOS = 10_000  # the parametric histogram's counts are per this many scenarios
DEFAULTS: dict[str, Any] = {
    "method": "historical",
    "confidence": 0.99,
    "horizon_days": 1,
    "window_days": 250,
    "paths": 100_000,
    "distribution": "normal",
    "seed": 0,
}


def money(value: float | Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(CENT)


def var_limit_effective(*, account_id: int | None) -> Decimal | None:
    """The account's var_limit (inheriting the global one), or the global row's for the desk's book."""
    if account_id is not None:
        return limits_effective(account_id=account_id).var_limit
    row = RiskLimit.objects.filter(scope=LimitScope.GLOBAL).only("var_limit").first()
    return row.var_limit if row is not None else DEFAULT_LIMITS.var_limit


def _engine_kwargs(*, method: str, paths: int, distribution: str, seed: int) -> dict[str, Any]:
    if method == "montecarlo":
        return {"paths": paths, "distribution": distribution, "seed": seed}
    return {}


def engine_run(
    *, book: Book, window: ReturnsWindow, method: str, confidence: float, horizon_days: int, **mc: Any
) -> engine.VarResult:
    """The engine on this book and window; VarInputError becomes a BookError (an input problem, not a crash)."""
    try:
        return engine.var_compute(
            method=method,
            returns=window.returns,
            exposures=book.exposures,
            confidence=confidence,
            horizon_days=horizon_days,
            **_engine_kwargs(method=method, **mc),
        )
    except engine.VarInputError as exc:
        raise BookError(f"{method} VaR: {exc}", code="var_input_invalid") from exc


def histogram(sample: NDArray[np.float64], *, bins: int = HISTOGRAM_BINS) -> dict[str, list[float] | list[int]]:
    """The P&L distribution for the admin's picture: bin edges in rupees and counts."""
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(finite, bins=bins)
    return {"edges": [round(float(e), 2) for e in edges], "counts": [int(c) for c in counts]}


def normal_histogram(result: engine.VarResult, *, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Parametric VaR has no scenarios: its normal P&L, binned, as counts per NORMAL_SCENARIOS scenarios.

    The normal's mean and sigma are recovered from the result itself (VaR = z s - m, ES = s phi(z)/(1-c) - m),
    so the picture is exactly the distribution the figures come from.
    """
    unit = NormalDist()
    z = unit.inv_cdf(result.confidence)
    sigma = (result.es - result.var) / (unit.pdf(z) / (1.0 - result.confidence) - z)
    if not sigma > 0:
        return {"edges": [], "counts": []}
    mean = z * sigma - result.var
    edges = np.linspace(mean - 4.5 * sigma, mean + 4.5 * sigma, bins + 1)
    cdf = np.array([NormalDist(mean, sigma).cdf(float(e)) for e in edges])
    counts = np.rint(np.diff(cdf) * NORMAL_SCENARIOS).astype(int)
    return {"edges": [round(float(e), 2) for e in edges], "counts": [int(c) for c in counts]}


def result_histogram(result: engine.VarResult | None) -> dict[str, Any]:
    if result is None:
        return {"edges": [], "counts": []}
    return histogram(result.pnl_sample) if result.pnl_sample.size else normal_histogram(result)


def position_rows(book: Book, result: engine.VarResult | None) -> list[dict[str, Any]]:
    rows = []
    for i, p in enumerate(book.positions):
        rows.append(
            {
                "symbol": p.key,
                "quantity": p.quantity,
                "price": str(p.price),
                "price_source": p.price_source,
                "exposure": str(money(p.exposure)),
                "component_var": str(money(float(result.component[i]))) if result is not None else "0.00",
                "marginal_var": round(float(result.marginal[i]), 8) if result is not None else 0.0,
            }
        )
    return rows


def inputs_hash(*, book: Book, window: ReturnsWindow | None, params: dict[str, Any]) -> str:
    """sha256 of what determines the figure: positions, prices, the window's dates and the parameters."""
    payload = {
        "positions": sorted((p.key, p.quantity, str(p.price)) for p in book.positions),
        "window": None if window is None else [str(window.base_date), str(window.dates[-1]), len(window.dates)],
        "params": params,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def snapshot_params(**params: Any) -> dict[str, Any]:
    """The parameters that matter for the method (paths and seed mean nothing to historical VaR)."""
    kept = {k: params[k] for k in ("method", "confidence", "horizon_days", "window_days")}
    if params["method"] == "montecarlo":
        kept.update(paths=params["paths"], distribution=params["distribution"], seed=params["seed"])
    return kept


def var_compute(
    *,
    account_id: int | None = None,
    method: str = DEFAULTS["method"],
    confidence: float = DEFAULTS["confidence"],
    horizon_days: int = DEFAULTS["horizon_days"],
    window_days: int = DEFAULTS["window_days"],
    paths: int = DEFAULTS["paths"],
    distribution: str = DEFAULTS["distribution"],
    seed: int = DEFAULTS["seed"],
    trigger: str,
    task_id: str = "",
) -> RiskSnapshot:
    """Compute and store one VaR snapshot of the current book (one account's, or every enabled account's).

    Safe to run twice: a task id that already has its snapshot for this method returns that snapshot.
    """
    if method not in engine.METHODS:
        raise BookError(f"method must be one of {', '.join(engine.METHODS)}, not {method!r}", code="bad_method")
    if task_id:
        done = RiskSnapshot.objects.filter(task_id=task_id, method=method).first()
        if done is not None:
            return done
    started = time.monotonic()
    params = snapshot_params(
        method=method,
        confidence=float(confidence),
        horizon_days=int(horizon_days),
        window_days=int(window_days),
        paths=int(paths),
        distribution=distribution,
        seed=int(seed),
    )
    book = book_current(account_id=account_id)
    window = result = None
    warnings: list[str] = []
    if book.empty:
        warnings.append("the book is empty (no open positions): VaR 0")
    else:
        window = returns_window(symbols=book.keys, window_days=params["window_days"])
        mc = {"paths": params.get("paths", paths), "distribution": distribution, "seed": params.get("seed", seed)}
        result = engine_run(
            book=book,
            window=window,
            method=method,
            confidence=params["confidence"],
            horizon_days=params["horizon_days"],
            **mc,
        )
        warnings.extend([*book.warnings, *window.warnings, *result.warnings])
    return snapshot_store(
        book=book,
        window=window,
        result=result,
        params=params,
        warnings=warnings,
        trigger=trigger,
        task_id=task_id,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def snapshot_store(
    *,
    book: Book,
    window: ReturnsWindow | None,
    result: engine.VarResult | None,
    params: dict[str, Any],
    warnings: list[str],
    trigger: str,
    task_id: str = "",
    duration_ms: int = 0,
) -> RiskSnapshot:
    """One RiskSnapshot (and a RiskBreach when over the limit) in one transaction; the alert after the commit."""
    var = money(result.var if result is not None else 0.0) or Decimal("0.00")
    limit = var_limit_effective(account_id=book.account_id)
    breached = limit is not None and var > limit
    with transaction.atomic():
        snapshot = RiskSnapshot.objects.create(
            account_id=book.account_id,
            method=params["method"],
            confidence=Decimal(str(params["confidence"])).quantize(Decimal("0.0001")),
            horizon_days=params["horizon_days"],
            window_days=params["window_days"],
            paths=result.paths if result is not None and result.paths else params.get("paths"),
            distribution=(result.distribution if result is not None else None) or params.get("distribution", ""),
            var=var,
            es=money(result.es if result is not None else 0.0),
            var_se=money(result.var_se) if result is not None else None,
            es_se=money(result.es_se) if result is not None else None,
            gross_exposure=money(book.gross_exposure),
            positions=position_rows(book, result),
            histogram=result_histogram(result),
            warnings=warnings,
            inputs_hash=inputs_hash(book=book, window=window, params=params),
            var_limit=limit,
            breached=breached,
            trigger=trigger,
            task_id=task_id,
            duration_ms=duration_ms,
        )
        if breached:
            _breach_record(snapshot)
    return snapshot


def _breach_record(snapshot: RiskSnapshot) -> RiskBreach:
    scope = f"account {snapshot.account_id}" if snapshot.account_id else "the desk's book"
    message = (
        f"{snapshot.get_method_display()} VaR {snapshot.confidence:.2%} {snapshot.horizon_days}d of {scope} is "
        f"{snapshot.var} rupees, over its limit of {snapshot.var_limit} (snapshot {snapshot.pk})"
    )
    breach = RiskBreach.objects.create(
        kind=BreachKind.VAR_LIMIT,
        account_id=snapshot.account_id,
        codes=["var_limit"],
        message=message,
        value=snapshot.var,
        limit=snapshot.var_limit,
        snapshot=snapshot,
    )
    alert = partial(
        monitoring.alert_raise,
        kind="var_limit",
        message=message,
        source="risk",
        snapshot=snapshot.pk,
        breach=breach.pk,
        account=snapshot.account_id,
        var=str(snapshot.var),
        limit=str(snapshot.var_limit),
        method=snapshot.method,
    )
    transaction.on_commit(alert)
    return breach


def breaches_acknowledge(*, breach_ids: list[int], by: str) -> int:
    """Mark breaches seen by the risk officer; one acknowledged already keeps who and when it first was."""
    from django.utils import timezone

    return RiskBreach.objects.filter(pk__in=breach_ids, acknowledged_at__isnull=True).update(
        acknowledged_by=by, acknowledged_at=timezone.now()
    )


def snapshot_latest(*, account_id: int | None, method: str | None = None) -> RiskSnapshot | None:
    qs = RiskSnapshot.objects.filter(account_id=account_id) if account_id else RiskSnapshot.objects.filter(account=None)
    if method:
        qs = qs.filter(method=method)
    return qs.order_by("-created_at", "-id").first()


def snapshot_for_task(*, task_id: str) -> RiskSnapshot | None:
    return RiskSnapshot.objects.filter(task_id=task_id).order_by("-id").first()


def as_dict(value: Any) -> Any:
    """A dataclass of floats and numpy arrays as JSON-able plain values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {k: as_dict(v) for k, v in asdict(value).items()}
    return value
