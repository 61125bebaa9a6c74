"""Strict decoding of Solana JSON-RPC answers (`getVoteAccounts`, `getEpochInfo`, `getBlockTime`).

Every rejection carries a bounded `reason` (a metric label) and a detail naming the list,
row and field, never the offending value: values are attacker-chosen and may be huge.

A vote account becomes a row of the `ValidatorTable`: address votePubkey, name nodePubkey
(the identity), stake activatedStake in lamports (exact), in the consensus set when it has
stake, and delinquent when listed under `delinquent`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Generic, TypeVar

import msgspec

from quorumwatch.chains.base import JsonShape, ShapeError, check_set, decode_json
from quorumwatch.columns import ValidatorTable, stake_column, status_codes
from quorumwatch.models import DataError

MAX_U64 = 2**64 - 1
MAX_UNIX_SECONDS = 2**40  # year 36812: beyond it a timestamp is garbage, not a date

REJECTION_REASONS = (
    "malformed_json",
    "rpc_error",
    "wrong_type",
    "missing_field",
    "invalid_address",
    "duplicate_validator",
    "negative_stake",
    "absurd_stake",
    "empty_set",
    "zero_stake",
    "too_large",
)

R = TypeVar("R")

# Base58 (Bitcoin alphabet: no 0, O, I, l); a 32-byte key encodes to 32-44 characters.
_PUBKEY = r"\A[1-9A-HJ-NP-Za-km-z]{32,44}\Z"
# getBlockTime errors that say "no time for this slot", not "broken node": block not
# available, slot skipped, slot skipped or missing in long-term storage.
_NO_BLOCK_TIME_CODES = frozenset({-32004, -32007, -32009})

# A u64 is an int >= 0 (msgspec checks that) and <= MAX_U64, which its bounds cannot say
# (they stop at int64): the structs check that themselves, in __post_init__.
_U64 = Annotated[int, msgspec.Meta(ge=0)]
_Pubkey = Annotated[str, msgspec.Meta(pattern=_PUBKEY)]


@dataclass(frozen=True, slots=True)
class EpochInfo:
    epoch: int
    absolute_slot: int


@dataclass(frozen=True, slots=True)
class BlockTime:
    """A slot's estimated production time (Unix seconds); None when the node has none."""

    seconds: int | None


# gc=False: a decoded answer holds no reference cycles, so the collector need never scan it.


class _Response(msgspec.Struct, Generic[R], gc=False):
    """A JSON-RPC 2.0 response; `error` is UNSET when the key is absent."""

    jsonrpc: Any = None
    error: Any = msgspec.UNSET
    result: R | None = None


class _VoteAccount(msgspec.Struct, gc=False, rename="camel"):
    vote_pubkey: _Pubkey
    node_pubkey: _Pubkey
    activated_stake: int
    commission: Annotated[int, msgspec.Meta(ge=0, le=100)]
    epoch_vote_account: bool
    last_vote: _U64
    root_slot: _U64 | None = None
    epoch_credits: list[tuple[_U64, _U64, _U64]] | None = None  # checked, not used

    def __post_init__(self) -> None:
        if self.activated_stake < 0:
            raise DataError("negative_stake", "activatedStake is negative")
        if self.activated_stake > MAX_U64:
            raise DataError("absurd_stake", "activatedStake exceeds a u64")
        if self.last_vote > MAX_U64:
            raise DataError("wrong_type", "lastVote: expected a u64")
        if self.root_slot is not None and self.root_slot > MAX_U64:
            raise DataError("wrong_type", "rootSlot: expected a u64 or null")
        if self.epoch_credits is not None and any(
            value > MAX_U64 for entry in self.epoch_credits for value in entry
        ):
            raise DataError("wrong_type", "epochCredits: expected [epoch, u64, u64] triples")


class _VoteAccounts(msgspec.Struct, gc=False):
    current: list[_VoteAccount]
    delinquent: list[_VoteAccount]


class _EpochInfo(msgspec.Struct, gc=False, rename="camel"):
    absolute_slot: _U64
    block_height: _U64
    epoch: _U64
    slot_index: _U64
    slots_in_epoch: _U64
    transaction_count: _U64 | None = None  # null on nodes without transaction history

    def __post_init__(self) -> None:
        for field in msgspec.structs.fields(self):
            value = getattr(self, field.name)
            if value is not None and value > MAX_U64:
                raise DataError("wrong_type", f"{field.encode_name}: expected a u64")
        if self.slots_in_epoch == 0 or self.slot_index >= self.slots_in_epoch:
            raise DataError("wrong_type", "slotIndex: outside the epoch")
        if self.slot_index > self.absolute_slot:
            raise DataError("wrong_type", "slotIndex: beyond absoluteSlot")


_VOTE_ACCOUNTS: JsonShape[_Response[_VoteAccounts]] = JsonShape(_Response[_VoteAccounts])
_EPOCH_INFO: JsonShape[_Response[_EpochInfo]] = JsonShape(_Response[_EpochInfo])
_BLOCK_TIME: JsonShape[_Response[int]] = JsonShape(
    _Response[Annotated[int, msgspec.Meta(ge=0, le=MAX_UNIX_SECONDS)]]
)


