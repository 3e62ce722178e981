"""Compact storage of a series (bar times and values) for `BacktestRun.equity`: zlib of int64 + float64."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from numpy.typing import NDArray

MAGIC = b"EQ1"


def pack_series(times_us: NDArray[np.int64], values: NDArray[np.float64]) -> bytes:
    """Times (microseconds since the epoch, UTC) and values of the same length, compressed."""
    t = np.ascontiguousarray(times_us, dtype="<i8")
    v = np.ascontiguousarray(values, dtype="<f8")
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError(f"times {t.shape} and values {v.shape} must be one-dimensional and of the same length")
    return MAGIC + struct.pack("<q", len(t)) + zlib.compress(t.tobytes() + v.tobytes(), 6)


def unpack_series(blob: bytes | memoryview | None) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The (times_us, values) that `pack_series` stored; empty arrays for None."""
    if blob is None:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    raw = bytes(blob)
    if raw[:3] != MAGIC:
        raise ValueError("not a packed series")
    (n,) = struct.unpack("<q", raw[3:11])
    body = zlib.decompress(raw[11:])
    if len(body) != 16 * n:
        raise ValueError(f"packed series is {len(body)} bytes, expected {16 * n}")
    return np.frombuffer(body[: 8 * n], "<i8").astype(np.int64), np.frombuffer(body[8 * n :], "<f8").astype(np.float64)
