"""Strict decoding of Hyperliquid info-API answers into a validated `ValidatorTable`.

Every rejection carries a bounded `reason` (a metric label) and a detail naming the row
and field, never the offending value: values are attacker-chosen and may be huge.

msgspec decodes an answer straight into the structs below, checking each field's type as it
parses (integers exact at any size); what a type cannot say (the address format, the stake's
bounds, the uptime decimals) is checked on the structs, a column at a time for a large set,
and the table's columns are built from the structs' fields, never one object per validator.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from types import MappingProxyType
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt

from quorumwatch.chains.base import (
    JsonShape,
    ShapeError,
    check_set,
    decode_json,
    received_text,
)
from quorumwatch.columns import NO_TIME, ValidatorTable, stake_column, status_codes
from quorumwatch.models import NO_UPTIME, DataError

# Total HYPE supply is 1e9 (1e17 base units); anything near 2**128 is corrupt data.
MAX_STAKE = 2**128 - 1
UPTIME_WINDOWS = {"day": "1d", "week": "7d", "month": "30d"}
# Bound of exchangeStatus.time and unjailableAfter (year ~2262): a larger value is corrupt,
# would overflow a float, and does not fit the table's int64 column.
MAX_TIME_MS = 2**63 - 1

REJECTION_REASONS = (
    "malformed_json",
    "not_a_list",
    "empty_set",
    "missing_field",
    "wrong_type",
    "invalid_address",
    "duplicate_validator",
    "negative_stake",
    "absurd_stake",
    "zero_stake",
    "too_large",
)

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SLOT = 43  # an address and the newline after it, in _lowered_addresses
_LOWER_HEX = b"0123456789abcdef"
_HEX = b"0123456789abcdefABCDEF"

_TimeMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]

# gc=False: a decoded answer holds no reference cycles, so the collector need never scan it.


class _Sample(msgspec.Struct, gc=False, rename="camel"):
    """One period's statistics: only its uptime is read, and only for a known period."""

    uptime_fraction: Any = None


class _Row(msgspec.Struct, gc=False, rename="camel"):
    """One `validatorSummaries` row, typed; the fields not named here are skipped."""

    validator: str
    stake: int
    unjailable_after: _TimeMs | None  # required, but may be null
    name: str
    is_active: bool
    is_jailed: bool
    signer: str
    stats: list[tuple[str, _Sample]] | None = None

    def check(self) -> None:
        """The checks a type cannot make, in their order; DataError details start at a field."""
        _check_address(self.validator, "validator")
        if self.stake < 0:
            raise DataError("negative_stake", "stake is negative")
        if self.stake > MAX_STAKE:
            raise DataError("absurd_stake", "stake exceeds 2**128")
        _check_address(self.signer, "signer")
        self.uptime()

    def uptime(self) -> Mapping[str, float]:
        """Uptime ratio per window, looked up by period name, never by position."""
        if not self.stats:
            return NO_UPTIME
        uptime: dict[str, float] = {}
        for period, sample in self.stats:
            window = UPTIME_WINDOWS.get(period)
            if window is not None:  # unknown periods are new API data, not an error
                uptime[window] = _ratio(sample.uptime_fraction, f"stats.{period}")
        return uptime


class _CheckedRow(_Row, gc=False):
    """A row that checks itself as it is decoded: for an answer the fast shape refuses, so
    that the fault reported is the first in row order.

    Only these rows can hold a lone surrogate ("\\ud800"): msgspec refuses one, and such an
    answer is decoded by json.loads, then converted to these rows.
    """

    def __post_init__(self) -> None:
        self.check()
        self.name = received_text(self.name)


class _ExchangeStatus(msgspec.Struct, gc=False):
    time: _TimeMs


_ROWS: JsonShape[list[_Row]] = JsonShape(list[_Row], checked=list[_CheckedRow])
_EXCHANGE_STATUS: JsonShape[_ExchangeStatus] = JsonShape(_ExchangeStatus)


def parse_exchange_status(body: bytes) -> float:
    """The server's clock, in seconds since the epoch, from an `exchangeStatus` answer."""
    try:
        status = decode_json(body, _EXCHANGE_STATUS)
    except ShapeError as fault:
        if not fault.path:
            raise DataError("wrong_type", "exchangeStatus: expected an object") from None
        if fault.kind in ("missing", "null"):
            raise DataError("missing_field", "exchangeStatus.time") from None
        raise DataError(
            "wrong_type", "exchangeStatus.time: expected a non-negative integer"
        ) from None
    seconds: float = status.time / 1000  # int / int: correctly rounded
    return seconds


def parse_validator_summaries(body: bytes) -> ValidatorTable:
    """The set of a `validatorSummaries` answer; raises DataError on anything off."""
    try:
        rows = decode_json(body, _ROWS)
    except ShapeError as fault:
        raise _rejection(fault) from None
    if not rows:
        raise DataError("empty_set", "validatorSummaries: no validators")
    return _table(rows)


