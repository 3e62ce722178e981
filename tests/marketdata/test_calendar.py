"""The NSE trading calendar: days, sessions, rule versions, bars, ticks, and its CalendarDay rows."""

from __future__ import annotations

import csv
import importlib
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.db import transaction

from apps.marketdata.calendar import (
    IST,
    CalendarEntry,
    DayKind,
    InstrumentProfile,
    NSECalendar,
    Phase,
    bar_bounds,
    load_entries_csv,
    minute_floor,
    round_to_tick,
    shipped_calendar,
)
from apps.marketdata.calendar_db import instrument_profile, trading_calendar
from apps.marketdata.calendar_rules import CLOSING_AUCTION, RULE_SETS
from apps.marketdata.models import CalendarDay, Instrument, Universe, UniverseMembership

RELIANCE = InstrumentProfile("RELIANCE", "NSE", Decimal("0.10"), has_derivatives=True)
SMALLCAP = InstrumentProfile("SMALLCO", "NSE", Decimal("0.01"), has_derivatives=False)
WEEKDAY_MUHURAT_ONLY = {
    date(2021, 11, 4): (time(18, 15), time(19, 15)),
    date(2022, 10, 24): (time(18, 15), time(19, 15)),
    date(2024, 11, 1): (time(18, 0), time(19, 0)),
    date(2025, 10, 21): (time(13, 45), time(14, 45)),
}
DERIVED_FIRST, DERIVED_LAST = date(2020, 10, 1), date(2025, 9, 30)


