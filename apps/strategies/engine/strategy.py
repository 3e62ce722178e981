"""The strategy contract: a parameter schema and one vectorised function from bars to target positions.

    @register
    class SmaCrossover(Strategy):
        name = "sma_crossover"
        schema = ParamSchema(...)
        def warmup(self) -> int: ...
        def targets(self, bars, cache=None) -> (T, N) float64

`targets` returns, for every bar and symbol, the position the strategy wants once that bar has closed:
+1 long one sizing unit, -1 short, 0 flat (fractions allowed), NaN where it has no opinion yet (the
warm-up, a missing bar). The SAME function serves both paths:

- the backtester calls it once on the whole history;
- live evaluation calls it on the latest `lookback()` bars and reads the last row.

so the live target at bar t is the backtest's target at t (tests/strategies/test_parity.py proves it on
the shared data). Targets are a function of a trailing window, never of a position or of earlier
decisions: what the desk actually holds is the engine's and the Orders service's business.

Who acts on a target, and when: a position follows the target from its first CHANGE after the warm-up
(a regime already under way when a strategy starts is not entered half-way): the backtester opens at
the next bar, live evaluation places the order when a new signal differs from the previous one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray

from apps.strategies.engine.bars import Bars
from apps.strategies.engine.params import Params, ParamSchema

__all__ = ["REGISTRY", "IndicatorCache", "Strategy", "UnknownStrategy", "get_strategy", "register"]

Array = NDArray[np.float64]


class UnknownStrategy(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no strategy named {name!r}; known: {', '.join(sorted(REGISTRY))}")
        self.name = name


class IndicatorCache:
    """Indicator arrays of ONE `Bars`, computed once and shared by every parameter set that asks again.

    A grid over fast 5..50 x slow 20..200 asks for 29 moving averages, not 348. Keys are tuples naming
    the indicator and its inputs, e.g. ("sma_sum", "close", 20).
    """

    def __init__(self, bars: Bars) -> None:
        self.bars = bars
        self._store: dict[Hashable, Any] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key in self._store:
            self.hits += 1
            return self._store[key]
        self.misses += 1
        value = compute()
        self._store[key] = value
        return value

    def __len__(self) -> int:
        return len(self._store)


class Strategy(ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    schema: ClassVar[ParamSchema]
    # Bar intervals it is meant for ("day", "minute", ...); None: any.
    intervals: ClassVar[tuple[str, ...] | None] = None
    # Intraday strategies square off before the close: the engine and live evaluation use product MIS.
    intraday: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: Params = self.schema.validate(params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"

    @abstractmethod
    def warmup(self) -> int:
        """Bars of history before the first target that is not NaN."""

    def lookback(self) -> int:
        """Bars live evaluation loads so that its last target equals the whole-history one.

        `warmup() + 1` for windowed indicators (a crossover compares the bar with the one before);
        longer for recursive ones (EMA, Wilder's RSI, ATR), whose seed must have died out.
        """
        return self.warmup() + 1

    @abstractmethod
    def targets(self, bars: Bars, cache: IndicatorCache | None = None) -> Array:
        """(T, N) target positions; NaN where there is no opinion yet."""

    def inputs(self, bars: Bars, cache: IndicatorCache | None = None) -> dict[str, Array]:
        """Named (T, N) indicator values behind the targets, recorded on each live Signal."""
        return {}


REGISTRY: dict[str, type[Strategy]] = {}
S = TypeVar("S", bound=type[Strategy])


def register(cls: S) -> S:
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} is taken by {REGISTRY[cls.name].__name__}")
    REGISTRY[cls.name] = cls
    return cls


def get_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """A built-in strategy by name with validated parameters (`ParamError` names a bad one)."""
    from apps.strategies.engine import library  # noqa: F401 - registers the built-ins

    try:
        cls = REGISTRY[name]
    except KeyError:
        raise UnknownStrategy(name) from None
    return cls(params)
