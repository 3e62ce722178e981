"""Normal and Student-t quantiles, densities and tail expectations in pure Python (no scipy).

Why here: the VaR engine needs the Student-t quantile for the Monte Carlo control variate (the linear P&L of
simulated t returns is exactly t-distributed, so its quantile is known) and scipy is not a dependency. The t
CDF goes through the regularized incomplete beta function (Lentz's continued fraction), inverted by a
safeguarded Newton iteration: about 1e-12 relative accuracy, far below any Monte Carlo standard error.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_STD_NORMAL = NormalDist()
_BETACF_MAX_ITER = 300
_BETACF_EPS = 1e-15
_TINY = 1e-300


def norm_ppf(p: float) -> float:
    """The standard normal quantile; statistics.NormalDist is exact to double precision."""
    return _STD_NORMAL.inv_cdf(p)


def norm_pdf(x: float) -> float:
    return _STD_NORMAL.pdf(x)


def normal_es(confidence: float) -> float:
    """Expected shortfall of a standard normal loss at `confidence`: phi(z_c) / (1 - c)."""
    return norm_pdf(norm_ppf(confidence)) / (1.0 - confidence)


def t_pdf(x: float, dof: float) -> float:
    """Density of Student's t with `dof` degrees of freedom (unit scale, variance dof / (dof - 2))."""
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_norm - (dof + 1) / 2 * math.log1p(x * x / dof))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _BETACF_MAX_ITER + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _BETACF_EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(x: float, dof: float) -> float:
    """P(T <= x) for Student's t; the tail comes from I_{dof/(dof+x^2)}(dof/2, 1/2) without cancellation."""
    tail = 0.5 * betainc(dof / 2, 0.5, dof / (dof + x * x))
    return 1.0 - tail if x > 0 else tail


def t_ppf(p: float, dof: float) -> float:
    """The Student-t quantile: Newton on the CDF from the normal quantile, kept inside a shrinking bracket."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be inside (0, 1), got {p}")
    if p < 0.5:
        return -t_ppf(1.0 - p, dof)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        lo, hi = hi, hi * 2
    x = min(max(norm_ppf(p), lo), hi)
    for _ in range(200):
        err = t_cdf(x, dof) - p
        if err > 0:
            hi = x
        else:
            lo = x
        step = err / t_pdf(x, dof)
        nxt = x - step
        if not lo < nxt < hi:
            nxt = (lo + hi) / 2
        if abs(nxt - x) <= 1e-13 * max(1.0, abs(x)):
            return nxt
        x = nxt
    return x


def t_es(confidence: float, dof: float) -> float:
    """Expected shortfall of a unit-scale Student-t loss: f(t_c) (dof + t_c^2) / ((dof - 1) (1 - c)), dof > 1."""
    q = t_ppf(confidence, dof)
    return t_pdf(q, dof) * (dof + q * q) / ((dof - 1) * (1.0 - confidence))
