"""The VaR engine (apps.risk.quant.var): every figure against an independent computation.

Parametric figures are checked against formulas written out here with `statistics` and plain Python sums;
the historical VaR on real NIFTY 50 closes against a quantile taken by hand from a sorted list; Monte Carlo
figures against the exact parametric value within three of their own standard errors, and the standard
errors themselves against the spread of the estimates over independent seeds.
"""

from __future__ import annotations

import csv
import itertools
import math
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.risk.quant.distributions import t_cdf, t_es, t_ppf
from apps.risk.quant.var import (
    CONFIDENCES,
    VarInputError,
    historical_var,
    montecarlo_var,
    nearest_psd,
    parametric_var,
    var_compute,
)

Z = statistics.NormalDist()
SYMBOLS = ("RELIANCE", "INFY", "HDFCBANK", "ITC", "TATASTEEL")


def _book(n: int = 5, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A correlated covariance with daily vols of 1-3% and a book with one short position."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n + 3))
    raw = a @ a.T
    d = np.sqrt(np.diag(raw))
    vols = rng.uniform(0.01, 0.03, n)
    cov = raw / np.outer(d, d) * np.outer(vols, vols)
    exposures = rng.uniform(1e5, 1e6, n)
    exposures[1] = -exposures[1]
    return cov, exposures


def _hand_sigma(cov: np.ndarray, w: np.ndarray) -> float:
    n = len(w)
    return math.sqrt(math.fsum(float(w[i] * w[j] * cov[i, j]) for i in range(n) for j in range(n)))


# --- parametric ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", CONFIDENCES)
@pytest.mark.parametrize("horizon", [1, 10])
def test_parametric_matches_the_delta_normal_formula(confidence: float, horizon: int) -> None:
    cov, w = _book()
    mu = np.array([0.0004, -0.0002, 0.0001, 0.0, 0.0003])
    result = parametric_var(cov=cov, mean=mu, exposures=w, confidence=confidence, horizon_days=horizon)
    sigma = _hand_sigma(cov, w) * math.sqrt(horizon)
    drift = horizon * math.fsum(float(m * x) for m, x in zip(mu, w, strict=True))
    z = Z.inv_cdf(confidence)
    assert result.var == pytest.approx(z * sigma - drift, rel=1e-12)
    assert result.es == pytest.approx(sigma * Z.pdf(z) / (1 - confidence) - drift, rel=1e-12)
    assert result.es > result.var
    assert result.var_se is None and result.paths is None
    assert result.component.sum() == pytest.approx(result.var, rel=1e-12)


def test_parametric_mean_defaults_to_zero_and_horizon_scales_by_root_h() -> None:
    cov, w = _book()
    one = parametric_var(cov=cov, exposures=w, confidence=0.99)
    ten = parametric_var(cov=cov, exposures=w, confidence=0.99, horizon_days=10)
    assert one.var == pytest.approx(Z.inv_cdf(0.99) * _hand_sigma(cov, w), rel=1e-12)
    assert ten.var == pytest.approx(one.var * math.sqrt(10), rel=1e-12)


def test_parametric_marginal_is_the_derivative_of_var() -> None:
    """Euler: marginal_i = dVaR/dw_i, checked by central differences; component_i = w_i marginal_i."""
    cov, w = _book()
    mu = np.full(len(w), 0.0003)
    base = parametric_var(cov=cov, mean=mu, exposures=w, horizon_days=5)
    for i in range(len(w)):
        bump = np.zeros(len(w))
        bump[i] = 1.0
        up = parametric_var(cov=cov, mean=mu, exposures=w + bump, horizon_days=5).var
        down = parametric_var(cov=cov, mean=mu, exposures=w - bump, horizon_days=5).var
        assert base.marginal[i] == pytest.approx((up - down) / 2, rel=1e-6, abs=1e-9)
    assert np.allclose(base.component, w * base.marginal)


def test_parametric_from_returns_uses_the_sample_covariance() -> None:
    rng = np.random.default_rng(1)
    returns = rng.normal(0.0005, 0.015, size=(300, 3))
    w = np.array([2e5, 1e5, -5e4])
    result = parametric_var(returns=returns, exposures=w, confidence=0.95)
    cols = [list(map(float, returns[:, i])) for i in range(3)]
    cov = np.array([[statistics.covariance(cols[i], cols[j]) for j in range(3)] for i in range(3)])
    assert result.var == pytest.approx(Z.inv_cdf(0.95) * _hand_sigma(cov, w), rel=1e-10)


# --- historical on NIFTY 50 closes --------------------------------------------------------------------------


def _closes(path: Path) -> dict[str, float]:
    with path.open(newline="") as fh:
        return {row["timestamp"][:10]: float(row["close"]) for row in csv.DictReader(fh)}


def _nifty_returns(shared_data: Path) -> np.ndarray:
    """Simple daily returns of SYMBOLS on the dates all of them traded (aligned on the date, never the row)."""
    series = [_closes(shared_data / "nifty50-daily" / f"{s}.csv") for s in SYMBOLS]
    dates = sorted(set.intersection(*(set(s) for s in series)))
    rows = [[s[d1] / s[d0] - 1 for s in series] for d0, d1 in itertools.pairwise(dates)]
    return np.array(rows)


EXPOSURES = np.array([1_000_000.0, 500_000.0, -300_000.0, 800_000.0, 250_000.0])


def _hand_var_es(losses: list[float], confidence: float) -> tuple[float, float]:
    """The ceil(c n)-th smallest loss, in exact arithmetic for the rank; ES = VaR + sum (L - VaR)+ / ((1-c) n)."""
    n = len(losses)
    ordered = sorted(losses)
    k = math.ceil(Fraction(str(confidence)) * n)
    var = ordered[k - 1]
    tail = math.fsum(x - var for x in ordered[k:])
    return var, var + tail / (float(1 - Fraction(str(confidence))) * n)


@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_historical_var_on_nifty50_equals_the_quantile_by_hand(shared_data: Path, confidence: float) -> None:
    returns = _nifty_returns(shared_data)
    assert len(returns) > 900
    losses = [-math.fsum(float(r * x) for r, x in zip(row, EXPOSURES, strict=True)) for row in returns]
    var, es = _hand_var_es(losses, confidence)
    result = historical_var(returns=returns, exposures=EXPOSURES, confidence=confidence)
    assert result.var == pytest.approx(var, rel=1e-12)
    assert result.es == pytest.approx(es, rel=1e-12)
    assert result.pnl_sample.shape == (len(returns),)
    assert result.component.sum() == pytest.approx(result.var, rel=1e-9)
    assert result.warnings == ()


def test_historical_ten_day_var_uses_overlapping_compounded_returns(shared_data: Path) -> None:
    returns = _nifty_returns(shared_data)
    h = 10
    losses = []
    for start in range(len(returns) - h + 1):
        growth = [math.prod(1 + float(returns[start + k, i]) for k in range(h)) for i in range(len(SYMBOLS))]
        losses.append(-math.fsum((g - 1) * x for g, x in zip(growth, EXPOSURES, strict=True)))
    var, es = _hand_var_es(losses, 0.99)
    result = historical_var(returns=returns, exposures=EXPOSURES, confidence=0.99, horizon_days=h)
    assert result.var == pytest.approx(var, rel=1e-10)
    assert result.es == pytest.approx(es, rel=1e-10)
    assert "overlapping 10-day compounded returns" in result.warnings[0]


def test_historical_component_averages_the_scenarios_around_the_var() -> None:
    """A position that never moves near the VaR scenario gets no VaR; the rest sum to it."""
    rng = np.random.default_rng(5)
    returns = rng.normal(0, 0.02, size=(1000, 3))
    returns[:, 2] = 0.0
    result = historical_var(returns=returns, exposures=np.array([1e6, 5e5, 1e6]), confidence=0.99)
    assert result.component[2] == 0.0
    assert result.component.sum() == pytest.approx(result.var, rel=1e-12)
    assert np.all(result.component[:2] > 0)


# --- Monte Carlo ---------------------------------------------------------------------------------------------


def test_montecarlo_million_paths_linear_normal_is_within_three_se_of_parametric() -> None:
    cov, w = _book()
    exact = parametric_var(cov=cov, exposures=w, confidence=0.99)
    mc = montecarlo_var(cov=cov, exposures=w, confidence=0.99, paths=1_000_000, seed=11, revaluation="linear")
    assert mc.paths == 1_000_000 and mc.distribution == "normal"
    assert mc.var_se is not None and mc.es_se is not None
    assert 0 < mc.var_se < 0.01 * exact.var
    assert abs(mc.var - exact.var) < 3 * mc.var_se
    assert abs(mc.es - exact.es) < 3 * mc.es_se
    assert mc.component.sum() == pytest.approx(mc.var, rel=1e-12)
    assert np.allclose(mc.component, exact.component, atol=0.01 * exact.var)
    assert 0 < len(mc.pnl_sample) <= 100_000


@pytest.mark.parametrize("confidence", [0.95, 0.995])
def test_montecarlo_variance_reduced_agrees_with_plain_on_full_revaluation(confidence: float) -> None:
    cov, w = _book()
    plain = montecarlo_var(cov=cov, exposures=w, confidence=confidence, paths=100_000, seed=3)
    fast = montecarlo_var(cov=cov, exposures=w, confidence=confidence, paths=100_000, seed=4, variance_reduction=True)
    assert plain.var_se is not None and fast.var_se is not None and plain.es_se is not None and fast.es_se is not None
    assert fast.var_se < plain.var_se / 3
    assert abs(plain.var - fast.var) < 3 * math.hypot(plain.var_se, fast.var_se)
    assert abs(plain.es - fast.es) < 3 * math.hypot(plain.es_se, fast.es_se)
    assert fast.component.sum() == pytest.approx(fast.var, rel=1e-12)
    # Full revaluation of a long-heavy book: convexity makes the loss smaller than the linear one.
    assert fast.var < parametric_var(cov=cov, exposures=w, confidence=confidence).var


@pytest.mark.parametrize("variance_reduction", [False, True])
def test_montecarlo_standard_errors_match_the_spread_over_seeds(variance_reduction: bool) -> None:
    cov, w = _book()
    runs = [
        montecarlo_var(cov=cov, exposures=w, paths=20_000, seed=s, variance_reduction=variance_reduction)
        for s in range(24)
    ]
    spread = statistics.stdev(r.var for r in runs)
    reported = statistics.fmean(r.var_se or 0.0 for r in runs)
    es_spread = statistics.stdev(r.es for r in runs)
    es_reported = statistics.fmean(r.es_se or 0.0 for r in runs)
    # 24 seeds estimate a standard deviation to about +-15%; allow for that and the estimators' own noise.
    assert 0.6 < reported / spread < 1.6
    assert 0.6 < es_reported / es_spread < 1.6


def test_student_t_is_heavier_than_normal_at_99() -> None:
    cov, w = _book()
    kwargs: dict[str, Any] = {"cov": cov, "exposures": w, "confidence": 0.99, "paths": 200_000, "revaluation": "linear"}
    normal = montecarlo_var(**kwargs, seed=1)
    heavy = montecarlo_var(**kwargs, seed=2, distribution="t", dof=5.0)
    assert heavy.distribution == "t" and heavy.var_se is not None and normal.var_se is not None
    assert heavy.var - normal.var > 3 * math.hypot(heavy.var_se, normal.var_se)
    assert heavy.es > normal.es
    # The linear P&L of multivariate t returns with covariance Sigma is sigma_p sqrt(3/5) t_5:
    # t_5(0.99) = 3.36493 from the tables.
    exact = _hand_sigma(cov, w) * math.sqrt(3 / 5) * 3.364930
    assert abs(heavy.var - exact) < 3 * heavy.var_se


def test_student_t_variance_reduced_agrees_with_its_exact_linear_value() -> None:
    cov, w = _book()
    result = montecarlo_var(
        cov=cov, exposures=w, paths=50_000, distribution="t", dof=4.0, revaluation="linear", variance_reduction=True
    )
    sigma = _hand_sigma(cov, w) * math.sqrt(2 / 4)
    assert result.var_se is not None
    assert abs(result.var - sigma * t_ppf(0.99, 4.0)) < 3 * result.var_se + 1e-6 * result.var
    assert result.es == pytest.approx(sigma * t_es(0.99, 4.0), rel=0.01)


def test_montecarlo_horizon_scaling_matches_parametric() -> None:
    cov, w = _book()
    exact = parametric_var(cov=cov, exposures=w, confidence=0.99, horizon_days=10)
    mc = montecarlo_var(cov=cov, exposures=w, paths=200_000, horizon_days=10, revaluation="linear", seed=9)
    assert mc.var_se is not None
    assert abs(mc.var - exact.var) < 3 * mc.var_se


def test_montecarlo_is_deterministic_and_independent_of_the_chunk_size() -> None:
    cov, w = _book()
    kw: dict[str, Any] = {"cov": cov, "exposures": w, "paths": 30_000, "seed": 5, "distribution": "t"}
    a = montecarlo_var(**kw)
    b = montecarlo_var(**kw, chunk_paths=777)
    c = montecarlo_var(**{**kw, "seed": 6})
    assert a.var == pytest.approx(b.var, rel=1e-12) and a.es == pytest.approx(b.es, rel=1e-12)
    assert np.allclose(a.pnl_sample, b.pnl_sample, rtol=1e-12)
    assert a.var != c.var
    d = montecarlo_var(**kw, variance_reduction=True)
    e = montecarlo_var(**kw, variance_reduction=True, chunk_paths=500)
    assert d.var == pytest.approx(e.var, rel=1e-12)


def test_montecarlo_two_workers_are_deterministic_and_agree_with_one() -> None:
    cov, w = _book()
    kw: dict[str, Any] = {"cov": cov, "exposures": w, "paths": 100_000, "seed": 8}
    one = montecarlo_var(**kw)
    two = montecarlo_var(**kw, workers=2)
    again = montecarlo_var(**kw, workers=2)
    assert two.var == again.var and two.es == again.es
    assert two.var != one.var  # SeedSequence(seed).spawn(2): other streams than workers=1
    assert two.var_se is not None and one.var_se is not None
    assert abs(two.var - one.var) < 3 * math.hypot(two.var_se, one.var_se)
    assert two.paths == 100_000


def test_montecarlo_importance_weighted_pnl_sample_is_resampled_to_the_real_distribution() -> None:
    cov, w = _book()
    result = montecarlo_var(cov=cov, exposures=w, paths=200_000, variance_reduction=["importance"], seed=2)
    assert len(result.pnl_sample) == 100_000
    # The raw importance-sampled paths would put about half their mass beyond the VaR.
    beyond = float(np.mean(-result.pnl_sample > result.var))
    assert 0.005 < beyond < 0.02


def test_antithetic_paths_are_whole_pairs() -> None:
    cov, w = _book()
    result = montecarlo_var(cov=cov, exposures=w, paths=10_001, variance_reduction=["antithetic"])
    assert result.paths == 10_002


# --- covariance repair --------------------------------------------------------------------------------------


def test_nearest_psd_of_an_indefinite_matrix_by_hand() -> None:
    """[[1, 2], [2, 1]] has eigenvalues 3 and -1; clipping -1 leaves 3 v v' with v = (1, 1) / sqrt 2."""
    repaired, min_eig = nearest_psd(np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert min_eig == pytest.approx(-1.0)
    assert np.allclose(repaired, [[1.5, 1.5], [1.5, 1.5]])
    same, none = nearest_psd(np.array([[2.0, 1.0], [1.0, 2.0]]))
    assert none is None and np.allclose(same, [[2.0, 1.0], [1.0, 2.0]])


def test_a_covariance_that_is_not_psd_is_repaired_with_a_warning_not_a_crash() -> None:
    vols = np.array([0.02, 0.015, 0.01])
    corr = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])  # impossible correlations
    cov = corr * np.outer(vols, vols)
    assert np.linalg.eigvalsh(cov)[0] < 0
    w = np.array([1e6, 1e6, 1e6])
    for result in (
        parametric_var(cov=cov, exposures=w),
        montecarlo_var(cov=cov, exposures=w, paths=20_000),
        montecarlo_var(cov=cov, exposures=w, paths=20_000, variance_reduction=True, distribution="t"),
    ):
        assert any("not positive definite" in msg and "nearest PSD" in msg for msg in result.warnings)
        assert math.isfinite(result.var) and result.var > 0 and result.es >= result.var
    repaired, _ = nearest_psd(cov)
    assert parametric_var(cov=cov, exposures=w).var == pytest.approx(parametric_var(cov=repaired, exposures=w).var)


