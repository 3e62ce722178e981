"""The risk area's public door: pre-trade checks for the order path."""

from __future__ import annotations

from apps.risk.pretrade import CheckFailure, OrderFacts, run_checks

__all__ = ["CheckFailure", "OrderFacts", "pre_trade_check"]


def pre_trade_check(*, facts: OrderFacts) -> list[CheckFailure]:
    """Every failing check, in a fixed order; empty when the order may go."""
    return run_checks(facts)
