"""The engine's contracts: parameter schemas, exact moving sums, Bars, packed series."""

from __future__ import annotations

import numpy as np
import pytest

from apps.strategies.engine import indicators
from apps.strategies.engine.bars import Bars, BarsError
from apps.strategies.engine.packing import pack_series, unpack_series
from apps.strategies.engine.params import ParamError
from apps.strategies.engine.strategy import UnknownStrategy, get_strategy


def test_params_defaults_types_and_rules() -> None:
    s = get_strategy("sma_crossover", {"fast": "12"})
    assert dict(s.params) == {"fast": 12, "slow": 30, "field": "close", "long_short": False}
    with pytest.raises(ParamError) as bad:
        get_strategy("sma_crossover", {"fast": 40})
    assert bad.value.param == "fast" and "below slow" in str(bad.value)
    with pytest.raises(ParamError) as bad:
        get_strategy("sma_crossover", {"slow": 5, "fast": 5})
    assert bad.value.param == "fast"
    for raw, name in (
        ({"fast": 10.5}, "fast"),
        ({"fast": True}, "fast"),
        ({"fats": 3}, "fats"),
        ({"field": "vwap"}, "field"),
    ):
        with pytest.raises(ParamError) as bad:
            get_strategy("sma_crossover", raw)
        assert bad.value.param == name
    with pytest.raises(UnknownStrategy, match="sma_crossover"):
        get_strategy("nope")


def test_grid_leaves_out_rule_breakers_only() -> None:
    schema = get_strategy("sma_crossover").schema
    grid = schema.grid({"fast": range(5, 55, 5), "slow": range(20, 210, 10)})
    assert len(grid) == 174  # the grid: fast < slow
    assert all(p["fast"] < p["slow"] for p in grid)
    with pytest.raises(ParamError) as bad:
        schema.grid({"fast": [5, -1], "slow": [20]})
    assert bad.value.param == "fast"


def test_exact_sums_detect_ties() -> None:
    close = np.array([[10.0], [10.1], [9.9], [10.0], [10.0]])
    bars = Bars("day", np.arange(5).astype("datetime64[D]"), ("X",), close, close, close, close, close)
    s2, ok2 = indicators.sma_sum(bars, 2)
    s4, ok4 = indicators.sma_sum(bars, 4)
    # mean of the last 2 (10.0, 10.0) equals the mean of the last 4 (10.1, 9.9, 10.0, 10.0) exactly
    assert ok2[4, 0] and ok4[4, 0] and s2[4, 0] * 4 == s4[4, 0] * 2
    assert not ok4[2, 0]


def test_bars_shapes_and_order() -> None:
    t = np.array([2, 1]).astype("datetime64[D]")
    a = np.ones((2, 1))
    with pytest.raises(BarsError, match="strictly increase"):
        Bars("day", t, ("X",), a, a, a, a, a)
    with pytest.raises(BarsError, match="close is shaped"):
        Bars("day", t[::-1], ("X",), a, a, a, np.ones((3, 1)), a)


def test_packed_series_round_trip() -> None:
    t = np.arange(1000, dtype=np.int64) * 86_400_000_000
    v = np.cumsum(np.random.default_rng(1).normal(size=1000)) + 1e6
    t2, v2 = unpack_series(pack_series(t, v))
    assert np.array_equal(t, t2) and np.array_equal(v, v2)
    assert len(unpack_series(None)[0]) == 0
