"""Parse and validate candle files in Kite's historical format; pure (no Django).

The format is what Kite's historical API gives, written as CSV:

    timestamp,open,high,low,close,volume,oi
    2020-10-01 00:00:00+05:30,1078.9,1078.9,1055.2,1060.55,20124778,0

Timestamps are ISO 8601 with a UTC offset (`2020-10-01 00:00:00+05:30`, or
`2017-12-15T09:15:00+0530` as Kite's JSON spells it); the `oi` column may be
absent, as Kite leaves it out unless asked for open interest.

Why so strict: a file is accepted whole or not at all. The first bad line
rejects the file with a `CandleFileError` naming the file, the line and the
reason, so that nothing half-valid reaches the database and the operator can
fix the file and run the import again. Rules:

- prices are non-negative decimals with at most 4 decimals and at most 10
  integer digits (the database keeps NUMERIC(14,4)); they are kept as the text
  written, and `CandleFile.rows()` gives them as exact `Decimal`s;
- volume and oi are non-negative integers that fit a 64-bit column;
- low <= open, close <= high;
- times carry an offset and strictly increase. A row that repeats the
  previous row exactly (same time, same values) is tolerated and dropped
  (counted in `duplicates`), since exports that overlap at a boundary write
  such rows and they carry no conflict; a repeated time with other values is
  an error, because there is no telling which of the two bars is right.

Speed: an import reads ~10^5 rows a second or more, so the common line is
checked by one regular expression and its prices compared as floats, with no
`Decimal` built. That comparison is exact: a decimal of at most 14 significant
digits converts to the nearest double, distinct such decimals give distinct
doubles (a double holds 15), and rounding to nearest keeps their order. Lines
the expression does not match (spaces, other spellings, errors) take the
field-by-field path, which names the exact problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

HEADER = ("timestamp", "open", "high", "low", "close", "volume", "oi")
HEADER_WITHOUT_OI = HEADER[:-1]
MAX_PRICE_DECIMALS = 4
MAX_PRICE_INTEGER_DIGITS = 10  # NUMERIC(14,4)
MAX_COUNT = 2**63 - 1  # BIGINT
INDEX_SUFFIX = "_INDEX"
MAX_SYMBOL_LENGTH = 40

_TIME = r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:[+-]\d\d:?\d\d|Z)"
_PRICE_TEXT = r"\d{1,10}(?:\.\d{1,4})?"
_COUNT_TEXT = r"\d{1,18}"
_FAST_ROW = re.compile(
    rf"({_TIME}),({_PRICE_TEXT}),({_PRICE_TEXT}),({_PRICE_TEXT}),({_PRICE_TEXT}),({_COUNT_TEXT})", re.A
)
_FAST_ROW_OI = re.compile(rf"{_FAST_ROW.pattern},({_COUNT_TEXT})", re.A)
_PRICE = re.compile(r"(\d+)(?:\.(\d+))?", re.A)
_INTEGER = re.compile(r"-?\d+", re.A)
_SYMBOL = re.compile(r"[^\s,]+")


class CandleFileError(ValueError):
    """A file that cannot be imported; `line` is 1-based (the header is line 1), None for the whole file."""

    def __init__(self, source: str, reason: str, line: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        where = source if line is None else f"{source} line {line}"
        super().__init__(f"{where}: {reason}")


class CandleRow(NamedTuple):
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    oi: int


@dataclass(frozen=True)
class CandleFile:
    """A validated file: rows in strictly increasing time order, exact repeats dropped and counted.

    `lines` keep each row as validated CSV text with all seven fields
    (`time,open,high,low,close,volume,oi`), what a COPY sends on unchanged;
    `times` are the parsed times.
    """

    source: str
    times: list[datetime]
    lines: list[str]
    duplicates: int

    def __len__(self) -> int:
        return len(self.lines)

    def rows(self) -> Iterator[CandleRow]:
        """The rows with exact `Decimal` prices and `int` counts."""
        for time, line in zip(self.times, self.lines, strict=True):
            _, o, h, lo, c, v, oi = line.split(",")
            yield CandleRow(time, Decimal(o), Decimal(h), Decimal(lo), Decimal(c), int(v), int(oi))


def symbol_from_path(path: Path) -> str:
    """The tradingsymbol a file is named after: `M&M.csv` -> `M&M`, kept verbatim (Kite's symbols are case-exact)."""
    symbol = path.stem
    if not _SYMBOL.fullmatch(symbol) or len(symbol) > MAX_SYMBOL_LENGTH:
        raise CandleFileError(
            path.name, f"file name {symbol!r} is not a trading symbol (no spaces or commas, at most 40 characters)"
        )
    return symbol


def is_index_symbol(symbol: str) -> bool:
    """`NIFTY50_INDEX` names an index, not a stock: the only naming rule the data files follow."""
    return symbol.upper().endswith(INDEX_SUFFIX)


def read_candle_file(path: Path) -> CandleFile:
    """Read and validate one file; every problem comes out as a `CandleFileError` naming it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise CandleFileError(path.name, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CandleFileError(path.name, f"not UTF-8 text (byte {exc.start})") from None
    return parse_candles(text, source=path.name)


def parse_candles(text: str, *, source: str) -> CandleFile:
    """Validate a file's text; `source` is the name errors give (the file name)."""
    lines = text.removeprefix("\ufeff").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CandleFileError(source, "empty file (expected the header " + ",".join(HEADER) + ")")
    width = _check_header(lines[0], source)
    if len(lines) == 1:
        raise CandleFileError(source, "empty file: no rows after the header")
    with_oi = width == len(HEADER)
    fast = _FAST_ROW_OI if with_oi else _FAST_ROW
    times: list[datetime] = []
    rows: list[str] = []
    duplicates = previous_line = 0
    for number, line in enumerate(lines[1:], start=2):
        match = fast.fullmatch(line)
        if match:
            fields: Sequence[str] = match.groups()
            row = line if with_oi else line + ",0"
        else:
            fields = _fields_checked_one_by_one(line, width, source, number)
            row = ",".join(fields)
        time = _checked_bar(fields, source, number)
        if times and time <= times[-1]:
            if time == times[-1] and _same_values(row, rows[-1]):
                duplicates += 1
                continue
            raise CandleFileError(source, _order_problem(time, times[-1], previous_line), number)
        times.append(time)
        rows.append(row)
        previous_line = number
    return CandleFile(source=source, times=times, lines=rows, duplicates=duplicates)


def _check_header(line: str, source: str) -> int:
    names = tuple(name.strip().lower() for name in line.split(","))
    if names not in (HEADER, HEADER_WITHOUT_OI):
        raise CandleFileError(source, f"header is {line.strip()!r}, expected {','.join(HEADER)!r}", 1)
    return len(names)


def _checked_bar(fields: Sequence[str], source: str, number: int) -> datetime:
    """The row's time, after the checks that need values: a real date, an offset, low <= open, close <= high."""
    text, o, h, lo, c = fields[:5]
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        raise CandleFileError(
            source, f"unparseable time {text!r} (expected e.g. 2020-10-01 00:00:00+05:30)", number
        ) from None
    if time.tzinfo is None:
        raise CandleFileError(
            source, f"time {text!r} has no UTC offset (expected e.g. 2020-10-01 00:00:00+05:30)", number
        )
    high, low = float(h), float(lo)
    if high < low:
        raise CandleFileError(source, f"high {h} is below low {lo}", number)
    if not low <= float(o) <= high:
        raise CandleFileError(source, f"open {o} is outside low-high {lo}-{h}", number)
    if not low <= float(c) <= high:
        raise CandleFileError(source, f"close {c} is outside low-high {lo}-{h}", number)
    return time


def _same_values(a: str, b: str) -> bool:
    (_, *x), (_, *y) = a.split(","), b.split(",")
    return [Decimal(v) for v in x] == [Decimal(v) for v in y]


def _order_problem(time: datetime, previous: datetime, previous_line: int) -> str:
    if time == previous:
        return f"time {time.isoformat()} repeats line {previous_line} with other values"
    return (
        f"time {time.isoformat()} is before {previous.isoformat()} on line {previous_line}: rows must be in time order"
    )


def _fields_checked_one_by_one(line: str, width: int, source: str, number: int) -> list[str]:
    """The slow path for a line the fast expression did not match: each field checked, the first problem named."""
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != width:
        raise CandleFileError(source, f"expected {width} fields, got {len(fields)}", number)
    try:
        time = _parse_time(fields[0])
        prices = [_check_price(name, raw) for name, raw in zip(HEADER[1:5], fields[1:5], strict=True)]
        counts = [_check_count(name, raw) for name, raw in zip(HEADER[5:], fields[5:], strict=False)]
    except ValueError as exc:
        raise CandleFileError(source, str(exc), number) from None
    o, h, lo, c = prices
    volume, *oi = counts
    return [time.isoformat(sep=" "), o, h, lo, c, volume, oi[0] if oi else "0"]


def _parse_time(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"unparseable time {raw!r} (expected e.g. 2020-10-01 00:00:00+05:30)") from None
    if value.tzinfo is None:
        raise ValueError(f"time {raw!r} has no UTC offset (expected e.g. 2020-10-01 00:00:00+05:30)")
    return value


def _check_price(name: str, raw: str) -> str:
    match = _PRICE.fullmatch(raw)
    if match is None:
        raise ValueError(f"unparseable {name} {raw!r} (expected a non-negative decimal such as 1078.95)")
    integer, decimals = match.groups()
    if decimals is not None and len(decimals) > MAX_PRICE_DECIMALS:
        raise ValueError(f"{name} {raw!r} has more than {MAX_PRICE_DECIMALS} decimals")
    if len(integer.lstrip("0")) > MAX_PRICE_INTEGER_DIGITS:
        raise ValueError(f"{name} {raw!r} has more than {MAX_PRICE_INTEGER_DIGITS} integer digits")
    return raw


def _check_count(name: str, raw: str) -> str:
    if _INTEGER.fullmatch(raw) is None:
        raise ValueError(f"unparseable {name} {raw!r} (expected a whole number)")
    value = int(raw)
    if value < 0:
        raise ValueError(f"negative {name} {value}")
    if value > MAX_COUNT:
        raise ValueError(f"{name} {value} is too large (at most {MAX_COUNT})")
    return str(value)
