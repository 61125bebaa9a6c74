"""Small Ethereum validator sets for the tests: BeaconValidators columns and their JSON answer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from quorumwatch.chains.ethereum.ssz import (
    FAR_FUTURE_EPOCH,
    MAINNET,
    VALIDATOR_DTYPE,
    BeaconValidators,
    Preset,
    state_layout,
)

OFFSET_SIZE = 4  # an offset in an SSZ fixed part: uint32, little-endian
EXTRA_DATA_OFFSET_AT = 436  # in an ExecutionPayloadHeader: the offset of extra_data

GWEI_PER_ETH = 10**9
SLOT = 9_000_000
GENESIS_TIME = 1_606_824_023


def pubkey(index: int) -> bytes:
    """A distinct 48-byte key per index (not a curve point: nothing here checks one)."""
    return bytes([0xA0 | (index % 16)]) + index.to_bytes(8, "big") * 5 + bytes(7)


def credentials(index: int) -> bytes:
    return b"\x01" + bytes(11) + index.to_bytes(20, "big")


def make_validators(
    count: int,
    *,
    effective_balance: Sequence[int] | None = None,
    slashed: Sequence[bool] | None = None,
    activation_epoch: Sequence[int] | None = None,
    exit_epoch: Sequence[int] | None = None,
    balances: Sequence[int] | None = None,
    participation: Sequence[int] | None = (),
    slot: int = SLOT,
    genesis_time: int = GENESIS_TIME,
) -> BeaconValidators:
    """`count` validators 0…count-1: 32 ETH, active since epoch 0, never exiting, balances a
    little above, every participation flag set; any column can be given instead.

    `participation` None leaves it out (as the JSON path does).
    """

    def u64(values: Sequence[int] | None, default: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
        return np.array([default] * count if values is None else values, dtype=np.uint64)

    flags = None
    if participation is not None:
        flags = np.array(participation or [7] * count, dtype=np.uint8)
    return BeaconValidators(
        indices=np.arange(count, dtype=np.uint64),
        pubkeys=np.frombuffer(b"".join(map(pubkey, range(count))), np.uint8).reshape(count, 48),
        withdrawal_credentials=np.frombuffer(
            b"".join(map(credentials, range(count))), np.uint8
        ).reshape(count, 32),
        effective_balance=u64(effective_balance, 32 * GWEI_PER_ETH),
        slashed=np.array([False] * count if slashed is None else slashed, dtype=np.bool_),
        activation_epoch=u64(activation_epoch, 0),
        exit_epoch=u64(exit_epoch, FAR_FUTURE_EPOCH),
        balances=u64(balances, 32 * GWEI_PER_ETH + 1_234_567),
        previous_epoch_participation=flags,
        slot=slot,
        genesis_time=genesis_time,
    )


def validator_row(validators: BeaconValidators, row: int, **changes: Any) -> dict[str, Any]:
    """Row `row` as the beacon API's JSON shows it; `changes` overrides top-level or, with a
    `validator__` prefix, record fields (the value ... drops the field)."""
    record: dict[str, Any] = {
        "pubkey": "0x" + bytes(validators.pubkeys[row]).hex(),
        "withdrawal_credentials": "0x" + bytes(validators.withdrawal_credentials[row]).hex(),
        "effective_balance": str(validators.effective_balance[row]),
        "slashed": bool(validators.slashed[row]),
        "activation_eligibility_epoch": str(validators.activation_epoch[row]),
        "activation_epoch": str(validators.activation_epoch[row]),
        "exit_epoch": str(validators.exit_epoch[row]),
        "withdrawable_epoch": str(validators.exit_epoch[row]),
    }
    answer: dict[str, Any] = {
        "index": str(validators.indices[row]),
        "balance": str(validators.balances[row]),
        "status": "active_ongoing",
        "validator": record,
    }
    for key, value in changes.items():
        target, name = (record, key[11:]) if key.startswith("validator__") else (answer, key)
        target[name] = value
    for target in (record, answer):
        for name in [k for k, v in target.items() if v is ...]:
            del target[name]
    return answer


def validators_answer(rows: list[Any], **top: Any) -> bytes:
    document = {"execution_optimistic": False, "finalized": True, "data": rows, **top}
    return json.dumps(document).encode()


def validators_json(validators: BeaconValidators) -> bytes:
    return validators_answer([validator_row(validators, i) for i in range(validators.count)])


def encode_beacon_state(
    validators: BeaconValidators,
    fork: str,
    *,
    preset: Preset = MAINNET,
    overrides: Mapping[str, bytes] | None = None,
) -> bytes:
    """A BeaconState of `fork` holding `validators` (indices 0…N-1), every other field zero or
    empty: a body `read_beacon_state` reads back.

    Written per validator: activation_eligibility_epoch = activation_epoch, withdrawable_epoch
    = exit_epoch, current participation and inactivity scores zero, previous participation
    zero when absent. `overrides` replaces any field's encoding by name (a fixed field's keeps
    its size; a variable field's may be anything, to build malformed states).
    """
    layout = state_layout(fork, preset)
    count = validators.count
    if not np.array_equal(validators.indices, np.arange(count, dtype=np.uint64)):
        raise ValueError("an SSZ state holds validators 0…N-1, in order")
    records = np.zeros(count, dtype=VALIDATOR_DTYPE)
    records["pubkey"] = validators.pubkeys
    records["withdrawal_credentials"] = validators.withdrawal_credentials
    records["effective_balance"] = validators.effective_balance
    records["slashed"] = validators.slashed
    records["activation_eligibility_epoch"] = validators.activation_epoch
    records["activation_epoch"] = validators.activation_epoch
    records["exit_epoch"] = validators.exit_epoch
    records["withdrawable_epoch"] = validators.exit_epoch
    participation = validators.previous_epoch_participation
    header = bytearray(layout.payload_header_size)
    header[EXTRA_DATA_OFFSET_AT : EXTRA_DATA_OFFSET_AT + 4] = len(header).to_bytes(4, "little")
    values: dict[str, bytes] = {
        "genesis_time": validators.genesis_time.to_bytes(8, "little"),
        "slot": validators.slot.to_bytes(8, "little"),
        "validators": records.tobytes(),
        "balances": validators.balances.astype("<u8").tobytes(),
        "previous_epoch_participation": (
            bytes(count) if participation is None else participation.astype(np.uint8).tobytes()
        ),
        "current_epoch_participation": bytes(count),
        "inactivity_scores": bytes(8 * count),
        "latest_execution_payload_header": bytes(header),
    }
    for name, value in (overrides or {}).items():
        if name not in layout.positions:
            raise ValueError(f"{layout.fork} BeaconState has no field {name}")
        values[name] = value
    fixed = bytearray(layout.fixed_size)
    tail: list[bytes] = []
    end = layout.fixed_size
    for field in layout.fields:
        at = layout.positions[field.name]
        value = values.get(field.name, b"")
        if field.variable:
            fixed[at : at + OFFSET_SIZE] = end.to_bytes(OFFSET_SIZE, "little")
            tail.append(value)
            end += len(value)
        elif value:
            if len(value) != field.size:
                raise ValueError(f"{field.name}: {len(value)} bytes, not {field.size}")
            fixed[at : at + field.size] = value
    return bytes(fixed) + b"".join(tail)
