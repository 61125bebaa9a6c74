"""Strict decoding of subtensor's JSON-RPC answers, and of a subnet's metagraph into a
validator set.

The set is the UIDs holding a validator permit; weight is the chain's own `total_stake`
(alpha plus the root TAO weight, computed on chain, never recomputed here); the id is the
hotkey, the entity the coldkey (named by its on-chain identity when that name is its own);
a permit holder that is not active is inactive. Kappa, Yuma's consensus majority, is a u16
fraction of 65535.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, TypeVar

import msgspec
import numpy as np

from quorumwatch.chains.base import JsonShape, ShapeError, check_set, decode_json, received_text
from quorumwatch.chains.bittensor.scale import RuntimeMetadata
from quorumwatch.columns import (
    STATUS_INACTIVE,
    STATUS_ONLINE,
    ValidatorTable,
    stake_column,
)
from quorumwatch.models import Attribution, DataError

S = TypeVar("S")

U16_MAX = 65535
API = "SubnetInfoRuntimeApi"
# The one mechanism every subnet has; its weights are Yuma's.
MAIN_MECHANISM = 0
# Fields of the selective metagraph a set needs, by name (their indexes are their positions
# in the runtime's SelectiveMetagraph type).
METAGRAPH_FIELDS = (
    "netuid",
    "block",
    "kappa",
    "hotkeys",
    "coldkeys",
    "identities",
    "active",
    "validator_permit",
    "total_stake",
)
_PER_UID = ("hotkeys", "coldkeys", "identities", "active", "validator_permit", "total_stake")

REJECTION_REASONS = (
    "malformed_json",
    "rpc_error",
    "wrong_type",
    "missing_field",
    "metadata_mismatch",
    "undecodable_scale",
    "wrong_subnet",
    "wrong_block",
    "stale_block",
    "future_block",
    "no_subnet",
    "empty_set",
    "duplicate_validator",
    "zero_stake",
    "too_large",
)

_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class Metagraph:
    """A subnet's validator set as read at one block, with the chain's own coefficients."""

    table: ValidatorTable
    attribution: Attribution
    kappa: Fraction  # of the permitted stake: Yuma's consensus majority
    block: int


class _Response(msgspec.Struct, gc=False):
    jsonrpc: Any = None
    id: Any = None
    error: Any = msgspec.UNSET
    result: Any = msgspec.UNSET


class _Header(msgspec.Struct, gc=False):
    number: Annotated[str, msgspec.Meta(pattern=r"\A0x[0-9a-fA-F]{1,16}\Z")]


class _RuntimeVersion(msgspec.Struct, gc=False, rename="camel"):
    spec_version: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


_ENVELOPE: JsonShape[_Response] = JsonShape(_Response)


def rpc_result(body: bytes, method: str) -> Any:
    """The `result` of a JSON-RPC 2.0 answer; rpc_error for an error object."""
    try:
        response = decode_json(body, _ENVELOPE)
    except ShapeError:
        raise DataError("wrong_type", f"{method}: expected a JSON-RPC object") from None
    if response.error is not msgspec.UNSET:
        raise DataError("rpc_error", f"{method}: the node answered with a JSON-RPC error")
    if response.jsonrpc != "2.0":
        raise DataError("wrong_type", f'{method}.jsonrpc: expected "2.0"')
    if response.result is msgspec.UNSET:
        raise DataError("missing_field", f"{method}.result")
    return response.result


def parse_hash(result: Any, method: str) -> str:
    """A block hash result (0x and 32 bytes of hex)."""
    if not isinstance(result, str) or _HASH.fullmatch(result) is None:
        raise DataError("wrong_type", f"{method}.result: expected a 32-byte hex hash")
    return result


def parse_hex(result: Any, method: str) -> bytes:
    """A hex SCALE result as bytes (state_call, a present storage item)."""
    if not isinstance(result, str) or _HEX.fullmatch(result) is None:
        raise DataError("wrong_type", f"{method}.result: expected 0x-prefixed hex bytes")
    return bytes.fromhex(result[2:])


def parse_block_number(result: Any) -> int:
    """The number of a `chain_getHeader` answer."""
    header = _convert(result, _Header, "chain_getHeader")
    return int(header.number, 16)


def parse_spec_version(result: Any) -> int:
    """The specVersion of a `state_getRuntimeVersion` answer."""
    return _convert(result, _RuntimeVersion, "state_getRuntimeVersion").spec_version


def metagraph_request(metadata: RuntimeMetadata, netuid: int) -> tuple[str, str]:
    """The runtime API call (name, SCALE argument) reading `netuid`'s metagraph fields, by the
    field positions of this runtime's SelectiveMetagraph."""
    fields = metagraph_fields(metadata)
    missing = [name for name in METAGRAPH_FIELDS if name not in fields]
    if missing:
        raise DataError("metadata_mismatch", f"SelectiveMetagraph has no field {missing[0]}")
    indexes = [fields.index(name) for name in METAGRAPH_FIELDS]
    argument = netuid.to_bytes(2, "little") + MAIN_MECHANISM.to_bytes(1, "little")
    argument += compact(len(indexes)) + b"".join(i.to_bytes(2, "little") for i in indexes)
    return f"{API}_get_selective_mechagraph", "0x" + argument.hex()