def test_a_singular_covariance_still_simulates() -> None:
    """Two columns of identical returns: PSD but singular, so Cholesky needs a jitter (and says so)."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.01, size=(400, 2))
    returns = np.column_stack([base, base[:, 0]])
    result = montecarlo_var(returns=returns, exposures=np.array([1e5, 1e5, 1e5]), paths=20_000)
    assert any("singular" in msg for msg in result.warnings)
    assert not any("not positive definite" in msg for msg in result.warnings)
    assert result.var > 0


def test_a_flat_book_has_no_risk() -> None:
    cov, _ = _book(3)
    flat = np.zeros(3)
    returns = np.random.default_rng(0).normal(0, 0.01, size=(300, 3))
    for result in (
        parametric_var(cov=cov, exposures=flat),
        historical_var(returns=returns, exposures=flat),
        montecarlo_var(cov=cov, exposures=flat, paths=5_000),
        montecarlo_var(cov=cov, exposures=flat, paths=5_000, variance_reduction=True),
    ):
        assert result.var == 0 and result.es == 0
        assert np.all(result.component == 0)


# --- bad input ----------------------------------------------------------------------------------------------


def test_nan_in_returns_names_its_column_and_row() -> None:
    returns = np.zeros((300, 3))
    returns[41, 2] = np.nan
    with pytest.raises(VarInputError, match="column 2 at row 41"):
        historical_var(returns=returns, exposures=np.ones(3))
    with pytest.raises(VarInputError, match="column 2 at row 41"):
        montecarlo_var(returns=returns, exposures=np.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.0}, "inside \\(0, 1\\)"),
        ({"confidence": 0.0}, "inside \\(0, 1\\)"),
        ({"confidence": float("nan")}, "inside \\(0, 1\\)"),
        ({"horizon_days": 0}, "at least 1"),
        ({"horizon_days": 1.5}, "integer"),
        ({"exposures": np.ones(4)}, "shape"),
        ({"exposures": np.array([1.0, np.inf, 1.0])}, "position 1"),
    ],
)
def test_bad_arguments_raise_var_input_error(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"returns": np.zeros((300, 3)), "exposures": np.ones(3), **kwargs}
    for method in ("historical", "parametric", "montecarlo"):
        with pytest.raises(VarInputError, match=message):
            var_compute(method=method, **args)


def test_too_few_rows_and_paths_and_bad_options_are_input_errors() -> None:
    cov, w = _book(3)
    with pytest.raises(VarInputError, match="at least 200 scenarios"):
        historical_var(returns=np.zeros((150, 3)), exposures=w, confidence=0.995)
    with pytest.raises(VarInputError, match="tail"):
        montecarlo_var(cov=cov, exposures=w, paths=500)
    with pytest.raises(VarInputError, match="dof > 2"):
        montecarlo_var(cov=cov, exposures=w, distribution="t", dof=2.0)
    with pytest.raises(VarInputError, match="not symmetric"):
        parametric_var(cov=cov + np.triu(np.full((3, 3), 1e-3), 1), exposures=w)
    with pytest.raises(VarInputError, match="returns or cov"):
        parametric_var(exposures=w)
    with pytest.raises(VarInputError, match="method"):
        var_compute(method="delta-gamma", cov=cov, exposures=w)
    with pytest.raises(VarInputError, match="does not take paths"):
        var_compute(method="historical", returns=np.zeros((300, 3)), exposures=w, paths=10)
    with pytest.raises(VarInputError, match="unknown variance reduction"):
        montecarlo_var(cov=cov, exposures=w, variance_reduction=["stratified"])


def test_results_are_read_only_and_es_is_at_least_var() -> None:
    cov, w = _book()
    result = montecarlo_var(cov=cov, exposures=w, paths=20_000)
    assert result.es >= result.var
    with pytest.raises(ValueError, match="read-only"):
        result.component[0] = 0.0


# --- Student-t quantiles (no scipy) -------------------------------------------------------------------------


def test_t_quantiles_match_tables_and_closed_forms() -> None:
    assert t_ppf(0.99, 5) == pytest.approx(3.364930, abs=1e-6)  # tables
    assert t_ppf(0.995, 5) == pytest.approx(4.032143, abs=1e-6)
    assert t_ppf(0.975, 10) == pytest.approx(2.228139, abs=1e-6)
    for p in (0.9, 0.99, 0.999):
        assert t_ppf(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)  # Cauchy
        assert t_ppf(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-10)
        assert t_cdf(t_ppf(1 - p, 7.5), 7.5) == pytest.approx(1 - p, rel=1e-10)
    assert t_ppf(0.99, 1e7) == pytest.approx(Z.inv_cdf(0.99), rel=1e-6)


def test_t_expected_shortfall_by_numerical_integration() -> None:
    """ES = E[T | T > t_c]: midpoint rule on t f(t) over [t_c, 2000] (the tail beyond is below 1e-9)."""
    dof, c = 5.0, 0.99
    q = t_ppf(c, dof)
    log_norm = math.lgamma(3.0) - math.lgamma(2.5) - 0.5 * math.log(5 * math.pi)
    steps = 400_000
    edges = np.geomspace(q, 2000.0, steps + 1)
    mid = (edges[:-1] + edges[1:]) / 2
    density = np.exp(log_norm - 3.0 * np.log1p(mid**2 / dof))
    integral = float(np.sum(mid * density * np.diff(edges)))
    assert t_es(c, dof) == pytest.approx(integral / (1 - c), rel=1e-5)
