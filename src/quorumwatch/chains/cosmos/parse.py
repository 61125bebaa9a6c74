"""Strict decoding of Cosmos SDK LCD and CometBFT RPC answers.

Every rejection carries a bounded `reason` (a metric label) and a detail naming the
document and field, never the offending value: values are attacker-chosen.
Numbers arrive as decimal strings; they are parsed exactly, as ints or Decimals.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from quorumwatch.chains.base import decode_json, received_text
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


def _rpc_result(body: bytes, what: str) -> dict[str, Any]:
    document = decode_json(body)
    if not isinstance(document, dict):
        raise DataError("wrong_type", f"{what}: expected an object")
    if document.get("error") is not None:
        raise DataError("rpc_error", f"{what}: the node answered a JSON-RPC error")
    return _object(document, "result", what)


def _lcd_document(body: bytes, what: str) -> dict[str, Any]:
    document = decode_json(body)
    if not isinstance(document, dict):
        raise DataError("wrong_type", f"{what}: expected an object")
    return document


def _field(row: dict[str, Any], field: str, where: str) -> Any:
    if field not in row or row[field] is None:
        raise DataError("missing_field", f"{where}.{field}")
    return row[field]


def _object(row: dict[str, Any], field: str, where: str) -> dict[str, Any]:
    value = _field(row, field, where)
    if not isinstance(value, dict):
        raise DataError("wrong_type", f"{where}.{field}: expected an object")
    return value


def _list(row: dict[str, Any], field: str, where: str) -> list[Any]:
    value = _field(row, field, where)
    if not isinstance(value, list):
        raise DataError("wrong_type", f"{where}.{field}: expected an array")
    return value


def _str(row: dict[str, Any], field: str, where: str) -> str:
    value = _field(row, field, where)
    if not isinstance(value, str):
        raise DataError("wrong_type", f"{where}.{field}: expected a string")
    return value


def _bool(row: dict[str, Any], field: str, where: str) -> bool:
    value = _field(row, field, where)
    if type(value) is not bool:
        raise DataError("wrong_type", f"{where}.{field}: expected a boolean")
    return value


def _uint(row: dict[str, Any], field: str, where: str, bound: int = MAX_AMOUNT) -> int:
    value = _str(row, field, where)
    # The length check comes first: int() of thousands of digits is slow, then refused.
    if not _UINT.fullmatch(value) or len(value.lstrip("0")) > len(str(bound)) or int(value) > bound:
        raise DataError("invalid_number", f"{where}.{field}: expected a bounded integer string")
    return int(value)


def _stake_tokens(row: dict[str, Any], where: str) -> int:
    tokens = _uint(row, "tokens", where)
    if tokens > MAX_STAKE_TOKENS:
        raise DataError("absurd_stake", f"{where}.tokens: exceeds 2**128")
    return tokens


def _dec(row: dict[str, Any], field: str, where: str) -> Decimal:
    value = _str(row, field, where)
    if not _DEC.fullmatch(value):
        raise DataError("invalid_number", f"{where}.{field}: expected a decimal string")
    return Decimal(value)


def _timestamp(row: dict[str, Any], field: str, where: str) -> float:
    value = _str(row, field, where)
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise DataError("wrong_type", f"{where}.{field}: expected an RFC 3339 UTC time")
    try:
        whole = datetime.fromisoformat(match[1] + "+00:00").timestamp()
    except ValueError:
        raise DataError("wrong_type", f"{where}.{field}: not a valid time") from None
    return whole + float(match[2] or 0.0)


def _key(value: str, key_type: str, where: str) -> ConsensusKey:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DataError("invalid_key", f"{where}: expected base64") from None
    if len(key) != KEY_LENGTHS[key_type]:
        raise DataError("invalid_key", f"{where}: wrong length for {key_type}")
    return ConsensusKey(key_type, key)


def _next_key(document: dict[str, Any], what: str) -> tuple[str | None, int | None]:
    pagination = _object(document, "pagination", what)
    next_key = pagination.get("next_key")
    if next_key is not None and (
        not isinstance(next_key, str) or (next_key and not _NEXT_KEY.fullmatch(next_key))
    ):
        raise DataError("wrong_type", f"{what}.pagination.next_key: expected short printable ASCII")
    total = None
    if pagination.get("total") is not None:
        total = _uint(pagination, "total", f"{what}.pagination", MAX_HEIGHT)
    return next_key or None, total


def parse_status(body: bytes) -> NodeStatus:
    """CometBFT `/status`: network (chain-id), latest height and time, catching_up."""
    result = _rpc_result(body, "status")
    node_info = _object(result, "node_info", "status")
    sync_info = _object(result, "sync_info", "status")
    return NodeStatus(
        network=_str(node_info, "network", "status.node_info"),
        height=_uint(sync_info, "latest_block_height", "status.sync_info", MAX_HEIGHT),
        latest_block_time=_timestamp(sync_info, "latest_block_time", "status.sync_info"),
        catching_up=_bool(sync_info, "catching_up", "status.sync_info"),
    )


def parse_rpc_validators(body: bytes) -> RpcPage:
    """One page of CometBFT `/validators`: the consensus set with voting power."""
    result = _rpc_result(body, "validators")
    rows = _list(result, "validators", "validators")
    validators = []
    for index, row in enumerate(rows):
        where = f"validators[{index}]"
        if not isinstance(row, dict):
            raise DataError("wrong_type", f"{where}: expected an object")
        address = _str(row, "address", where)
        if not _HEX20.fullmatch(address):
            raise DataError("invalid_address", f"{where}.address: expected 40 upper-case hex")
        pub_key = _object(row, "pub_key", where)
        key_type = RPC_KEY_TYPES.get(_str(pub_key, "type", f"{where}.pub_key"))
        if key_type is None:
            raise DataError("unknown_key_type", f"{where}.pub_key.type")
        key = _key(_str(pub_key, "value", f"{where}.pub_key"), key_type, f"{where}.pub_key")
        if key.address().hex().upper() != address:
            raise DataError("invalid_address", f"{where}.address: not the key's address")
        power = _uint(row, "voting_power", where)
        if power == 0:
            raise DataError("invalid_number", f"{where}.voting_power: zero in the active set")
        if power > MAX_VOTING_POWER:
            raise DataError("absurd_stake", f"{where}.voting_power: beyond CometBFT's maximum")
        validators.append(RpcValidator(address, key, power))
    count = _uint(result, "count", "validators", MAX_HEIGHT)
    if count != len(validators):
        raise DataError("incomplete_set", "validators.count: differs from the rows")
    return RpcPage(
        block_height=_uint(result, "block_height", "validators", MAX_HEIGHT),
        validators=tuple(validators),
        count=count,
        total=_uint(result, "total", "validators", MAX_HEIGHT),
    )


def parse_lcd_validators(body: bytes) -> Page[LcdValidator]:
    """One page of `/cosmos/staking/v1beta1/validators`."""
    document = _lcd_document(body, "validators")
    rows = _list(document, "validators", "validators")
    items = tuple(_lcd_validator(index, row) for index, row in enumerate(rows))
    next_key, total = _next_key(document, "validators")
    return Page(items, next_key, total)


def _lcd_validator(index: int, row: Any) -> LcdValidator:
    where = f"validators[{index}]"
    if not isinstance(row, dict):
        raise DataError("wrong_type", f"{where}: expected an object")
    operator = _str(row, "operator_address", where)
    try:
        hrp, data = bech32.decode(operator)
    except bech32.Bech32Error:
        raise DataError("invalid_address", f"{where}.operator_address: not bech32") from None
    if not hrp.endswith("valoper") or len(data) not in (20, 32):
        raise DataError("invalid_address", f"{where}.operator_address: not a valoper address")
    pubkey = _object(row, "consensus_pubkey", where)
    key_type = LCD_KEY_TYPES.get(_str(pubkey, "@type", f"{where}.consensus_pubkey"))
    if key_type is None:
        raise DataError("unknown_key_type", f"{where}.consensus_pubkey.@type")
    key = _key(_str(pubkey, "key", f"{where}.consensus_pubkey"), key_type, f"{where}.pubkey")
    status = _str(row, "status", where)
    if status not in BOND_STATUSES:
        raise DataError("wrong_type", f"{where}.status: unknown bond status")
    description = row.get("description")
    if description is None:
        description = {}
    elif not isinstance(description, dict):
        raise DataError("wrong_type", f"{where}.description: expected an object")
    moniker = description.get("moniker", "")
    identity = description.get("identity", "")
    if not isinstance(moniker, str) or not isinstance(identity, str):
        raise DataError("wrong_type", f"{where}.description: expected strings")
    return LcdValidator(
        operator_address=operator,
        key=key,
        jailed=_bool(row, "jailed", where),
        status=status,
        tokens=_stake_tokens(row, where),
        moniker=received_text(moniker),
        identity=received_text(identity),
    )


def parse_pool(body: bytes) -> int:
    """`bonded_tokens` from `/cosmos/staking/v1beta1/pool`."""
    pool = _object(_lcd_document(body, "pool"), "pool", "pool")
    return _uint(pool, "bonded_tokens", "pool")


def parse_signing_infos(body: bytes) -> Page[SigningInfo]:
    """One page of `/cosmos/slashing/v1beta1/signing_infos`."""
    document = _lcd_document(body, "signing_infos")
    rows = _list(document, "info", "signing_infos")
    items = []
    for index, row in enumerate(rows):
        where = f"signing_infos[{index}]"
        if not isinstance(row, dict):
            raise DataError("wrong_type", f"{where}: expected an object")
        address = _str(row, "address", where)
        try:
            hrp, _ = bech32.decode(address)
        except bech32.Bech32Error:
            raise DataError("invalid_address", f"{where}.address: not bech32") from None
        if not hrp.endswith("valcons"):
            raise DataError("invalid_address", f"{where}.address: not a valcons address")
        items.append(
            SigningInfo(
                address=address,
                missed_blocks=_uint(row, "missed_blocks_counter", where, MAX_HEIGHT),
                tombstoned=_bool(row, "tombstoned", where),
            )
        )
    next_key, total = _next_key(document, "signing_infos")
    return Page(tuple(items), next_key, total)


def parse_slashing_params(body: bytes) -> SlashingParams:
    """`signed_blocks_window` and `min_signed_per_window` from `/cosmos/slashing/v1beta1/params`."""
    params = _object(_lcd_document(body, "slashing_params"), "params", "slashing_params")
    window = _uint(params, "signed_blocks_window", "slashing_params", MAX_HEIGHT)
    min_signed = _dec(params, "min_signed_per_window", "slashing_params")
    parsed = SlashingParams(window, min_signed)
    if window <= 0 or min_signed > 1 or parsed.max_missed <= 0:
        raise DataError("invalid_params", "slashing_params: no miss can be tolerated")
    return parsed
