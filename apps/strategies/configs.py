"""Strategy configs: create, edit, enable and disable (services), and the reads the API and the admin share.

Every change is a compare-and-set on `version` (`UPDATE ... WHERE version = <the one the caller read>`) with
a `StrategyConfigEvent` written in the same transaction, so two operators editing one config cannot overwrite
each other unseen, and the history says who changed what. A config is validated as a whole on every write
(and again when it is enabled, since its strategy, symbols or account may have changed since):

- the strategy is a registered one and the parameters pass its schema; the VALIDATED parameters are stored
  (defaults filled in, types coerced), so live evaluation never meets an invalid set;
- the interval is a Kite interval the strategy is meant for; an intraday strategy trades MIS, and a daily
  config cannot (MIS positions are squared off the same afternoon);
- capital is positive rupees (to the paisa); a universe or known NSE symbols, not both;
- "live" runs on a Kite account and "paper" on a paper account.

A bad parameter is `ApplicationError(code="invalid_params", details={"param": name})`; any other bad field is
`code="invalid_config", details={"field": name}`; a stale version is `Conflict(code="config_version_conflict")`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.brokers import selectors as broker_accounts
from apps.marketdata import selectors as marketdata
from apps.strategies.data import resolve_symbols
from apps.strategies.engine.params import ParamError
from apps.strategies.engine.strategy import REGISTRY, Strategy, UnknownStrategy, get_strategy
from apps.strategies.models import (
    BacktestRun,
    ConfigEventKind,
    Mode,
    RunKind,
    RunStatus,
    Signal,
    StrategyConfig,
    StrategyConfigEvent,
)
from tradingsite.exceptions import ApplicationError, Conflict, NotFound

__all__ = [
    "EDITABLE_FIELDS",
    "KITE_INTERVALS",
    "config_create",
    "config_create_from_run",
    "config_disable",
    "config_enable",
    "config_events",
    "config_get",
    "config_get_for_user",
    "config_update",
    "config_validate",
    "configs_list",
    "runs_list",
    "signals_list",
    "strategy_describe",
    "strategy_library",
]

KITE_INTERVALS = marketdata.interval_names()
EDITABLE_FIELDS = (
    "name", "strategy", "parameters", "universe", "symbols", "interval", "capital", "product", "mode", "account",
)  # fmt: skip
PRODUCTS = ("CNC", "MIS")
ACCOUNT_KIND = {Mode.LIVE: "kite", Mode.PAPER: "paper"}
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+$")
_NAME_MAX = StrategyConfig._meta.get_field("name").max_length or 64


def _invalid(field: str, message: str, **details: Any) -> ApplicationError:
    return ApplicationError(f"{field}: {message}", code="invalid_config", details={"field": field, **details})


# --- the library -------------------------------------------------------------------------------------------------


def _registry() -> dict[str, type[Strategy]]:
    from apps.strategies.engine import library  # noqa: F401 - registers the built-ins

    return REGISTRY


def strategy_describe(name: str) -> dict[str, Any] | None:
    """A built-in strategy for the API and the admin: title, intervals and its parameter schema; None if unknown."""
    cls = _registry().get(name)
    if cls is None:
        return None
    defaults = cls()
    return {
        "name": cls.name,
        "title": getattr(cls, "title", cls.name),
        "description": cls.description,
        "intervals": list(cls.intervals) if cls.intervals is not None else None,
        "intraday": cls.intraday,
        "warmup": defaults.warmup(),
        "lookback": defaults.lookback(),
        "schema": cls.schema.describe(),
    }


def strategy_library() -> list[dict[str, Any]]:
    return [d for name in sorted(_registry()) if (d := strategy_describe(name)) is not None]


# --- validation ----------------------------------------------------------------------------------------------------


def _strategy(name: Any, parameters: Any) -> Strategy:
    if not isinstance(name, str) or not name:
        raise _invalid("strategy", "give the name of a built-in strategy", known=sorted(_registry()))
    try:
        return get_strategy(name, parameters)
    except UnknownStrategy as exc:
        raise _invalid("strategy", str(exc), known=sorted(_registry())) from None
    except ParamError as exc:
        raise ApplicationError(str(exc), code="invalid_params", details={"param": exc.param}) from None


def _name(name: Any, config_id: int | None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _invalid("name", "give a name (letters, digits, - and _): it labels the config's orders")
    name = name.strip()
    if len(name) > _NAME_MAX or not _SLUG.match(name):
        raise _invalid("name", f"{name!r} must be at most {_NAME_MAX} letters, digits, - or _")
    others = StrategyConfig.objects.filter(name=name)
    if (others.exclude(pk=config_id) if config_id is not None else others).exists():
        raise _invalid("name", f"a config named {name!r} exists already")
    return name


def _interval(interval: Any, strategy: Strategy) -> str:
    if interval not in KITE_INTERVALS:
        raise _invalid("interval", f"{interval!r} is not one of {', '.join(KITE_INTERVALS)}")
    allowed = type(strategy).intervals
    if allowed is not None and interval not in allowed:
        raise _invalid("interval", f"{strategy.name} runs on {', '.join(allowed)} bars, not {interval}")
    return str(interval)


def _product(product: Any, strategy: Strategy, interval: str) -> str:
    if product not in PRODUCTS:
        raise _invalid("product", f"{product!r} is not one of {', '.join(PRODUCTS)}")
    if type(strategy).intraday and product != "MIS":
        raise _invalid("product", f"{strategy.name} is intraday: it trades MIS (squared off the same day)")
    if interval == "day" and product == "MIS":
        raise _invalid("product", "a daily config cannot trade MIS: MIS positions are squared off before the close")
    return str(product)


def _capital(capital: Any) -> Decimal:
    if isinstance(capital, bool) or capital is None:
        raise _invalid("capital", "give the capital in rupees, e.g. 500000")
    try:
        value = Decimal(str(capital).strip())
    except InvalidOperation:
        raise _invalid("capital", f"{capital!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise _invalid("capital", f"must be more than zero rupees, got {capital!r}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise _invalid("capital", f"{capital!r} has more than two decimals (rupees to the paisa)")
    if value >= Decimal("1e16"):
        raise _invalid("capital", f"{capital!r} is too large")
    return value.quantize(Decimal("0.01"))


def _universe_row(universe: Any) -> Any:
    """The Universe row named `universe`."""
    name = getattr(universe, "name", universe)
    if not isinstance(name, str) or not name.strip():
        raise _invalid("universe", f"{universe!r} is not a universe name")
    try:
        return marketdata.universe_get(name=name.strip())
    except NotFound:
        raise _invalid("universe", f"no universe named {name.strip()!r}") from None


def _symbols_or_universe(universe: Any, symbols: Any) -> tuple[Any, list[str]]:
    """(Universe row or None, symbols): exactly one of them is given."""
    if isinstance(symbols, str):
        symbols = [s for s in symbols.split(",") if s.strip()]
    if symbols is not None and not (isinstance(symbols, Sequence) and all(isinstance(s, str) for s in symbols)):
        raise _invalid("symbols", 'give a list of NSE symbols, e.g. ["RELIANCE", "INFY"]')
    if universe and symbols:
        raise _invalid("universe", "give a universe or symbols, not both")
    if universe:
        row = _universe_row(universe)
        if not resolve_symbols(universe=row.name):
            raise _invalid("universe", f"the universe {row.name!r} has no members today")
        return row, []
    if not symbols:
        raise _invalid("symbols", "give at least one NSE symbol, or a universe")
    try:
        return None, resolve_symbols(symbols=list(symbols))
    except ApplicationError as exc:
        raise _invalid("symbols", exc.message, symbols=exc.details.get("symbols", [])) from None


def _account(account: Any, mode: Any) -> Any:
    if mode not in Mode.values:
        raise _invalid("mode", f"{mode!r} is not one of {', '.join(Mode.values)}")
    account_id = getattr(account, "pk", account)
    if isinstance(account_id, bool) or not isinstance(account_id, int):
        raise _invalid("account", f"give a broker account id, got {account!r}")
    try:
        row = broker_accounts.account_get(account_id=account_id)
    except NotFound as exc:
        raise _invalid("account", exc.message) from None
    wanted = ACCOUNT_KIND[Mode(mode)]
    if row.kind != wanted:
        raise _invalid("account", f"{mode} mode runs on a {wanted} account; {row.name} is a {row.kind} account")
    return row


def config_validate(
    *,
    name: Any,
    strategy: Any,
    parameters: Any,
    universe: Any = None,
    symbols: Any = None,
    interval: Any,
    capital: Any,
    product: Any,
    mode: Any,
    account: Any,
    config_id: int | None = None,
) -> dict[str, Any]:
    """A whole config checked; the model's field values (validated parameters, Decimal capital, rows) or an error."""
    checked_name = _name(name, config_id)
    strat = _strategy(strategy, parameters)
    checked_interval = _interval(interval, strat)
    universe_row, symbol_list = _symbols_or_universe(universe, symbols)
    return {
        "name": checked_name,
        "strategy": strat.name,
        "parameters": strat.params.as_dict(),
        "interval": checked_interval,
        "product": _product(product, strat, checked_interval),
        "capital": _capital(capital),
        "universe": universe_row,
        "symbols": symbol_list,
        "mode": str(mode),
        "account": _account(account, mode),
    }


