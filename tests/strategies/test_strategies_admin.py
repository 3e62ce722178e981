"""Strategies in the admin: configs validated on the form and saved through the services (versions, events),
enable/disable actions, signals with their orders, backtest run pages with their SVG pictures per kind, and the
action that turns a run's parameters into a paper config. The chart functions are also checked on hand-made data."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.brokers.models import BrokerAccount
from apps.orders.models import Order
from apps.strategies import admin_charts as charts
from apps.strategies import configs
from apps.strategies.engine.packing import pack_series
from apps.strategies.models import BacktestChunk, BacktestRun, Signal, StrategyConfig, StrategyConfigEvent
from tests.strategies.test_configs import config_kwargs, desk  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

SVG = re.compile(r'<svg xmlns="http://www.w3.org/2000/svg" [^>]*role="img".*?</svg>', re.S)


@pytest.fixture
def admin(desk: dict[str, Any]) -> Client:  # noqa: F811
    user = get_user_model().objects.create_superuser("ui-admin", "ui@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def form_data(response: Any, **fields: Any) -> dict[str, Any]:
    """The management forms of the page's inlines plus `fields`: what the browser would post."""
    data: dict[str, Any] = {}
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data |= {f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()}
    return data | fields


def config_form(desk: dict[str, Any], **overrides: Any) -> dict[str, Any]:  # noqa: F811
    base = {
        "name": "admin-sma", "strategy": "sma_crossover", "parameters": '{"fast": 8}', "universe": "",
        "symbols": "INFY, TCS", "interval": "day", "capital": "250000", "product": "CNC", "mode": "paper",
        "account": desk["paper"].pk, "loaded_version": "",
    }  # fmt: skip
    return base | overrides


# --- configs -------------------------------------------------------------------------------------------------------


def test_the_add_form_validates_parameters_against_the_schema(admin: Client, desk: dict[str, Any]) -> None:  # noqa: F811
    url = "/admin/strategies/strategyconfig/add/"
    page = admin.get(url)
    assert "fast moving-average window (bars)" in page.content.decode()  # the schema's help is shown
    bad = admin.post(url, form_data(page, **config_form(desk, parameters='{"fast": 40}')))
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "fast: fast (40) must be below slow (30)" in errors["parameters"][0] and not StrategyConfig.objects.exists()
    wrong_account = admin.post(url, form_data(page, **config_form(desk, mode="live")))
    assert "live mode runs on a kite account" in wrong_account.context["adminform"].form.errors["account"][0]
    assert admin.post(url, form_data(page, **config_form(desk))).status_code == 302
    config = StrategyConfig.objects.get(name="admin-sma")
    assert config.parameters == {"fast": 8, "slow": 30, "field": "close", "long_short": False}
    assert config.symbols == ["INFY", "TCS"] and not config.enabled and config.version == 1
    assert StrategyConfigEvent.objects.get(config=config).by == "ui-admin"


def test_a_stale_change_form_is_refused(admin: Client, desk: dict[str, Any]) -> None:  # noqa: F811
    config = configs.config_create(**config_kwargs(desk))
    url = f"/admin/strategies/strategyconfig/{config.pk}/change/"
    page = admin.get(url)
    assert page.context["adminform"].form.initial["symbols"] == "INFY, TCS"
    configs.config_update(config_id=config.pk, expected_version=1, by="someone", capital="600000")  # meanwhile
    stale = config_form(desk, name=config.name, parameters='{"fast": 12}', capital="700000", loaded_version="1")
    response = admin.post(url, form_data(page, **stale), follow=True)
    said = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("Not saved:") and "changed meanwhile" in m for m in said), said
    config.refresh_from_db()
    assert (config.version, str(config.capital)) == (2, "600000.00")
    page = admin.get(url)
    fresh = config_form(desk, name=config.name, parameters='{"fast": 12}', capital="700000", loaded_version="2")
    assert admin.post(url, form_data(page, **fresh)).status_code == 302
    config.refresh_from_db()
    assert (config.version, str(config.capital)) == (3, "700000.00")
    edited = StrategyConfigEvent.objects.filter(config=config, kind="edited").order_by("-id").first()
    assert edited is not None and edited.by == "ui-admin" and set(edited.detail["changes"]) == {"capital"}
    history = admin.get(url).content.decode()
    assert "someone" in history and "ui-admin" in history  # the events inline


