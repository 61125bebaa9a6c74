"""The validator registry of an SSZ `BeaconState` as numpy columns, read in place.

The answer of `GET /eth/v2/debug/beacon/states/{state}` (`Accept: application/octet-stream`)
is decoded for the fork its `Eth-Consensus-Version` header names. Nothing is copied per
validator: the `validators` list is one structured numpy view of 121-byte records over the
body, and pubkeys, withdrawal credentials, slashed flags, balances and participation are views
into it too; only the three u64 columns read from the records (effective balance, activation and
exit epochs) are copied, into contiguous arrays, for the analyses that follow.

The state's layout (consensus-specs `specs/<fork>/beacon-chain.md`, `BeaconState`; SSZ
`ssz/simple-serialize.md`) is one table of fields per fork. Its fixed part holds each fixed-size
field inline and a 4-byte little-endian offset for each variable-size one, in declaration
order; each variable field runs from its offset to the next one's, the last to the end of the
body. Every offset and every list length is checked, so a body of another fork, a truncated or
padded one, or one whose lists disagree on the validator count is rejected with a `DataError`:
"unknown_fork", "malformed_ssz", "size_mismatch" or "empty_set".

`encode_beacon_state` is the inverse over the same table, for the simulator and the tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from quorumwatch.models import DataError

_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])

FORKS = ("altair", "bellatrix", "capella", "deneb", "electra", "fulu")

SSZ_REJECTION_REASONS = ("unknown_fork", "malformed_ssz", "size_mismatch", "empty_set")

VALIDATOR_SIZE = 121
# One `Validator` record: fixed-size fields only, so the registry is an array of records.
VALIDATOR_DTYPE = np.dtype(
    {
        "names": [
            "pubkey",
            "withdrawal_credentials",
            "effective_balance",
            "slashed",
            "activation_eligibility_epoch",
            "activation_epoch",
            "exit_epoch",
            "withdrawable_epoch",
        ],
        "formats": [("u1", (48,)), ("u1", (32,)), "<u8", "u1", "<u8", "<u8", "<u8", "<u8"],
        "offsets": [0, 48, 80, 88, 89, 97, 105, 113],
        "itemsize": VALIDATOR_SIZE,
    }
)

FAR_FUTURE_EPOCH = 2**64 - 1

_OFFSET = 4  # an offset in a fixed part: uint32, little-endian
# ExecutionPayloadHeader (bellatrix on): its one variable field, extra_data, has its offset
# after parent_hash … timestamp; its fixed part grew in Capella (withdrawals_root) and Deneb
# (blob_gas_used, excess_blob_gas).
_EXTRA_DATA_OFFSET_AT = 436
_MAX_EXTRA_DATA_BYTES = 32
_PAYLOAD_HEADER_SIZES = {
    "bellatrix": 536,
    "capella": 568,
    "deneb": 584,
    "electra": 584,
    "fulu": 584,
}


@dataclass(frozen=True, slots=True)
class Preset:
    """The consensus preset values that size the state's fixed-length vectors."""

    name: str
    slots_per_historical_root: int
    epochs_per_historical_vector: int
    epochs_per_slashings_vector: int
    sync_committee_size: int
    slots_per_epoch: int
    min_seed_lookahead: int = 1


MAINNET = Preset("mainnet", 8192, 65536, 8192, 512, 32)
MINIMAL = Preset("minimal", 64, 64, 64, 32, 8)


@dataclass(frozen=True, slots=True)
class Field:
    """A BeaconState field: `size` bytes in the fixed part (4, an offset, when `variable`);
    a variable list's items are `item` bytes (0: the execution payload header, a container)."""

    name: str
    size: int
    variable: bool = False
    item: int = 0


@dataclass(frozen=True, slots=True)
class StateLayout:
    """One fork's BeaconState: its fields in order, where each sits in the fixed part."""

    fork: str
    fields: tuple[Field, ...]
    positions: Mapping[str, int]
    fixed_size: int
    payload_header_size: int  # 0 before bellatrix

    @property
    def variable(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.variable)


