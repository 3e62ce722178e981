"""Value at Risk and expected shortfall of a book of positions: historical, parametric and Monte Carlo.

Pure numpy (float64), no Django: apps.risk.services gathers exposures and returns and calls `var_compute`.
Sign convention: VaR and ES are LOSSES in rupees, positive when the book loses. Formulas, estimators and the
choices made (mean defaults to zero; historical horizons by overlapping compounded returns) are in
docs/risk-var.md.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from apps.risk.quant import mc_estimators as est
from apps.risk.quant.covariance import factor, nearest_psd, repaired, sample_moments
from apps.risk.quant.distributions import norm_pdf, norm_ppf, t_es, t_ppf
from apps.risk.quant.montecarlo import DEFAULT_CHUNK_PATHS, SimSpec, simulate
from apps.risk.quant.var_types import (
    CONFIDENCES,
    METHODS,
    FloatArray,
    VarInputError,
    VarResult,
    check_confidence,
    check_cov_shape,
    check_exposures,
    check_horizon,
    check_mean,
    check_returns,
    neighbourhood_ranks,
    tail_count,
)

__all__ = [
    "CONFIDENCES",
    "DISTRIBUTIONS",
    "METHODS",
    "REVALUATIONS",
    "VARIANCE_REDUCTION",
    "VarInputError",
    "VarResult",
    "historical_var",
    "montecarlo_var",
    "nearest_psd",
    "parametric_var",
    "var_compute",
]

DISTRIBUTIONS = ("normal", "t")
REVALUATIONS = ("full", "linear")
VARIANCE_REDUCTION = ("antithetic", "control", "importance")
PNL_SAMPLE_MAX = 100_000
MIN_TAIL_PATHS = 10  # fewer simulated tail paths than this is not an estimate
RESAMPLE_STREAM = 0x5A3  # spawn key of the stream that resamples importance-weighted paths for pnl_sample


def _moments(
    returns: ArrayLike | None, cov: ArrayLike | None, mean: ArrayLike | None, n: int, *, log: bool
) -> tuple[FloatArray, FloatArray]:
    """(mean, covariance) of daily returns: `cov` if given, else the sample covariance of `returns`."""
    if cov is not None:
        return check_mean(mean, n), check_cov_shape(cov, n)
    if returns is None:
        raise VarInputError("give returns or cov")
    r = check_returns(returns, n)
    _, sigma = sample_moments(np.log1p(r) if log else r)
    return check_mean(mean, n), sigma


def _euler(raw_marginal: FloatArray, exposures: FloatArray, var: float) -> tuple[FloatArray, FloatArray, list[str]]:
    """Components w_i m_i rescaled to sum to VaR: a neighbourhood average sums to about, not exactly, the VaR."""
    component = exposures * raw_marginal
    total = float(component.sum())
    if abs(total) > 1e-12 * max(float(np.abs(component).sum()), 1e-300) and total * var > 0:
        scale = var / total
        return component * scale, raw_marginal * scale, []
    note = [] if var == 0 else ["component VaR not rescaled: the neighbourhood's mean loss has the wrong sign"]
    return component, raw_marginal, note


def _horizon_returns(returns: FloatArray, horizon: int) -> FloatArray:
    """Overlapping h-day compounded returns, prod(1 + r) - 1 over each window of h consecutive days."""
    if horizon == 1:
        return returns
    cum = np.vstack([np.zeros(returns.shape[1]), np.cumsum(np.log1p(returns), axis=0)])
    return np.expm1(cum[horizon:] - cum[:-horizon])


def historical_var(
    *, returns: ArrayLike, exposures: ArrayLike, confidence: float = 0.99, horizon_days: int = 1
) -> VarResult:
    """Full revaluation over the window: VaR is the ceil(c n)-th smallest scenario loss; ES the Acerbi-Tasche mean."""
    w, c, h = check_exposures(exposures), check_confidence(confidence), check_horizon(horizon_days)
    scen = _horizon_returns(check_returns(returns, len(w), min_rows=h + 1), h)
    n, p = len(scen), 1.0 - c
    if p * n < 1 - 1e-9:
        raise VarInputError(f"historical VaR at {c:.2%} needs at least {math.ceil(1 / p - 1e-9)} scenarios, got {n}")
    pnl = scen @ w
    loss = -pnl
    order = np.argsort(loss, kind="stable")
    j, d = tail_count(c, n) - 1, neighbourhood_ranks(c, n, minimum=2)
    var = float(loss[order[j]])
    es = var + float(np.maximum(loss - var, 0.0).sum()) / (p * n)
    near = order[max(0, j - d) : j + d + 1]
    component, marginal, notes = _euler(-scen[near].mean(axis=0), w, var)
    if h > 1:
        notes.insert(0, f"horizon {h} days: {n} overlapping {h}-day compounded returns (they are not independent)")
    return VarResult(
        "historical", c, h, var, max(es, var), None, None, component, marginal, pnl, None, None, tuple(notes)
    )


def parametric_var(
    *,
    returns: ArrayLike | None = None,
    cov: ArrayLike | None = None,
    mean: ArrayLike | None = None,
    exposures: ArrayLike,
    confidence: float = 0.99,
    horizon_days: int = 1,
) -> VarResult:
    """Delta-normal: P&L ~ N(h mu.w, h w'Sigma w); exact for a linear book of normal returns."""
    w, c, h = check_exposures(exposures), check_confidence(confidence), check_horizon(horizon_days)
    mu, sigma = _moments(returns, cov, mean, len(w), log=False)
    sigma, warnings = repaired(sigma)
    sw = sigma @ w
    sigma_p = math.sqrt(max(float(w @ sw), 0.0))
    z, root_h = norm_ppf(c), math.sqrt(h)
    drift = h * float(mu @ w)
    var = z * sigma_p * root_h - drift
    es = sigma_p * root_h * norm_pdf(z) / (1.0 - c) - drift
    # Euler: dVaR/dw_i = z sqrt(h) (Sigma w)_i / sigma_p - h mu_i. A flat book has no gradient; its one-sided
    # derivative along each position alone is z sqrt(h) sigma_i - h mu_i.
    scale = sw / sigma_p if sigma_p > 0 else np.sqrt(np.clip(np.diag(sigma), 0.0, None))
    marginal = z * root_h * scale - h * mu
    return VarResult("parametric", c, h, var, es, None, None, w * marginal, marginal, np.empty(0), None, None, warnings)


def _techniques(variance_reduction: bool | Iterable[str]) -> frozenset[str]:
    if isinstance(variance_reduction, bool):
        return frozenset(VARIANCE_REDUCTION) if variance_reduction else frozenset()
    chosen = frozenset(variance_reduction)
    unknown = chosen - set(VARIANCE_REDUCTION)
    if unknown:
        raise VarInputError(f"unknown variance reduction {sorted(unknown)}; choose from {VARIANCE_REDUCTION}")
    return chosen


def _check_mc_options(distribution: str, dof: float, revaluation: str, paths: int, workers: int) -> None:
    if distribution not in DISTRIBUTIONS:
        raise VarInputError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    if revaluation not in REVALUATIONS:
        raise VarInputError(f"revaluation must be one of {REVALUATIONS}, got {revaluation!r}")
    if distribution == "t" and not (math.isfinite(dof) and dof > 2):
        raise VarInputError(f"Student-t needs dof > 2 (a finite variance to match the covariance), got {dof}")
    for name, value in (("paths", paths), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise VarInputError(f"{name} must be a positive integer, got {value!r}")


def _known(spec: SimSpec, c: float, dof: float | None) -> est.Known:
    """Exact VaR/ES of the control variate: the linear P&L of the same draws (normal, or Student-t scaled)."""
    sigma_y = float(np.linalg.norm(spec.lower.T @ spec.exposures))
    drift = float(spec.exposures @ spec.drift)
    if dof is None:
        z = norm_ppf(c)
        return est.Known(sigma_y * z - drift, sigma_y * norm_pdf(z) / (1 - c) - drift)
    scale = sigma_y * math.sqrt((dof - 2) / dof)
    return est.Known(scale * t_ppf(c, dof) - drift, scale * t_es(c, dof) - drift)


def _shift(lower: FloatArray, exposures: FloatArray, c: float) -> FloatArray | None:
    """Importance sampling: move z by z_c along -L'w, where the linear loss grows fastest (the tail's centre)."""
    grad = lower.T @ exposures
    norm = float(np.linalg.norm(grad))
    return None if norm == 0 else -norm_ppf(c) * grad / norm


def _pnl_sample(samples: est.Samples, seed: int) -> FloatArray:
    """Up to PNL_SAMPLE_MAX P&Ls for a histogram; importance-weighted paths are resampled by their weights."""
    flat, n = samples.loss.ravel(), samples.n
    size = min(n, PNL_SAMPLE_MAX)
    if samples.weight is None:
        return -flat[:size].copy()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(RESAMPLE_STREAM,))))
    cdf = np.cumsum(samples.weight.ravel())
    picks = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    return -flat[np.minimum(picks, n - 1)]


