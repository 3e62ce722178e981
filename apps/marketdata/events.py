"""The feed's one event format: closed bars on a Redis stream, latest prices in a Redis hash.

Both feeds (replay of stored candles and the live KiteTicker) publish through
here, and signal evaluation and paper fills read through here, so they cannot
drift apart. No Django import: the Redis client is passed in.

Stream `marketdata:bars` (XADD, approximate MAXLEN), one entry per closed bar:

    token     Kite instrument_token ("" when unknown)
    exchange  "NSE"
    symbol    tradingsymbol, e.g. "RELIANCE"
    interval  Kite interval, "minute" for the feeds
    time      start of the bar, ISO 8601 with offset (IST)
    open high low close   decimal strings, exactly as stored
    volume    integer string
    source    "replay" | "ticker"

Hash `marketdata:ltp`: field "EXCHANGE:SYMBOL" -> JSON {"price", "time", "token", "source"}.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

BAR_STREAM = "marketdata:bars"
LATEST_PRICES = "marketdata:ltp"
STREAM_MAXLEN = 200_000
IST = ZoneInfo("Asia/Kolkata")


class RedisLike(Protocol):
    def xadd(self, name: Any, fields: Any, *args: Any, **kwargs: Any) -> Any: ...
    def hset(self, name: Any, *args: Any, **kwargs: Any) -> Any: ...
    def hgetall(self, name: Any) -> Any: ...
    def hmget(self, name: Any, keys: Any, *args: Any) -> Any: ...
    def pipeline(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class BarEvent:
    exchange: str
    symbol: str
    interval: str
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    source: str
    token: int | None = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError(f"bar time must be timezone-aware, got {self.time!r}")

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    def to_fields(self) -> dict[str, str]:
        return {
            "token": "" if self.token is None else str(self.token),
            "exchange": self.exchange,
            "symbol": self.symbol,
            "interval": self.interval,
            "time": self.time.astimezone(IST).isoformat(),
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
            "volume": str(self.volume),
            "source": self.source,
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> BarEvent:
        f = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        return cls(
            exchange=f["exchange"],
            symbol=f["symbol"],
            interval=f["interval"],
            time=datetime.fromisoformat(f["time"]),
            open=Decimal(f["open"]),
            high=Decimal(f["high"]),
            low=Decimal(f["low"]),
            close=Decimal(f["close"]),
            volume=int(f["volume"]),
            source=f["source"],
            token=int(f["token"]) if f["token"] else None,
        )


@dataclass(frozen=True)
class LatestPrice:
    price: Decimal
    time: datetime
    token: int | None
    source: str

    def to_json(self) -> str:
        data = asdict(self)
        data.update(price=str(self.price), time=self.time.astimezone(IST).isoformat())
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str | bytes) -> LatestPrice:
        data = json.loads(raw)
        return cls(Decimal(data["price"]), datetime.fromisoformat(data["time"]), data["token"], data["source"])


def publish_bars(redis: RedisLike, bars: list[BarEvent], *, move_latest: bool = True) -> None:
    """Publish closed bars, in one round trip; with `move_latest`, each bar's close becomes the latest price.

    A feed that sees ticks (the live ticker) passes `move_latest=False`: its tick prices are fresher than
    the close of a bar that just ended, and it keeps the latest prices itself.
    """
    pipe = redis.pipeline(transaction=False)
    for bar in bars:
        pipe.xadd(BAR_STREAM, bar.to_fields(), maxlen=STREAM_MAXLEN, approximate=True)
        if move_latest:
            pipe.hset(LATEST_PRICES, bar.key, LatestPrice(bar.close, bar.time, bar.token, bar.source).to_json())
    pipe.execute()


def set_latest_prices(redis: RedisLike, prices: dict[str, LatestPrice]) -> None:
    """Latest prices between bars (ticks, LTP polling): `{"NSE:RELIANCE": LatestPrice}`."""
    if prices:
        redis.hset(LATEST_PRICES, mapping={k: v.to_json() for k, v in prices.items()})


def latest_prices(redis: RedisLike) -> dict[str, LatestPrice]:
    raw = redis.hgetall(LATEST_PRICES) or {}
    return {(k.decode() if isinstance(k, bytes) else k): LatestPrice.from_json(v) for k, v in raw.items()}


def latest_prices_for(redis: RedisLike, keys: list[str]) -> dict[str, LatestPrice]:
    """Only the named "EXCHANGE:SYMBOL" keys (as written: upper case), in one HMGET: the order path's read."""
    if not keys:
        return {}
    raw = redis.hmget(LATEST_PRICES, keys)
    return {k: LatestPrice.from_json(v) for k, v in zip(keys, raw, strict=True) if v is not None}
