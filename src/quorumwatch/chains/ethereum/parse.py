"""Strict decoding of the beacon API's JSON answers: `/eth/v1/node/syncing`, `/eth/v1/beacon/
genesis`, `…/states/{state}/finality_checkpoints` and `…/states/{state}/validators` (GET or
POST), the last into the same `BeaconValidators` columns as the SSZ state.

Each answer is decoded once by msgspec into typed structs; the checks msgspec cannot express
run over whole columns: every uint64 is a decimal string of ASCII digits no greater than
2**64 − 1 (kept exact in uint64 arrays, as values from 2**63 on do not fit int64), every byte
string is 0x and exactly twice its length in hex digits. A rejection carries a bounded `reason`
and a detail naming the field, never the offending value: values are attacker-chosen.

The validator list has no participation flags, so its `previous_epoch_participation` is None
(see `status.classify`); its `slot` and `genesis_time` are the caller's, which asked for that
state and read the genesis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from itertools import repeat
from operator import attrgetter
from typing import Literal, TypeVar

import msgspec
import numpy as np
from numpy.typing import NDArray

from quorumwatch.chains.ethereum.ssz import SSZ_REJECTION_REASONS, BeaconValidators, read_only
from quorumwatch.models import DataError

MAX_U64 = 2**64 - 1

REJECTION_REASONS = tuple(
    dict.fromkeys(
        (
            "malformed_json",
            "wrong_type",
            "missing_field",
            "invalid_number",
            "invalid_key",
            "invalid_hex",
            "duplicate_validator",
            "empty_set",
            "too_large",
            *SSZ_REJECTION_REASONS,
        )
    )
)

_U64_DIGITS = len(str(MAX_U64))  # 20
_U64_TEXT = re.compile(r"[0-9]{1,20}")
_MAX_U64_TEXT = str(MAX_U64).encode()
_ASCII_ZERO = np.uint8(ord("0"))
_ZERO, _X = ord("0"), ord("x")
# Each byte's value as a hex digit (either case), 255 for a byte that is none.
_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
_NIBBLE[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)

T = TypeVar("T")

ValidatorStatusName = Literal[
    "pending_initialized",
    "pending_queued",
    "active_ongoing",
    "active_exiting",
    "active_slashed",
    "exited_unslashed",
    "exited_slashed",
    "withdrawal_possible",
    "withdrawal_done",
]


# gc=False: a million rows of strings hold no reference cycle, and tracking them would have
# the collector walk every one of them again and again while they are decoded.
class _Validator(msgspec.Struct, gc=False):
    pubkey: str
    withdrawal_credentials: str
    effective_balance: str
    slashed: bool
    activation_eligibility_epoch: str
    activation_epoch: str
    exit_epoch: str
    withdrawable_epoch: str


class _ValidatorRow(msgspec.Struct, gc=False):
    index: str
    balance: str
    status: ValidatorStatusName
    validator: _Validator


class _ValidatorsAnswer(msgspec.Struct):
    data: list[_ValidatorRow]
    execution_optimistic: bool | None = None
    finalized: bool | None = None


class _SyncingData(msgspec.Struct):
    head_slot: str
    sync_distance: str
    is_syncing: bool
    is_optimistic: bool
    el_offline: bool


class _SyncingAnswer(msgspec.Struct):
    data: _SyncingData


class _GenesisData(msgspec.Struct):
    genesis_time: str
    genesis_validators_root: str
    genesis_fork_version: str


class _GenesisAnswer(msgspec.Struct):
    data: _GenesisData


class _CheckpointData(msgspec.Struct):
    epoch: str
    root: str


class _FinalityData(msgspec.Struct):
    previous_justified: _CheckpointData
    current_justified: _CheckpointData
    finalized: _CheckpointData


class _FinalityAnswer(msgspec.Struct):
    data: _FinalityData
    execution_optimistic: bool | None = None


@dataclass(frozen=True, slots=True)
class Syncing:
    """`/eth/v1/node/syncing`: the node's head and whether it can be trusted yet."""

    head_slot: int
    sync_distance: int
    is_syncing: bool
    is_optimistic: bool
    el_offline: bool


@dataclass(frozen=True, slots=True)
class Genesis:
    """`/eth/v1/beacon/genesis`: which chain the node follows, and when its slot 0 began."""

    genesis_time: int
    genesis_validators_root: bytes  # 32 bytes
    genesis_fork_version: bytes  # 4 bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    epoch: int
    root: bytes  # 32 bytes