@dataclass(frozen=True, slots=True, eq=False)
class BeaconValidators:
    """Every validator of one state as columns, row i being validator `indices[i]`; no Python
    object per validator. Balances are in gwei. Arrays from a decoder are read-only; from SSZ,
    most are views into the body, which they keep alive.

    `previous_epoch_participation` (Altair flags, one byte each) is None on the JSON path, which
    has none; `execution_optimistic` and `finalized` are None where the answer did not say.
    Not comparable with `==` (numpy columns): compare the columns.
    """

    indices: NDArray[np.uint64]
    pubkeys: NDArray[np.uint8]  # (N, 48)
    withdrawal_credentials: NDArray[np.uint8]  # (N, 32)
    effective_balance: NDArray[np.uint64]
    slashed: NDArray[np.bool_]
    activation_epoch: NDArray[np.uint64]
    exit_epoch: NDArray[np.uint64]
    balances: NDArray[np.uint64]
    previous_epoch_participation: NDArray[np.uint8] | None
    slot: int
    genesis_time: int
    execution_optimistic: bool | None = None
    finalized: bool | None = None

    def __post_init__(self) -> None:
        count = self.indices.shape[0]
        shapes: dict[str, tuple[NDArray[Any], tuple[int, ...]]] = {
            "indices": (self.indices, (count,)),
            "pubkeys": (self.pubkeys, (count, 48)),
            "withdrawal_credentials": (self.withdrawal_credentials, (count, 32)),
            "effective_balance": (self.effective_balance, (count,)),
            "slashed": (self.slashed, (count,)),
            "activation_epoch": (self.activation_epoch, (count,)),
            "exit_epoch": (self.exit_epoch, (count,)),
            "balances": (self.balances, (count,)),
        }
        if self.previous_epoch_participation is not None:
            shapes["previous_epoch_participation"] = (self.previous_epoch_participation, (count,))
        for name, (column, shape) in shapes.items():
            if column.shape != shape:
                raise ValueError(f"BeaconValidators.{name}: shape {column.shape}, not {shape}")

    @property
    def count(self) -> int:
        return int(self.indices.shape[0])


def state_layout(fork: str, preset: Preset = MAINNET) -> StateLayout:
    """The BeaconState layout of `fork` (case-insensitive); DataError("unknown_fork") otherwise."""
    name = fork.strip().lower()
    if name not in FORKS:
        raise DataError("unknown_fork", "Eth-Consensus-Version names no supported fork")
    return _layout(name, preset)


@cache
def _layout(fork: str, preset: Preset) -> StateLayout:
    since = FORKS.index(fork)
    sync_committee = 48 * (preset.sync_committee_size + 1)  # pubkeys, then aggregate_pubkey
    fields = [
        Field("genesis_time", 8),
        Field("genesis_validators_root", 32),
        Field("slot", 8),
        Field("fork", 16),
        Field("latest_block_header", 112),
        Field("block_roots", 32 * preset.slots_per_historical_root),
        Field("state_roots", 32 * preset.slots_per_historical_root),
        Field("historical_roots", _OFFSET, variable=True, item=32),
        Field("eth1_data", 72),
        Field("eth1_data_votes", _OFFSET, variable=True, item=72),
        Field("eth1_deposit_index", 8),
        Field("validators", _OFFSET, variable=True, item=VALIDATOR_SIZE),
        Field("balances", _OFFSET, variable=True, item=8),
        Field("randao_mixes", 32 * preset.epochs_per_historical_vector),
        Field("slashings", 8 * preset.epochs_per_slashings_vector),
        Field("previous_epoch_participation", _OFFSET, variable=True, item=1),
        Field("current_epoch_participation", _OFFSET, variable=True, item=1),
        Field("justification_bits", 1),
        Field("previous_justified_checkpoint", 40),
        Field("current_justified_checkpoint", 40),
        Field("finalized_checkpoint", 40),
        Field("inactivity_scores", _OFFSET, variable=True, item=8),
        Field("current_sync_committee", sync_committee),
        Field("next_sync_committee", sync_committee),
    ]
    if since >= FORKS.index("bellatrix"):
        fields.append(Field("latest_execution_payload_header", _OFFSET, variable=True))
    if since >= FORKS.index("capella"):
        fields += [
            Field("next_withdrawal_index", 8),
            Field("next_withdrawal_validator_index", 8),
            Field("historical_summaries", _OFFSET, variable=True, item=64),
        ]
    if since >= FORKS.index("electra"):
        fields += [
            Field("deposit_requests_start_index", 8),
            Field("deposit_balance_to_consume", 8),
            Field("exit_balance_to_consume", 8),
            Field("earliest_exit_epoch", 8),
            Field("consolidation_balance_to_consume", 8),
            Field("earliest_consolidation_epoch", 8),
            Field("pending_deposits", _OFFSET, variable=True, item=192),
            Field("pending_partial_withdrawals", _OFFSET, variable=True, item=24),
            Field("pending_consolidations", _OFFSET, variable=True, item=16),
        ]
    if since >= FORKS.index("fulu"):
        lookahead = (preset.min_seed_lookahead + 1) * preset.slots_per_epoch
        fields.append(Field("proposer_lookahead", 8 * lookahead))
    positions: dict[str, int] = {}
    position = 0
    for field in fields:
        positions[field.name] = position
        position += field.size
    return StateLayout(fork, tuple(fields), positions, position, _PAYLOAD_HEADER_SIZES.get(fork, 0))


