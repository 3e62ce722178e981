"""Monte Carlo simulation of a book's P&L, in chunks of preallocated buffers, optionally across processes.

Why it is written this way: a million paths over fifty instruments should cost about what drawing the fifty
million normals costs. So each chunk (1024 paths, two 400 kB buffers: cache-sized) reuses its buffers: normals
drawn into place, the triangular factor applied block by block (skipping most of its zero half), exp in place,
and one matrix-vector product with the exposures, in which the drift (and the importance-sampling shift) is
folded: sum_i v_i (exp(mu_i + x_i) - 1) = sum_i (v_i e^mu_i) e^x_i - sum_i v_i. Only the loss of each path is
kept (8 bytes a path), plus the per-instrument returns of the few paths near the VaR (the "band", fixed after
a pilot of the first PILOT_PATHS paths) for the component VaR. Memory is bounded by the path count times a
few bytes, never by paths x instruments.

Variance reduction (see docs/risk-var.md): antithetic pairs (z, -z) share one draw and one matmul;
importance sampling shifts z along the direction in which the linear loss grows and weights each path by
the likelihood ratio; the control variate is the linear (delta-normal) P&L of the same path, whose
distribution is known exactly.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from apps.risk.quant.covariance import triangular_blocks

FloatArray = NDArray[np.float64]

DEFAULT_CHUNK_PATHS = 1024
PILOT_PATHS = 16_384
BAND_SIGMAS = 5.0  # how many pilot standard errors the band reaches past the neighbourhood


@dataclass(frozen=True)
class SimSpec:
    """Everything a worker needs, small enough to pickle: the factor, the book and the estimator's switches."""

    lower: FloatArray  # h-day factor: sqrt(h) L
    exposures: FloatArray
    drift: FloatArray  # h-day mean log return (full) or simple return (linear)
    full: bool  # full revaluation (exp) or linear
    dof: float | None  # None: normal; else Student-t degrees of freedom
    antithetic: bool
    control: bool
    shift: FloatArray | None  # importance-sampling mean of z (theta * a), or None
    chunk_paths: int
    tail_mass: float  # 1 - confidence
    band_mass: float  # neighbourhood half-width in tail mass (delta)
    keep_top: int | None  # plain estimator: only the keep_top largest losses leave the process (None: all)
    head_paths: int  # how many of its first losses a part returns for the P&L histogram


@dataclass
class Part:
    """One process's paths: losses (groups x paths; group 1 holds the antithetic twins) and the band rows.

    With `keep_top` set, `loss` holds only the largest losses (1 x keep_top): the plain estimator needs no
    other, and a worker then sends kilobytes, not its whole loss vector, back through the pipe.
    """

    n_paths: int
    head: FloatArray
    loss: FloatArray
    yloss: FloatArray | None
    weight: FloatArray | None
    band: tuple[float, float]
    band_loss: FloatArray
    band_weight: FloatArray
    band_units: FloatArray  # loss per rupee of exposure, per instrument, of each band path


