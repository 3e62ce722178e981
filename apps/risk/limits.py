"""Limits: the effective limits of an order, and changes with their history (compare-and-set on `version`).

Resolution: the global row, then the account's row, then the strategy's row for any account, then the strategy's
row for this account; each blank field inherits from the row before. One query per order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import F, Q

from apps.risk.models import LIMIT_FIELDS, LimitScope, RiskLimit, RiskLimitChange
from apps.risk.pretrade import DEFAULT_LIMITS, Limits
from tradingsite.exceptions import ApplicationError, Conflict, NotFound

_INTEGER_FIELDS = frozenset(
    {"max_quantity", "max_open_orders", "orders_per_second", "orders_per_day"}
)  # the rest are rupees or percentages (Decimal)
_NOT_ZERO = frozenset({"orders_per_second", "orders_per_day"})  # 0 would stop every order: the kill switch does that


class LimitInvalid(ApplicationError):
    default_code = "limit_invalid"


def _rank(row: RiskLimit) -> int:
    if row.scope == LimitScope.GLOBAL:
        return 0
    if row.scope == LimitScope.ACCOUNT:
        return 1
    return 3 if row.account_id else 2


def limits_effective(*, account_id: int, strategy: str = "") -> Limits:
    scope = Q(scope=LimitScope.GLOBAL) | Q(scope=LimitScope.ACCOUNT, account_id=account_id)
    if strategy:
        scope |= Q(scope=LimitScope.STRATEGY, strategy=strategy) & (Q(account__isnull=True) | Q(account_id=account_id))
    rows = sorted(RiskLimit.objects.filter(scope).only("scope", "account_id", *LIMIT_FIELDS), key=_rank)
    if not rows or rows[0].scope != LimitScope.GLOBAL:
        rows.insert(0, _as_row(DEFAULT_LIMITS))
    values: dict[str, Any] = {}
    for row in rows:
        for name in LIMIT_FIELDS:
            value = getattr(row, name)
            if value is not None:
                values[name] = value
    return Limits(**values)


def _as_row(limits: Limits) -> RiskLimit:
    return RiskLimit(scope=LimitScope.GLOBAL, **{f.name: getattr(limits, f.name) for f in fields(limits)})


def limit_get(*, limit_id: int) -> RiskLimit:
    try:
        return RiskLimit.objects.select_related("account").get(pk=limit_id)
    except RiskLimit.DoesNotExist:
        raise NotFound(f"no risk limit row {limit_id}", code="unknown_limit") from None


def limits_list() -> list[RiskLimit]:
    return list(RiskLimit.objects.select_related("account").order_by("scope", "account__name", "strategy"))


def parse_limit_value(name: str, raw: object) -> int | Decimal | None:
    """A limit field's value from user input; None or "" clears it (inherit). Raises LimitInvalid naming the field."""
    if name not in LIMIT_FIELDS:
        raise LimitInvalid(f"unknown limit field {name!r}", details={"field": name})
    if raw is None or raw == "":
        return None
    try:
        value: int | Decimal = int(str(raw)) if name in _INTEGER_FIELDS else Decimal(str(raw))
    except (ValueError, InvalidOperation):
        raise LimitInvalid(f"{name}: {raw!r} is not a number", details={"field": name}) from None
    if value < 0 or (value == 0 and name in _NOT_ZERO):
        raise LimitInvalid(f"{name}: {raw!r} must be positive", details={"field": name})
    if name.endswith("_pct") and value > 100:
        raise LimitInvalid(f"{name}: {raw!r} is a percentage and cannot exceed 100", details={"field": name})
    return value


def _text(value: object) -> str:
    return "" if value is None else str(value)


@transaction.atomic
def limit_update(
    *, limit_id: int, changes: Mapping[str, object], changed_by: str, source: str, expected_version: int | None = None
) -> RiskLimit:
    """Change some fields of one limit row; every changed field gets a history row. Compare-and-set on version."""
    parsed = {name: parse_limit_value(name, raw) for name, raw in changes.items()}
    row = RiskLimit.objects.select_for_update().filter(pk=limit_id).first()
    if row is None:
        raise NotFound(f"no risk limit row {limit_id}", code="unknown_limit")
    if expected_version is not None and row.version != expected_version:
        raise Conflict(
            f"{row} was changed meanwhile (version {row.version}, you sent {expected_version}): reload and retry",
            code="limit_version_conflict",
        )
    if row.scope == LimitScope.GLOBAL:
        cleared = [name for name, value in parsed.items() if value is None]
        if cleared:
            raise LimitInvalid(f"the global row must set every limit; cleared: {', '.join(cleared)}")
    changed = {name: value for name, value in parsed.items() if _differs(getattr(row, name), value)}
    if not changed:
        return row
    RiskLimit.objects.filter(pk=row.pk).update(**changed, version=F("version") + 1, updated_by=changed_by)
    version = row.version + 1
    RiskLimitChange.objects.bulk_create(
        RiskLimitChange(
            limit=row,
            limit_label=str(row),
            field=name,
            old_value=_text(getattr(row, name)),
            new_value=_text(value),
            version=version,
            changed_by=changed_by,
            source=source,
        )
        for name, value in changed.items()
    )
    row.refresh_from_db()
    return row


def _differs(old: object, new: object) -> bool:
    if old is None or new is None:
        return old is not new
    return Decimal(str(old)) != Decimal(str(new))


@transaction.atomic
def limit_create(
    *,
    scope: str,
    values: Mapping[str, object],
    changed_by: str,
    source: str,
    account_id: int | None = None,
    strategy: str = "",
) -> RiskLimit:
    parsed = {name: parse_limit_value(name, raw) for name, raw in values.items()}
    row = RiskLimit.objects.create(
        scope=scope, account_id=account_id, strategy=strategy, updated_by=changed_by, **parsed
    )
    RiskLimitChange.objects.bulk_create(
        RiskLimitChange(
            limit=row,
            limit_label=str(row),
            field=name,
            old_value="",
            new_value=_text(value),
            version=1,
            changed_by=changed_by,
            source=source,
        )
        for name, value in parsed.items()
        if value is not None
    )
    return row