def read_beacon_state(
    body: bytes | bytearray | memoryview, fork: str, *, preset: Preset = MAINNET
) -> BeaconValidators:
    """The validators of an SSZ BeaconState of `fork`, as read-only columns over `body`.

    Raises DataError: "unknown_fork", "malformed_ssz" (truncated, an offset out of order or
    range, a list not a whole number of items, a bad execution payload header, a slashed byte
    other than 0 or 1), "size_mismatch" (validators, balances, participation and inactivity
    scores not all for the same N validators) or "empty_set" (no validator).
    """
    layout = state_layout(fork, preset)
    view = memoryview(body).cast("B")
    regions = _regions(view, layout)
    start, end = regions["validators"]
    count = (end - start) // VALIDATOR_SIZE
    for name, item in (
        ("balances", 8),
        ("previous_epoch_participation", 1),
        ("current_epoch_participation", 1),
        ("inactivity_scores", 8),
    ):
        got = regions[name][1] - regions[name][0]
        if got != item * count:
            raise DataError(
                "size_mismatch", f"{name}: {got} bytes, not {item} for each of {count} validators"
            )
    if count == 0:
        raise DataError("empty_set", "the state holds no validators")
    records = np.frombuffer(view, dtype=VALIDATOR_DTYPE, count=count, offset=start)
    slashed = records["slashed"]
    if np.any(slashed > 1):
        first = int(np.flatnonzero(slashed > 1)[0])
        raise DataError("malformed_ssz", f"validators[{first}].slashed: neither 0 nor 1")
    participation: NDArray[np.uint8] = np.frombuffer(
        view, dtype=np.uint8, count=count, offset=regions["previous_epoch_participation"][0]
    )
    return BeaconValidators(
        indices=read_only(np.arange(count, dtype=np.uint64)),
        pubkeys=read_only(records["pubkey"]),
        withdrawal_credentials=read_only(records["withdrawal_credentials"]),
        effective_balance=_column(records["effective_balance"]),
        slashed=read_only(slashed.view(np.bool_)),
        activation_epoch=_column(records["activation_epoch"]),
        exit_epoch=_column(records["exit_epoch"]),
        balances=read_only(
            np.frombuffer(view, dtype="<u8", count=count, offset=regions["balances"][0])
        ),
        previous_epoch_participation=read_only(participation),
        slot=_u64_at(view, layout.positions["slot"]),
        genesis_time=_u64_at(view, layout.positions["genesis_time"]),
    )


def _regions(view: memoryview, layout: StateLayout) -> dict[str, tuple[int, int]]:
    """Each variable field's byte range, after checking the offsets and the list lengths."""
    size = len(view)
    if size < layout.fixed_size:
        raise DataError(
            "malformed_ssz",
            f"{layout.fork} state: {size} bytes, short of its {layout.fixed_size}-byte fixed part",
        )
    variable = layout.variable
    starts = [_u32_at(view, layout.positions[f.name]) for f in variable]
    if starts[0] != layout.fixed_size:
        raise DataError("malformed_ssz", f"{variable[0].name}: offset not at the fixed part's end")
    regions: dict[str, tuple[int, int]] = {}
    for field, start, end in zip(variable, starts, [*starts[1:], size], strict=True):
        if start > end:
            raise DataError("malformed_ssz", f"{field.name}: offset out of order or beyond the end")
        length = end - start
        if field.item and length % field.item:
            raise DataError(
                "malformed_ssz",
                f"{field.name}: {length} bytes, not a whole number of {field.item}-byte items",
            )
        if not field.item:
            _check_payload_header(view[start:end], layout.payload_header_size)
        regions[field.name] = (start, end)
    return regions


def _check_payload_header(header: memoryview, fixed_size: int) -> None:
    """The execution payload header: its fixed part, then extra_data (at most 32 bytes)."""
    if not fixed_size <= len(header) <= fixed_size + _MAX_EXTRA_DATA_BYTES:
        raise DataError(
            "malformed_ssz", f"latest_execution_payload_header: {len(header)} bytes, wrong size"
        )
    if _u32_at(header, _EXTRA_DATA_OFFSET_AT) != fixed_size:
        raise DataError(
            "malformed_ssz", "latest_execution_payload_header.extra_data: offset out of place"
        )


def _u32_at(view: memoryview, position: int) -> int:
    return int.from_bytes(view[position : position + 4], "little")


def _u64_at(view: memoryview, position: int) -> int:
    return int.from_bytes(view[position : position + 8], "little")


def _column(strided: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """A record field as a contiguous, native-order, read-only array: one copy of a column."""
    return read_only(np.ascontiguousarray(strided, dtype=np.uint64))


def read_only(array: _Array) -> _Array:
    """`array`, marked read-only: the columns of a BeaconValidators are values."""
    array.flags.writeable = False
    return array
