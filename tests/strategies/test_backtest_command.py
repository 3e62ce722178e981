"""`manage.py backtest` on the shared daily candles imported into the test database: its --json equals an in-process
run_backtest on the same CSVs read with read_csv_dir; a readable summary otherwise; bad options name themselves and
print nothing on stdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.strategies.engine.backtest import Settings, run_backtest
from apps.strategies.engine.bars import read_csv_dir
from apps.strategies.engine.strategy import get_strategy
from tests.risk.test_var_service import import_daily

pytestmark = pytest.mark.django_db

SYMBOLS = ["INFY", "TCS", "RELIANCE"]
RANGE = ["--from", "2020-10-01", "--to", "2024-09-30"]


@pytest.fixture
def daily_db(shared_data: Path) -> Iterator[Path]:
    import_daily(shared_data, *SYMBOLS)
    yield shared_data / "nifty50-daily"


def backtest(*argv: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("backtest", *argv, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def expected_json(daily_dir: Path, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The same backtest in this process, on bars read from the CSV files, shaped like --json."""
    result = run_backtest(get_strategy("sma_crossover", params), read_csv_dir(daily_dir, SYMBOLS), settings)
    body = {"trades": result.trades_json(), "final_equity": result.metrics["final_equity"], "metrics": result.metrics}
    decoded: dict[str, Any] = json.loads(json.dumps(body))
    return decoded


@pytest.mark.parametrize(
    ("argv", "settings"),
    [
        (["--cash", "250000", "--no-costs"], Settings(cash=250_000.0, costs=False)),
        ([], Settings()),  # Zerodha's charges, by trade date
        (["--engine-settings", '{"fill": "close", "stop_loss": 0.05}'], Settings(fill="close", stop_loss=0.05)),
    ],
)
def test_json_equals_an_in_process_run_on_the_csv_files(daily_db: Path, argv: list[str], settings: Settings) -> None:
    params = {"fast": 10, "slow": 30}
    out, err = backtest(
        "--strategy", "sma_crossover", "--params", json.dumps(params), "--symbols", ",".join(SYMBOLS), *RANGE,
        "--json", *argv,
    )  # fmt: skip
    body = json.loads(out)
    assert body == expected_json(daily_db, params, settings)
    assert len(body["trades"]) > 10 and body["final_equity"] == body["metrics"]["final_equity"]
    assert {t["symbol"] for t in body["trades"]} == set(SYMBOLS)
    assert f"{len(SYMBOLS)}/{len(SYMBOLS)} symbols" in err and "[" in err


def test_the_summary_is_readable(daily_db: Path) -> None:
    out, _ = backtest("--strategy", "sma_crossover", "--symbols", "infy, tcs", *RANGE)
    result = run_backtest(get_strategy("sma_crossover"), read_csv_dir(daily_db, ["INFY", "TCS"]), Settings())
    assert out.startswith("SmaCrossover(fast=10, slow=30, field='close', long_short=False) on 2 symbols, day bars")
    assert "2020-10-01 to 2024-09-30 (992 bars)" in out
    assert f"trades        {len(result.trades)} (" in out
    assert f"final equity  ₹{result.metrics['final_equity']:,.2f}" in out
    assert f"total_return  {100 * result.metrics['total_return']:.2f}%" in out
    assert f"sharpe        {result.metrics['sharpe']:.3f}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--params", '{"fast": 40}'], "--params: fast: fast (40) must be below slow (30)"),
        (["--params", '{"fats": 4}'], "--params: fats: unknown parameter"),
        (["--params", "fast=4"], "--params: not JSON"),
        (["--params", "[4]"], "--params: must be a JSON object"),
        (["--strategy", "nope"], "--strategy: no strategy named 'nope'"),
        (["--symbols", "INFY,NOPE"], "--symbols: unknown NSE symbols: NOPE"),
        (["--from", "2015-01-01", "--to", "2015-06-30"], "no day bars from 2015-01-01 to 2015-06-30 for INFY, TCS"),
        (["--from", "2020-02-30"], "--from: not a date"),
        (["--to", "2020-01-01"], "--to: the range ends (2020-01-01) before it starts (2020-10-01)"),
        (["--engine-settings", '{"fill": "later"}'], "--engine-settings: fill: must be one of next_open, close"),
        (["--engine-settings", '{"cahs": 1}'], "--engine-settings: cahs: unknown setting"),
        (["--cash", "-5"], "--cash: cash: must be a positive amount"),
        (["--cash", "lots"], "--cash: not a number"),
    ],
)
def test_bad_options_are_named_and_nothing_is_printed(daily_db: Path, argv: list[str], message: str) -> None:
    base = {"--strategy": "sma_crossover", "--symbols": "INFY,TCS", "--from": "2020-10-01", "--to": "2024-09-30"}
    given = dict(zip(argv[::2], argv[1::2], strict=True))
    out = StringIO()
    with pytest.raises(CommandError) as bad:
        call_command("backtest", *[x for kv in (base | given).items() for x in kv], "--json", stdout=out)
    assert message in str(bad.value)
    assert out.getvalue() == ""


def test_an_unknown_universe_is_named(daily_db: Path) -> None:
    out = StringIO()
    with pytest.raises(CommandError, match="--universe: no universe named 'NO SUCH'"):
        call_command("backtest", "--strategy", "sma_crossover", "--universe", "NO SUCH", *RANGE, stdout=out)
    assert out.getvalue() == ""