def ist(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:  # noqa: PLR0917
    return datetime(year, month, day, hour, minute, second, tzinfo=IST)


@pytest.fixture(scope="module")
def cal() -> NSECalendar:
    return shipped_calendar()


@pytest.fixture(scope="module")
def derived(shared_data: Path) -> dict[date, str]:
    with (shared_data / "nse-closures-derived.csv").open(newline="") as handle:
        return {date.fromisoformat(r["date"]): r["kind"] for r in csv.DictReader(handle)}


# --- days ------------------------------------------------------------------------------------


def test_every_derived_closure_and_weekend_session_agrees(cal, derived):
    assert len(derived) > 70
    for day, kind in derived.items():
        if kind == "closed_weekday":
            assert not cal.is_trading_day(day), day
            assert cal.schedule(day) is None, day
        else:
            assert kind == "weekend_session"
            assert day.weekday() >= 5
            assert cal.day_kind(day) is DayKind.SPECIAL, day
            schedule = cal.schedule(day)
            assert schedule is not None and schedule.open < schedule.close, day


def test_every_other_weekday_trades_and_only_the_muhurat_holidays_lack_a_regular_session(cal, derived):
    without_regular_session = set()
    day = DERIVED_FIRST
    while day <= DERIVED_LAST:
        if day.weekday() < 5 and day not in derived:
            # The candles show trading on these days: on a Muhurat holiday only in the Muhurat hour.
            assert cal.is_trading_day(day), day
            if not cal.has_regular_session(day):
                without_regular_session.add(day)
        day += timedelta(days=1)
    assert without_regular_session == {d for d in WEEKDAY_MUHURAT_ONLY if d <= DERIVED_LAST}


@pytest.mark.parametrize(
    ("day", "opens", "closes"),
    [
        (date(2020, 11, 14), time(18, 15), time(19, 15)),
        (date(2023, 11, 12), time(18, 15), time(19, 15)),
        *[(d, o, c) for d, (o, c) in WEEKDAY_MUHURAT_ONLY.items()],
    ],
)
def test_muhurat_sessions(cal, day, opens, closes):
    schedule = cal.schedule(day, RELIANCE)
    assert schedule is not None
    assert schedule.kind is DayKind.SPECIAL
    assert "Muhurat" in schedule.description
    assert (schedule.open, schedule.close) == (datetime.combine(day, opens, IST), datetime.combine(day, closes, IST))


def test_2024_11_01_is_closed_for_normal_trading_with_only_the_muhurat_hour(cal):
    day = date(2024, 11, 1)
    assert cal.day_kind(day) is DayKind.SPECIAL
    assert not cal.has_regular_session(day)
    morning = cal.session_at(ist(2024, 11, 1, 10, 0), RELIANCE)
    assert morning.phase is Phase.CLOSED and not morning.accepts_orders
    assert not cal.is_open(ist(2024, 11, 1, 9, 5), RELIANCE)
    pre_open = cal.session_at(ist(2024, 11, 1, 17, 50), RELIANCE)
    assert pre_open.phase is Phase.PRE_OPEN_ORDER_ENTRY
    assert cal.session_at(ist(2024, 11, 1, 17, 56), RELIANCE).phase is Phase.PRE_OPEN_MATCHING
    muhurat = cal.session_at(ist(2024, 11, 1, 18, 30), RELIANCE)
    assert muhurat.phase is Phase.CONTINUOUS and muhurat.is_special and muhurat.accepts_orders
    assert "SL" in muhurat.order_types
    assert cal.session_at(ist(2024, 11, 1, 19, 0), RELIANCE).phase is Phase.CLOSED


def test_republic_day_2024_closed_and_the_saturday_sessions_open(cal):
    assert not cal.is_trading_day(date(2024, 1, 26))
    state = cal.session_at(ist(2024, 1, 26, 11, 0), RELIANCE)
    assert state.phase is Phase.CLOSED and state.description == "Republic Day"
    saturday = cal.schedule(date(2024, 1, 20))
    assert saturday is not None and saturday.kind is DayKind.SPECIAL
    assert (saturday.open.time(), saturday.close.time()) == (time(9, 15), time(15, 30))
    assert cal.is_open(ist(2024, 1, 20, 11, 0), RELIANCE)
    assert cal.is_open(ist(2025, 2, 1, 14, 0), RELIANCE)  # Union Budget, a Saturday
    assert not cal.is_open(ist(2024, 1, 27, 11, 0), RELIANCE)  # an ordinary Saturday


def test_sessions_lists_the_trading_days_with_their_times(cal):
    days = cal.sessions(date(2024, 1, 19), date(2024, 1, 29))
    assert [s.date.day for s in days] == [19, 20, 23, 24, 25, 29]
    assert [s.kind for s in days][:2] == [DayKind.REGULAR, DayKind.SPECIAL]
    first = days[0]
    assert [w.phase for w in first.windows] == [
        Phase.PRE_OPEN_ORDER_ENTRY,
        Phase.PRE_OPEN_MATCHING,
        Phase.CONTINUOUS,
        Phase.POST_CLOSE,
    ]
    assert first.first_start == ist(2024, 1, 19, 9, 0) and first.last_end == ist(2024, 1, 19, 16, 0)
    with pytest.raises(ValueError, match="before from_date"):
        cal.sessions(date(2024, 1, 29), date(2024, 1, 19))


def test_shipped_table_is_consistent(cal):
    entries = load_entries_csv()
    assert len({e.date for e in entries}) == len(entries)
    assert all(e.date.weekday() < 5 for e in entries if e.kind is DayKind.CLOSED)
    assert {e.date.year for e in entries} >= set(range(2020, 2027))
    assert all(e.description and e.source for e in entries)
    assert not cal.is_trading_day(date(2026, 1, 26)) and not cal.is_trading_day(date(2025, 12, 25))


# --- sessions and rule versions --------------------------------------------------------------


def test_pre_open_order_entry_matching_and_continuous(cal):
    assert cal.session_at(ist(2024, 6, 18, 9, 5), RELIANCE).phase is Phase.PRE_OPEN_ORDER_ENTRY
    assert cal.is_open(ist(2024, 6, 18, 9, 5), RELIANCE)
    assert cal.session_at(ist(2024, 6, 18, 9, 10), RELIANCE).phase is Phase.PRE_OPEN_MATCHING
    assert not cal.is_open(ist(2024, 6, 18, 9, 10), RELIANCE)
    assert cal.session_at(ist(2024, 6, 18, 9, 16), RELIANCE).phase is Phase.CONTINUOUS
    assert cal.is_open(ist(2024, 6, 18, 9, 16), RELIANCE)
    assert not cal.is_open(ist(2024, 6, 18, 8, 59), RELIANCE)
    entry = cal.session_at(ist(2024, 6, 18, 9, 7, 30), RELIANCE)
    assert entry.in_random_close and entry.order_types == {"LIMIT", "MARKET"}
    assert not cal.session_at(ist(2024, 6, 18, 9, 6, 59), RELIANCE).in_random_close


def test_closing_auction_from_2026_08_03_for_stocks_with_derivatives(cal):
    state = cal.session_at(ist(2026, 8, 4, 15, 20), RELIANCE)
    assert state.phase is Phase.CLOSING_AUCTION
    assert state.order_types == {"LIMIT", "MARKET"} and cal.is_open(state.at, RELIANCE)
    assert state.price_band is not None and state.price_band.percent == Decimal(3)
    assert "15:00-15:15" in state.price_band.reference
    assert state.rule_set == "closing_auction" and not state.in_random_close
    assert cal.session_at(ist(2026, 8, 4, 15, 29), RELIANCE).in_random_close
    assert cal.session_at(ist(2026, 8, 4, 15, 14), RELIANCE).phase is Phase.CONTINUOUS
    matching = cal.session_at(ist(2026, 8, 4, 15, 32), RELIANCE)
    assert matching.phase is Phase.CLOSING_AUCTION_MATCHING and not matching.accepts_orders
    schedule = cal.schedule(date(2026, 8, 4), RELIANCE)
    assert schedule is not None and schedule.close == ist(2026, 8, 4, 15, 35)


def test_before_2026_08_03_continuous_to_15_30_with_vwap_close(cal):
    state = cal.session_at(ist(2026, 7, 31, 15, 20), RELIANCE)
    assert state.phase is Phase.CONTINUOUS and state.rule_set == "vwap_close"
    post_close = cal.session_at(ist(2026, 7, 31, 15, 45), RELIANCE)
    assert post_close.phase is Phase.POST_CLOSE and post_close.accepts_orders
    assert post_close.window is not None and post_close.window.at_closing_price


def test_stock_without_derivatives_trades_continuously_to_15_30_after_cas(cal):
    assert cal.session_at(ist(2026, 8, 4, 15, 20), SMALLCAP).phase is Phase.CONTINUOUS
    assert cal.session_at(ist(2026, 8, 4, 15, 29, 59), SMALLCAP).phase is Phase.CONTINUOUS
    assert cal.session_at(ist(2026, 8, 4, 15, 30), SMALLCAP).phase is Phase.CLOSED
    assert cal.session_at(ist(2026, 8, 4, 15, 45), SMALLCAP).phase is Phase.CLOSED  # post-close moved to 15:50
    assert cal.session_at(ist(2026, 8, 4, 15, 55), SMALLCAP).phase is Phase.POST_CLOSE
    schedule = cal.schedule(date(2026, 8, 4), SMALLCAP)
    assert schedule is not None and schedule.close == ist(2026, 8, 4, 15, 30)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (ist(2026, 8, 4, 9, 5), True),
        (ist(2026, 8, 4, 9, 10), False),
        (ist(2026, 8, 4, 15, 20), True),  # CAS order entry, and continuous for the others
        (ist(2026, 8, 4, 15, 32), False),  # CAS matching; the others closed at 15:30
        (ist(2026, 8, 4, 15, 55), True),  # post-close
        (ist(2026, 8, 8, 11, 0), False),  # a Saturday
    ],
)
def test_is_open_without_an_instrument_means_the_market(cal, at, expected):
    assert cal.is_open(at) is expected


