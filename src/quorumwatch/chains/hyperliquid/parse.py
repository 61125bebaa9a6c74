"""Strict decoding of Hyperliquid info-API answers into validated domain objects.

Every rejection carries a bounded `reason` (a metric label) and a detail naming the row
and field, never the offending value: values are attacker-chosen and may be huge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from quorumwatch.chains.base import check_set, decode_json, received_text
from quorumwatch.models import NO_UPTIME, DataError, Validator

# Total HYPE supply is 1e9 (1e17 base units); anything near 2**128 is corrupt data.
MAX_STAKE = 2**128 - 1
UPTIME_WINDOWS = {"day": "1d", "week": "7d", "month": "30d"}
# exchangeStatus.time bound (year ~2262): a larger value is corrupt, and would overflow a float.
MAX_TIME_MS = 2**63 - 1

V = TypeVar("V")

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


def parse_exchange_status(body: bytes) -> float:
    """The server's clock, in seconds since the epoch, from an `exchangeStatus` answer."""
    document = decode_json(body)
    if not isinstance(document, dict):
        raise DataError("wrong_type", "exchangeStatus: expected an object")
    server_ms = document.get("time")
    if server_ms is None:
        raise DataError("missing_field", "exchangeStatus.time")
    if not _is_int(server_ms) or not 0 <= server_ms <= MAX_TIME_MS:
        raise DataError("wrong_type", "exchangeStatus.time: expected a non-negative integer")
    seconds: float = server_ms / 1000  # int / int: correctly rounded
    return seconds


def parse_validator_summaries(body: bytes) -> tuple[Validator, ...]:
    """Validators from a `validatorSummaries` answer; raises DataError on anything off."""
    document = decode_json(body)
    if not isinstance(document, list):
        raise DataError("not_a_list", "validatorSummaries: expected an array")
    if not document:
        raise DataError("empty_set", "validatorSummaries: no validators")
    validators = tuple(_parse_row(index, row) for index, row in enumerate(document))
    check_set(validators, [f"[{index}].validator" for index in range(len(validators))])
    return validators


def _parse_row(index: int, row: Any) -> Validator:
    where = f"[{index}]"
    if not isinstance(row, dict):
        raise DataError("wrong_type", f"{where}: expected an object")
    address = _address(row, "validator", where)
    stake = _required(row, "stake", where)
    if not _is_int(stake):
        raise DataError("wrong_type", f"{where}.stake: expected an integer")
    if stake < 0:
        raise DataError("negative_stake", f"{where}.stake is negative")
    if stake > MAX_STAKE:
        raise DataError("absurd_stake", f"{where}.stake exceeds 2**128")
    unjailable_after = _required(row, "unjailableAfter", where, allow_null=True)
    if unjailable_after is not None and not _is_int(unjailable_after):
        raise DataError("wrong_type", f"{where}.unjailableAfter: expected an integer or null")
    return Validator(
        address=address,
        name=received_text(_typed(row, "name", str, where)),
        stake=stake,
        in_consensus_set=_typed(row, "isActive", bool, where),
        jailed=_typed(row, "isJailed", bool, where),
        signer=_address(row, "signer", where),
        unjailable_after_ms=unjailable_after,
        uptime_ratio=_uptime(row.get("stats"), where),
    )


def _required(row: dict[str, Any], field: str, where: str, *, allow_null: bool = False) -> Any:
    if field not in row or (row[field] is None and not allow_null):
        raise DataError("missing_field", f"{where}.{field}")
    return row[field]


def _typed(row: dict[str, Any], field: str, kind: type[V], where: str) -> V:
    value = _required(row, field, where)
    if type(value) is not kind:  # exact: bool is an int, and 1 is not a bool
        raise DataError("wrong_type", f"{where}.{field}: expected {kind.__name__}")
    return value


def _address(row: dict[str, Any], field: str, where: str) -> str:
    value = _typed(row, field, str, where)
    if not _ADDRESS.fullmatch(value):
        raise DataError("invalid_address", f"{where}.{field}: expected 0x and 40 hex digits")
    return value.lower()


def _is_int(value: Any) -> bool:
    return type(value) is int


def _uptime(stats: Any, where: str) -> Mapping[str, float]:
    """Uptime ratio per window from `stats`, looked up by period name, never by position."""
    if stats is None:
        return NO_UPTIME
    if not isinstance(stats, list):
        raise DataError("wrong_type", f"{where}.stats: expected an array")
    uptime: dict[str, float] = {}
    for entry in stats:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            raise DataError("wrong_type", f"{where}.stats: expected [period, {{...}}] pairs")
        period, values = entry
        if not isinstance(period, str):
            raise DataError("wrong_type", f"{where}.stats: expected a period name")
        window = UPTIME_WINDOWS.get(period)
        if window is None:
            continue  # unknown periods are new API data, not an error
        uptime[window] = _ratio(values.get("uptimeFraction"), f"{where}.stats.{period}")
    return uptime


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