def parse_vote_accounts(body: bytes) -> ValidatorTable:
    """The set of a `getVoteAccounts` answer (current, then delinquent); raises DataError."""
    result = _result(body, _VOTE_ACCOUNTS, "getVoteAccounts", _vote_accounts_rejection)
    accounts = [*result.current, *result.delinquent]
    if not accounts:
        raise DataError("empty_set", "getVoteAccounts: no vote accounts")
    current = len(result.current)
    stakes = list(map(_ACTIVATED_STAKE, accounts))
    table = ValidatorTable(
        addresses=list(map(_VOTE_PUBKEY, accounts)),
        names=list(map(_NODE_PUBKEY, accounts)),
        stakes=stake_column(stakes),
        status=status_codes(
            in_consensus_set=[stake > 0 for stake in stakes],
            jailed=[False] * len(accounts),
            delinquent=[False] * current + [True] * len(result.delinquent),
        ),
    )

    def id_path(row: int) -> str:
        if row < current:
            return f"current[{row}].votePubkey"
        return f"delinquent[{row - current}].votePubkey"

    check_set(table, id_path)
    return table


_VOTE_PUBKEY = attrgetter("vote_pubkey")
_NODE_PUBKEY = attrgetter("node_pubkey")
_ACTIVATED_STAKE = attrgetter("activated_stake")


def parse_epoch_info(body: bytes) -> EpochInfo:
    """The current epoch and slot from a `getEpochInfo` answer, after checking every field."""
    result = _result(body, _EPOCH_INFO, "getEpochInfo", _epoch_info_rejection)
    return EpochInfo(result.epoch, result.absolute_slot)


def parse_block_time(body: bytes) -> BlockTime:
    """A `getBlockTime` answer: Unix seconds, or none for a skipped or unavailable slot."""
    try:
        response = decode_json(body, _BLOCK_TIME)
    except ShapeError as fault:
        envelope = _loose(fault.document, "getBlockTime", "a JSON-RPC 2.0 object")
        known = _known_block_time(envelope)
        if known is not None:
            return known
        raise DataError(
            "wrong_type", "getBlockTime.result: expected Unix seconds or null"
        ) from None
    known = _known_block_time(response)
    return BlockTime(response.result) if known is None else known


def _known_block_time(response: _Response[Any]) -> BlockTime | None:
    """What the envelope says before the result: an error object (no time, for the codes that
    mean a slot without a block; else rpc_error), a wrong `jsonrpc`, or no result (no time);
    None when the result decides."""
    if isinstance(response.error, dict):
        code = response.error.get("code")
        if isinstance(code, int | float) and code in _NO_BLOCK_TIME_CODES:
            return BlockTime(None)
        raise DataError("rpc_error", "getBlockTime: the node answered with a JSON-RPC error")
    if response.jsonrpc != "2.0":
        raise DataError("wrong_type", "getBlockTime: expected a JSON-RPC 2.0 object")
    return BlockTime(None) if response.result is None else None


def _result(
    body: bytes,
    shape: JsonShape[_Response[R]],
    method: str,
    rejection: Callable[[ShapeError, str], DataError],
) -> R:
    """The checked `result` of a response in `shape`; the envelope's faults (an error object,
    a wrong `jsonrpc`, no result) come before any in the result."""
    try:
        response = decode_json(body, shape)
    except ShapeError as fault:
        _envelope_result(_loose(fault.document, method, "a JSON-RPC object"), method)
        raise rejection(fault, method) from None
    return _envelope_result(response, method)


def _envelope_result(response: _Response[R], method: str) -> R:
    if response.error is not msgspec.UNSET:
        raise DataError("rpc_error", f"{method}: the node answered with a JSON-RPC error")
    if response.jsonrpc != "2.0":
        raise DataError("wrong_type", f'{method}.jsonrpc: expected "2.0"')
    if response.result is None:
        raise DataError("missing_field", f"{method}.result")
    return response.result


def _loose(document: Any, method: str, expected: str) -> _Response[Any]:
    """The envelope of an answer whose result is not of its shape."""
    if not isinstance(document, dict):
        raise DataError("wrong_type", f"{method}: expected {expected}")
    error = document.get("error", msgspec.UNSET)
    return _Response(document.get("jsonrpc"), error, document.get("result"))


def _vote_accounts_rejection(fault: ShapeError, method: str) -> DataError:
    path = fault.path[1:]  # below "result"
    if not path:
        return DataError("wrong_type", f"{method}.result: expected an object")
    list_name = path[0]
    if len(path) == 1:
        if fault.kind in ("missing", "null"):
            return DataError("missing_field", f"result.{list_name}")
        return DataError("wrong_type", f"result.{list_name}: expected an array")
    where = f"{list_name}[{path[1]}]"
    if fault.cause is not None:
        return DataError(fault.cause.reason, f"{where}.{fault.cause.detail}")
    if len(path) == 2:
        return DataError("wrong_type", f"{where}: expected an object")
    field = _dotted(path[2:])
    if fault.kind in ("missing", "null") and len(path) == 3:
        return DataError("missing_field", f"{where}.{field}")
    if fault.kind == "pattern":
        return DataError("invalid_address", f"{where}.{field}: expected a base58 public key")
    return DataError("wrong_type", f"{where}.{field}: {fault.expected}")


def _epoch_info_rejection(fault: ShapeError, method: str) -> DataError:
    path = fault.path[1:]  # below "result"
    if not path:
        return DataError("wrong_type", f"{method}.result: expected an object")
    if fault.cause is not None:
        return DataError(fault.cause.reason, f"{method}.{fault.cause.detail}")
    field = _dotted(path)
    if fault.kind in ("missing", "null"):
        return DataError("missing_field", f"{method}.{field}")
    return DataError("wrong_type", f"{method}.{field}: {fault.expected}")


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)[1:]
