"""Strict decoding of Cosmos SDK LCD and CometBFT RPC answers.

Every rejection carries a bounded `reason` (a metric label) and a detail naming the
document and field, never the offending value: values are attacker-chosen.
Numbers arrive as decimal strings; they are parsed exactly, as ints or Decimals.

msgspec decodes each answer into the structs below, checking every field's type as it parses;
each struct checks what a type cannot say (decimal strings, bech32, keys, times) itself, in
`__post_init__`, so the first fault met in the document is the one reported.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

from quorumwatch.chains.base import JsonShape, ShapeError, decode_json, received_text
from quorumwatch.chains.cosmos import bech32
from quorumwatch.models import DataError

T = TypeVar("T")

# 2**256 base units is far beyond any supply, 18-decimal denoms included.
MAX_AMOUNT = 2**256
MAX_HEIGHT = 2**63 - 1
# Beyond these a stake is corrupt, never real: CometBFT caps the total voting power at
# MaxInt64 / 8, and 2**128 base units exceed any supply (as for every other kind).
MAX_VOTING_POWER = (2**63 - 1) // 8
MAX_STAKE_TOKENS = 2**128
MAX_NEXT_KEY_CHARS = 1024

REJECTION_REASONS = (
    "malformed_json",
    "rpc_error",
    "wrong_type",
    "missing_field",
    "invalid_number",
    "invalid_key",
    "unknown_key_type",
    "invalid_address",
    "duplicate_validator",
    "invalid_params",
    "wrong_chain",
    "catching_up",
    "stale_block",
    "future_block",
    "incomplete_set",
    "pagination_loop",
    "unmatched_validator",
    "pool_mismatch",
    "empty_set",
    "absurd_stake",
)

# Consensus key types by their LCD `@type` and their CometBFT RPC `type`.
LCD_KEY_TYPES = {
    "/cosmos.crypto.ed25519.PubKey": "ed25519",
    "/cosmos.crypto.secp256k1.PubKey": "secp256k1",
}
RPC_KEY_TYPES = {
    "tendermint/PubKeyEd25519": "ed25519",
    "tendermint/PubKeySecp256k1": "secp256k1",
}
KEY_LENGTHS = {"ed25519": 32, "secp256k1": 33}
BOND_STATUSES = ("BOND_STATUS_BONDED", "BOND_STATUS_UNBONDING", "BOND_STATUS_UNBONDED")

_UINT = re.compile(r"[0-9]{1,80}")
_DEC = re.compile(r"[0-9]{1,40}(\.[0-9]{1,18})?")
_HEX20 = re.compile(r"[0-9A-F]{40}")
# [0-9], not \d: \d also matches non-ASCII digits ("١٢"), which float() would then accept.
_TIMESTAMP = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]{1,9})?Z")
# A page key is echoed into the next request's URL: printable ASCII only, as base64 is.
_NEXT_KEY = re.compile(rf"[!-~]{{1,{MAX_NEXT_KEY_CHARS}}}")
# JSON may escape a lone UTF-16 surrogate ("\\ud800"); no UTF-8 store or sink can encode one.


@dataclass(frozen=True, slots=True)
class NodeStatus:
    network: str
    height: int
    latest_block_time: float  # seconds since the epoch
    catching_up: bool


@dataclass(frozen=True, slots=True)
class ConsensusKey:
    type: str  # "ed25519" or "secp256k1"
    key: bytes

    def address(self) -> bytes:
        """The 20-byte consensus address; raises DataError when it cannot be derived."""
        derived = bech32.consensus_address(self.type, self.key)
        if derived is None:
            raise DataError("unknown_key_type", f"{self.type}: no hash available")
        return derived


@dataclass(frozen=True, slots=True)
class RpcValidator:
    address: str  # upper-case hex of the consensus address
    key: ConsensusKey
    voting_power: int


@dataclass(frozen=True, slots=True)
class RpcPage:
    block_height: int
    validators: tuple[RpcValidator, ...]
    count: int
    total: int


@dataclass(frozen=True, slots=True)
class LcdValidator:
    operator_address: str
    key: ConsensusKey
    jailed: bool
    status: str
    tokens: int
    moniker: str
    identity: str


@dataclass(frozen=True, slots=True)
class SigningInfo:
    address: str  # valcons bech32
    missed_blocks: int
    tombstoned: bool


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of an LCD list: its items and the raw `next_key` (None on the last page)."""

    items: tuple[T, ...]
    next_key: str | None
    total: int | None


