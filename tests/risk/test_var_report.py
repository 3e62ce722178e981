"""`manage.py var_report`: figures from the candles in the database against hand computations from the CSV files,
and bad input refused with the row and value named, before any figure is printed."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from apps.brokers.models import BrokerAccount
from apps.risk.models import RiskSnapshot
from tests.risk.test_var_service import (
    BOOK,
    hand_historical_es,
    hand_historical_var,
    hand_window,
    import_daily,
)

pytestmark = pytest.mark.django_db


def positions_file(tmp_path: Path, rows: list[str], header: str = "symbol,quantity") -> Path:
    path = tmp_path / "book.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def report(*args: object) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("var_report", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def book_rows(book: dict[str, int]) -> list[str]:
    return [f"{s},{q}" for s, q in book.items()]


def test_historical_var_is_the_quantile_of_the_csv_closes(daily: Path, tmp_path: Path) -> None:
    path = positions_file(tmp_path, book_rows(BOOK))
    out, _ = report("--positions", path, "--json", "--window-days", 500)
    data = json.loads(out)
    returns, exposures, days = hand_window(daily, BOOK, 500)
    pnl = returns @ exposures
    (result,) = data["results"]
    assert result["method"] == "historical"
    assert float(result["var"]) == pytest.approx(hand_historical_var(pnl, 0.99), abs=0.006)
    assert float(result["es"]) == pytest.approx(hand_historical_es(pnl, 0.99), abs=0.006)
    assert result["var_se"] is None or float(result["var_se"]) >= 0
    assert (data["window"]["days"], data["window"]["first"], data["window"]["last"]) == (
        500,
        str(days[0]),
        str(days[-1]),
    )
    assert sum(float(v) for v in result["component_var"].values()) == pytest.approx(float(result["var"]), rel=1e-3)
    assert not RiskSnapshot.objects.exists()  # no --save, nothing stored


def test_all_three_methods_in_the_readable_table(daily: Path, tmp_path: Path) -> None:
    path = positions_file(tmp_path, book_rows(BOOK))
    out, _ = report("--positions", path, "--method", "all", "--paths", 50_000, "--seed", 7, "--confidence", 0.99)
    rows = {
        m: re.search(rf"^  {m}\s+([\d,.]+)\s+([\d,.]+)\s+(\S+)\s+(\S+)", out, re.M)
        for m in ("historical", "parametric", "montecarlo")
    }
    assert all(rows.values()), out
    figures = {m: [float(g.replace(",", "")) if g != "-" else None for g in r.groups()] for m, r in rows.items() if r}
    returns, exposures, _ = hand_window(daily, BOOK, 250)
    pnl = returns @ exposures
    assert figures["historical"][0] == pytest.approx(hand_historical_var(pnl, 0.99), abs=0.006)
    sigma = float(np.sqrt(exposures @ np.cov(returns, rowvar=False) @ exposures))
    z = NormalDist().inv_cdf(0.99)
    assert figures["parametric"][0] == pytest.approx(z * sigma, rel=0.01)
    assert figures["parametric"][1] == pytest.approx(sigma * NormalDist().pdf(z) / 0.01, rel=0.01)
    var_mc, _, se_mc, _ = figures["montecarlo"]
    assert var_mc is not None and se_mc is not None and se_mc > 0
    assert abs(var_mc - z * sigma) < 4 * se_mc + 0.01 * z * sigma  # full revaluation differs a little from linear
    assert "50,000 paths, normal" in out
    assert "Book: 3 position(s)" in out and "last daily close" in out


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["RELIANCE,10", "INFY,5", "NOPE,3"], r"row 3: unknown symbol 'NOPE'"),
        (["RELIANCE,10", "INFY,ten"], r"row 2: quantity 'ten' is not a number"),
        (["RELIANCE,10.5"], r"row 1: quantity '10.5' is not a whole number"),
        (["RELIANCE,10", ",4"], r"row 2: empty symbol"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_printed(
    daily: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[str], message: str
) -> None:
    out = StringIO()
    with pytest.raises(CommandError, match=message):
        call_command("var_report", "--positions", str(positions_file(tmp_path, rows)), stdout=out)
    assert out.getvalue() == ""


def test_a_missing_header_is_refused(daily: Path, tmp_path: Path) -> None:
    out = StringIO()
    path = positions_file(tmp_path, ["RELIANCE,10"], header="ticker,qty")
    with pytest.raises(CommandError, match="must name the columns symbol,quantity; missing symbol, quantity"):
        call_command("var_report", "--positions", str(path), stdout=out)
    assert out.getvalue() == ""


def test_too_little_history_names_the_symbol_and_prints_nothing(shared_data: Path, tmp_path: Path) -> None:
    import_daily(shared_data, "RELIANCE", "JIOFIN")
    out = StringIO()
    path = positions_file(tmp_path, ["RELIANCE,10", "JIOFIN,100"])
    with pytest.raises(CommandError, match=r"too little history for NSE:JIOFIN: 277 daily closes"):
        call_command("var_report", "--positions", str(path), "--window-days", "500", stdout=out)
    assert out.getvalue() == ""


def test_save_stores_a_snapshot_of_an_account_but_not_of_a_file(
    daily: Path, account: BrokerAccount, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="--save stores snapshots of a real book"):
        report("--positions", positions_file(tmp_path, book_rows(BOOK)), "--save")
    out, _ = report("--account", account.name, "--method", "parametric", "--save", "--json")
    data = json.loads(out)
    (snapshot,) = RiskSnapshot.objects.all()
    assert data["saved_snapshots"] == [snapshot.pk]
    assert (snapshot.trigger, snapshot.method, snapshot.account_id) == ("command", "parametric", account.pk)
    assert str(snapshot.var) == data["results"][0]["var"]