def montecarlo_var(
    *,
    returns: ArrayLike | None = None,
    cov: ArrayLike | None = None,
    mean: ArrayLike | None = None,
    exposures: ArrayLike,
    confidence: float = 0.99,
    horizon_days: int = 1,
    paths: int = 100_000,
    seed: int = 0,
    distribution: str = "normal",
    dof: float = 5.0,
    workers: int = 1,
    variance_reduction: bool | Iterable[str] = False,
    revaluation: str = "full",
    chunk_paths: int | None = None,
    executor: Executor | None = None,
) -> VarResult:
    """Simulate h-day returns from the Cholesky factor of the covariance and revalue the book on each path.

    Full revaluation: P&L = sum_i v_i (exp(r_i) - 1) on simulated log returns (the covariance is then that
    of log returns: from `returns`, of log1p(returns)); linear: P&L = sum_i v_i r_i. Student-t shares the
    covariance (z scaled by sqrt((dof - 2) / chi2_dof)). `variance_reduction` True (all) or a subset of
    VARIANCE_REDUCTION. `workers` counts this process; `executor` (see mc_pool.make_pool) reuses a pool.
    """
    w, c, h = check_exposures(exposures), check_confidence(confidence), check_horizon(horizon_days)
    _check_mc_options(distribution, dof, revaluation, paths, workers)
    used = _techniques(variance_reduction)
    groups = 2 if "antithetic" in used else 1
    n = _path_count(paths, groups, workers, c)
    mu, sigma = _moments(returns, cov, mean, len(w), log=revaluation == "full")
    fac = factor(sigma)
    lower = fac.lower * math.sqrt(h)
    d = neighbourhood_ranks(c, n, minimum=5)
    spec = SimSpec(
        lower=lower,
        exposures=w,
        drift=h * mu,
        full=revaluation == "full",
        dof=float(dof) if distribution == "t" else None,
        antithetic=groups == 2,
        control="control" in used,
        shift=_shift(lower, w, c) if "importance" in used else None,
        chunk_paths=_chunk_paths(chunk_paths, groups),
        tail_mass=1 - c,
        band_mass=d / n,
        keep_top=None if used else est.top_count(c, n, d),
        head_paths=-(-PNL_SAMPLE_MAX // workers),
    )
    parts = simulate(spec, paths=n, seed=seed, workers=workers, executor=executor)
    fit, pnl_sample = _mc_fit(parts, spec, c, d, seed)
    component, marginal, notes = _mc_components(parts, fit, spec, c)
    warnings = [*fac.warnings, *notes]
    if distribution == "t" and h > 1:
        warnings.append(f"Student-t over {h} days: one t draw with {h}x the daily covariance (a sum of t is not t)")
    return VarResult(
        "montecarlo", c, h, fit.var, fit.es, fit.var_se, fit.es_se, component, marginal,
        pnl_sample, n, distribution, tuple(warnings),
    )  # fmt: skip


def _path_count(paths: int, groups: int, workers: int, c: float) -> int:
    """Paths rounded up to whole antithetic pairs for every worker; enough of them to have a tail."""
    n = -(-paths // (groups * workers)) * groups * workers
    if (1 - c) * n < MIN_TAIL_PATHS:
        raise VarInputError(f"{n} paths leave fewer than {MIN_TAIL_PATHS} in the {1 - c:.2%} tail")
    return n


def _chunk_paths(chunk_paths: int | None, groups: int) -> int:
    chunk = DEFAULT_CHUNK_PATHS if chunk_paths is None else chunk_paths
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 2:
        raise VarInputError(f"chunk_paths must be an integer >= 2, got {chunk_paths!r}")
    return chunk + chunk % groups


def _mc_fit(parts: list[Any], spec: SimSpec, c: float, d: int, seed: int) -> tuple[est.Estimate, FloatArray]:
    """The estimate and the P&L sample: plain from the parts' largest losses, reduced from every path."""
    n = sum(p.n_paths for p in parts)
    if spec.keep_top is not None:
        fit = est.plain(np.concatenate([p.loss.ravel() for p in parts]), n, c, d)
        return fit, -np.concatenate([p.head for p in parts])[:PNL_SAMPLE_MAX]
    samples = est.merge(parts)
    fit = est.reduced(samples, c, d / n, _known(spec, c, spec.dof) if spec.control else None)
    return fit, _pnl_sample(samples, seed)


def _mc_components(
    parts: list[Any], fit: est.Estimate, spec: SimSpec, c: float
) -> tuple[FloatArray, FloatArray, list[str]]:
    """Euler allocation from the VaR's neighbourhood; the delta-normal one if the band kept no such path."""
    raw, covered = est.component(parts, fit.lo, fit.hi)
    notes = [] if covered else ["component VaR: the pilot's band missed part of the VaR's neighbourhood"]
    if raw is None:
        cov_w = spec.lower @ (spec.lower.T @ spec.exposures)
        sigma_p = math.sqrt(max(float(spec.exposures @ cov_w), 0.0))
        raw = norm_ppf(c) * cov_w / sigma_p - spec.drift if sigma_p > 0 else np.zeros_like(spec.exposures)
        notes = ["component VaR: no simulated path near the VaR was kept; delta-normal Euler allocation used"]
    component, marginal, more = _euler(raw, spec.exposures, fit.var)
    return component, marginal, notes + more


_ENGINES: dict[str, Callable[..., VarResult]] = {
    "historical": historical_var,
    "parametric": parametric_var,
    "montecarlo": montecarlo_var,
}


def var_compute(*, method: str, **kwargs: Any) -> VarResult:
    """Dispatch on METHODS; an argument the chosen method does not take is bad input, not a TypeError."""
    engine = _ENGINES.get(method)
    if engine is None:
        raise VarInputError(f"method must be one of {METHODS}, got {method!r}")
    params = inspect.signature(engine).parameters
    unexpected = sorted(set(kwargs) - set(params))
    if unexpected:
        raise VarInputError(f"{method} VaR does not take {', '.join(unexpected)}")
    missing = sorted(k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs)
    if missing:
        raise VarInputError(f"{method} VaR needs {', '.join(missing)}")
    return engine(**kwargs)
