"""The Django side of PaperBroker: its Redis, instruments, prices and market hours for one account."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings

from apps.brokers.models import BrokerAccount
from apps.brokers.paper import PaperBroker, PaperInstrument, always_open, redis_price_source
from apps.marketdata import selectors as marketdata
from tradingsite.exceptions import NotFound
from tradingsite.redis_client import get_redis


def _instrument(exchange: str, tradingsymbol: str) -> PaperInstrument | None:
    try:
        row = marketdata.instrument_get(symbol=tradingsymbol, exchange=exchange)
    except NotFound:
        return None
    return PaperInstrument(
        exchange=row.exchange,
        tradingsymbol=row.tradingsymbol,
        tick_size=Decimal(row.tick_size),
        lot_size=row.lot_size,
        instrument_token=row.instrument_token,
        has_derivatives=marketdata.instrument_profile(row).has_derivatives,
    )


def _calendar_session(at: datetime, instrument: PaperInstrument) -> frozenset[str]:
    # Looked up on every call, so an operator's calendar edit reaches the paper broker.
    return marketdata.trading_calendar().session_at(at, instrument).order_types


def paper_broker_for(account: BrokerAccount) -> PaperBroker:
    client = get_redis()
    return PaperBroker(
        client,
        account=f"acct{account.pk}",  # ids, not names: names may hold characters Redis keys should not
        instruments=_instrument,
        price_source=redis_price_source(client),
        session=_calendar_session if settings.PAPER_MARKET_HOURS else always_open,
    )