def metagraph_fields(metadata: RuntimeMetadata) -> list[str]:
    """The field names of the runtime's SelectiveMetagraph, in index order."""
    option = metadata.type_definition(metadata.api_output_type(API, "get_selective_mechagraph"))
    try:
        some = option["def"]["variant"]["variants"][1]["fields"][0]["type"]
        fields = metadata.type_definition(some)["def"]["composite"]["fields"]
        return [field["name"] for field in fields]
    except (KeyError, IndexError, TypeError):
        raise DataError(
            "metadata_mismatch", "get_selective_mechagraph: output is not Option<struct>"
        ) from None


def parse_metagraph(metadata: RuntimeMetadata, raw: bytes, netuid: int) -> Metagraph:
    """The permit holders of `netuid`'s metagraph (get_selective_mechagraph's SCALE answer)."""
    value = metadata.api_output(API, "get_selective_mechagraph", raw)
    if value is None:
        raise DataError("no_subnet", f"subnet {netuid} does not exist")
    if not isinstance(value, dict):
        raise DataError("metadata_mismatch", "get_selective_mechagraph: not a struct")
    fields = {}
    for name in METAGRAPH_FIELDS:
        if value.get(name) is None:
            raise DataError("missing_field", f"get_selective_mechagraph.{name}")
        fields[name] = value[name]
    if fields["netuid"] != netuid:
        raise DataError("wrong_subnet", f"asked for subnet {netuid}, got another")
    count = len(fields["hotkeys"])
    for name in _PER_UID:
        if len(fields[name]) != count:
            raise DataError("wrong_type", f"get_selective_mechagraph.{name}: not one per UID")
    permitted = [uid for uid in range(count) if fields["validator_permit"][uid] is True]
    if not permitted:
        raise DataError("empty_set", f"subnet {netuid}: no UID holds a validator permit")
    hotkeys = [fields["hotkeys"][uid] for uid in permitted]
    coldkeys = [fields["coldkeys"][uid] for uid in permitted]
    identity_names = [_identity_name(fields["identities"][uid]) for uid in permitted]
    table = ValidatorTable(
        addresses=hotkeys,
        names=identity_names,
        stakes=stake_column([fields["total_stake"][uid] for uid in permitted]),
        status=np.array(
            [STATUS_ONLINE if fields["active"][uid] else STATUS_INACTIVE for uid in permitted],
            dtype=np.uint8,
        ),
    )
    check_set(table, lambda row: f"hotkeys[{permitted[row]}]")
    kappa = fields["kappa"]
    if not 0 <= kappa <= U16_MAX:
        raise DataError("wrong_type", "get_selective_mechagraph.kappa: expected a u16")
    return Metagraph(
        table, _by_coldkey(coldkeys, identity_names), Fraction(kappa, U16_MAX), fields["block"]
    )


def _by_coldkey(coldkeys: Sequence[str], identity_names: Sequence[str]) -> Attribution:
    """One entity per coldkey, named by its identity's name where no other coldkey claims the
    same name and the name is no coldkey's address (a name is a claim; a key is not)."""
    entities = list(dict.fromkeys(coldkeys))
    index_of = {coldkey: index for index, coldkey in enumerate(entities)}
    name_of: dict[str, str] = {}
    for coldkey, name in zip(coldkeys, identity_names, strict=True):
        if name:
            name_of.setdefault(coldkey, name)
    claimed = list(name_of.values())
    taken = set(entities)
    names = [
        name_of[c]
        if c in name_of and claimed.count(name_of[c]) == 1 and name_of[c] not in taken
        else c
        for c in entities
    ]
    return Attribution(
        entity_index=np.array([index_of[c] for c in coldkeys], dtype=np.int64),
        entity_names=names,
    )


def _identity_name(identity: Any) -> str:
    if isinstance(identity, dict) and isinstance(identity.get("name"), str):
        return received_text(identity["name"].strip())
    return ""


def _convert(result: Any, shape: type[S], method: str) -> S:
    try:
        return msgspec.convert(result, shape)
    except msgspec.ValidationError:
        raise DataError("wrong_type", f"{method}.result: not of its shape") from None


def compact(value: int) -> bytes:
    """SCALE compact encoding of a length below 2**30."""
    if value < 1 << 6:
        return bytes([value << 2])
    if value < 1 << 14:
        return ((value << 2) | 1).to_bytes(2, "little")
    return ((value << 2) | 2).to_bytes(4, "little")
