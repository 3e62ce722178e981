"""Strategy config services: whole-config validation naming the field or parameter, validated parameters stored,
every change a compare-and-set on `version` with its event (also under concurrent writers)."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from apps.brokers.models import BrokerAccount
from apps.marketdata.models import Instrument, Universe, UniverseMembership
from apps.strategies import configs
from apps.strategies.engine.library import SmaCrossover
from apps.strategies.engine.strategy import REGISTRY
from apps.strategies.models import StrategyConfig, StrategyConfigEvent
from tradingsite.exceptions import ApplicationError, Conflict

SYMBOLS = ("INFY", "TCS", "RELIANCE")


# --- shared by the strategies interface tests (imported by name) -------------------------------------------------


@pytest.fixture
def desk() -> dict[str, Any]:
    """Three NSE instruments, a universe of two of them, a paper account and a Kite account."""
    instruments = {
        s: Instrument.objects.create(tradingsymbol=s, instrument_token=1000 + i) for i, s in enumerate(SYMBOLS)
    }
    universe = Universe.objects.create(name="UI TWO")
    for s in ("INFY", "TCS"):
        UniverseMembership.objects.create(universe=universe, instrument=instruments[s], start_date=date(2020, 1, 1))
    return {
        "instruments": instruments,
        "universe": universe,
        "paper": BrokerAccount.objects.create(name="paper-ui", kind="paper"),
        "kite": BrokerAccount.objects.create(name="kite-ui", kind="kite"),
    }


def config_kwargs(desk: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "sma-infy",
        "strategy": "sma_crossover",
        "parameters": {"fast": "12"},
        "symbols": ["infy", "TCS"],
        "interval": "day",
        "capital": "500000",
        "product": "CNC",
        "mode": "paper",
        "account": desk["paper"].pk,
        "by": "tester",
    }
    return base | overrides


@pytest.fixture
def intraday_strategy(monkeypatch: pytest.MonkeyPatch) -> str:
    """An intraday, minute-only strategy registered for one test only (the library's may not exist yet)."""

    class IntradaySma(SmaCrossover):
        name = "ui_intraday_sma"
        intervals = ("minute",)
        intraday = True

    monkeypatch.setitem(REGISTRY, IntradaySma.name, IntradaySma)
    return IntradaySma.name


# --- tests ---------------------------------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def test_create_stores_the_validated_parameters_and_an_event(desk: dict[str, Any]) -> None:
    config = configs.config_create(**config_kwargs(desk))
    config.refresh_from_db()
    assert config.parameters == {"fast": 12, "slow": 30, "field": "close", "long_short": False}
    assert config.symbols == ["INFY", "TCS"] and config.universe is None
    assert (config.capital, config.version, config.enabled) == (Decimal("500000.00"), 1, False)
    (event,) = StrategyConfigEvent.objects.filter(config=config)
    assert (event.kind, event.version, event.by) == ("created", 1, "tester")
    assert event.detail["parameters"]["slow"] == 30 and event.detail["capital"] == "500000.00"


def test_a_universe_replaces_the_symbols(desk: dict[str, Any]) -> None:
    config = configs.config_create(**config_kwargs(desk, symbols=None, universe="UI TWO"))
    assert config.universe == desk["universe"] and config.symbols == []


BAD_FIELDS = [
    ({"strategy": "no_such"}, "strategy"),
    ({"interval": "2minute"}, "interval"),
    ({"product": "MIS"}, "product"),  # MIS is squared off the same day: not for a daily config
    ({"product": "NRML"}, "product"),
    ({"capital": 0}, "capital"),
    ({"capital": "-5"}, "capital"),
    ({"capital": "lots"}, "capital"),
    ({"capital": "10.001"}, "capital"),
    ({"symbols": ["INFY", "NOPE"]}, "symbols"),
    ({"symbols": []}, "symbols"),
    ({"universe": "UI TWO"}, "universe"),  # and symbols: one or the other
    ({"symbols": None, "universe": "NO SUCH"}, "universe"),
    ({"mode": "demo"}, "mode"),
    ({"mode": "live"}, "account"),  # live needs a Kite account
    ({"account": 999_999}, "account"),
    ({"name": "has spaces"}, "name"),
    ({"name": ""}, "name"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_FIELDS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_FIELDS)])
def test_a_bad_field_is_named_and_nothing_is_written(
    desk: dict[str, Any], overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApplicationError) as bad:
        configs.config_create(**config_kwargs(desk, **overrides))
    assert bad.value.code == "invalid_config" and bad.value.details["field"] == field
    assert bad.value.message.startswith(f"{field}: ")
    assert not StrategyConfig.objects.exists() and not StrategyConfigEvent.objects.exists()


def test_unknown_symbols_are_listed(desk: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError) as bad:
        configs.config_create(**config_kwargs(desk, symbols=["INFY", "NOPE", "ZILCH"]))
    assert bad.value.details == {"field": "symbols", "symbols": ["NOPE", "ZILCH"]}