# --- writes --------------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "pk"):
        return getattr(value, "name", None) or value.pk
    return value


def _current(config: StrategyConfig) -> dict[str, Any]:
    return {
        "name": config.name,
        "strategy": config.strategy,
        "parameters": config.parameters,
        "universe": config.universe,
        "symbols": list(config.symbols or []),
        "interval": config.interval,
        "capital": config.capital,
        "product": config.product,
        "mode": config.mode,
        "account": config.account,
    }


def _event(config: StrategyConfig, kind: str, version: int, by: str, detail: dict[str, Any]) -> None:
    StrategyConfigEvent.objects.create(config=config, kind=kind, version=version, by=by[:150], detail=detail)


@transaction.atomic
def config_create(
    *,
    name: str,
    strategy: str,
    parameters: Mapping[str, Any] | None,
    universe: Any = None,
    symbols: Sequence[str] | None = None,
    interval: str,
    capital: Decimal | int | str,
    product: str,
    mode: str,
    account: Any,
    enabled: bool = False,
    by: str = "",
) -> StrategyConfig:
    """A new config at version 1 with its "created" event. `universe` is a name; `account` an id or a row."""
    values = config_validate(
        name=name, strategy=strategy, parameters=parameters, universe=universe, symbols=symbols, interval=interval,
        capital=capital, product=product, mode=mode, account=account,
    )  # fmt: skip
    try:
        with transaction.atomic():
            config = StrategyConfig.objects.create(**values, enabled=bool(enabled), version=1)
    except IntegrityError:  # a config of that name was created meanwhile
        raise _invalid("name", f"a config named {values['name']!r} exists already") from None
    detail = {k: _jsonable(v) for k, v in values.items()} | {"enabled": bool(enabled)}
    _event(config, ConfigEventKind.CREATED, 1, by, detail)
    return config


