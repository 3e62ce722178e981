"""VaR, ES, their standard errors and the component VaR from simulated losses (see docs/risk-var.md).

Why these estimators:
- VaR is the smallest loss x whose (likelihood-ratio weighted) tail mass T(x) = sum_{L > x} w / n is at most
  1 - c; with unit weights that is the order statistic ceil(c n), found by np.partition in O(n).
- With the control variate Y (the linear P&L, whose tail mass at its known quantile q_Y is exactly 1 - c),
  the tail mass is corrected: T_cv(x) = T(x) - beta (T_Y(q_Y) - (1 - c)) (Hesterberg and Nelson 1998).
- Standard errors come from the Bahadur representation, q_hat - q ~ (T_hat(q) - p) / f(q): the standard
  deviation of the per-path terms w (1{L > q} - beta 1{L_Y > q_Y}) over sqrt(n), divided by the density
  f(q), which is estimated by the spacing of the order statistics at tail mass p +- delta (Siddiqui). The ES
  estimator q + mean(w (L - q)+) / p has the standard error sd(w (L - q)+ - beta_es w (L_Y - q_Y)+) / (p
  sqrt(n)) (Hong 2009). Antithetic twins are averaged first, so the pairs are the independent draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from apps.risk.quant.montecarlo import Part

FloatArray = NDArray[np.float64]

CV_ITERATIONS = 3


@dataclass(frozen=True)
class Known:
    """The control variate's exact VaR and ES (loss units), from the delta-normal or Student-t formula."""

    var: float
    es: float


@dataclass(frozen=True)
class Estimate:
    var: float
    es: float
    var_se: float
    es_se: float
    lo: float  # neighbourhood of the VaR in loss: tail mass p + delta ...
    hi: float  # ... to p - delta


@dataclass(frozen=True)
class Samples:
    """The merged parts: groups x paths arrays (group 1 = antithetic twins) and their flat views."""

    loss: FloatArray
    yloss: FloatArray | None
    weight: FloatArray | None

    @property
    def n(self) -> int:
        return int(self.loss.size)


def merge(parts: list[Part]) -> Samples:
    def cat(arrays: list[FloatArray | None]) -> FloatArray | None:
        present = [a for a in arrays if a is not None]
        return np.concatenate(present, axis=1) if present else None

    loss = cat([p.loss for p in parts])
    assert loss is not None
    return Samples(loss, cat([p.yloss for p in parts]), cat([p.weight for p in parts]))


def _pair_sd(terms: FloatArray) -> tuple[float, int]:
    """Standard deviation of the independent units (paths, or antithetic pairs averaged) and their count."""
    units = terms.mean(axis=0)
    return float(units.std(ddof=1)) if units.size > 1 else 0.0, int(units.size)


def _density(mass_span: float, lo: float, hi: float) -> float:
    return mass_span / (hi - lo) if hi > lo else math.inf


def plain(tops: FloatArray, n: int, confidence: float, d: int) -> Estimate:
    """Unit weights, no control: order statistics and asymptotic standard errors from the largest losses.

    `tops` must hold the n - (j - d) largest of the n losses (j = ceil(c n) - 1, the VaR's rank from the
    bottom): every figure here (VaR, its neighbourhood, the excess over VaR) lies among them.
    """
    p = 1.0 - confidence
    j = max(0, min(n - 1, math.ceil(confidence * n - 1e-9) - 1))
    j_lo, j_hi = max(0, j - d), min(n - 1, j + d)
    top = np.sort(tops)[::-1]  # descending: rank r from the bottom is top[n - 1 - r]
    var, lo, hi = float(top[n - 1 - j]), float(top[n - 1 - j_lo]), float(top[n - 1 - j_hi])
    density = _density((j_hi - j_lo) / n, lo, hi)
    # (L - VaR)+ is zero outside the tail: its mean and sd from the ~p n tail paths.
    excess = top[top > var] - var
    mean_excess = float(excess.sum()) / n
    sd_es = math.sqrt(max(float(excess @ excess) / n - mean_excess**2, 0.0) * n / max(n - 1, 1))
    var_se = math.sqrt(confidence * p / n) / density if math.isfinite(density) else 0.0
    return Estimate(var, max(var + mean_excess / p, var), var_se, sd_es / (p * math.sqrt(n)), lo, hi)


def top_count(confidence: float, n: int, d: int) -> int:
    """How many of the largest losses `plain` needs: from the bottom of the neighbourhood up."""
    j = max(0, min(n - 1, math.ceil(confidence * n - 1e-9) - 1))
    return n - max(0, j - d)