@pytest.mark.parametrize(
    ("parameters", "param"),
    [({"fast": 40}, "fast"), ({"fats": 3}, "fats"), ({"fast": 10.5}, "fast"), ({"field": "vwap"}, "field")],
)
def test_a_bad_parameter_is_named(desk: dict[str, Any], parameters: dict[str, Any], param: str) -> None:
    with pytest.raises(ApplicationError) as bad:
        configs.config_create(**config_kwargs(desk, parameters=parameters))
    assert bad.value.code == "invalid_params" and bad.value.details == {"param": param}
    assert param in bad.value.message and not StrategyConfig.objects.exists()


def test_modes_need_their_kind_of_account(desk: dict[str, Any]) -> None:
    live = configs.config_create(**config_kwargs(desk, mode="live", account=desk["kite"]))
    assert live.mode == "live" and live.account == desk["kite"]
    with pytest.raises(ApplicationError) as bad:
        configs.config_create(**config_kwargs(desk, name="paper-on-kite", account=desk["kite"].pk))
    assert bad.value.details["field"] == "account" and "paper account" in bad.value.message


def test_intraday_strategies_trade_mis_on_their_intervals(desk: dict[str, Any], intraday_strategy: str) -> None:
    kwargs = config_kwargs(desk, strategy=intraday_strategy, interval="minute")
    with pytest.raises(ApplicationError) as bad:
        configs.config_create(**kwargs)  # CNC
    assert bad.value.details["field"] == "product"
    with pytest.raises(ApplicationError) as bad:
        configs.config_create(**(kwargs | {"interval": "day", "product": "MIS"}))
    assert bad.value.details["field"] == "interval"
    assert configs.config_create(**(kwargs | {"product": "MIS"})).product == "MIS"


def test_update_is_compare_and_set_with_an_event(desk: dict[str, Any]) -> None:
    config = configs.config_create(**config_kwargs(desk))
    saved = configs.config_update(config_id=config.pk, expected_version=1, by="alice", capital="750000.50")
    assert (saved.version, saved.capital) == (2, Decimal("750000.50"))
    edited = StrategyConfigEvent.objects.get(config=config, kind="edited")
    assert edited.version == 2 and edited.by == "alice"
    assert edited.detail["changes"] == {"capital": {"old": "500000.00", "new": "750000.50"}}
    with pytest.raises(Conflict) as stale:
        configs.config_update(config_id=config.pk, expected_version=1, by="bob", capital="1")
    assert stale.value.code == "config_version_conflict" and stale.value.details["version"] == 2
    config.refresh_from_db()
    assert (config.version, config.capital) == (2, Decimal("750000.50"))
    assert StrategyConfigEvent.objects.filter(config=config).count() == 2


def test_update_validates_the_whole_config(desk: dict[str, Any]) -> None:
    config = configs.config_create(**config_kwargs(desk))
    with pytest.raises(ApplicationError) as bad:
        configs.config_update(config_id=config.pk, expected_version=1, by="a", parameters={"slow": 5})
    assert bad.value.details == {"param": "slow"}
    with pytest.raises(ApplicationError) as bad:
        configs.config_update(config_id=config.pk, expected_version=1, by="a", enabled=True)
    assert bad.value.details["field"] == "enabled" and "config_enable" in bad.value.message
    saved = configs.config_update(config_id=config.pk, expected_version=1, by="a", universe="UI TWO")
    assert saved.universe == desk["universe"] and saved.symbols == [] and saved.version == 2
    same = configs.config_update(config_id=config.pk, expected_version=2, by="a", interval="day")
    assert same.version == 2  # nothing changed: no new version, no event
    assert StrategyConfigEvent.objects.filter(config=config).count() == 2


def test_enable_and_disable(desk: dict[str, Any]) -> None:
    config = configs.config_create(**config_kwargs(desk))
    enabled = configs.config_enable(config_id=config.pk, by="ops")
    assert enabled.enabled and enabled.version == 2
    assert configs.config_enable(config_id=config.pk, by="ops").version == 2  # already enabled: no change
    with pytest.raises(Conflict):
        configs.config_disable(config_id=config.pk, by="ops", expected_version=1)
    disabled = configs.config_disable(config_id=config.pk, by="ops", expected_version=2)
    assert not disabled.enabled and disabled.version == 3
    kinds = list(StrategyConfigEvent.objects.filter(config=config).order_by("id").values_list("kind", "version"))
    assert kinds == [("created", 1), ("enabled", 2), ("disabled", 3)]


def test_enable_revalidates(desk: dict[str, Any]) -> None:
    config = configs.config_create(**config_kwargs(desk))
    BrokerAccount.objects.filter(pk=desk["paper"].pk).update(kind="kite")  # the account changed since
    with pytest.raises(ApplicationError) as bad:
        configs.config_enable(config_id=config.pk, by="ops")
    assert bad.value.details["field"] == "account"
    config.refresh_from_db()
    assert not config.enabled and config.version == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_edits_from_one_version_one_wins(desk: dict[str, Any]) -> None:
    config = configs.config_create(**config_kwargs(desk))
    writers = 6
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []

    def edit(i: int) -> None:
        try:
            barrier.wait()
            configs.config_update(config_id=config.pk, expected_version=1, by=f"w{i}", capital=str(100_000 + i))
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["conflict"] * (writers - 1) + ["saved"]
    config.refresh_from_db()
    (edited,) = StrategyConfigEvent.objects.filter(config=config, kind="edited")
    assert config.version == 2 and edited.detail["changes"]["capital"]["new"] == f"{config.capital}"