def config_get(*, config_id: int) -> StrategyConfig:
    config = StrategyConfig.objects.select_related("account", "universe").filter(pk=config_id).first()
    if config is None:
        raise NotFound(f"no strategy config {config_id}", code="unknown_config")
    return config


def _conflict(config: StrategyConfig, expected: int) -> Conflict:
    return Conflict(
        f"config {config.name} was changed meanwhile (version {config.version}, you sent {expected}): reload and retry",
        code="config_version_conflict",
        details={"version": config.version, "expected_version": expected},
    )


def _swap(config: StrategyConfig, *, expected: int, changes: dict[str, Any], extra: Q | None = None) -> StrategyConfig:
    """UPDATE ... WHERE pk AND version = expected: the compare-and-set every change goes through."""
    condition = Q(pk=config.pk, version=expected) & (extra or Q())
    updated = StrategyConfig.objects.filter(condition).update(
        **changes, version=F("version") + 1, updated_at=timezone.now()
    )
    if updated != 1:
        raise _conflict(config_get(config_id=config.pk), expected)
    return config_get(config_id=config.pk)


def _merged(config: StrategyConfig, fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(EDITABLE_FIELDS))
    if unknown:
        hint = " (use config_enable / config_disable)" if unknown[0] == "enabled" else ""
        raise _invalid(unknown[0], f"not an editable field{hint}; editable: {', '.join(EDITABLE_FIELDS)}")
    merged = _current(config) | dict(fields)
    if fields.get("universe") and "symbols" not in fields:
        merged["symbols"] = []  # a universe replaces the symbol list
    if fields.get("symbols") and "universe" not in fields:
        merged["universe"] = None
    return merged


