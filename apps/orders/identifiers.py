"""Kite tags from client order ids. Pure, no Django.

Kite has no idempotency key; the tag is what finds an order whose placement
outcome is unknown. It must be alphanumeric and at most 20 characters, and
must differ for every client_order_id: a prefix of a hash does both (a
collision among 19 hex digits, 76 bits, is out of reach, and the unique
constraint on `Order.tag` would refuse one rather than confuse two orders).
"""

from __future__ import annotations

import hashlib
import re

TAG_LENGTH = 20
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def validate_client_order_id(client_order_id: str) -> str:
    if not _CLIENT_ID.match(client_order_id):
        raise ValueError(
            "client_order_id must be 1-64 characters of letters, digits and . _ : - (starting with a letter or digit)"
        )
    return client_order_id


def tag_for(client_order_id: str) -> str:
    """'T' + 19 hex digits of sha256(client_order_id): alphanumeric, 20 characters, stable."""
    digest = hashlib.sha256(validate_client_order_id(client_order_id).encode()).hexdigest()
    return ("T" + digest)[:TAG_LENGTH]