@dataclass(frozen=True, slots=True)
class SlashingParams:
    signed_blocks_window: int
    min_signed_per_window: Decimal

    @property
    def max_missed(self) -> int:
        """Missed blocks a validator may have in the window; one more gets it jailed."""
        window = self.signed_blocks_window
        min_signed = self.min_signed_per_window * window
        return window - int(min_signed.to_integral_value(rounding="ROUND_CEILING"))


# --- the answers' shapes ----------------------------------------------------------------------
# gc=False: a decoded answer holds no reference cycles, so the collector need never scan it.

R = TypeVar("R")


class _SelfChecked(msgspec.Struct, gc=False):
    """A struct that checks itself as it is decoded: `checked` raises DataError (its detail
    starting at one of the struct's fields) or gives the value the struct stands for."""

    def __post_init__(self) -> None:
        self.checked()

    def checked(self) -> object:
        raise NotImplementedError


class _RpcResponse(msgspec.Struct, Generic[R], gc=False):
    """A CometBFT JSON-RPC response: its error (any non-null one fails it) and result."""

    error: Any = None
    result: R | None = None


class _NodeInfo(msgspec.Struct, gc=False):
    network: str


class _SyncInfo(_SelfChecked, gc=False):
    latest_block_height: str
    latest_block_time: str
    catching_up: bool

    def checked(self) -> tuple[int, float]:
        """The latest block's height and time."""
        return (
            _uint(self.latest_block_height, "latest_block_height", MAX_HEIGHT),
            _timestamp(self.latest_block_time, "latest_block_time"),
        )


class _Status(msgspec.Struct, gc=False):
    node_info: _NodeInfo
    sync_info: _SyncInfo


class _RpcPubKey(msgspec.Struct, gc=False):
    type: str
    value: str


class _RpcRow(_SelfChecked, gc=False):
    address: str
    pub_key: _RpcPubKey
    voting_power: str

    def checked(self) -> RpcValidator:
        if not _HEX20.fullmatch(self.address):
            raise DataError("invalid_address", "address: expected 40 upper-case hex")
        key_type = RPC_KEY_TYPES.get(self.pub_key.type)
        if key_type is None:
            raise DataError("unknown_key_type", "pub_key.type")
        key = _key(self.pub_key.value, key_type, "pub_key")
        if key.address().hex().upper() != self.address:
            raise DataError("invalid_address", "address: not the key's address")
        power = _uint(self.voting_power, "voting_power")
        if power == 0:
            raise DataError("invalid_number", "voting_power: zero in the active set")
        if power > MAX_VOTING_POWER:
            raise DataError("absurd_stake", "voting_power: beyond CometBFT's maximum")
        return RpcValidator(self.address, key, power)


class _RpcValidators(_SelfChecked, gc=False):
    block_height: str
    validators: list[_RpcRow]
    count: str
    total: str

    def checked(self) -> tuple[int, int, int]:
        """The count (which must be the rows'), the block height and the total."""
        count = _uint(self.count, "count", MAX_HEIGHT)
        if count != len(self.validators):
            raise DataError("incomplete_set", "count: differs from the rows")
        block_height = _uint(self.block_height, "block_height", MAX_HEIGHT)
        return count, block_height, _uint(self.total, "total", MAX_HEIGHT)


class _LcdPubKey(msgspec.Struct, gc=False, rename={"type_url": "@type"}):
    type_url: str
    key: str


class _Description(msgspec.Struct, gc=False):
    moniker: str | None = ""  # null is refused by the check, absent is ""
    identity: str | None = ""