@transaction.atomic
def config_update(*, config_id: int, expected_version: int, by: str, **fields: Any) -> StrategyConfig:
    """Edit some fields (validated with the rest of the config); an "edited" event lists old and new values."""
    config = config_get(config_id=config_id)
    if config.version != expected_version:
        raise _conflict(config, expected_version)
    values = config_validate(**_merged(config, fields), config_id=config.pk)
    before = _current(config)
    changed = {k: v for k, v in values.items() if _jsonable(before[k]) != _jsonable(v)}
    if not changed:
        return config
    saved = _swap(config, expected=expected_version, changes=changed)
    diff = {k: {"old": _jsonable(before[k]), "new": _jsonable(v)} for k, v in changed.items()}
    _event(saved, ConfigEventKind.EDITED, saved.version, by, {"changes": diff})
    return saved


def _set_enabled(*, config_id: int, by: str, expected_version: int | None, enabled: bool) -> StrategyConfig:
    config = config_get(config_id=config_id)
    expected = config.version if expected_version is None else expected_version
    if config.version != expected:
        raise _conflict(config, expected)
    if config.enabled == enabled:
        return config
    if enabled:  # what was valid when saved may not be now (symbols delisted, an account changed kind)
        config_validate(**_current(config), config_id=config.pk)
    saved = _swap(config, expected=expected, changes={"enabled": enabled}, extra=Q(enabled=not enabled))
    kind = ConfigEventKind.ENABLED if enabled else ConfigEventKind.DISABLED
    _event(saved, kind, saved.version, by, {})
    return saved


@transaction.atomic
def config_enable(*, config_id: int, by: str, expected_version: int | None = None) -> StrategyConfig:
    """Start evaluating the config on bar close (re-validated first). Enabling an enabled config changes nothing."""
    return _set_enabled(config_id=config_id, by=by, expected_version=expected_version, enabled=True)


@transaction.atomic
def config_disable(*, config_id: int, by: str, expected_version: int | None = None) -> StrategyConfig:
    """Stop evaluating it: a signal evaluated meanwhile places no order (SignalAction.DISABLED)."""
    return _set_enabled(config_id=config_id, by=by, expected_version=expected_version, enabled=False)


def _run_parameters(run: BacktestRun) -> dict[str, Any]:
    """The parameters a run stands for: a grid's best set, a walk-forward's latest fold's, else its own."""
    results = run.results or {}
    chosen: Any = {}
    if run.kind == RunKind.GRID:
        chosen = (results.get("best") or {}).get("params")
    elif run.kind == RunKind.WALK_FORWARD:
        chosen = ((results.get("folds") or [{}])[-1]).get("params")
    elif run.kind == RunKind.MONTE_CARLO and not run.parameters and run.source_run is not None:
        chosen = run.source_run.parameters
    if run.kind in (RunKind.GRID, RunKind.WALK_FORWARD) and not chosen:
        raise ApplicationError(f"run {run.pk} stored no chosen parameters", code="run_without_parameters")
    return {**(run.parameters or {}), **(chosen or {})}


def _run_capital(run: BacktestRun) -> Decimal:
    """The rupees the run traded: its cash per symbol times the symbols (per_symbol capital), or its cash."""
    options = run.options or {}
    settings: Mapping[str, Any] = options["settings"] if isinstance(options.get("settings"), Mapping) else options
    cash = Decimal(str(settings.get("cash", 1_000_000)))
    per_symbol = settings.get("capital", "per_symbol") == "per_symbol"
    return (cash * (len(run.symbols or []) if per_symbol else 1)).quantize(Decimal("0.01"))