def test_pre_open_rule_version_from_2026_09_07(cal):
    assert [r.effective_from for r in RULE_SETS] == sorted(r.effective_from for r in RULE_SETS)
    before, after = cal.rules_for(date(2026, 9, 4)), cal.rules_for(date(2026, 9, 7))
    assert not before.pre_open.market_orders_first and after.pre_open.market_orders_first
    assert before.closing_auction == after.closing_auction
    state = cal.session_at(ist(2026, 9, 7, 9, 5), RELIANCE)
    assert state.phase is Phase.PRE_OPEN_ORDER_ENTRY and state.rule_set == "closing_auction_pre_open_aligned"


def test_adding_a_rule_set_is_adding_an_entry():
    earlier_pre_open = replace(
        CLOSING_AUCTION.pre_open,
        order_entry_start=time(8, 45),
        random_close_from=time(8, 52),
        order_entry_end=time(8, 53),
    )
    later = replace(
        CLOSING_AUCTION,
        effective_from=date(2027, 1, 4),
        name="later",
        pre_open=earlier_pre_open,
        continuous_open=time(9),
    )
    cal = NSECalendar(load_entries_csv(), rule_sets=(*RULE_SETS, later))
    assert cal.session_at(ist(2027, 1, 4, 8, 50), RELIANCE).phase is Phase.PRE_OPEN_ORDER_ENTRY
    assert cal.session_at(ist(2027, 1, 4, 9, 5), RELIANCE).phase is Phase.CONTINUOUS
    assert cal.session_at(ist(2027, 1, 1, 9, 5), RELIANCE).phase is Phase.PRE_OPEN_ORDER_ENTRY
    assert cal.next_open(ist(2027, 1, 1, 16, 0)) == ist(2027, 1, 4, 9, 0)