class _LcdRow(_SelfChecked, gc=False):
    operator_address: str
    consensus_pubkey: _LcdPubKey
    status: str
    jailed: bool
    tokens: str
    description: _Description | None = None

    def checked(self) -> LcdValidator:
        try:
            hrp, data = bech32.decode(self.operator_address)
        except bech32.Bech32Error:
            raise DataError("invalid_address", "operator_address: not bech32") from None
        if not hrp.endswith("valoper") or len(data) not in (20, 32):
            raise DataError("invalid_address", "operator_address: not a valoper address")
        key_type = LCD_KEY_TYPES.get(self.consensus_pubkey.type_url)
        if key_type is None:
            raise DataError("unknown_key_type", "consensus_pubkey.@type")
        key = _key(self.consensus_pubkey.key, key_type, "pubkey")
        if self.status not in BOND_STATUSES:
            raise DataError("wrong_type", "status: unknown bond status")
        description = self.description or _Description()
        if description.moniker is None or description.identity is None:
            raise DataError("wrong_type", "description: expected strings")
        tokens = _uint(self.tokens, "tokens")
        if tokens > MAX_STAKE_TOKENS:
            raise DataError("absurd_stake", "tokens: exceeds 2**128")
        return LcdValidator(
            operator_address=self.operator_address,
            key=key,
            jailed=self.jailed,
            status=self.status,
            tokens=tokens,
            moniker=received_text(description.moniker),
            identity=received_text(description.identity),
        )


class _Pagination(_SelfChecked, gc=False):
    next_key: str | None = None
    total: str | None = None

    def checked(self) -> tuple[str | None, int | None]:
        """The key of the next page (None on the last) and the total, if given."""
        if self.next_key and not _NEXT_KEY.fullmatch(self.next_key):
            raise DataError("wrong_type", "next_key: expected short printable ASCII")
        total = None if self.total is None else _uint(self.total, "total", MAX_HEIGHT)
        return self.next_key or None, total


class _LcdValidators(msgspec.Struct, gc=False):
    validators: list[_LcdRow]
    pagination: _Pagination


class _SigningInfoRow(_SelfChecked, gc=False):
    address: str
    missed_blocks_counter: str
    tombstoned: bool

    def checked(self) -> SigningInfo:
        try:
            hrp, _ = bech32.decode(self.address)
        except bech32.Bech32Error:
            raise DataError("invalid_address", "address: not bech32") from None
        if not hrp.endswith("valcons"):
            raise DataError("invalid_address", "address: not a valcons address")
        missed = _uint(self.missed_blocks_counter, "missed_blocks_counter", MAX_HEIGHT)
        return SigningInfo(self.address, missed, self.tombstoned)


class _SigningInfos(msgspec.Struct, gc=False):
    info: list[_SigningInfoRow]
    pagination: _Pagination


class _BondedTokens(_SelfChecked, gc=False):
    bonded_tokens: str

    def checked(self) -> int:
        return _uint(self.bonded_tokens, "bonded_tokens")


class _Pool(msgspec.Struct, gc=False):
    pool: _BondedTokens


class _SlashingParams(_SelfChecked, gc=False):
    signed_blocks_window: str
    min_signed_per_window: str

    def checked(self) -> SlashingParams:
        window = _uint(self.signed_blocks_window, "signed_blocks_window", MAX_HEIGHT)
        if not _DEC.fullmatch(self.min_signed_per_window):
            raise DataError("invalid_number", "min_signed_per_window: expected a decimal string")
        return SlashingParams(window, Decimal(self.min_signed_per_window))


class _Params(msgspec.Struct, gc=False):
    params: _SlashingParams


_STATUS: JsonShape[_RpcResponse[_Status]] = JsonShape(_RpcResponse[_Status])
_RPC_VALIDATORS: JsonShape[_RpcResponse[_RpcValidators]] = JsonShape(_RpcResponse[_RpcValidators])
_LCD_VALIDATORS: JsonShape[_LcdValidators] = JsonShape(_LcdValidators)
_SIGNING_INFOS: JsonShape[_SigningInfos] = JsonShape(_SigningInfos)
_POOL: JsonShape[_Pool] = JsonShape(_Pool)
_PARAMS: JsonShape[_Params] = JsonShape(_Params)


# --- the parsers -------------------------------------------------------------------------------


def parse_status(body: bytes) -> NodeStatus:
    """CometBFT `/status`: network (chain-id), latest height and time, catching_up."""
    status = _rpc_result(body, _STATUS, "status")
    height, latest_block_time = status.sync_info.checked()
    return NodeStatus(
        network=status.node_info.network,
        height=height,
        latest_block_time=latest_block_time,
        catching_up=status.sync_info.catching_up,
    )


def parse_rpc_validators(body: bytes) -> RpcPage:
    """One page of CometBFT `/validators`: the consensus set with voting power."""
    result = _rpc_result(body, _RPC_VALIDATORS, "validators")
    count, block_height, total = result.checked()
    validators = tuple(row.checked() for row in result.validators)
    return RpcPage(block_height, validators, count, total)