def test_enable_and_disable_actions_go_through_the_services(admin: Client, desk: dict[str, Any]) -> None:  # noqa: F811
    one = configs.config_create(**config_kwargs(desk))
    two = configs.config_create(**config_kwargs(desk, name="second"))
    BrokerAccount.objects.filter(pk=desk["paper"].pk).update(kind="kite")  # now both fail re-validation
    response = admin.post(
        "/admin/strategies/strategyconfig/",
        {"action": "enable_configs", "_selected_action": [one.pk, two.pk]},
        follow=True,
    )
    said = [str(m) for m in response.context["messages"]]
    assert len(said) == 2 and all("not changed" in m and "paper mode runs on a paper account" in m for m in said)
    BrokerAccount.objects.filter(pk=desk["paper"].pk).update(kind="paper")
    admin.post("/admin/strategies/strategyconfig/", {"action": "enable_configs", "_selected_action": [one.pk, two.pk]})
    assert set(StrategyConfig.objects.values_list("enabled", "version")) == {(True, 2)}
    admin.post("/admin/strategies/strategyconfig/", {"action": "disable_configs", "_selected_action": [one.pk]})
    one.refresh_from_db()
    assert (one.enabled, one.version) == (False, 3)
    kinds = list(StrategyConfigEvent.objects.filter(config=one).order_by("id").values_list("kind", "by"))
    assert kinds == [("created", "tester"), ("enabled", "ui-admin"), ("disabled", "ui-admin")]
    listing = admin.get("/admin/strategies/strategyconfig/").content.decode()
    assert "delete_selected" not in listing


def test_signals_are_listed_with_their_orders(admin: Client, desk: dict[str, Any]) -> None:  # noqa: F811
    config = configs.config_create(**config_kwargs(desk))
    order = Order.objects.create(
        client_order_id="sig-1", tag="sig1", account=desk["paper"], instrument=desk["instruments"]["INFY"],
        side="BUY", quantity=10, product="CNC", order_type="MARKET",
    )  # fmt: skip
    Signal.objects.create(
        config=config, instrument=desk["instruments"]["INFY"], bar_time="2024-09-02T03:45:00Z", target=1.0,
        previous_target=0.0, price="1900.5", action="ordered", order=order,
    )  # fmt: skip
    Signal.objects.create(
        config=config, instrument=desk["instruments"]["TCS"], bar_time="2024-09-02T03:45:00Z", target=0.0,
        price="4100", action="nothing",
    )  # fmt: skip
    page = admin.get("/admin/strategies/signal/").content.decode()
    assert f'href="/admin/orders/order/{order.pk}/change/"' in page
    filtered = admin.get("/admin/strategies/signal/", {"action__exact": "ordered"}).content.decode()
    assert "NSE:INFY" in filtered and "NSE:TCS" not in filtered
    assert admin.get("/admin/strategies/signal/add/").status_code == 403


# --- backtest runs -------------------------------------------------------------------------------------------------


def make_run(kind: str, **fields: Any) -> BacktestRun:
    base: dict[str, Any] = {
        "kind": kind, "strategy": "sma_crossover", "status": "done", "progress": 1.0, "start": date(2020, 10, 1),
        "end": date(2024, 9, 30), "code_version": "test", "cache_key": f"key-{kind}", "symbols": ["INFY", "TCS"],
        "parameters": {"fast": 10, "slow": 30, "field": "close", "long_short": False},
        "options": {"settings": {"cash": 500_000.0, "capital": "per_symbol"}},
    }  # fmt: skip
    return BacktestRun.objects.create(**(base | fields))


def equity_blob(n: int = 400) -> tuple[bytes, np.ndarray]:
    times = np.datetime64("2021-01-01T03:45", "us").astype(np.int64) + np.arange(n, dtype=np.int64) * 86_400_000_000
    values = 1_000_000 * np.exp(np.cumsum(np.random.default_rng(3).normal(0.0005, 0.01, n)))
    return pack_series(times, values), values


def trade(i: int) -> dict[str, Any]:
    return {
        "symbol": "INFY", "entry_time": "2021-01-04T09:15:00+05:30", "exit_time": "2021-02-01T09:15:00+05:30",
        "quantity": 10 + i, "entry_price": 1000.0, "exit_price": 1010.5, "pnl": 105.0, "charges": 1.25,
        "exit_reason": "signal",
    }  # fmt: skip


