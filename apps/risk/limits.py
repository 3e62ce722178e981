"""Limits: the effective limits of an order, and changes with their history (compare-and-set on `version`).

Resolution: the global row, then the account's row, then the strategy's row for any account, then the strategy's
row for this account; each blank field inherits from the row before. One query per order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from apps.risk.models import LIMIT_FIELDS, LimitScope, RiskLimit, RiskLimitChange
from apps.risk.pretrade import DEFAULT_LIMITS, Limits
from tradingsite.exceptions import ApplicationError, Conflict, NotFound

_INTEGER_FIELDS = frozenset(
    {"max_quantity", "max_open_orders", "orders_per_second", "orders_per_day"}
)  # the rest are rupees or percentages (Decimal)
_NOT_ZERO = frozenset({"orders_per_second", "orders_per_day"})  # 0 would stop every order: the kill switch does that


class LimitInvalid(ApplicationError):
    default_code = "limit_invalid"


_EFFECTIVE_SQL = (
    f"SELECT scope, account_id, {', '.join(LIMIT_FIELDS)} FROM {RiskLimit._meta.db_table} "  # noqa: S608
    "WHERE scope = 'global' OR (scope = 'account' AND account_id = %s) "
    "OR (scope = 'strategy' AND strategy = %s AND (account_id IS NULL OR account_id = %s))"
)  # written out once: on the order path the ORM's compilation costs more than the query itself


def _rank(row: tuple[Any, ...]) -> int:
    return {"global": 0, "account": 1}.get(row[0], 3 if row[1] else 2)


def limits_effective(*, account_id: int, strategy: str = "") -> Limits:
    with connection.cursor() as cursor:
        cursor.execute(_EFFECTIVE_SQL, [account_id, strategy or None, account_id])
        rows = sorted(cursor.fetchall(), key=_rank)
    values: dict[str, Any] = {} if rows and rows[0][0] == LimitScope.GLOBAL else asdict(DEFAULT_LIMITS)
    for row in rows:
        for name, value in zip(LIMIT_FIELDS, row[2:], strict=True):
            if value is not None:
                values[name] = int(value) if name in _INTEGER_FIELDS else Decimal(str(value))
    return Limits(**values)


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