class _Kernel:
    """Preallocated buffers and folded constants for one process; `run(m)` simulates the next m paths."""

    def __init__(self, spec: SimSpec, rng_z: np.random.Generator, rng_w: np.random.Generator) -> None:
        self.spec, self.rng_z, self.rng_w = spec, rng_z, rng_w
        n_inst = len(spec.exposures)
        rows = spec.chunk_paths // 2 if spec.antithetic else spec.chunk_paths
        self.z = np.empty((rows, n_inst))
        self.r = np.empty((rows, n_inst))
        self.r2 = np.empty((rows, n_inst)) if spec.antithetic else self.r
        self.blocks = triangular_blocks(spec.lower)
        # Views of a full chunk, made once: a chunk then costs a few numpy calls, not dozens of slicings.
        self.full_views = [(self.z[:, :b], block, self.r[:, a:b]) for a, b, block in self.blocks]
        shift_r = spec.lower @ spec.shift if spec.shift is not None else np.zeros(n_inst)
        # Normal: the r-space shift is a constant, folded with the drift. Student-t: it scales with each path's s.
        self.shift_r = shift_r if spec.dof is not None else None
        fold = spec.drift + (shift_r if spec.dof is None else 0.0)
        self.mult = np.exp(fold)
        self.fold = fold
        self.neg_v_eff = -(spec.exposures * self.mult) if spec.full else -spec.exposures
        self.const = float(spec.exposures.sum()) if spec.full else -float(spec.exposures @ fold)
        self.neg_v = -spec.exposures
        self.const_lin = -float(spec.exposures @ fold)
        self.half_theta2 = 0.5 * float(spec.shift @ spec.shift) if spec.shift is not None else 0.0

    def _draw(self, h: int) -> tuple[FloatArray | None, FloatArray | None]:
        """Fill z[:h] (scaled by s for Student-t); return s and z . shift for the likelihood ratio."""
        z = self.z[:h]
        self.rng_z.standard_normal(out=z)
        zs = z @ self.spec.shift if self.spec.shift is not None else None
        s = None
        if self.spec.dof is not None:
            dof = self.spec.dof
            s = np.sqrt((dof - 2.0) / self.rng_w.chisquare(dof, size=h))
            z *= s[:, None]
        return s, zs

    def _correlate(self, h: int) -> None:
        """r[:h] = z[:h] @ L.T, block by block (L is lower-triangular)."""
        if h == self.z.shape[0]:
            for z_view, block, out_view in self.full_views:
                np.matmul(z_view, block, out=out_view)
            return
        z, out = self.z[:h], self.r[:h]
        for a, b, block in self.blocks:
            np.matmul(z[:, :b], block, out=out[:, a:b])

    def _value(self, r: FloatArray, loss: FloatArray, yloss: FloatArray | None) -> None:
        """Losses of paths whose (unshifted-by-drift) log returns are r; r becomes exp(r) under full revaluation."""
        if yloss is not None:
            np.matmul(r, self.neg_v, out=yloss)
            yloss += self.const_lin
        if self.spec.full:
            np.exp(r, out=r)
        np.matmul(r, self.neg_v_eff, out=loss)
        loss += self.const

    def run(self, m: int, loss: FloatArray, yloss: FloatArray | None, weight: FloatArray | None) -> None:
        """Fill loss/yloss/weight (shape groups x h) for the next m paths; self.r (and r2) keep their returns."""
        h = m // 2 if self.spec.antithetic else m
        s, zs = self._draw(h)
        r = self.r[:h]
        self._correlate(h)
        if self.spec.antithetic:
            r2 = self.r2[:h]
            np.negative(r, out=r2)
        if s is not None and self.shift_r is not None:
            shift = np.multiply.outer(s, self.shift_r)
            r += shift
            if self.spec.antithetic:
                r2 += shift
        self._value(r, loss[0], None if yloss is None else yloss[0])
        if self.spec.antithetic:
            self._value(r2, loss[1], None if yloss is None else yloss[1])
        if weight is not None and zs is not None:
            np.exp(-zs - self.half_theta2, out=weight[0])
            if self.spec.antithetic:
                np.exp(zs - self.half_theta2, out=weight[1])

    def rows(self, group: int, idx: NDArray[np.intp]) -> FloatArray:
        """Copies of the last chunk's rows idx (group 1: the antithetic twins), as `units` expects them."""
        return (self.r2 if group else self.r)[idx]

    def units(self, rows: FloatArray) -> FloatArray:
        """Loss per rupee of exposure of each instrument from kept rows (exp(x) under full revaluation, else x)."""
        if self.spec.full:
            return 1.0 - rows * self.mult
        return -(rows + self.fold)


def _tail_point(loss: FloatArray, weight: FloatArray | None, mass: float) -> float:
    """The loss above which the (weighted) paths carry `mass`; +inf when mass <= 0, -inf when it is all paths."""
    n = loss.size
    if mass <= 0:
        return math.inf
    order = np.argsort(loss)[::-1]
    cum = np.cumsum(weight[order] if weight is not None else np.ones(n)) / n
    i = int(np.searchsorted(cum, mass, side="left"))
    return -math.inf if i >= n else float(loss[order[i]])


def _pilot_band(spec: SimSpec, loss: FloatArray, weight: FloatArray | None) -> tuple[float, float]:
    """Loss range [lo, hi] that should hold the final neighbourhood of the VaR, with BAND_SIGMAS of margin."""
    p, n = spec.tail_mass, loss.size
    margin = spec.band_mass + BAND_SIGMAS * math.sqrt(p * (1 - p) / n)
    return _tail_point(loss, weight, p + margin), _tail_point(loss, weight, p - margin)


