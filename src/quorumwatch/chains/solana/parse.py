"""Strict decoding of Solana JSON-RPC answers (`getVoteAccounts`, `getEpochInfo`, `getBlockTime`).

Every rejection carries a bounded `reason` (a metric label) and a detail naming the list,
row and field, never the offending value: values are attacker-chosen and may be huge.

A vote account becomes a `Validator` with `address` = votePubkey, `name` and `signer` =
nodePubkey (the identity), `stake` = activatedStake in lamports (exact), in the consensus
set when it has stake, and `delinquent` when listed under `delinquent`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from quorumwatch.chains.base import check_set, decode_json
from quorumwatch.models import DataError, Validator

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

# Base58 (Bitcoin alphabet: no 0, O, I, l); a 32-byte key encodes to 32-44 characters.
_PUBKEY = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}")
_LISTS = ("current", "delinquent")
_EPOCH_FIELDS = ("absoluteSlot", "blockHeight", "epoch", "slotIndex", "slotsInEpoch")
# getBlockTime errors that say "no time for this slot", not "broken node": block not
# available, slot skipped, slot skipped or missing in long-term storage.
_NO_BLOCK_TIME_CODES = frozenset({-32004, -32007, -32009})


@dataclass(frozen=True, slots=True)
class EpochInfo:
    epoch: int
    absolute_slot: int


@dataclass(frozen=True, slots=True)
class BlockTime:
    """A slot's estimated production time (Unix seconds); None when the node has none."""

    seconds: int | None


def rpc_result(body: bytes, method: str) -> Any:
    """The `result` of a JSON-RPC 2.0 response; DataError("rpc_error") for an error object."""
    document = decode_json(body)
    if not isinstance(document, dict):
        raise DataError("wrong_type", f"{method}: expected a JSON-RPC object")
    if "error" in document:
        raise DataError("rpc_error", f"{method}: the node answered with a JSON-RPC error")
    if document.get("jsonrpc") != "2.0":
        raise DataError("wrong_type", f'{method}.jsonrpc: expected "2.0"')
    if document.get("result") is None:
        raise DataError("missing_field", f"{method}.result")
    return document["result"]


def parse_vote_accounts(body: bytes) -> tuple[Validator, ...]:
    """Validators from a `getVoteAccounts` answer (current, then delinquent); raises DataError."""
    result = rpc_result(body, "getVoteAccounts")
    if not isinstance(result, dict):
        raise DataError("wrong_type", "getVoteAccounts.result: expected an object")
    validators: list[Validator] = []
    id_paths: list[str] = []
    for list_name in _LISTS:
        rows = result.get(list_name)
        if rows is None:
            raise DataError("missing_field", f"result.{list_name}")
        if not isinstance(rows, list):
            raise DataError("wrong_type", f"result.{list_name}: expected an array")
        for index, row in enumerate(rows):
            where = f"{list_name}[{index}]"
            validators.append(_parse_account(row, where, delinquent=list_name == "delinquent"))
            id_paths.append(f"{where}.votePubkey")
    if not validators:
        raise DataError("empty_set", "getVoteAccounts: no vote accounts")
    check_set(validators, id_paths)
    return tuple(validators)


def parse_epoch_info(body: bytes) -> EpochInfo:
    """The current epoch and slot from a `getEpochInfo` answer, after checking every field."""
    result = rpc_result(body, "getEpochInfo")
    if not isinstance(result, dict):
        raise DataError("wrong_type", "getEpochInfo.result: expected an object")
    values = {name: _u64(result, name, "getEpochInfo") for name in _EPOCH_FIELDS}
    count = result.get("transactionCount")  # null on nodes without transaction history
    if count is not None and not _is_u64(count):
        raise DataError("wrong_type", "getEpochInfo.transactionCount: expected a u64 or null")
    if values["slotsInEpoch"] == 0 or values["slotIndex"] >= values["slotsInEpoch"]:
        raise DataError("wrong_type", "getEpochInfo.slotIndex: outside the epoch")
    if values["slotIndex"] > values["absoluteSlot"]:
        raise DataError("wrong_type", "getEpochInfo.slotIndex: beyond absoluteSlot")
    return EpochInfo(values["epoch"], values["absoluteSlot"])


