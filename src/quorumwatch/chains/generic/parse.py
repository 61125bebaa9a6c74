"""Strict decoding of a configured JSON answer into a `ValidatorTable`, for `kind = "generic"`.

The validator list and each validator's fields are located by dotted paths from the
configuration; a segment indexes an array when it is a decimal integer (`result.0.set`).
Every rejection carries a bounded `reason` and a detail naming the item and the configured
path, never the offending value: values are attacker-chosen and may be huge.

The answer is decoded untyped, into Python values (by msgspec, integers exact: see
`decode_json`), and the configured paths are walked by hand: the shape is only known at run
time, and whether a segment names an object's member or an array's index depends on what the
answer holds there, which no struct declared in advance can say.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from quorumwatch.chains.base import check_set, decode_json, received_text
from quorumwatch.columns import ValidatorTable, stake_column, status_codes
from quorumwatch.models import DataError

if TYPE_CHECKING:
    from quorumwatch.config import GenericSettings

MAX_STAKE = 2**128
MAX_ID_CHARS = 256  # an id becomes a metric label: anything longer is corrupt data
MAX_UNIX_SECONDS = 2**40  # year 36812: beyond it a timestamp is garbage, not a date
_MAX_TIME_CHARS = 64
_MAX_STAKE_DIGITS = len(str(MAX_STAKE))

REJECTION_REASONS = (
    "malformed_json",
    "not_a_list",
    "empty_set",
    "missing_field",
    "wrong_type",
    "duplicate_validator",
    "negative_stake",
    "absurd_stake",
    "zero_stake",
    "too_large",
)

_INDEX = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts "²"
_DIGITS = re.compile(r"[0-9]+")

Path = tuple[str, ...]


def split_path(path: str) -> Path:
    """The segments of a dotted path; "" is the empty path (the value itself)."""
    return tuple(path.split(".")) if path else ()


def resolve(value: Any, path: Path, where: str) -> Any:
    """The value at `path` within `value`; DataError when absent (or null) or not traversable."""
    for depth, segment in enumerate(path):
        here = ".".join(path[: depth + 1])
        if isinstance(value, dict):
            if segment not in value:
                raise DataError("missing_field", f"{where}{here}")
            value = value[segment]
        elif isinstance(value, list):
            if not _INDEX.fullmatch(segment):
                raise DataError("wrong_type", f"{where}{here}: an array, indexed by name")
            index = int(segment) if len(segment) <= 18 else len(value)
            if index >= len(value):
                raise DataError("missing_field", f"{where}{here}")
            value = value[index]
        else:
            raise DataError("wrong_type", f"{where}{here}: expected an object or array above")
        if value is None:
            raise DataError("missing_field", f"{where}{here}")
    return value


@dataclass(frozen=True, slots=True)
class GenericAnswer:
    table: ValidatorTable
    observed_at: float | None  # Unix seconds, when `time_field` is configured


def parse_generic(body: bytes, settings: GenericSettings) -> GenericAnswer:
    """The set (and the answer's time) located by `settings`; DataError on anything off."""
    document = decode_json(body)
    observed_at = None
    if settings.time_field is not None:
        observed_at = _unix_seconds(
            resolve(document, split_path(settings.time_field), ""),
            settings.time_field,
            settings.time_unit,
        )
    return GenericAnswer(_table(document, settings), observed_at)


def _table(document: Any, settings: GenericSettings) -> ValidatorTable:
    items = resolve(document, split_path(settings.list_path), "")
    if not isinstance(items, list):
        raise DataError("not_a_list", f"{settings.list_path or '(answer)'}: expected an array")
    if not items:
        raise DataError("empty_set", f"{settings.list_path or '(answer)'}: no validators")
    fields = _Fields(settings)
    addresses: list[str] = []
    names: list[str] = []
    stakes: list[int] = []
    active: list[bool] = []
    jailed: list[bool] = []
    # Item by item, each field in the order below: the fault reported is the first one met.
    for index, item in enumerate(items):
        where = f"[{index}]."
        addresses.append(_address(resolve(item, fields.id, where), f"{where}{_dotted(fields.id)}"))
        if fields.name is not None:
            names.append(_name(resolve(item, fields.name, where), f"{where}{_dotted(fields.name)}"))
        stakes.append(_stake(resolve(item, fields.stake, where), f"{where}{_dotted(fields.stake)}"))
        active.append(_flag(item, fields.active, where, default=True))
        jailed.append(_flag(item, fields.jailed, where, default=False))
    table = ValidatorTable(
        addresses=addresses,
        names=addresses if fields.name is None else names,
        stakes=stake_column(stakes),
        status=status_codes(active, jailed),
    )
    check_set(table, lambda row: f"[{row}].{settings.id_field}")
    return table


class _Fields:
    """The configured field paths, split once per answer."""

    def __init__(self, settings: GenericSettings) -> None:
        self.id = split_path(settings.id_field)
        self.name = split_path(settings.name_field) if settings.name_field else None
        self.stake = split_path(settings.stake_field)
        self.jailed = split_path(settings.jailed_field) if settings.jailed_field else None
        self.active = split_path(settings.active_field) if settings.active_field else None


def _address(value: Any, where: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_ID_CHARS:
        raise DataError("wrong_type", f"{where}: expected 1..{MAX_ID_CHARS} characters")
    if not _printable_id(value):
        raise DataError("wrong_type", f"{where}: unprintable characters")
    return value


def _name(value: Any, where: str) -> str:
    if type(value) is not str:
        raise DataError("wrong_type", f"{where}: expected a string")
    return received_text(value)


def _printable_id(address: str) -> bool:
    """An id is a metric label and a key as is: no control, format (bidi, zero-width),
    surrogate, separator or whitespace character, which would need rewriting to be shown."""
    return all(
        not char.isspace() and unicodedata.category(char)[0] not in ("C", "Z") for char in address
    )


def _dotted(path: Path) -> str:
    return ".".join(path)


def _flag(item: Any, path: Path | None, where: str, *, default: bool) -> bool:
    if path is None:
        return default
    value = resolve(item, path, where)
    if type(value) is not bool:  # exact: 1 is not a bool
        raise DataError("wrong_type", f"{where}{_dotted(path)}: expected a boolean")
    return value


def _stake(value: Any, where: str) -> int:
    """A JSON integer, or a string of ASCII digits: never a float, exponent or sign."""
    if type(value) is int:
        stake = value
    elif type(value) is str and _DIGITS.fullmatch(value):
        digits = value.lstrip("0")
        if len(digits) > _MAX_STAKE_DIGITS:  # checked before int(): no huge conversions
            raise DataError("absurd_stake", f"{where} exceeds 2**128")
        stake = int(digits or "0")
    else:
        raise DataError("wrong_type", f"{where}: expected an integer or a string of digits")
    if stake < 0:
        raise DataError("negative_stake", f"{where} is negative")
    if stake > MAX_STAKE:
        raise DataError("absurd_stake", f"{where} exceeds 2**128")
    return stake


def _unix_seconds(value: Any, where: str, unit: str) -> float:
    """Unix time as a JSON number in `unit`, or an RFC 3339 string with an offset."""
    if type(value) in (int, float):
        seconds = value / 1000 if unit == "ms" else value
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_UNIX_SECONDS:
            raise DataError("wrong_type", f"{where}: not a plausible Unix time")
        return float(seconds)
    if type(value) is str and len(value) <= _MAX_TIME_CHARS:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.timestamp()
    raise DataError("wrong_type", f"{where}: expected Unix time or an RFC 3339 time with offset")
