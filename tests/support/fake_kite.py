"""A local fake of Kite Connect's HTTP API, answering the REAL `kiteconnect` client.

Kite cannot be reached from tests, so this server stands in for it with
Zerodha's own mock bodies (`../shared/data/kite-mocks`) and Kite's wire rules:
JSON envelopes (`{"status": "success", "data": ...}`), CSV instrument dumps,
errors as `{"status": "error", "error_type": ..., "message": ...}` (which the
client turns into its exception classes), historical candles generated for the
requested range, refusal of ranges longer than Kite's per-interval limit
(InputException, HTTP 400), and HTTP 429 "Too many requests" (NetworkException)
when more than `historical_rate_per_second` historical requests, or more than
`order_rate_per_second` order requests (place, modify, cancel), arrive in any
1-second window. Every request is recorded with its arrival time and form.

Orders go to an in-memory, Kite-shaped book (fake_kite_orders.py). Tests fill
orders with `fill` and break the next placement with `fail_next_place`: the
order accepted and then the connection dropped without an answer, accepted and
answered only after the client gave up, or refused with 429 / 403 / 500.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest

from tests.support.fake_kite_orders import DROP, FakeOrderBook, OrderRefused

IST = ZoneInfo("Asia/Kolkata")
HISTORICAL_PREFIX = "/instruments/historical/"
# Kite's documented maximum range per historical request, in days (kept independent of the app's own table).
MAX_DAYS = {
    "minute": 60,
    "3minute": 100,
    "5minute": 100,
    "10minute": 100,
    "15minute": 200,
    "30minute": 200,
    "60minute": 400,
    "day": 2000,
}
STEP_MINUTES = {"minute": 1, "3minute": 3, "5minute": 5, "10minute": 10, "15minute": 15, "30minute": 30, "60minute": 60}
SESSION_OPEN, SESSION_CLOSE = dtime(9, 15), dtime(15, 30)
JSON_ROUTES = {
    "/quote/ltp": "ltp.json",
    "/quote/ohlc": "ohlc.json",
    "/quote": "quote.json",
    "/user/profile": "profile.json",
    "/portfolio/positions": "positions.json",
    "/user/margins": "margins.json",
}
ORDER_PREFIX = "/orders"

CandleSource = Callable[[str, str, datetime, datetime], list[list[Any]]]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]  # last value of each parameter
    params: tuple[tuple[str, str], ...]  # every parameter, repeated ones (`i=...&i=...`) included
    time: float  # time.monotonic() at arrival
    status: int  # the status the fake answered with; DROP: none, the connection was closed
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)  # a POST / PUT body's fields


class FakeKiteError(Exception):
    """Raised by a `candles` callable to make the fake answer with a Kite error instead."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def kite_error(error_type: str, message: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "data": None, "error_type": error_type}


def kite_time(moment: datetime) -> str:
    return moment.astimezone(IST).strftime("%Y-%m-%dT%H:%M:%S%z")


def synthetic_bar(token: int, moment: datetime, *, oi: bool) -> list[Any]:
    """A deterministic, self-consistent OHLCV row for `moment` (prices in 5-paise steps)."""
    n = int(moment.timestamp()) // 60
    base = 100 + token % 1000
    o, c = base + (n * 7 % 40) * 0.05, base + (n * 13 % 40) * 0.05
    row: list[Any] = [kite_time(moment), round(o, 2), round(max(o, c) + 0.1, 2), round(min(o, c) - 0.1, 2)]
    row += [round(c, 2), 1000 + n % 500]
    return [*row, 10 * (n % 100)] if oi else row


def session_times(day: date, interval: str) -> list[datetime]:
    """Bar start times of one weekday session (no holiday calendar: every weekday trades)."""
    if day.weekday() >= 5:
        return []
    if interval == "day":
        return [datetime.combine(day, dtime(0, 0), IST)]
    step = timedelta(minutes=STEP_MINUTES[interval])
    moment, close = datetime.combine(day, SESSION_OPEN, IST), datetime.combine(day, SESSION_CLOSE, IST)
    times = []
    while moment < close:
        times.append(moment)
        moment += step
    return times