def _free_name(stem: str) -> str:
    stem = re.sub(r"[^-a-zA-Z0-9_]", "-", stem)[: _NAME_MAX - 4]
    taken = set(StrategyConfig.objects.filter(name__startswith=stem).values_list("name", flat=True))
    return next(n for n in (stem, *(f"{stem}-{i}" for i in range(2, 1000))) if n not in taken)


@transaction.atomic
def config_create_from_run(*, run_id: int, account: Any, by: str) -> StrategyConfig:
    """A DISABLED paper config with a finished run's strategy, parameters (a grid's best), symbols and capital."""
    run = BacktestRun.objects.select_related("source_run").filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"no backtest run {run_id}", code="unknown_run")
    if run.status != RunStatus.DONE:
        raise ApplicationError(f"run {run.pk} is {run.status}, not done", code="run_not_done")
    described = strategy_describe(run.strategy)
    return config_create(
        name=_free_name(f"{run.strategy}-run{run.pk}"), strategy=run.strategy, parameters=_run_parameters(run),
        symbols=list(run.symbols or []), interval=run.interval, capital=_run_capital(run),
        product="MIS" if described and described["intraday"] else "CNC", mode=Mode.PAPER, account=account,
        enabled=False, by=by,
    )  # fmt: skip


# --- reads ---------------------------------------------------------------------------------------------------------


def _granted(qs: QuerySet[Any], user: Any, account_path: str) -> QuerySet[Any]:
    if user is None:
        return qs
    return qs.filter(**{f"{account_path}__in": broker_accounts.accounts_for_user(user=user)})


def configs_list(*, user: Any = None, enabled: bool | None = None, mode: str | None = None) -> QuerySet[StrategyConfig]:
    """Configs on the accounts `user` is granted (every one without a user), by name."""
    qs = _granted(StrategyConfig.objects.select_related("account", "universe"), user, "account")
    if enabled is not None:
        qs = qs.filter(enabled=enabled)
    if mode:
        qs = qs.filter(mode=mode)
    return qs.order_by("name")


def config_get_for_user(*, user: Any, config_id: int) -> StrategyConfig:
    """404 alike for a config that does not exist and one on an account not granted to the user."""
    config = configs_list(user=user).filter(pk=config_id).first()
    if config is None:
        raise NotFound(f"strategy config {config_id} does not exist or is not yours", code="unknown_config")
    return config


def config_events(*, config_id: int, limit: int = 50) -> list[StrategyConfigEvent]:
    return list(StrategyConfigEvent.objects.filter(config_id=config_id).order_by("-at", "-id")[:limit])


def signals_list(
    *,
    user: Any = None,
    config_id: int | None = None,
    symbol: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
) -> QuerySet[Signal]:
    """Signals newest bar first (ties: newest row first); `before_id` is a keyset cursor (rows after that one)."""
    qs = _granted(Signal.objects.select_related("config", "instrument"), user, "config__account")
    if config_id is not None:
        qs = qs.filter(config_id=config_id)
    if symbol:
        qs = qs.filter(instrument__tradingsymbol=symbol.strip().upper())
    if since is not None:
        qs = qs.filter(bar_time__gte=since)
    if before_id is not None:
        anchor = Signal.objects.filter(pk=before_id).values_list("bar_time", flat=True).first()
        if anchor is None:
            raise ApplicationError(f"before: no signal {before_id}", code="invalid", details={"field": "before"})
        qs = qs.filter(Q(bar_time__lt=anchor) | Q(bar_time=anchor, pk__lt=before_id))
    return qs.order_by("-bar_time", "-id")


def runs_list(
    *, kind: str | None = None, status: str | None = None, strategy: str | None = None, before_id: int | None = None
) -> QuerySet[BacktestRun]:
    """Backtest runs, newest first; `before_id` is a keyset cursor. The heavy columns (equity, trades) stay unread."""
    qs = BacktestRun.objects.defer("equity", "trades", "results")
    if kind:
        qs = qs.filter(kind=kind)
    if status:
        qs = qs.filter(status=status)
    if strategy:
        qs = qs.filter(strategy=strategy)
    if before_id is not None:
        qs = qs.filter(pk__lt=before_id)
    return qs.order_by("-id")