@dataclass(frozen=True, slots=True)
class FinalityCheckpoints:
    """`…/states/{state}/finality_checkpoints`."""

    previous_justified: Checkpoint
    current_justified: Checkpoint
    finalized: Checkpoint
    execution_optimistic: bool | None


def parse_syncing(body: bytes) -> Syncing:
    """A `/eth/v1/node/syncing` answer; raises DataError."""
    data = _decode(body, _SyncingAnswer, "syncing").data
    return Syncing(
        head_slot=_u64(data.head_slot, "syncing.data.head_slot"),
        sync_distance=_u64(data.sync_distance, "syncing.data.sync_distance"),
        is_syncing=data.is_syncing,
        is_optimistic=data.is_optimistic,
        el_offline=data.el_offline,
    )


def parse_genesis(body: bytes) -> Genesis:
    """A `/eth/v1/beacon/genesis` answer; raises DataError."""
    data = _decode(body, _GenesisAnswer, "genesis").data
    return Genesis(
        genesis_time=_u64(data.genesis_time, "genesis.data.genesis_time"),
        genesis_validators_root=_hex(
            data.genesis_validators_root, 32, "genesis.data.genesis_validators_root"
        ),
        genesis_fork_version=_hex(
            data.genesis_fork_version, 4, "genesis.data.genesis_fork_version"
        ),
    )


def parse_finality_checkpoints(body: bytes) -> FinalityCheckpoints:
    """A `…/finality_checkpoints` answer; raises DataError."""
    answer = _decode(body, _FinalityAnswer, "finality_checkpoints")

    def checkpoint(data: _CheckpointData, name: str) -> Checkpoint:
        where = f"finality_checkpoints.data.{name}"
        return Checkpoint(_u64(data.epoch, f"{where}.epoch"), _hex(data.root, 32, f"{where}.root"))

    return FinalityCheckpoints(
        previous_justified=checkpoint(answer.data.previous_justified, "previous_justified"),
        current_justified=checkpoint(answer.data.current_justified, "current_justified"),
        finalized=checkpoint(answer.data.finalized, "finalized"),
        execution_optimistic=answer.execution_optimistic,
    )


def parse_validators(body: bytes | bytearray, *, slot: int, genesis_time: int) -> BeaconValidators:
    """The validators of a `…/states/{state}/validators` answer as columns, in answer order.

    `slot` and `genesis_time` are the state's, known to the caller. Raises DataError:
    "malformed_json", "wrong_type" (also for an unknown status), "missing_field",
    "invalid_number", "invalid_key" (pubkey), "invalid_hex" (withdrawal credentials),
    "duplicate_validator" (an index twice) or "empty_set".
    """
    answer = _decode(body, _ValidatorsAnswer, "validators")
    rows = answer.data
    if not rows:
        raise DataError("empty_set", "validators.data: no validators")
    records = list(map(attrgetter("validator"), rows))

    def texts(name: str) -> tuple[list[str], str]:
        """Field `name` (`validator.…` for a record field) of every row, and its path."""
        record, _, field = name.rpartition(".")
        values = list(map(attrgetter(field), records if record else rows))
        return values, f"validators.data[{{}}].{name}"

    indices = _u64_column(*texts("index"))
    _check_unique(indices)
    # Checked, though not kept.
    _u64_column(*texts("validator.activation_eligibility_epoch"))
    _u64_column(*texts("validator.withdrawable_epoch"))
    return BeaconValidators(
        indices=read_only(indices),
        pubkeys=read_only(_hex_column(*texts("validator.pubkey"), 48, "invalid_key")),
        withdrawal_credentials=read_only(
            _hex_column(*texts("validator.withdrawal_credentials"), 32, "invalid_hex")
        ),
        effective_balance=read_only(_u64_column(*texts("validator.effective_balance"))),
        slashed=read_only(
            np.fromiter(map(attrgetter("slashed"), records), dtype=np.bool_, count=len(rows))
        ),
        activation_epoch=read_only(_u64_column(*texts("validator.activation_epoch"))),
        exit_epoch=read_only(_u64_column(*texts("validator.exit_epoch"))),
        balances=read_only(_u64_column(*texts("balance"))),
        previous_epoch_participation=None,
        slot=slot,
        genesis_time=genesis_time,
        execution_optimistic=answer.execution_optimistic,
        finalized=answer.finalized,
    )