def parse_block_time(body: bytes) -> BlockTime:
    """A `getBlockTime` answer: Unix seconds, or none for a skipped or unavailable slot."""
    document = decode_json(body)
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        if document["error"].get("code") in _NO_BLOCK_TIME_CODES:
            return BlockTime(None)
        raise DataError("rpc_error", "getBlockTime: the node answered with a JSON-RPC error")
    if not isinstance(document, dict) or document.get("jsonrpc") != "2.0":
        raise DataError("wrong_type", "getBlockTime: expected a JSON-RPC 2.0 object")
    result = document.get("result")
    if result is None:
        return BlockTime(None)
    if not _is_int(result) or not 0 <= result <= MAX_UNIX_SECONDS:
        raise DataError("wrong_type", "getBlockTime.result: expected Unix seconds or null")
    return BlockTime(result)


def _parse_account(row: Any, where: str, *, delinquent: bool) -> Validator:
    if not isinstance(row, dict):
        raise DataError("wrong_type", f"{where}: expected an object")
    vote = _pubkey(row, "votePubkey", where)
    identity = _pubkey(row, "nodePubkey", where)
    stake = _required(row, "activatedStake", where)
    if not _is_int(stake):
        raise DataError("wrong_type", f"{where}.activatedStake: expected an integer")
    if stake < 0:
        raise DataError("negative_stake", f"{where}.activatedStake is negative")
    if stake > MAX_U64:
        raise DataError("absurd_stake", f"{where}.activatedStake exceeds a u64")
    commission = _required(row, "commission", where)
    if not _is_int(commission) or not 0 <= commission <= 100:
        raise DataError("wrong_type", f"{where}.commission: expected an integer 0-100")
    if type(_required(row, "epochVoteAccount", where)) is not bool:
        raise DataError("wrong_type", f"{where}.epochVoteAccount: expected a boolean")
    _u64(row, "lastVote", where)
    if row.get("rootSlot") is not None and not _is_u64(row["rootSlot"]):
        raise DataError("wrong_type", f"{where}.rootSlot: expected a u64 or null")
    _epoch_credits(row.get("epochCredits"), where)
    return Validator(
        address=vote,
        name=identity,
        stake=stake,
        in_consensus_set=stake > 0,
        jailed=False,
        signer=identity,
        delinquent=delinquent,
    )


def _epoch_credits(credits: Any, where: str) -> None:
    """Optional `[[epoch, credits, previousCredits], ...]`; checked, not used."""
    if credits is None:
        return
    if not isinstance(credits, list) or not all(
        isinstance(entry, list) and len(entry) == 3 and all(map(_is_u64, entry))
        for entry in credits
    ):
        raise DataError("wrong_type", f"{where}.epochCredits: expected [epoch, u64, u64] triples")


def _required(row: dict[str, Any], field: str, where: str) -> Any:
    if row.get(field) is None:
        raise DataError("missing_field", f"{where}.{field}")
    return row[field]


def _pubkey(row: dict[str, Any], field: str, where: str) -> str:
    value = _required(row, field, where)
    if not isinstance(value, str):
        raise DataError("wrong_type", f"{where}.{field}: expected a string")
    if not _PUBKEY.fullmatch(value):
        raise DataError("invalid_address", f"{where}.{field}: expected a base58 public key")
    return value


def _u64(row: dict[str, Any], field: str, where: str) -> int:
    value = _required(row, field, where)
    if not _is_u64(value):
        raise DataError("wrong_type", f"{where}.{field}: expected a u64")
    result: int = value
    return result


def _is_int(value: Any) -> bool:
    return type(value) is int  # exact: a bool is an int, and 1.0 is not one


def _is_u64(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= MAX_U64