def test_inconsistent_rule_sets_are_refused():
    with pytest.raises(ValueError, match="'bad': opening times out of order"):
        replace(CLOSING_AUCTION, name="bad", continuous_open=time(9, 0))
    with pytest.raises(ValueError, match="'bad': closing auction start times out of order"):
        replace(CLOSING_AUCTION, name="bad", continuous_close=time(15, 0))
    with pytest.raises(ValueError, match="'bad': post-close times out of order"):
        replace(CLOSING_AUCTION, name="bad", post_close=(time(15, 30), time(16, 0)))


def test_auction_price_band_limits_on_the_tick_grid():
    band = CLOSING_AUCTION.closing_auction.price_band  # type: ignore[union-attr]
    assert band.limits(Decimal("1000.00"), Decimal("0.05")) == (Decimal("970.00"), Decimal("1030.00"))
    assert band.limits(Decimal("101.37"), Decimal("0.05")) == (Decimal("98.35"), Decimal("104.40"))


def test_instrument_of_another_exchange_is_refused(cal):
    bse = InstrumentProfile("RELIANCE", "BSE", Decimal("0.05"), has_derivatives=True)
    with pytest.raises(ValueError, match="BSE:RELIANCE is not on NSE"):
        cal.session_at(ist(2024, 6, 18, 10, 0), bse)


# --- next_open -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (ist(2024, 6, 7, 17, 0), ist(2024, 6, 10, 9, 15)),  # Friday evening -> Monday
        (ist(2024, 6, 14, 16, 0), ist(2024, 6, 18, 9, 15)),  # Friday evening, Monday Bakri Id
        (ist(2024, 1, 25, 15, 45), ist(2024, 1, 29, 9, 15)),  # eve of Republic Day (a Friday)
        (ist(2024, 1, 19, 16, 0), ist(2024, 1, 20, 9, 15)),  # the special Saturday session
        (ist(2024, 10, 31, 16, 0), ist(2024, 11, 1, 18, 0)),  # Diwali: only the Muhurat hour
        (ist(2024, 6, 10, 9, 15), ist(2024, 6, 11, 9, 15)),  # strictly after
        (ist(2024, 6, 10, 8, 0), ist(2024, 6, 10, 9, 15)),
        (datetime(2024, 6, 7, 12, 0, tzinfo=UTC), ist(2024, 6, 10, 9, 15)),  # 17:30 IST
    ],
)
def test_next_open(cal, at, expected):
    result = cal.next_open(at)
    assert result == expected and result.tzinfo == IST


# --- bars, ticks, naive datetimes ------------------------------------------------------------


def test_minute_floor_and_bar_bounds():
    at = datetime(2024, 6, 18, 4, 37, 42, tzinfo=UTC)  # 10:07:42 IST
    assert minute_floor(at) == ist(2024, 6, 18, 10, 7) and minute_floor(at).tzinfo == IST
    assert bar_bounds(at, 1) == (ist(2024, 6, 18, 10, 7), ist(2024, 6, 18, 10, 8))
    assert bar_bounds(at, 3) == (ist(2024, 6, 18, 10, 6), ist(2024, 6, 18, 10, 9))
    assert bar_bounds(at, 5) == (ist(2024, 6, 18, 10, 5), ist(2024, 6, 18, 10, 10))
    assert bar_bounds(at, 15) == (ist(2024, 6, 18, 10, 0), ist(2024, 6, 18, 10, 15))
    assert bar_bounds(at, 60) == (ist(2024, 6, 18, 9, 15), ist(2024, 6, 18, 10, 15))
    assert bar_bounds(ist(2024, 6, 18, 10, 15), 60)[0] == ist(2024, 6, 18, 10, 15)
    for bad in (0, -5, True):
        with pytest.raises(ValueError, match="interval_minutes"):
            bar_bounds(at, bad)