def _decode(body: bytes | bytearray, kind: type[T], what: str) -> T:
    """`body` as `kind`; msgspec's complaint becomes a DataError naming the path, not the value."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), what) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise DataError("malformed_json", f"{what}: {type(exc).__name__}") from None


_MISSING = re.compile(r"Object missing required field `(\w+)`(?: - at `([$\w.\[\]]+)`)?")
_AT = re.compile(r" - at `([$\w.\[\]]+)`$")


def _invalid(message: str, what: str) -> DataError:
    # msgspec's messages may quote the value (an unknown enum member): only the path is kept,
    # and paths here hold nothing but field names and list positions.
    missing = _MISSING.fullmatch(message)
    if missing is not None:
        return DataError("missing_field", f"{what}: {missing[2] or '$'}.{missing[1]}")
    at = _AT.search(message)
    return DataError("wrong_type", f"{what}: {at[1] if at else '$'}: unexpected type or value")


def _u64(text: str, where: str) -> int:
    if not _is_u64(text):
        raise DataError("invalid_number", f"{where}: expected a decimal uint64 string")
    return int(text)


def _is_u64(text: str) -> bool:
    return _U64_TEXT.fullmatch(text) is not None and int(text) <= MAX_U64


def _u64_column(texts: list[str], where: str) -> NDArray[np.uint64]:
    """Decimal uint64 strings as a uint64 array, digit by digit over the whole column.

    `where` is a format string taking the row of the first bad value, found only on failure.
    """
    digits = _right_aligned_digits(texts)
    # Right-aligned in 20 characters, digits compare as numbers do, and parse column-wise.
    if digits is not None and not np.any(digits.view(f"S{_U64_DIGITS}") > _MAX_U64_TEXT):
        values = np.zeros(len(texts), dtype=np.uint64)
        for place in range(_U64_DIGITS):
            values = values * np.uint64(10) + (digits[:, place] - _ASCII_ZERO)
        return values
    first = next(i for i, text in enumerate(texts) if not _is_u64(text))
    raise DataError("invalid_number", f"{where.format(first)}: expected a decimal uint64 string")


def _right_aligned_digits(texts: list[str]) -> NDArray[np.uint8] | None:
    """Each text as a row of 20 ASCII digits, right-aligned and padded with "0"; None unless
    every text is 1 to 20 ASCII digits. The padded texts are joined into one byte string that
    numpy reads as a matrix: no array of Python strings is made."""
    if "" in texts:
        return None
    padded = "".join(map(str.zfill, texts, repeat(_U64_DIGITS)))
    # A text of more than 20 characters makes the whole longer; "?" is not a digit either.
    chars = padded.encode("ascii", errors="replace")
    if len(chars) != len(texts) * _U64_DIGITS:
        return None
    digits = np.frombuffer(chars, dtype=np.uint8).reshape(len(texts), _U64_DIGITS)
    if np.any(digits - _ASCII_ZERO > 9):  # a sign, which zfill keeps in front, wraps high
        return None
    return digits


@cache
def _hex_pattern(size: int) -> re.Pattern[str]:
    return re.compile(f"0x[0-9a-fA-F]{{{2 * size}}}")


def _hex(text: str, size: int, where: str) -> bytes:
    if _hex_pattern(size).fullmatch(text) is None:
        raise DataError("invalid_hex", f"{where}: expected 0x and {2 * size} hex digits")
    return bytes.fromhex(text[2:])


def _hex_column(texts: list[str], where: str, size: int, reason: str) -> NDArray[np.uint8]:
    """0x-prefixed hex strings of `size` bytes each as an (N, size) uint8 array, decoded at once.

    Each text has exactly the length, so the texts joined are an (N, 2 + 2·size) matrix of
    characters whose first two columns must be "0x" and whose other characters are hex digits.
    """
    count = len(texts)
    width = 2 + 2 * size
    if set(map(len, texts)) == {width}:
        joined = "".join(texts).encode("ascii", errors="replace")  # "?" is no hex digit
        chars = np.frombuffer(joined, dtype=np.uint8).reshape(count, width)
        nibbles = _NIBBLE[chars[:, 2:]]
        if np.all(chars[:, 0] == _ZERO) and np.all(chars[:, 1] == _X) and nibbles.max() < 16:
            raw: NDArray[np.uint8] = (nibbles[:, 0::2] << np.uint8(4)) | nibbles[:, 1::2]
            return raw
    first = next(i for i, text in enumerate(texts) if _hex_pattern(size).fullmatch(text) is None)
    raise DataError(reason, f"{where.format(first)}: expected 0x and {2 * size} hex digits")


def _check_unique(indices: NDArray[np.uint64]) -> None:
    order = np.argsort(indices, kind="stable")
    repeated = np.flatnonzero(indices[order][1:] == indices[order][:-1])
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise DataError("duplicate_validator", f"validators.data[{row}].index appears twice")
