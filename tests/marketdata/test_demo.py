"""seed_demo: the NIFTY 50 universe and synthetic candles, consistent, correlated, never over real data."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.core.management import call_command
from django.db.models import Max, Min, Sum

from apps.marketdata import synthetic
from apps.marketdata.demo import demo_seed
from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource, Universe
from apps.marketdata.nifty50 import CONSTITUENTS

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")
END = date(2024, 6, 7)  # a Friday


def test_seed_creates_the_universe_and_marked_synthetic_candles(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("seed_demo", "--daily-days", "30", "--minute-days", "2", "--end", END.isoformat())
    out = capsys.readouterr().out
    assert "50 instruments and 50 memberships created" in out and "1500 daily and 37500 minute" in out
    universe = Universe.objects.get(name="NIFTY 50")
    assert sorted(universe.instruments.values_list("tradingsymbol", flat=True)) == sorted(
        c.symbol for c in CONSTITUENTS
    )
    assert set(Candle.objects.values_list("source", flat=True).distinct()) == {SeriesSource.SYNTHETIC}
    last_minute = Candle.objects.filter(interval=Interval.MINUTE).aggregate(t=Max("time"))["t"]
    assert last_minute == datetime.combine(END, time(15, 29), IST)
    assert Candle.objects.filter(interval=Interval.DAY).aggregate(t=Max("time"))["t"] == datetime.combine(
        END, time(0, 0), IST
    )


def test_the_daily_bar_of_a_minute_day_is_the_aggregate_of_its_minutes() -> None:
    demo_seed(daily_days=10, minute_days=1, end=END)
    rel = Instrument.objects.get(tradingsymbol="RELIANCE")
    minutes = Candle.objects.filter(instrument=rel, interval=Interval.MINUTE).order_by("time")
    day = Candle.objects.get(instrument=rel, interval=Interval.DAY, time=datetime.combine(END, time(0), IST))
    agg = minutes.aggregate(h=Max("high"), lo=Min("low"), v=Sum("volume"))
    assert (day.open, day.close) == (minutes.first().open, minutes.last().close)  # type: ignore[union-attr]
    assert (day.high, day.low, day.volume) == (agg["h"], agg["lo"], agg["v"])


def test_second_run_changes_nothing_and_reset_regenerates(capsys: pytest.CaptureFixture[str]) -> None:
    demo_seed(daily_days=10, minute_days=1, end=END)
    count = Candle.objects.count()
    assert demo_seed(daily_days=10, minute_days=1, end=END).already_seeded
    assert Candle.objects.count() == count
    call_command("seed_demo", "--if-empty")
    assert "nothing to do" in capsys.readouterr().out
    demo_seed(daily_days=12, minute_days=1, end=END, reset=True)
    assert Candle.objects.filter(interval=Interval.DAY).count() == 12 * 50


def test_synthetic_rows_never_go_into_a_series_with_real_data() -> None:
    rel = Instrument.objects.create(tradingsymbol="RELIANCE", name="RELIANCE INDUSTRIES")
    Candle.objects.create(
        instrument=rel,
        interval=Interval.DAY,
        time=datetime(2024, 6, 3, tzinfo=IST),
        open=Decimal(1),
        high=Decimal(2),
        low=Decimal(1),
        close=Decimal(2),
        volume=1,
        source=SeriesSource.CSV,
    )
    result = demo_seed(daily_days=10, minute_days=1, end=END)
    assert result.skipped_real == ["RELIANCE"]
    assert not Candle.objects.filter(instrument=rel, source=SeriesSource.SYNTHETIC).exists()
    assert Candle.objects.filter(source=SeriesSource.SYNTHETIC).values("instrument").distinct().count() == 49


def test_the_model_is_seeded_correlated_and_nse_like() -> None:
    prices = [float(c.reference_price) for c in CONSTITUENTS]
    sectors = [c.sector for c in CONSTITUENTS]
    a = synthetic.daily_bars(seed=7, n_days=750, start_prices=prices, sectors=sectors)
    b = synthetic.daily_bars(seed=7, n_days=750, start_prices=prices, sectors=sectors)
    assert np.array_equal(a.close, b.close)
    returns = np.diff(np.log(a.close), axis=0)
    annual_vol = np.median(returns.std(axis=0)) * np.sqrt(250)
    corr = np.corrcoef(returns.T)[np.triu_indices(50, 1)]
    assert 0.18 < annual_vol < 0.40 and 0.2 < corr.mean() < 0.6
    assert (a.low <= np.minimum(a.open, a.close)).all() and (a.high >= np.maximum(a.open, a.close)).all()
    assert np.allclose(np.round(a.close / synthetic.TICK), a.close / synthetic.TICK)
