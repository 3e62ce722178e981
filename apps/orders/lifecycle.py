"""The order state machine as data: which status may follow which. Pure, no Django.

    NEW -> QUEUED (passed the risk checks) | RISK_REJECTED
    QUEUED -> SUBMITTING -> OPEN -> PARTIALLY_FILLED -> COMPLETE | CANCELLED | REJECTED
    SUBMITTING -> UNKNOWN when the outcome of a placement is ambiguous; UNKNOWN is resolved from
                  the broker's order book by tag, never by sending again
    SUBMITTING -> QUEUED only when the broker certainly did not take the order (TokenException):
                  it waits, unsent, for an operator to release or cancel it
    EXTERNAL: broker orders the OMS did not create (found by reconciliation)

A status may follow itself where more of the same can happen (more fills while
PARTIALLY_FILLED, an EXTERNAL order's updates, a modification while OPEN).
Nothing leaves a terminal status.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    NEW = "NEW"
    QUEUED = "QUEUED"
    RISK_REJECTED = "RISK_REJECTED"
    SUBMITTING = "SUBMITTING"
    OPEN = "OPEN"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"
    EXTERNAL = "EXTERNAL"


TERMINAL: frozenset[Status] = frozenset({Status.COMPLETE, Status.CANCELLED, Status.REJECTED, Status.RISK_REJECTED})

# What the broker may report once an order is live there.
_BROKER_OUTCOMES = {Status.OPEN, Status.PARTIALLY_FILLED, Status.COMPLETE, Status.CANCELLED, Status.REJECTED}

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.QUEUED, Status.RISK_REJECTED}),
    Status.QUEUED: frozenset({Status.SUBMITTING, Status.CANCELLED}),
    Status.SUBMITTING: frozenset({*_BROKER_OUTCOMES, Status.UNKNOWN, Status.QUEUED}),
    Status.OPEN: frozenset(_BROKER_OUTCOMES),
    Status.PARTIALLY_FILLED: frozenset({Status.PARTIALLY_FILLED, Status.COMPLETE, Status.CANCELLED}),
    Status.UNKNOWN: frozenset({Status.UNKNOWN, *_BROKER_OUTCOMES}),
    Status.EXTERNAL: frozenset({Status.EXTERNAL}),
    **{terminal: frozenset() for terminal in TERMINAL},
}


class IllegalTransition(ValueError):
    """A status change the state machine does not allow."""

    def __init__(self, frm: Status | str, to: Status | str) -> None:
        super().__init__(f"an order cannot go from {frm} to {to}")
        self.frm, self.to = str(frm), str(to)


def can_transition(frm: Status | str, to: Status | str) -> bool:
    return Status(to) in TRANSITIONS[Status(frm)]


def sources_of(to: Status | str) -> frozenset[Status]:
    """Every status from which `to` may be reached (what a compare-and-set UPDATE filters on)."""
    target = Status(to)
    return frozenset(frm for frm, allowed in TRANSITIONS.items() if target in allowed)


def check_transition(frm: Status | str, to: Status | str) -> None:
    if not can_transition(frm, to):
        raise IllegalTransition(frm, to)
