"""Risk: the VaR engine beside the cost of drawing its random numbers, its estimator's efficiency, pre-trade checks.

Why: a million-path Monte Carlo VaR over fifty instruments should cost close to what drawing its fifty million
normals costs; that is the floor, measured here in the same run: 1,000,000 x 50 standard normals from PCG64
into preallocated memory on one core (the faster of one prefaulted buffer and the engine's chunk size).
Goals: the full-revaluation Monte Carlo VaR and ES within 1.3x the floor on one core, and within 0.75x the
one-core floor across two processes (SeedSequence.spawn). numpy's multivariate_normal doing the same is the
naive baseline. Efficiency, 1 / (seconds x variance of the 99% VaR over repeated seeds), compares the
variance-reduced estimator (antithetic, control variate, importance sampling) with plain Monte Carlo: goal 4x.
Times are the best of BENCH_REPEATS runs (default 5). The last section is the pre-trade check suite
(benchmarks/_pretrade.py).

Inputs are synthetic but realistic: a random correlated 50x50 covariance with daily vols of 1-3%, and 1000 days
of returns drawn from it; a book of ~Rs 1-10 lakh positions, a few of them short. No Django is imported here
until the pre-trade section; numpy only inside run(), after OPENBLAS_NUM_THREADS=1 (one core means one thread).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.stats import Report, bench_repeats, best_of

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

N_INSTRUMENTS = 50
DAYS = 1000
PATHS = 1_000_000
EFFICIENCY_PATHS = 100_000
EFFICIENCY_SEEDS = 32
CONFIDENCE = 0.99
GOAL_ONE_CORE = 1.3
GOAL_TWO_CORES = 0.75
GOAL_EFFICIENCY = 4.0
GOAL_RSS_MB = 1024.0


def _inputs() -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(cov, exposures, returns): correlated, daily vols 1-3%, 1000 days, a few short positions."""
    import numpy as np

    rng = np.random.default_rng(20241001)
    factors = rng.standard_normal((N_INSTRUMENTS, 4)) * rng.uniform(0.3, 0.9, (N_INSTRUMENTS, 1))
    raw = factors @ factors.T + np.diag(rng.uniform(0.2, 0.6, N_INSTRUMENTS))
    d = np.sqrt(np.diag(raw))
    vols = rng.uniform(0.01, 0.03, N_INSTRUMENTS)
    cov = raw / np.outer(d, d) * np.outer(vols, vols)
    exposures = rng.uniform(1e5, 1e6, N_INSTRUMENTS) * np.where(rng.random(N_INSTRUMENTS) < 0.15, -1, 1)
    returns = rng.multivariate_normal(np.full(N_INSTRUMENTS, 3e-4), cov, size=DAYS)
    return cov, exposures, returns