def test_calendar_bar_bounds_anchor_at_a_special_sessions_open(cal):
    at = ist(2024, 11, 1, 18, 7)
    assert cal.bar_bounds(at, 10) == (ist(2024, 11, 1, 18, 0), ist(2024, 11, 1, 18, 10))
    assert bar_bounds(at, 10) == (ist(2024, 11, 1, 18, 5), ist(2024, 11, 1, 18, 15))  # 09:15 grid
    assert cal.bar_bounds(ist(2024, 6, 18, 10, 7), 10) == (ist(2024, 6, 18, 10, 5), ist(2024, 6, 18, 10, 15))


@pytest.mark.parametrize(
    ("price", "tick", "mode", "expected"),
    [
        ("101.37", "0.05", "nearest", "101.35"),
        ("101.375", "0.05", "nearest", "101.40"),
        ("101.37", "0.05", "down", "101.35"),
        ("101.37", "0.05", "up", "101.40"),
        ("101.35", "0.05", "up", "101.35"),
        ("101.37", "0.10", "nearest", "101.40"),
        ("101.34", "0.10", "nearest", "101.30"),
        ("101.39", "0.10", "down", "101.30"),
        ("101.31", "0.10", "up", "101.40"),
        ("101.5", "1", "nearest", "102"),
        ("101.49", "1", "nearest", "101"),
        ("101.99", "1", "down", "101"),
        ("101.01", "1", "up", "102"),
        ("2450.123", "0.0500", "nearest", "2450.1000"),
    ],
)
def test_round_to_tick(price, tick, mode, expected):
    result = round_to_tick(Decimal(price), Decimal(tick), mode)
    assert isinstance(result, Decimal)
    assert result == Decimal(expected) and str(result) == expected