def _beta(a: FloatArray, b: FloatArray) -> float:
    """Least-squares coefficient of a on b (zero when the control does not vary)."""
    b_c = b - b.mean()
    denom = float(b_c @ b_c)
    return float((a - a.mean()) @ b_c) / denom if denom > 0 else 0.0


class _WeightedTail:
    """Losses sorted descending against their tail mass, read by linear interpolation.

    Each path's atom of mass w/n is centred on its loss (tail mass above it plus half its own), so the curve
    is continuous: when the control variate removes almost all the variance (a linear book), the estimate
    is not left a whole order-statistic spacing away from the answer.
    """

    def __init__(self, loss: FloatArray, weight: FloatArray) -> None:
        order = np.argsort(loss)[::-1]
        self.sorted = loss[order]
        w = weight[order]
        self.mass = (np.cumsum(w) - 0.5 * w) / loss.size

    def at(self, mass: float) -> float:
        return float(np.interp(mass, self.mass, self.sorted))

    def spacing(self, mass: float, delta: float) -> float:
        """Mean gap between neighbouring paths' losses within tail mass mass +- delta."""
        i_hi, i_lo = np.searchsorted(self.mass, [mass - delta, mass + delta])
        return (self.at(mass - delta) - self.at(mass + delta)) / max(int(i_lo - i_hi), 1)


def reduced(samples: Samples, confidence: float, delta: float, known: Known | None) -> Estimate:
    """Weighted (importance sampling) and/or control-variate estimates; delta is the neighbourhood in tail mass."""
    p = 1.0 - confidence
    w = samples.weight if samples.weight is not None else np.ones_like(samples.loss)
    tail = _WeightedTail(samples.loss.ravel(), w.ravel())
    target, beta, control_terms = p, 0.0, np.zeros_like(samples.loss)
    if known is not None and samples.yloss is not None:
        control_terms = w * (samples.yloss > known.var)
        residual = float(control_terms.mean()) - p
        # beta belongs to the indicator at the answer, which depends on beta: a few fixed-point steps from the
        # uncorrected quantile (for a linear book, X = Y and beta -> 1 exactly).
        for _ in range(CV_ITERATIONS):
            indicator = w * (samples.loss > tail.at(target))
            beta = _beta(indicator.mean(axis=0), control_terms.mean(axis=0))
            target = p + beta * residual
    var = tail.at(target)
    lo, hi = tail.at(target + delta), tail.at(max(target - delta, 0.0))
    density = _density(2 * delta, lo, hi)
    sd_var, units = _pair_sd(w * (samples.loss > var) - beta * control_terms)
    es, sd_es = _reduced_es(samples, w, var, p, known)
    var_se = sd_var / math.sqrt(units) / density if math.isfinite(density) else 0.0
    # The resolution of the estimate, one mean gap between neighbouring paths (conservative: the gap holding
    # the answer is length-biased). It dominates only when the control variate explains (almost) all the
    # variance, as for a linear book, where the sd above goes to zero.
    var_se = math.hypot(var_se, tail.spacing(target, delta))
    return Estimate(var, max(es, var), var_se, sd_es / (p * math.sqrt(units)), lo, hi)


def _reduced_es(samples: Samples, w: FloatArray, var: float, p: float, known: Known | None) -> tuple[float, float]:
    """ES with the control's exact ES subtracted from its estimate; the sd of the per-unit terms."""
    excess = w * np.maximum(samples.loss - var, 0.0)
    es = var + float(excess.mean()) / p
    if known is None or samples.yloss is None:
        return es, _pair_sd(excess)[0]
    control = w * np.maximum(samples.yloss - known.var, 0.0)
    beta = _beta(excess.mean(axis=0), control.mean(axis=0))
    es_control = known.var + float(control.mean()) / p
    return es - beta * (es_control - known.es), _pair_sd(excess - beta * control)[0]


def component(parts: list[Part], lo: float, hi: float) -> tuple[FloatArray | None, bool]:
    """Mean loss per rupee of each instrument over paths with loss in [lo, hi], and whether every band covered it.

    The Euler allocation of VaR is E[-r_i | L = VaR] per rupee; averaging over the neighbourhood of the VaR
    path (tail mass p +- delta) trades a little bias for far less noise than the single VaR path.
    """
    covered = all(p.band[0] <= lo and p.band[1] >= hi for p in parts)
    loss = np.concatenate([p.band_loss for p in parts])
    keep = (loss >= lo) & (loss <= hi)
    if not keep.any():
        return None, covered
    weight = np.concatenate([p.band_weight for p in parts])[keep]
    units = np.concatenate([p.band_units for p in parts])[keep]
    return (weight @ units) / weight.sum(), covered
