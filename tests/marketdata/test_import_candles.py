"""`manage.py import_candles`: real files into the real database, upserts counted, bad files rejected whole."""

from __future__ import annotations

import csv
import random
import re
from datetime import datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.marketdata import importers
from apps.marketdata.candle_csv import CandleFileError, parse_candles
from apps.marketdata.models import Candle, Instrument, Interval, SeriesSource
from tradingsite.exceptions import ApplicationError

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")
HEADER = "timestamp,open,high,low,close,volume,oi"


@pytest.fixture
def daily(shared_data: Path) -> Path:
    return shared_data / "nifty50-daily"


def run(*args: object) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_candles", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def data_rows(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines()[1:] if line.strip())


def stored(symbol: str) -> int:
    return Candle.objects.filter(instrument__tradingsymbol=symbol).count()


def small_file(tmp_path: Path, daily: Path, name: str, *, rows: int = 6, source: str = "RELIANCE.csv") -> Path:
    """The header and the first `rows` rows of a real file, under a new name."""
    lines = (daily / source).read_text().splitlines()[: rows + 1]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_whole_directory_twice_stores_every_row_once_and_the_second_run_says_nothing_changed(daily: Path) -> None:
    files = sorted(daily.glob("*.csv"))
    expected = {f.stem: data_rows(f) for f in files}

    out, err = run(daily)

    for f in files:
        n = expected[f.stem]
        assert f"{f.name}: {n} rows, {n} new, 0 changed, 0 unchanged" in out
        assert stored(f.stem) == n
    total = sum(expected.values())
    assert f"{len(files)} files imported, 0 rejected; {total} rows, {total} new" in out
    assert Candle.objects.count() == total
    assert f"{len(files)}/{len(files)} done" in err  # the progress bar, one line per file off a terminal

    out, _ = run(daily)

    for f in files:
        n = expected[f.stem]
        assert f"{f.name}: {n} rows, 0 new, 0 changed, {n} unchanged" in out
        assert stored(f.stem) == n
    assert f"{total} rows, 0 new, 0 changed, {total} unchanged" in out
    assert "created provisionally" not in out
    assert Candle.objects.count() == total


def test_stored_values_are_the_files_values_exactly(daily: Path) -> None:
    run(daily)

    reliance = Candle.objects.get(
        instrument__tradingsymbol="RELIANCE", interval=Interval.DAY, time=datetime(2020, 10, 1, tzinfo=IST)
    )
    assert (reliance.open, reliance.close, reliance.volume) == (Decimal("1078.9"), Decimal("1060.55"), 20124778)
    assert reliance.source == SeriesSource.CSV
    rng = random.Random(20240930)
    for path in rng.sample(sorted(daily.glob("*.csv")), 12):
        rows = list(csv.DictReader(path.open()))
        for row in rng.sample(rows, 15):
            bar = Candle.objects.get(
                instrument__tradingsymbol=path.stem,
                interval=Interval.DAY,
                time=datetime.fromisoformat(row["timestamp"]),
            )
            for name in ("open", "high", "low", "close"):
                assert getattr(bar, name) == Decimal(row[name]), (path.name, row["timestamp"], name)
            assert (bar.volume, bar.oi) == (int(row["volume"]), int(row["oi"]))


def test_symbols_come_from_file_names_and_unknown_ones_are_created_provisionally(daily: Path) -> None:
    Instrument.objects.create(tradingsymbol="RELIANCE", instrument_token=738561, name="RELIANCE INDUSTRIES")

    out, _ = run(daily / "M&M.csv", daily / "RELIANCE.csv", daily / "NIFTY50_INDEX.csv")

    mm = Instrument.objects.get(exchange="NSE", tradingsymbol="M&M")
    assert (mm.provisional, mm.source, mm.instrument_type, mm.tick_size, mm.lot_size) == (
        True,
        SeriesSource.CSV,
        "EQ",
        Decimal("0.05"),
        1,
    )
    assert stored("M&M") == data_rows(daily / "M&M.csv")
    assert "instrument NSE:M&M created provisionally" in out
    reliance = Instrument.objects.get(tradingsymbol="RELIANCE")
    assert not reliance.provisional and reliance.instrument_token == 738561
    assert "NSE:RELIANCE created" not in out
    index = Instrument.objects.get(tradingsymbol="NIFTY50_INDEX")
    assert (index.instrument_type, index.segment, index.provisional) == ("INDEX", "INDICES", True)