def test_round_to_tick_refuses_float_and_bad_ticks():
    with pytest.raises(TypeError, match="price must be a Decimal"):
        round_to_tick(101.37, Decimal("0.05"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tick_size must be a Decimal"):
        round_to_tick(Decimal("101.37"), 0.05)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tick_size must be positive"):
        round_to_tick(Decimal("101.37"), Decimal(0))
    with pytest.raises(ValueError, match="mode must be one of"):
        round_to_tick(Decimal("101.37"), Decimal("0.05"), "sideways")  # type: ignore[arg-type]


def test_naive_datetimes_are_refused(cal):
    naive = datetime(2024, 6, 18, 10, 0)
    calls = [
        lambda: cal.session_at(naive, RELIANCE),
        lambda: cal.is_open(naive, RELIANCE),
        lambda: cal.next_open(naive),
        lambda: cal.is_trading_day(naive),
        lambda: cal.bar_bounds(naive, 5),
        lambda: minute_floor(naive),
        lambda: bar_bounds(naive, 5),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="naive datetime 2024-06-18T10:00:00"):
            call()


def test_bad_entries_are_refused_with_the_date_or_line(tmp_path):
    with pytest.raises(ValueError, match="2024-12-21: a special session needs both"):
        CalendarEntry(date(2024, 12, 21), DayKind.SPECIAL, open_time=time(10, 0))
    with pytest.raises(ValueError, match="2024-12-20: a closed day has no"):
        CalendarEntry(date(2024, 12, 20), DayKind.CLOSED, open_time=time(10, 0), close_time=time(11, 0))
    twice = CalendarEntry(date(2024, 12, 20), DayKind.CLOSED)
    with pytest.raises(ValueError, match="appears twice"):
        NSECalendar([twice, twice])
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "date,kind,description,open_time,close_time,source\n"
        "2024-12-20,closed,x,,,y\n"
        "2024-12-21,special,x,11:00,10:00,y\n"
    )
    with pytest.raises(ValueError, match=r"bad\.csv, line 3: .*not after open_time"):
        load_entries_csv(bad)


def test_special_entry_without_times_runs_the_regular_timetable():
    sunday = CalendarEntry(date(2026, 8, 9), DayKind.SPECIAL, "budget on a Sunday")
    cal = NSECalendar([sunday])
    assert cal.session_at(ist(2026, 8, 9, 15, 20), RELIANCE).phase is Phase.CLOSING_AUCTION
    assert cal.session_at(ist(2026, 8, 9, 15, 20), RELIANCE).is_special


# --- the database side -----------------------------------------------------------------------


@pytest.mark.django_db
def test_migration_loaded_the_shipped_csv():
    entries = load_entries_csv()
    rows = {r.date: r for r in CalendarDay.objects.filter(exchange="NSE")}
    assert len(rows) == len(entries)
    for e in entries:
        row = rows[e.date]
        assert (row.kind, row.description, row.open_time, row.close_time, row.source) == (
            e.kind.value,
            e.description,
            e.open_time,
            e.close_time,
            e.source,
        )
    migration = importlib.import_module("apps.marketdata.migrations.0002_load_nse_calendar")
    migration.load(django_apps, None)  # idempotent: a second load changes nothing
    assert CalendarDay.objects.filter(exchange="NSE").count() == len(entries)
    assert [e.date for e in trading_calendar().entries] == [e.date for e in entries]


@pytest.mark.django_db
def test_trading_calendar_reflects_admin_edits():
    day = date(2026, 12, 31)
    assert trading_calendar().is_trading_day(day)
    row = CalendarDay.objects.create(exchange="NSE", date=day, kind="closed", description="ad-hoc closure")
    assert not trading_calendar().is_trading_day(day)
    row.kind, row.open_time, row.close_time = "special", time(10, 0), time(11, 0)
    row.save()
    assert trading_calendar().is_open(ist(2026, 12, 31, 10, 30), RELIANCE)
    assert not trading_calendar().is_open(ist(2026, 12, 31, 12, 0), RELIANCE)
    row.delete()
    assert trading_calendar().has_regular_session(day)
    CalendarDay.objects.filter(exchange="NSE", date=date(2026, 12, 25)).delete()
    assert trading_calendar().is_trading_day(date(2026, 12, 25))


@pytest.mark.django_db(transaction=True)
def test_trading_calendar_is_cached_outside_transactions_and_never_keeps_rolled_back_rows():
    day = date(2027, 1, 5)
    first = trading_calendar()
    assert trading_calendar() is first and first.is_trading_day(day)
    with pytest.raises(RuntimeError), transaction.atomic():
        CalendarDay.objects.create(exchange="NSE", date=day, kind="closed", description="rolled back")
        assert not trading_calendar().is_trading_day(day)
        raise RuntimeError("roll back")
    after = trading_calendar()
    assert after is not first and after.is_trading_day(day)
    assert trading_calendar() is after
    CalendarDay.objects.create(exchange="NSE", date=day, kind="closed", description="kept")
    assert not trading_calendar().is_trading_day(day)


@pytest.mark.django_db
def test_instrument_profile_uses_nifty_50_membership():
    universe, _ = Universe.objects.get_or_create(name="NIFTY 50")
    member = Instrument.objects.create(tradingsymbol="CALTESTA", tick_size=Decimal("0.10"))
    former = Instrument.objects.create(tradingsymbol="CALTESTB")
    other = Instrument.objects.create(tradingsymbol="CALTESTC", tick_size=Decimal("0.01"))
    UniverseMembership.objects.create(universe=universe, instrument=member, start_date=date(2020, 1, 1))
    UniverseMembership.objects.create(
        universe=universe, instrument=former, start_date=date(2020, 1, 1), end_date=date(2025, 3, 27)
    )
    profile = instrument_profile(member, on=date(2026, 8, 4))
    assert profile == InstrumentProfile("CALTESTA", "NSE", Decimal("0.10"), has_derivatives=True)
    assert instrument_profile(former, on=date(2025, 3, 27)).has_derivatives
    assert not instrument_profile(former, on=date(2025, 3, 28)).has_derivatives
    assert not instrument_profile(other, on=date(2026, 8, 4)).has_derivatives
    cal = trading_calendar()
    assert cal.session_at(ist(2026, 8, 4, 15, 20), profile).phase is Phase.CLOSING_AUCTION
    assert cal.session_at(ist(2026, 8, 4, 15, 20), instrument_profile(other)).phase is Phase.CONTINUOUS
