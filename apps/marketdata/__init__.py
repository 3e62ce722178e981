"""Instruments, candles, the NSE trading calendar, importers and feeds."""