GRID: dict[str, Any] = {
    "objective": "sharpe",
    "axes": {"fast": [10, 20, 30], "slow": [20, 30, 40]},
    "rows": [
        {"params": {"fast": f, "slow": s}, "metrics": {"sharpe": round(f / s + (0.5 if (f, s) == (20, 40) else 0), 4)}}
        for f in (10, 20, 30)
        for s in (20, 30, 40)
        if f < s
    ],
}
GRID["best"] = max(GRID["rows"], key=lambda r: r["metrics"]["sharpe"])


def test_a_single_run_page_has_metrics_equity_drawdown_trades_and_chunks(admin: Client) -> None:
    blob, values = equity_blob()
    run = make_run(
        "single", equity=blob, trades=[trade(i) for i in range(250)],
        metrics={"final_equity": float(values[-1]), "total_return": 0.1234, "sharpe": 1.5, "trades": 250.0},
    )  # fmt: skip
    BacktestChunk.objects.create(run=run, index=0, status="failed", error="ZeroDivisionError: boom", work={})
    page = admin.get(f"/admin/strategies/backtestrun/{run.pk}/change/").content.decode()
    svgs = SVG.findall(page)
    assert len(svgs) == 2 and "Equity" in svgs[0] and "Drawdown (worst" in svgs[1]
    points = re.search(r'<polyline points="([^"]+)"', svgs[0])
    assert points and len(points.group(1).split()) == len(values)
    peak = np.maximum.accumulate(values)
    assert f"Drawdown (worst {100 * float(np.min(values / peak - 1)):.2f}%)" in svgs[1]
    assert "12.34%" in page and "₹" in page and "1.500" in page  # the metrics table
    assert page.count("<tr><td>INFY</td>") == 200 and "First 200 of 250 trades." in page
    assert "ZeroDivisionError: boom" in page  # the chunks inline
    listing = admin.get("/admin/strategies/backtestrun/").content.decode()
    assert 'class="progress"' in listing and "100%" in listing and "return 12.34%, sharpe 1.50" in listing


