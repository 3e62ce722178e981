"""The strategies app's public services: what other apps, the API, the admin and the tasks call."""

from __future__ import annotations

from apps.strategies.data import NoData, bars_load, bars_window, resolve_symbols

__all__ = ["NoData", "bars_load", "bars_window", "resolve_symbols"]