def test_symbol_option_names_the_instrument_of_one_file(tmp_path: Path, daily: Path) -> None:
    path = small_file(tmp_path, daily, "export-2024.csv")
    run(path, "--symbol", "RELIANCE", "--interval", "day")
    assert stored("RELIANCE") == 6
    assert not Instrument.objects.filter(tradingsymbol="export-2024").exists()

    with pytest.raises(CommandError, match="--symbol"):
        run(path, daily / "TCS.csv", "--symbol", "RELIANCE")


def test_a_changed_value_is_updated_and_counted_changed_and_new_rows_counted_new(tmp_path: Path, daily: Path) -> None:
    path = small_file(tmp_path, daily, "RELIANCE.csv", rows=5)
    run(path)
    lines = (daily / "RELIANCE.csv").read_text().splitlines()[:7]
    fields = lines[3].split(",")  # 2020-10-06: close 1053.45 within low 1049.3..high 1064.7
    fields[4] = str(Decimal(fields[4]) + Decimal("0.05"))
    lines[3] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")

    out, _ = run(path)

    assert "RELIANCE.csv: 6 rows, 1 new, 1 changed, 4 unchanged" in out
    bar = Candle.objects.get(instrument__tradingsymbol="RELIANCE", time=datetime.fromisoformat(fields[0]))
    assert bar.close == Decimal(fields[4])
    assert stored("RELIANCE") == 6


BAD_ROWS = [
    # (what, how line 4 is corrupted, what the message says)
    ("unparseable number", lambda f: f.__setitem__(2, "10x8.4"), r"unparseable high '10x8\.4'"),
    ("unparseable time", lambda f: f.__setitem__(0, "2020-10-32 00:00:00+05:30"), "unparseable time"),
    ("naive time", lambda f: f.__setitem__(0, f[0][:19]), r"time '2020-10-06 00:00:00' has no UTC offset"),
    ("high below low", lambda f: f.__setitem__(2, "1.0"), r"high 1\.0 is below low"),
    ("open above high", lambda f: f.__setitem__(1, "99999.95"), r"open 99999\.95 is outside low-high"),
    ("close below low", lambda f: f.__setitem__(4, "0.05"), r"close 0\.05 is outside low-high"),
    ("negative volume", lambda f: f.__setitem__(5, "-1"), "negative volume -1"),
    ("negative oi", lambda f: f.__setitem__(6, "-7"), "negative oi -7"),
    (
        "too many decimals",
        lambda f: f.__setitem__(4, f[4] + "00001"),
        r"close '1053\.4500001' has more than 4 decimals",
    ),
    ("missing field", lambda f: f.pop(), "expected 7 fields, got 6"),
]


@pytest.mark.parametrize(("corrupt", "reason"), [pytest.param(c, r, id=w) for w, c, r in BAD_ROWS])
def test_a_bad_row_rejects_its_whole_file_and_the_other_files_still_import(
    tmp_path: Path, daily: Path, corrupt, reason: str
) -> None:
    small_file(tmp_path, daily, "GOOD.csv", source="TCS.csv")
    bad = small_file(tmp_path, daily, "BAD.csv")
    lines = bad.read_text().splitlines()
    fields = lines[3].split(",")
    corrupt(fields)
    lines[3] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n")

    assert_rejected(tmp_path, "BAD.csv line 4: " + reason)