def test_a_grid_run_page_draws_the_heatmap(admin: Client) -> None:
    blob, _ = equity_blob()
    run = make_run("grid", equity=blob, results=GRID, grid={"fast": [10, 20, 30], "slow": [20, 30, 40]})
    page = admin.get(f"/admin/strategies/backtestrun/{run.pk}/change/").content.decode()
    heatmap = next(svg for svg in SVG.findall(page) if "Grid heatmap" in svg)
    cells = re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="[^"]+" fill="(#[0-9a-f]{6})"', heatmap)
    assert len(cells) == 9 and cells.count("#eeeeee") == 3  # fast >= slow: not run
    assert cells[5] == charts.PALETTE[-1] and cells[2] == charts.PALETTE[0]  # best (20, 40), worst (10, 40)
    (best,) = re.findall(r'<rect class="best"[^>]*><title>([^<]+)</title>', heatmap)
    assert best == "best: fast=20 slow=40: sharpe 1.000"
    assert ">fast</text>" in heatmap and ">slow</text>" in heatmap and ">40</text>" in heatmap
    assert len(re.findall(r'class="scale"', heatmap)) == 10
    assert "Best: fast=20, slow=40 (sharpe 1.000)" in page


def test_walk_forward_and_monte_carlo_pages(admin: Client) -> None:
    blob, _ = equity_blob()
    folds = [
        {"index": i, "train": [f"202{i}-01-01", f"202{i}-12-31"], "test": [f"202{i + 1}-01-01", f"202{i + 1}-06-30"],
         "params": {"fast": 10 + i, "slow": 30}, "in_sample": {"sharpe": 1.0 + i}, "out_of_sample": {"sharpe": 0.5,
         "total_return": 0.02 * i}}
        for i in range(3)
    ]  # fmt: skip
    wf = make_run(
        "walk_forward", equity=blob, cache_key="wf",
        results={"mode": "rolling", "objective": "sharpe", "folds": folds, "oos_metrics": {"total_return": 0.05}},
    )  # fmt: skip
    page = admin.get(f"/admin/strategies/backtestrun/{wf.pk}/change/").content.decode()
    assert page.count("<tr><td>") >= 3 and "fast=12, slow=30" in page and "2023-01-01 → 2023-06-30" in page
    assert "Stitched out-of-sample equity" in page and "5.00%" in page
    distribution = {
        "percentiles": {"5": 0.05, "25": 0.1, "50": 0.15, "75": 0.2, "95": 0.3},
        "histogram": {"edges": [0.0, 0.1, 0.2, 0.3, 0.4], "counts": [5, 40, 30, 25]},
    }
    finals = {
        "percentiles": {"5": 8e5, "25": 9e5, "50": 1e6, "75": 1.1e6, "95": 1.3e6},
        "histogram": {"edges": [7e5, 9e5, 1.1e6, 1.3e6, 1.5e6, 1.7e6], "counts": [3, 30, 40, 20, 7]},
    }
    mc = make_run(
        "monte_carlo", cache_key="mc",
        results={"method": "bootstrap", "simulations": 10_000, "ruin_threshold": 0.5, "probability_of_ruin": 0.0123,
                 "max_drawdown": distribution, "final_equity": finals},
    )  # fmt: skip
    page = admin.get(f"/admin/strategies/backtestrun/{mc.pk}/change/").content.decode()
    drawdown, final = SVG.findall(page)
    assert len(re.findall(r"<rect ", drawdown)) == 4 and len(re.findall(r"<rect ", final)) == 5
    assert len(re.findall(r'class="percentile"', drawdown)) == 5 and "p95 30.0%" in drawdown
    assert "p50 1,000,000" in final
    assert "Probability of ruin (losing 50.00% of the starting equity): <strong>1.23%</strong>" in page


def test_create_a_paper_config_from_a_grid_run(admin: Client, desk: dict[str, Any]) -> None:  # noqa: F811
    run = make_run("grid", results=GRID, parameters={"fast": 10, "slow": 30, "field": "close", "long_short": True})
    queued = make_run("single", status="queued", cache_key="q")
    BrokerAccount.objects.filter(kind="paper").update(enabled=False)
    url = "/admin/strategies/backtestrun/"
    said = admin.post(url, {"action": "create_paper_config", "_selected_action": [run.pk]}, follow=True)
    assert "No enabled paper account" in str(next(iter(said.context["messages"])))
    BrokerAccount.objects.filter(kind="paper").update(enabled=True)
    said = admin.post(url, {"action": "create_paper_config", "_selected_action": [run.pk, queued.pk]}, follow=True)
    messages = [str(m) for m in said.context["messages"]]
    config = StrategyConfig.objects.get()
    assert config.name == f"sma_crossover-run{run.pk}" and (config.mode, config.enabled) == ("paper", False)
    assert config.parameters == {"fast": 20, "slow": 40, "field": "close", "long_short": True}  # the best, fixed kept
    assert config.account == desk["paper"] and config.symbols == ["INFY", "TCS"] and str(config.capital) == "1000000.00"
    assert f"/admin/strategies/strategyconfig/{config.pk}/change/" in messages[0]
    assert f"run {queued.pk}: no config created: run {queued.pk} is queued, not done" in messages[1]
    admin.post(url, {"action": "create_paper_config", "_selected_action": [run.pk]})
    assert StrategyConfig.objects.filter(name=f"sma_crossover-run{run.pk}-2").exists()  # a free name


# --- the chart functions on hand-made data -------------------------------------------------------------------------


def test_downsample_keeps_the_ends_and_every_buckets_extremes() -> None:
    n = 10_001
    t = np.arange(n, dtype=np.int64)
    v = np.sin(np.arange(n) / 50.0) + np.random.default_rng(1).normal(0, 0.1, n)
    v[4321] = -50.0
    st, sv = charts.downsample(t, v, 2000)
    assert len(sv) <= 2000 and (st[0], st[-1]) == (0, n - 1) and np.all(np.diff(st) > 0)
    assert sv.min() == -50.0 and sv.max() == v.max() and np.array_equal(sv, v[st])
    _, same_v = charts.downsample(t[:100], v[:100], 2000)
    assert np.array_equal(same_v, v[:100])


def test_drawdown_series_by_hand() -> None:
    equity = np.array([100.0, 120.0, 90.0, 130.0, 65.0])
    assert np.allclose(charts.drawdown_series(equity), [0.0, 0.0, -0.25, 0.0, -0.5])


def test_colour_scale_ends_and_midpoint() -> None:
    assert charts._colour(0.0) == charts.PALETTE[0] and charts._colour(1.0) == charts.PALETTE[-1]
    assert charts._colour(-3) == charts.PALETTE[0] and charts._colour(7) == charts.PALETTE[-1]
    mid = charts._colour(0.5)  # halfway between the 5th and 6th of 10 colours
    a, b = charts.PALETTE[4], charts.PALETTE[5]
    assert mid == "#" + "".join(f"{round((int(a[k : k + 2], 16) + int(b[k : k + 2], 16)) / 2):02x}" for k in (1, 3, 5))


def test_empty_inputs_say_so() -> None:
    assert "nothing stored" in charts.equity_svg(np.empty(0, np.int64), np.empty(0))
    assert "No grid table stored." in charts.heatmap_svg({})
    assert "no distribution stored" in charts.histogram_svg({}, title="Max drawdown")
    assert "No trades." in charts.trades_table([]) and "No folds stored." in charts.folds_table({})


# --- pages of runs the real services and tasks produced ------------------------------------------------------------


def _execute(run: BacktestRun) -> BacktestRun:
    """The run's tasks as functions, in order (through real workers: tests/strategies/test_runs_workers.py)."""
    from apps.strategies import run_tasks

    chunks = list(BacktestChunk.objects.filter(run=run).order_by("index").values_list("pk", flat=True))
    if run.kind == "grid":
        for pk in chunks:
            run_tasks.grid_chunk(chunk_id=pk)
        run_tasks.grid_finish(run_id=run.pk)
    elif run.kind == "walk_forward":
        for pk in chunks:
            run_tasks.walk_forward_fold(chunk_id=pk)
        run_tasks.walk_forward_finish(run_id=run.pk)
    elif run.kind == "monte_carlo":
        run_tasks.monte_carlo(run_id=run.pk)
    else:
        run_tasks.run_single(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "done", run.error
    return run


def test_pages_of_real_grid_walk_forward_and_monte_carlo_runs(
    admin: Client,
    desk: dict[str, Any],  # noqa: F811
    shared_data: Any,
) -> None:
    from apps.strategies import runs
    from tests.risk.test_var_service import import_daily

    import_daily(shared_data, "INFY", "TCS")
    common: dict[str, Any] = {
        "strategy": "sma_crossover", "symbols": ["INFY", "TCS"], "start": date(2020, 10, 1), "end": date(2024, 9, 30),
    }  # fmt: skip
    ranges = {"fast": [5, 10, 20], "slow": [20, 30, 50]}
    grid, _ = runs.run_submit(kind="grid", grid={"ranges": ranges, "objective": "sharpe"}, **common)
    grid = _execute(grid)
    page = admin.get(f"/admin/strategies/backtestrun/{grid.pk}/change/").content.decode()
    heatmap = next(svg for svg in SVG.findall(page) if "Grid heatmap" in svg)
    cells = re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="[^"]+" fill="(#[0-9a-f]{6})"', heatmap)
    assert len(cells) == 9 and cells.count("#eeeeee") == 1  # fast 20 / slow 20 breaks fast < slow
    best = grid.results["best"]
    (title,) = re.findall(r'<rect class="best"[^>]*><title>([^<]+)</title>', heatmap)
    assert title.startswith(f"best: fast={best['params']['fast']} slow={best['params']['slow']}: sharpe ")
    assert len(SVG.findall(page)) == 3  # heatmap, equity (of the best set), drawdown
    admin.post("/admin/strategies/backtestrun/", {"action": "create_paper_config", "_selected_action": [grid.pk]})
    assert StrategyConfig.objects.get().parameters == best["params"]

    folds = {"folds": 3, "grid": {"fast": [5, 10], "slow": [20, 30]}}
    wf, _ = runs.run_submit(kind="walk_forward", walk_forward=folds, **common)
    wf = _execute(wf)
    page = admin.get(f"/admin/strategies/backtestrun/{wf.pk}/change/").content.decode()
    table = re.search(r'<table class="folds">.*?</table>', page, re.S)
    assert table and table.group(0).count("<tr><td>") == len(wf.results["folds"]) == 3
    assert "Stitched out-of-sample equity" in page

    single, _ = runs.run_submit(kind="single", params={"fast": 5, "slow": 20}, **common)
    single = _execute(single)
    mc, _ = runs.run_submit(
        kind="monte_carlo", monte_carlo={"simulations": 500, "seed": 1}, source_run_id=single.pk, **common
    )
    mc = _execute(mc)
    page = admin.get(f"/admin/strategies/backtestrun/{mc.pk}/change/").content.decode()
    drawdown, final = SVG.findall(page)
    assert len(re.findall(r'class="percentile"', drawdown)) == 5 == len(re.findall(r'class="percentile"', final))
    assert len(re.findall(r"<rect ", final)) == len(mc.results["final_equity"]["histogram"]["counts"])
    ruin = charts.metric_text("win_rate", mc.results["probability_of_ruin"])
    assert f"<strong>{ruin}</strong>" in page