def _table(rows: list[_Row]) -> ValidatorTable:
    """The table of decoded rows, a column per field; DataError for the first faulty row."""
    stakes = list(map(_STAKE, rows))
    addresses = _lowered_addresses(list(map(_VALIDATOR, rows)))
    uptime = _uptime_columns(rows)
    if (
        addresses is None
        or _lowered_addresses(list(map(_SIGNER, rows))) is None
        or uptime is None
        or min(stakes) < 0
        or max(stakes) > MAX_STAKE
    ):
        _check_each(rows)  # raises the first fault, in row order
        raise AssertionError("a fault was seen but not found")
    unjailable = (NO_TIME if at is None else at for at in map(_UNJAILABLE_AFTER, rows))
    table = ValidatorTable(
        addresses=addresses,
        names=list(map(_NAME, rows)),
        stakes=stake_column(stakes),
        status=status_codes(list(map(_IS_ACTIVE, rows)), list(map(_IS_JAILED, rows))),
        unjailable_after_ms=np.fromiter(unjailable, dtype=np.int64, count=len(rows)),
        uptime_ratio=uptime,
    )
    check_set(table, lambda row: f"[{row}].validator")
    return table


_STAKE = attrgetter("stake")
_VALIDATOR = attrgetter("validator")
_SIGNER = attrgetter("signer")
_NAME = attrgetter("name")
_IS_ACTIVE = attrgetter("is_active")
_IS_JAILED = attrgetter("is_jailed")
_UNJAILABLE_AFTER = attrgetter("unjailable_after")
_STATS = attrgetter("stats")


def _uptime_columns(rows: list[_Row]) -> Mapping[str, npt.NDArray[np.float64]] | None:
    """Each window's uptime ratios (NaN where a row has none); None if a row's are faulty."""
    columns: dict[str, npt.NDArray[np.float64]] = {}
    try:
        for index in itertools.compress(range(len(rows)), map(_STATS, rows)):
            for window, ratio in rows[index].uptime().items():
                column = columns.get(window)
                if column is None:
                    column = columns[window] = np.full(len(rows), math.nan)
                column[index] = ratio
    except DataError:
        return None
    return MappingProxyType(columns)


def _rejection(fault: ShapeError) -> DataError:
    """The DataError for a validatorSummaries answer that is not an array of rows."""
    path = fault.path
    if not path:
        return DataError("not_a_list", "validatorSummaries: expected an array")
    where = f"[{path[0]}]"
    if fault.cause is not None:
        return DataError(fault.cause.reason, f"{where}.{fault.cause.detail}")
    if len(path) == 1:
        return DataError("wrong_type", f"{where}: expected an object")
    if fault.kind in ("missing", "null") and len(path) == 2:
        return DataError("missing_field", f"{where}.{path[1]}")
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path[1:])
    return DataError("wrong_type", f"{where}{field}: {fault.expected}")


def _check_each(rows: list[_Row]) -> None:
    for index, row in enumerate(rows):
        try:
            row.check()
        except DataError as exc:
            raise DataError(exc.reason, f"[{index}].{exc.detail}") from None


def _check_address(value: str, field: str) -> None:
    if not _ADDRESS.fullmatch(value):
        raise DataError("invalid_address", f"{field}: expected 0x and 40 hex digits")


def _lowered_addresses(values: list[str]) -> list[str] | None:
    """`values` lower-cased if every one is 0x and 40 hex digits, else None.

    The pattern is checked on all of them at once: joined, each fills a 43-byte slot whose
    "0", "x" and newline stand at their offsets, and deleting the hex digits leaves only the
    x and the newline of each slot. (A newline within a value would leave one too many.)
    Lower-case digits are tried first: then the values are returned as they are.
    """
    count = len(values)
    joined = "\n".join(values) + "\n"
    if len(joined) != _SLOT * count or not joined.isascii():
        return None
    data = joined.encode()
    if (
        data[0::_SLOT] != b"0" * count
        or data[1::_SLOT] != b"x" * count
        or data[_SLOT - 1 :: _SLOT] != b"\n" * count
    ):
        return None
    rest = b"x\n" * count
    if data.translate(None, _LOWER_HEX) == rest:
        return values
    if data.translate(None, _HEX) == rest:
        return [value.lower() for value in values]
    return None


def _ratio(value: Any, where: str) -> float:
    if not isinstance(value, str):
        raise DataError("wrong_type", f"{where}.uptimeFraction: expected a decimal string")
    try:
        ratio = Decimal(value)
    except InvalidOperation:
        raise DataError("wrong_type", f"{where}.uptimeFraction: not a decimal") from None
    if not ratio.is_finite() or not 0 <= ratio <= 1:
        raise DataError("wrong_type", f"{where}.uptimeFraction: outside 0..1")
    return float(ratio)