def test_time_order_and_repeated_times_are_rejected_but_an_exact_repeat_is_skipped(tmp_path: Path, daily: Path) -> None:
    rows = (daily / "RELIANCE.csv").read_text().splitlines()[:7]
    small_file(tmp_path, daily, "GOOD.csv", source="TCS.csv")
    bad = tmp_path / "BAD.csv"

    bad.write_text("\n".join([*rows[:3], rows[4], rows[3], *rows[5:]]) + "\n")
    assert_rejected(tmp_path, r"BAD.csv line 5: time 2020-10-06T00:00:00\+05:30 is before .* on line 4")

    other = rows[3].split(",")
    other[5] = str(int(other[5]) + 1)
    bad.write_text("\n".join([*rows[:4], ",".join(other), *rows[4:]]) + "\n")
    assert_rejected(tmp_path, "BAD.csv line 5: time .* repeats line 4 with other values")

    bad.write_text("\n".join([*rows[:4], rows[3], *rows[4:]]) + "\n")
    out, _ = run(bad)
    assert "BAD.csv: 6 rows, 6 new, 0 changed, 0 unchanged (1 exact repeated rows skipped)" in out
    assert stored("BAD") == 6


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "BAD.csv: empty file", id="empty"),
        pytest.param(HEADER + "\n", "BAD.csv: empty file: no rows after the header", id="header only"),
        pytest.param("time,o,h,l,c,v\n2020-10-01 00:00:00+05:30,1,1,1,1,1\n", "BAD.csv line 1: header is", id="header"),
    ],
)
def test_empty_files_and_wrong_headers_are_rejected(tmp_path: Path, daily: Path, text: str, reason: str) -> None:
    small_file(tmp_path, daily, "GOOD.csv", source="TCS.csv")
    (tmp_path / "BAD.csv").write_text(text)
    assert_rejected(tmp_path, re.escape(reason))


def assert_rejected(directory: Path, reason: str) -> None:
    """One run over the directory: GOOD.csv imported, BAD.csv rejected with `reason` and nothing of it written."""
    Candle.objects.all().delete()
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match=r"1 of 2 files rejected, nothing of them written: BAD\.csv"):
        call_command("import_candles", str(directory), stdout=out, stderr=err)
    assert re.search(reason, err.getvalue()), err.getvalue()
    assert "GOOD.csv: 6 rows, 6 new" in out.getvalue()
    assert stored("GOOD") == 6
    assert stored("BAD") == 0
    assert not Instrument.objects.filter(tradingsymbol="BAD").exists()


def test_missing_paths_and_unknown_intervals_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file or directory"):
        run(tmp_path / "nothing.csv")
    with pytest.raises(CommandError, match=r"no \*\.csv files"):
        run(tmp_path)
    with pytest.raises(ApplicationError, match="unknown interval"):
        importers.candles_import(path=tmp_path / "X.csv", interval="2day")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY fast path is PostgreSQL's")
def test_bars_stored_beside_a_first_import_fall_back_to_the_upsert(
    tmp_path: Path, daily: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a concurrent writer causes: the range looked empty, the COPY meets stored bars, the upsert counts them."""
    path = small_file(tmp_path, daily, "RELIANCE.csv", rows=3)
    run(path)
    path = small_file(tmp_path, daily, "RELIANCE.csv", rows=5)
    monkeypatch.setattr(importers, "_bars_stored", lambda *args: False)

    result = importers.candles_import(path=path, interval=Interval.DAY)

    assert (result.rows, result.new, result.changed, result.unchanged) == (5, 2, 0, 3)
    assert stored("RELIANCE") == 5


# --- the parser alone ---------------------------------------------------------------


def test_kite_json_spelling_of_times_and_files_without_oi_parse() -> None:
    text = "timestamp,open,high,low,close,volume\n2017-12-15T09:15:00+0530,1704.5,1705,1704.5,1705,1004\n"
    (row,) = parse_candles(text, source="x.csv").rows()
    assert row.time == datetime(2017, 12, 15, 9, 15, tzinfo=IST)
    assert (row.open, row.high, row.volume, row.oi) == (Decimal("1704.5"), Decimal("1705"), 1004, 0)


def test_spaces_take_the_slow_path_and_give_the_same_values() -> None:
    text = f"\ufeff{HEADER}\r\n 2020-10-01 00:00:00+05:30 , 0100.50 ,101,99.1234,100,5,0\r\n"
    (row,) = parse_candles(text, source="x.csv").rows()
    assert (row.open, row.low, row.volume) == (Decimal("100.50"), Decimal("99.1234"), 5)


def test_the_error_names_file_line_and_reason() -> None:
    text = f"{HEADER}\n2020-10-01 00:00:00+05:30,1,2,1,1,5,0\n2020-10-02 00:00:00+05:30,1,2,1,1,5x,0\n"
    with pytest.raises(CandleFileError) as caught:
        parse_candles(text, source="ABC.csv")
    assert (caught.value.source, caught.value.line) == ("ABC.csv", 3)
    assert str(caught.value) == "ABC.csv line 3: unparseable volume '5x' (expected a whole number)"