class _BandCollector:
    """Keeps the per-instrument returns of paths inside the band; before the band is known, of every path."""

    def __init__(self, spec: SimSpec, n_paths: int) -> None:
        self.spec = spec
        self.pilot = min(n_paths, PILOT_PATHS)
        self.band: tuple[float, float] | None = None
        self.losses: list[FloatArray] = []
        self.weights: list[FloatArray] = []
        self.units: list[FloatArray] = []  # raw rows until finish() turns them into units
        self.seen = 0

    def take(self, kernel: _Kernel, loss: FloatArray, weight: FloatArray | None) -> None:
        """Keep this chunk's paths in the band: as few numpy calls as possible, this runs once a chunk."""
        for g in range(loss.shape[0]):
            lg = loss[g]
            if self.band is None:
                idx = np.arange(lg.size)
            else:
                idx = (lg >= self.band[0]).nonzero()[0]
                if idx.size and self.band[1] < math.inf:
                    idx = idx[lg[idx] <= self.band[1]]
                if idx.size == 0:
                    continue
            self.losses.append(lg[idx])
            if weight is not None:
                self.weights.append(weight[g][idx])
            self.units.append(kernel.rows(g, idx))
        self.seen += loss.size
        if self.band is None and self.seen >= self.pilot:
            self._fix_band()

    def _weights(self, losses: list[FloatArray]) -> FloatArray:
        """The kept paths' likelihood ratios; all ones without importance sampling (then none are stored)."""
        if self.spec.shift is None:
            return np.ones(sum(x.size for x in losses))
        return np.concatenate(self.weights)

    def _fix_band(self) -> None:
        loss, weight = np.concatenate(self.losses), self._weights(self.losses)
        self.band = _pilot_band(self.spec, loss, weight if self.spec.shift is not None else None)
        lo, hi = self.band
        keep = (loss >= lo) & (loss <= hi)
        self.losses, self.weights = [loss[keep]], ([weight[keep]] if self.spec.shift is not None else [])
        self.units = [np.concatenate(self.units)[keep]]

    def finish(self, kernel: _Kernel) -> tuple[tuple[float, float], FloatArray, FloatArray, FloatArray]:
        if self.band is None:
            self._fix_band()
        assert self.band is not None
        rows = np.concatenate(self.units) if self.units else np.empty((0, len(self.spec.exposures)))
        return self.band, np.concatenate(self.losses), self._weights(self.losses), kernel.units(rows)


def simulate_part(spec: SimSpec, seed: np.random.SeedSequence, n_paths: int) -> Part:
    """Simulate n_paths (even under antithetic) from `seed`: z from its first child stream, chi-square from its second.

    Two streams, and rows filled in draw order, make the result independent of the chunk size.
    """
    seq_z, seq_w = seed.spawn(2)
    kernel = _Kernel(spec, np.random.Generator(np.random.PCG64(seq_z)), np.random.Generator(np.random.PCG64(seq_w)))
    groups = 2 if spec.antithetic else 1
    per_group = n_paths // groups
    loss = np.empty((groups, per_group))
    yloss = np.empty((groups, per_group)) if spec.control else None
    weight = np.empty((groups, per_group)) if spec.shift is not None else None
    band = _BandCollector(spec, n_paths)
    step = spec.chunk_paths // groups
    for start in range(0, per_group, step):
        sl = slice(start, min(start + step, per_group))
        chunk_loss = loss[:, sl]
        chunk_weight = None if weight is None else weight[:, sl]
        kernel.run((sl.stop - sl.start) * groups, chunk_loss, None if yloss is None else yloss[:, sl], chunk_weight)
        band.take(kernel, chunk_loss, chunk_weight)
    bounds, band_loss, band_weight, band_units = band.finish(kernel)
    head = loss.ravel()[: spec.head_paths].copy()
    if spec.keep_top is not None and spec.keep_top < n_paths:
        loss = _largest(loss.ravel(), spec.keep_top, bounds[0])[None, :]
    return Part(n_paths, head, loss, yloss, weight, bounds, band_loss, band_weight, band_units)


def _largest(loss: FloatArray, k: int, floor: float) -> FloatArray:
    """The k largest losses; partitioning only those above the band's floor when there are enough of them."""
    above = loss[loss >= floor] if math.isfinite(floor) else loss
    pool = above if above.size >= k else loss
    return np.partition(pool, pool.size - k)[pool.size - k :]


def split_paths(paths: int, workers: int, groups: int) -> list[int]:
    """Paths per process, whole antithetic pairs each, the first processes taking the remainder."""
    units, extra = divmod(paths // groups, workers)
    return [(units + (1 if k < extra else 0)) * groups for k in range(workers)]


def simulate(spec: SimSpec, *, paths: int, seed: int, workers: int, executor: Executor | None) -> list[Part]:
    """All parts: part 0 in this process, the others on `executor` (or a pool made for this call).

    workers == 1 uses SeedSequence(seed); more use SeedSequence(seed).spawn(workers), one child per part,
    so the result depends on the seed and the number of workers, not on which process ran what.
    """
    counts = split_paths(paths, workers, 2 if spec.antithetic else 1)
    if workers == 1:
        return [simulate_part(spec, np.random.SeedSequence(seed), counts[0])]
    seeds = np.random.SeedSequence(seed).spawn(workers)
    if executor is not None:
        return _run_parts(executor, spec, seeds, counts)
    from apps.risk.quant.mc_pool import make_pool

    with make_pool(workers - 1) as pool:
        return _run_parts(pool, spec, seeds, counts)


def _run_parts(executor: Executor, spec: SimSpec, seeds: list[np.random.SeedSequence], counts: list[int]) -> list[Part]:
    futures = [executor.submit(simulate_part, spec, s, c) for s, c in zip(seeds[1:], counts[1:], strict=True)]
    first = simulate_part(spec, seeds[0], counts[0])
    return [first, *(f.result() for f in futures)]