def _floor_fns(chunk: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """Drawing PATHS x N standard normals with PCG64: into one prefaulted buffer, and chunk by chunk."""
    import numpy as np

    full = np.zeros((PATHS, N_INSTRUMENTS))
    buf = np.empty((chunk, N_INSTRUMENTS))
    rng = np.random.default_rng(1)

    def one_buffer() -> None:
        rng.standard_normal(out=full)

    def chunked() -> None:
        for start in range(0, PATHS, chunk):
            rng.standard_normal(out=buf[: min(chunk, PATHS - start)])

    return one_buffer, chunked


def _one_core(cov: NDArray[np.float64], exposures: NDArray[np.float64], repeats: int) -> dict[str, Any]:
    """The floor and the million-path MC, interleaved run by run so that drift on a shared machine hits both."""
    from apps.risk.quant.montecarlo import DEFAULT_CHUNK_PATHS
    from apps.risk.quant.var import montecarlo_var

    one_buffer, chunked = _floor_fns(DEFAULT_CHUNK_PATHS)
    kw: dict[str, Any] = {"cov": cov, "exposures": exposures, "paths": PATHS, "confidence": CONFIDENCE}
    result = montecarlo_var(**kw)  # warm-up
    times: dict[str, list[float]] = {"one_buffer": [], "chunked": [], "mc": []}
    for _ in range(repeats):
        for name, fn in (("one_buffer", one_buffer), ("chunked", chunked), ("mc", lambda: montecarlo_var(**kw))):
            times[name].append(best_of(fn, 1)[0])
    floor = min(*times["one_buffer"], *times["chunked"])
    return {
        "floor": {"one_buffer_s": min(times["one_buffer"]), "chunked_s": min(times["chunked"]), "floor_s": floor,
                  "all_s": times},
        "one_core_s": min(times["mc"]), "var": result.var, "var_se": result.var_se, "es": result.es,
        "es_se": result.es_se,
    }  # fmt: skip


def _naive(cov: NDArray[np.float64], exposures: NDArray[np.float64], repeats: int) -> float:
    """numpy.random.multivariate_normal for all paths at once, then the same revaluation, VaR and ES."""
    import numpy as np

    rng = np.random.default_rng(2)

    def once() -> None:
        draws = rng.multivariate_normal(np.zeros(N_INSTRUMENTS), cov, size=PATHS)
        loss = -(np.expm1(draws) @ exposures)
        var = np.quantile(loss, CONFIDENCE)
        float(loss[loss > var].mean())

    return best_of(once, repeats)[0]


def _efficiency(cov: NDArray[np.float64], exposures: NDArray[np.float64], distribution: str) -> dict[str, Any]:
    """Plain and variance-reduced VaR99 over EFFICIENCY_SEEDS seeds: time, spread, mean reported SE, efficiency."""
    from apps.risk.quant.var import montecarlo_var

    out: dict[str, Any] = {}
    for label, reduction in (("plain", False), ("reduced", True)):
        values, ses = [], []
        t0 = time.perf_counter()
        for seed in range(EFFICIENCY_SEEDS):
            r = montecarlo_var(cov=cov, exposures=exposures, paths=EFFICIENCY_PATHS, seed=1000 + seed,
                               distribution=distribution, variance_reduction=reduction)  # fmt: skip
            values.append(r.var)
            ses.append(r.var_se or 0.0)
        seconds = (time.perf_counter() - t0) / EFFICIENCY_SEEDS
        variance = statistics.variance(values)
        out[label] = {"seconds": seconds, "var_mean": statistics.fmean(values), "var_sd": variance**0.5,
                      "mean_reported_se": statistics.fmean(ses), "efficiency": 1 / (seconds * variance)}  # fmt: skip
    out["ratio"] = out["reduced"]["efficiency"] / out["plain"]["efficiency"]
    return out


def _high_water_mb() -> float:
    """This process's peak RSS: VmHWM, which belongs to the exec'd image.

    Not getrusage's ru_maxrss: Linux carries it over fork and exec, so a child spawned by a process that
    once held a gigabyte reports a gigabyte before it has done anything.
    """
    import resource

    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_probe(cov: NDArray[np.float64], exposures: NDArray[np.float64]) -> dict[str, float]:
    """In a fresh process: peak RSS (MB) before and after one million-path run."""
    from apps.risk.quant.var import montecarlo_var

    before = _high_water_mb()
    montecarlo_var(cov=cov, exposures=exposures, paths=PATHS, confidence=CONFIDENCE)
    return {"peak_rss_before_mb": before, "peak_rss_mb": _high_water_mb()}


def _peak_rss(cov: NDArray[np.float64], exposures: NDArray[np.float64]) -> dict[str, float]:
    from apps.risk.quant.mc_pool import make_pool

    with make_pool(1) as pool:
        return pool.submit(_rss_probe, cov, exposures).result()


def _per_call(fn: Callable[[], object], calls: int = 50) -> float:
    """Median seconds of one call over `calls` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _two_processes(cov: NDArray[np.float64], exposures: NDArray[np.float64], repeats: int) -> dict[str, Any]:
    """The same run on two processes (this one and one pool worker), the pool started once and warmed up."""
    from apps.risk.quant.mc_pool import make_pool
    from apps.risk.quant.var import montecarlo_var

    kw: dict[str, Any] = {"cov": cov, "exposures": exposures, "paths": PATHS, "confidence": CONFIDENCE, "workers": 2}
    t0 = time.perf_counter()
    with make_pool(1) as pool:
        result = montecarlo_var(**kw, executor=pool)
        cold = time.perf_counter() - t0
        best, times = best_of(lambda: montecarlo_var(**kw, executor=pool), repeats)
    return {"two_processes_s": best, "two_processes_all_s": times, "first_call_with_pool_start_s": cold,
            "var": result.var, "var_se": result.var_se}  # fmt: skip


def _met(ok: bool) -> str:
    return "yes" if ok else "MISSED"


def _rows(m: dict[str, Any]) -> list[list[object]]:
    floor = m["floor"]["floor_s"]
    mc, mc2 = m["montecarlo"], m["montecarlo_two_processes"]
    eff_n, eff_t, rss = m["efficiency_normal"], m["efficiency_t"], m["memory"]
    one, two = mc["one_core_s"] / floor, mc2["two_processes_s"] / floor

    def eff_rows(label: str, e: dict[str, Any]) -> list[list[object]]:
        p, r = e["plain"], e["reduced"]
        return [
            [f"{label} plain MC, {EFFICIENCY_PATHS:,} paths: sd(VaR99) over {EFFICIENCY_SEEDS} seeds "
             f"{p['var_sd']:,.0f} (mean SE {p['mean_reported_se']:,.0f})", f"{p['seconds']:.4f}", "1.0x eff", "", ""],
            [f"{label} variance-reduced (antithetic+CV+IS): sd {r['var_sd']:,.1f} "
             f"(mean SE {r['mean_reported_se']:,.1f})",
             f"{r['seconds']:.4f}", f"{e['ratio']:,.1f}x eff", f">= {GOAL_EFFICIENCY:g}x eff",
             _met(e["ratio"] >= GOAL_EFFICIENCY)],
        ]  # fmt: skip

    return [
        [f"floor: {PATHS:,} x {N_INSTRUMENTS} N(0,1), PCG64, 1 core", f"{floor:.4f}", "1.00x", "", ""],
        [f"MC VaR+ES {PATHS:,} x {N_INSTRUMENTS}, full revaluation, 1 core", f"{mc['one_core_s']:.4f}",
         f"{one:.2f}x", f"<= {GOAL_ONE_CORE:g}x", _met(one <= GOAL_ONE_CORE)],
        ["MC VaR+ES, same, 2 processes (SeedSequence.spawn, warm pool)", f"{mc2['two_processes_s']:.4f}",
         f"{two:.2f}x", f"<= {GOAL_TWO_CORES:g}x", _met(two <= GOAL_TWO_CORES)],
        ["numpy multivariate_normal, same paths (naive)", f"{m['naive_s']:.4f}", f"{m['naive_s'] / floor:.2f}x",
         "", ""],
        *eff_rows("normal:", eff_n),
        *eff_rows("Student-t(5):", eff_t),
        [f"parametric VaR+ES, {N_INSTRUMENTS} x {DAYS} days of returns", f"{m['parametric_s']:.6f}",
         f"{m['parametric_s'] / floor:.4f}x", "", ""],
        [f"historical VaR+ES, {N_INSTRUMENTS} x {DAYS} days", f"{m['historical_s']:.6f}",
         f"{m['historical_s'] / floor:.4f}x", "", ""],
        [f"peak RSS of one {PATHS:,}-path MC (fresh process): {rss['peak_rss_mb']:.0f} MB "
         f"({rss['peak_rss_before_mb']:.0f} before)", "", "", f"<= {GOAL_RSS_MB:g} MB",
         _met(rss["peak_rss_mb"] <= GOAL_RSS_MB)],
    ]  # fmt: skip


def _measure() -> dict[str, Any]:
    from apps.risk.quant.var import historical_var, parametric_var

    repeats = bench_repeats()
    cov, exposures, returns = _inputs()
    m: dict[str, Any] = {"memory": _peak_rss(cov, exposures)}  # first: before this process grows
    m["montecarlo"] = _one_core(cov, exposures, repeats)
    m["floor"] = m["montecarlo"].pop("floor")
    m["montecarlo_two_processes"] = _two_processes(cov, exposures, repeats)
    m["naive_s"] = _naive(cov, exposures, max(1, repeats // 2))
    m["efficiency_normal"] = _efficiency(cov, exposures, "normal")
    m["efficiency_t"] = _efficiency(cov, exposures, "t")
    m["parametric_s"] = _per_call(lambda: parametric_var(returns=returns, exposures=exposures))
    m["historical_s"] = _per_call(lambda: historical_var(returns=returns, exposures=exposures))
    return m


def _pretrade(rows: list[list[object]], data: dict[str, Any], notes: list[str]) -> None:
    try:
        from benchmarks import _pretrade
    except ImportError:
        notes.append("pre-trade row: benchmarks/_pretrade.py missing")
        return
    pre_rows, pre_data = _pretrade.measure()
    rows.extend(pre_rows)
    data["pretrade"] = pre_data


def run() -> Report:
    preloaded = "numpy" in sys.modules
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import numpy as np

    m = _measure()
    rows = _rows(m)
    mc, mc2 = m["montecarlo"], m["montecarlo_two_processes"]
    notes = [
        f"times: best of {bench_repeats()}, floor and 1-core MC interleaved (multivariate_normal: best of "
        f"{max(1, bench_repeats() // 2)}); floor = min(one prefaulted buffer {m['floor']['one_buffer_s']:.4f}s, "
        f"chunked {m['floor']['chunked_s']:.4f}s)",
        f"MC 1M result: VaR99 {mc['var']:,.0f} (SE {mc['var_se']:,.0f}), ES {mc['es']:,.0f} (SE {mc['es_se']:,.0f}); "
        f"2 processes: VaR99 {mc2['var']:,.0f} (SE {mc2['var_se']:,.0f})",
        f"2 processes, first call including the pool's start: {mc2['first_call_with_pool_start_s']:.3f}s",
        "efficiency = 1 / (seconds per estimate x variance of VaR99 over the seeds); 'x eff' is relative to plain MC",
    ]  # fmt: skip
    if preloaded:
        notes.append("numpy was loaded before run(): OPENBLAS_NUM_THREADS=1 may not have applied")
    data: dict[str, Any] = {"measurements": m, "config": {
        "instruments": N_INSTRUMENTS, "days": DAYS, "paths": PATHS, "confidence": CONFIDENCE,
        "efficiency_paths": EFFICIENCY_PATHS, "efficiency_seeds": EFFICIENCY_SEEDS, "repeats": bench_repeats(),
        "goals": {"one_core_x_floor": GOAL_ONE_CORE, "two_processes_x_floor": GOAL_TWO_CORES,
                  "efficiency_x_plain": GOAL_EFFICIENCY, "peak_rss_mb": GOAL_RSS_MB},
    }}  # fmt: skip
    _pretrade(rows, data, notes)
    return Report(
        title=f"risk: Monte Carlo VaR vs drawing its normals (floor), estimator efficiency, VaR methods; "
        f"pre-trade checks (numpy {np.__version__}, one BLAS thread per process)",
        headers=["measurement", "seconds", "x floor", "goal", "met"],
        rows=rows,
        data=data,
        machine={"numpy": np.__version__, "blas_threads": os.environ["OPENBLAS_NUM_THREADS"]},
        notes=notes,
    )