def synthetic_candles(*, bars_per_day: int | None = None) -> CandleSource:
    """A `candles` callable: every weekday's session bars (or only its first `bars_per_day`, for speed)."""

    def candles(token: str, interval: str, start: datetime, end: datetime) -> list[list[Any]]:
        rows = []
        day = start.date()
        while day <= end.date():
            times = session_times(day, interval)
            for moment in times if bars_per_day is None else times[:bars_per_day]:
                if start <= moment <= end:
                    rows.append(synthetic_bar(int(token), moment, oi=True))
            day += timedelta(days=1)
        return rows

    return candles


def _parse_kite_datetime(raw: str) -> datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=IST)
        except ValueError:
            continue
    raise FakeKiteError(400, "InputException", f"invalid date {raw!r}")


class FakeKite:
    """The fake server. `start()` binds a free port on 127.0.0.1; `url` is then its API root."""

    def __init__(
        self,
        mocks_dir: Path,
        *,
        historical_rate_per_second: float | None = 3.0,
        enforce_interval_limits: bool = True,
        candles: CandleSource | None = None,
        order_rate_per_second: float | None = 10.0,
    ) -> None:
        self.mocks_dir = mocks_dir
        self.historical_rate_per_second = historical_rate_per_second
        self.order_rate_per_second = order_rate_per_second
        self.book = FakeOrderBook()
        self._order_arrivals: deque[float] = deque()
        self.enforce_interval_limits = enforce_interval_limits
        self.candles: CandleSource = candles or synthetic_candles()
        self.url = ""
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._historical_arrivals: deque[float] = deque()
        self._overrides: dict[tuple[str, str], tuple[int, dict[str, Any] | str]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> FakeKite:
        handler = type("FakeKiteHandler", (_Handler,), {"kite": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeKite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what tests read and change -----------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return sorted(self._requests, key=lambda r: r.time)

    def historical_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(HISTORICAL_PREFIX)]

    def set_response(self, method: str, path: str, status: int, body: dict[str, Any] | str) -> None:
        """Answer `method path` with this status and body from now on (a dict as JSON, a str as CSV)."""
        with self._lock:
            self._overrides[(method.upper(), path)] = (status, body)

    def clear_response(self, method: str, path: str) -> None:
        with self._lock:
            self._overrides.pop((method.upper(), path), None)

    def seed_orders(self) -> None:
        """Put Zerodha's mock orders, one order's history and trades (orders.json, ...) in the book."""
        self.book.seed(self.mocks_dir)

    def fill(self, order_id: str, quantity: int, price: float) -> dict[str, Any]:
        """A trade for an open order; returns it, Kite-shaped."""
        return self.book.fill(order_id, quantity, price)

    def fail_next_place(self, mode: str) -> None:
        """Break the next placement: see FakeOrderBook.fail_next_place for the modes."""
        self.book.fail_next_place(mode)

    def placements(self, tag: str) -> int:
        """How many orders placed with this tag are in the book (seeded mock orders not counted)."""
        return self.book.placements_per_tag()[tag]

    def order_requests(self, method: str = "POST") -> list[RecordedRequest]:
        """Requests to the order endpoints (placements by default), in arrival order."""
        return [r for r in self.requests if r.method == method and r.path.startswith(ORDER_PREFIX + "/")]

    # --- answering ----------------------------------------------------------------------------------
    def _over_rate(self, method: str, path: str, arrived: float) -> bool:
        """Sliding 1-second window over arrival times; every arrival counts, refused ones included."""
        if path.startswith(HISTORICAL_PREFIX):
            rate, window = self.historical_rate_per_second, self._historical_arrivals
        elif method in ("POST", "PUT", "DELETE") and path.startswith(ORDER_PREFIX + "/"):
            rate, window = self.order_rate_per_second, self._order_arrivals
        else:
            return False
        if rate is None:
            return False
        with self._lock:
            while window and window[0] <= arrived - 1.0:
                window.popleft()
            window.append(arrived)
            return len(window) > rate

    def answer(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        arrived: float,
        authorization: str,
        *,
        form: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any] | str]:
        if self._over_rate(method, path, arrived):
            return 429, kite_error("NetworkException", "Too many requests")
        api_key, _, access_token = authorization.removeprefix("token ").partition(":")
        if not authorization.startswith("token ") or not api_key or not access_token:
            return 403, kite_error("TokenException", "Incorrect `api_key` or `access_token`.")
        with self._lock:
            override = self._overrides.get((method, path))
        if override is not None:
            return override
        try:
            if path in ("/trades", ORDER_PREFIX) or path.startswith(ORDER_PREFIX + "/"):
                return self.book.route(method, path, form or {})
            return self._route(method, path, query)
        except (FakeKiteError, OrderRefused) as exc:
            return exc.status, kite_error(exc.error_type, exc.message)

    def _route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        if method == "GET" and path.startswith(HISTORICAL_PREFIX):
            return 200, self._historical(path, query)
        if method == "GET" and path in JSON_ROUTES:
            return 200, json.loads((self.mocks_dir / JSON_ROUTES[path]).read_text())
        if method == "GET" and path == "/instruments":
            return 200, (self.mocks_dir / "instruments_all.csv").read_text()
        if method == "GET" and path.startswith("/instruments/") and path.count("/") == 2:
            return 200, self._instruments(path.rsplit("/", 1)[1])
        return 404, kite_error("GeneralException", f"Route not found: {method} {path}")

    def _instruments(self, exchange: str) -> str:
        if exchange == "NSE":
            return (self.mocks_dir / "instruments_nse.csv").read_text()
        reader = csv.reader(io.StringIO((self.mocks_dir / "instruments_all.csv").read_text()))
        header = next(reader)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([header, *(row for row in reader if row and row[-1] == exchange)])
        return out.getvalue()

    def _historical(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        token, _, interval = path[len(HISTORICAL_PREFIX) :].partition("/")
        if not token.isdigit():
            raise FakeKiteError(400, "InputException", f"invalid token {token!r}")
        if interval not in MAX_DAYS:
            raise FakeKiteError(400, "InputException", f"invalid interval {interval!r}")
        if "from" not in query or "to" not in query:
            raise FakeKiteError(400, "InputException", "missing from or to date")
        start, end = _parse_kite_datetime(query["from"]), _parse_kite_datetime(query["to"])
        if end < start:
            raise FakeKiteError(400, "InputException", "invalid from date: after to date")
        days = (end.date() - start.date()).days + 1
        if self.enforce_interval_limits and days > MAX_DAYS[interval]:
            raise FakeKiteError(400, "InputException", f"interval exceeds max limit: {MAX_DAYS[interval]} days")
        rows = self.candles(token, interval, start, end)
        if query.get("oi") != "1":
            rows = [row[:6] for row in rows]
        return {"status": "success", "data": {"candles": rows}}

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    kite: FakeKite
    protocol_version = "HTTP/1.1"  # keep-alive, as Kite does: less jitter between arrival times

    def _serve(self, method: str) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        form = dict(parse_qsl(body, keep_blank_values=True)) if method in ("POST", "PUT") else {}
        parts = urlsplit(self.path)
        params = tuple(parse_qsl(parts.query, keep_blank_values=True))
        query = dict(params)
        authorization = self.headers.get("Authorization", "")
        status, answer = self.kite.answer(method, parts.path, query, arrived, authorization, form=form)
        headers = dict(self.headers.items())
        self.kite.record(RecordedRequest(method, parts.path, query, params, arrived, status, headers, form))
        if status == DROP:
            self.close_connection = True  # no response at all: the client sees the connection dropped
            return
        try:
            self._send(status, answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting ("timeout" placements)

    def _send(self, status: int, body: dict[str, Any] | str) -> None:
        if isinstance(body, dict):
            payload, content_type = json.dumps(body).encode(), "application/json"
        else:
            payload, content_type = body.encode(), "text/csv; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""


@pytest.fixture
def fake_kite(shared_data: Path) -> Iterator[FakeKite]:
    """A started FakeKite with Zerodha's mock bodies, on a free port of 127.0.0.1."""
    with FakeKite(shared_data / "kite-mocks") as kite:
        yield kite


@pytest.fixture
def fake_kite_settings(fake_kite: FakeKite, settings: Any, monkeypatch: pytest.MonkeyPatch) -> FakeKite:
    """`apps.brokers.services.kite_client()` in this process talks to `fake_kite`."""
    settings.KITE_API_ROOT = fake_kite.url
    settings.KITE_API_KEY = "fake-api-key"
    monkeypatch.setenv("KITE_ACCESS_TOKEN", "fake-access-token")
    return fake_kite
