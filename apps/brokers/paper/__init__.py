"""The paper broker: the `Broker` of TRADING_MODE=paper, its book in Redis so every process shares it.

The web process, several order workers and the feed consumer all see one order book per paper account,
and the OMS cannot tell a paper fill from a Kite one: same statuses, same record shapes, same refusals
(docs/paper-broker.md). No Django anywhere in here: the caller passes the Redis client, the instrument
lookup, the price source and the market-hours rule.

    rules    what Kite refuses and how (InputException-like raise, RMS-like REJECTED record)
    fills    when an open order fills and at what price (slippage, triggers, limits)
    records  Kite-shaped order, trade and postback records; JSON storage
    book     positions and margins from the paper trades
    broker   PaperBroker: the state in Redis, compare-and-set updates, the Broker interface
"""

from apps.brokers.paper.broker import PaperBroker, redis_price_source
from apps.brokers.paper.rules import PaperConfig, PaperInstrument, always_open, calendar_session

__all__ = ["PaperBroker", "PaperConfig", "PaperInstrument", "always_open", "calendar_session", "redis_price_source"]