def parse_lcd_validators(body: bytes) -> Page[LcdValidator]:
    """One page of `/cosmos/staking/v1beta1/validators`."""
    document = _lcd_document(body, _LCD_VALIDATORS, "validators", "validators")
    items = tuple(row.checked() for row in document.validators)
    return Page(items, *document.pagination.checked())


def parse_pool(body: bytes) -> int:
    """`bonded_tokens` from `/cosmos/staking/v1beta1/pool`."""
    return _lcd_document(body, _POOL, "pool", "pool").pool.checked()


def parse_signing_infos(body: bytes) -> Page[SigningInfo]:
    """One page of `/cosmos/slashing/v1beta1/signing_infos`."""
    document = _lcd_document(body, _SIGNING_INFOS, "signing_infos", "info")
    items = tuple(row.checked() for row in document.info)
    return Page(items, *document.pagination.checked())


def parse_slashing_params(body: bytes) -> SlashingParams:
    """`signed_blocks_window` and `min_signed_per_window` from `/cosmos/slashing/v1beta1/params`."""
    parsed = _lcd_document(body, _PARAMS, "slashing_params", "params").params.checked()
    if (
        parsed.signed_blocks_window <= 0
        or parsed.min_signed_per_window > 1
        or parsed.max_missed <= 0
    ):
        raise DataError("invalid_params", "slashing_params: no miss can be tolerated")
    return parsed


def _rpc_result(body: bytes, shape: JsonShape[_RpcResponse[R]], what: str) -> R:
    """The result of a CometBFT answer; an error object comes before any fault in the result."""
    try:
        response = decode_json(body, shape)
    except ShapeError as fault:
        if not isinstance(fault.document, dict):
            raise DataError("wrong_type", f"{what}: expected an object") from None
        _rpc_envelope(_RpcResponse(fault.document.get("error"), fault.document.get("result")), what)
        raise _rejection(fault, what, "result") from None
    return _rpc_envelope(response, what)


def _rpc_envelope(response: _RpcResponse[R], what: str) -> R:
    if response.error is not None:
        raise DataError("rpc_error", f"{what}: the node answered a JSON-RPC error")
    if response.result is None:
        raise DataError("missing_field", f"{what}.result")
    return response.result


def _lcd_document(body: bytes, shape: JsonShape[T], what: str, container: str) -> T:
    try:
        return decode_json(body, shape)
    except ShapeError as fault:
        raise _rejection(fault, what, container) from None


def _rejection(fault: ShapeError, what: str, container: str) -> DataError:
    """The DataError for a fault at `fault.path`, named from `what`: the document's own
    `container` member (the RPC result, the LCD list) is named by `what` alone."""
    path = fault.path
    if path[:1] == (container,) and len(path) > 1:
        path = path[1:]
    where = what + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    if fault.cause is not None:
        return DataError(fault.cause.reason, f"{where}.{fault.cause.detail}")
    if not fault.path:
        return DataError("wrong_type", f"{what}: expected an object")
    if fault.kind in ("missing", "null") and isinstance(path[-1], str):  # a field, not a row
        return DataError("missing_field", where)
    return DataError("wrong_type", f"{where}: {fault.expected}")


# --- the checks a type cannot make ------------------------------------------------------------


def _uint(value: str, field: str, bound: int = MAX_AMOUNT) -> int:
    # The length check comes first: int() of thousands of digits is slow, then refused.
    if not _UINT.fullmatch(value) or len(value.lstrip("0")) > len(str(bound)) or int(value) > bound:
        raise DataError("invalid_number", f"{field}: expected a bounded integer string")
    return int(value)


def _timestamp(value: str, field: str) -> float:
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise DataError("wrong_type", f"{field}: expected an RFC 3339 UTC time")
    try:
        whole = datetime.fromisoformat(match[1] + "+00:00").timestamp()
    except ValueError:
        raise DataError("wrong_type", f"{field}: not a valid time") from None
    return whole + float(match[2] or 0.0)


def _key(value: str, key_type: str, field: str) -> ConsensusKey:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DataError("invalid_key", f"{field}: expected base64") from None
    if len(key) != KEY_LENGTHS[key_type]:
        raise DataError("invalid_key", f"{field}: wrong length for {key_type}")
    return ConsensusKey(key_type, key)
