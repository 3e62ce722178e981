"""`manage.py sync_instruments`: from Kite's CSV dump and from the fake Kite through the real client."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.marketdata.instrument_rows import InstrumentDataError, parse_instrument_csv
from apps.marketdata.models import Instrument, SeriesSource
from tests.support.fake_kite import FakeKite

pytestmark = pytest.mark.django_db

HEADER = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange"
)
GOOD = "3861249,15083,ADANIPORTS,ADANI PORT & SEZ,0.0,,0.0,0.05,1,EQ,NSE,NSE"


def sync(*args: str) -> str:
    out = io.StringIO()
    call_command("sync_instruments", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def nse_csv(shared_data: Path) -> Path:
    return shared_data / "kite-mocks" / "instruments_nse.csv"


def test_a_csv_dump_creates_every_instrument_then_finds_them_unchanged(nse_csv: Path) -> None:
    assert "99 created, 0 updated (0 provisional completed), 0 unchanged" in sync("--file", str(nse_csv))
    adani = Instrument.objects.get(exchange="NSE", tradingsymbol="ADANIPORTS")
    assert (adani.instrument_token, adani.exchange_token, adani.name) == (3861249, 15083, "ADANI PORT & SEZ")
    assert adani.tick_size == Decimal("0.05") and adani.lot_size == 1 and adani.source == SeriesSource.KITE
    assert Instrument.objects.get(tradingsymbol="MIDCAPIWIN-BL").tick_size == Decimal("0.01")
    assert "0 created, 0 updated (0 provisional completed), 99 unchanged" in sync("--file", str(nse_csv))
    assert Instrument.objects.count() == 99


def test_a_changed_tick_size_counts_as_updated_and_is_restored(nse_csv: Path) -> None:
    sync("--file", str(nse_csv))
    Instrument.objects.filter(tradingsymbol="CDSL").update(tick_size=Decimal("0.10"))
    assert "0 created, 1 updated (0 provisional completed), 98 unchanged" in sync("--file", str(nse_csv))
    assert Instrument.objects.get(tradingsymbol="CDSL").tick_size == Decimal("0.05")


def test_a_provisional_instrument_is_completed_in_place(nse_csv: Path) -> None:
    provisional = Instrument.objects.create(
        exchange="NSE", tradingsymbol="ADANIPORTS", provisional=True, source=SeriesSource.CSV
    )
    assert "98 created, 1 updated (1 provisional completed), 0 unchanged" in sync("--file", str(nse_csv))
    provisional.refresh_from_db()
    assert provisional.instrument_token == 3861249 and not provisional.provisional
    assert provisional.name == "ADANI PORT & SEZ" and provisional.source == SeriesSource.KITE


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("5420545,21174,CDSL,CENTRAL DEPO,0.0,,0.0,abc,1,EQ,NSE,NSE", "line 3: tick_size 'abc' is not a number"),
        ("5420545,21174,CDSL,CENTRAL DEPO,0.0,,0.0,0.05,0,EQ,NSE,NSE", "line 3: lot_size '0' is not an integer >= 1"),
        ("x5420545,21174,CDSL,CENTRAL DEPO,0.0,,0.0,0.05,1,EQ,NSE,NSE", "line 3: instrument_token 'x5420545'"),
        ("3861249,21174,CDSL,CENTRAL DEPO,0.0,,0.0,0.05,1,EQ,NSE,NSE", "line 3: duplicate instrument_token 3861249"),
        ("5420545,21174,,CENTRAL DEPO,0.0,,0.0,0.05,1,EQ,NSE,NSE", "line 3: tradingsymbol is empty"),
        ("5420545,21174,CDSL,CENTRAL DEPO,0.0,,0.0,0.05,1,EQ,NSE", "line 3: expected 12 fields"),
        (f"5420545,21174,{'X' * 41},CENTRAL DEPO,0.0,,0.0,0.05,1,EQ,NSE,NSE", "line 3: tradingsymbol 'XXX"),
    ],
)
def test_a_malformed_row_rejects_the_file_naming_line_and_reason(tmp_path: Path, bad_line: str, reason: str) -> None:
    path = tmp_path / "instruments.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{bad_line}\n")
    with pytest.raises(CommandError, match=f"rejected, nothing written: instruments.csv {reason}"):
        sync("--file", str(path))
    assert not Instrument.objects.exists()


def test_missing_columns_are_named() -> None:
    with pytest.raises(InstrumentDataError, match=r"x\.csv line 1: missing columns tick_size, lot_size"):
        parse_instrument_csv(HEADER.replace("tick_size,lot_size,", "") + "\n", source="x.csv")


def test_from_kite_through_the_real_client(fake_kite_settings: FakeKite) -> None:
    assert "99 created" in sync()
    assert "99 unchanged" in sync()
    assert [r.path for r in fake_kite_settings.requests] == ["/instruments/NSE", "/instruments/NSE"]
    assert fake_kite_settings.requests[0].headers["Authorization"] == "token fake-api-key:fake-access-token"
    assert Instrument.objects.get(tradingsymbol="IGL").instrument_token == 2883073


def test_every_exchange_from_kite(fake_kite_settings: FakeKite) -> None:
    assert "99 created" in sync("--exchange", "all")
    assert fake_kite_settings.requests[-1].path == "/instruments"
    assert set(Instrument.objects.values_list("exchange", flat=True)) == {"NSE", "BSE", "NFO"}


def test_a_kite_error_is_reported_and_nothing_is_written(fake_kite_settings: FakeKite) -> None:
    body = {"status": "error", "message": "Token is invalid or has expired.", "error_type": "TokenException"}
    fake_kite_settings.set_response("GET", "/instruments/NSE", 403, body)
    with pytest.raises(CommandError, match="Kite /instruments failed: TokenException: Token is invalid"):
        sync()
    assert not Instrument.objects.exists()
