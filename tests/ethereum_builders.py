"""Small Ethereum validator sets for the tests: BeaconValidators columns and their JSON answer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from quorumwatch.chains.ethereum.ssz import FAR_FUTURE_EPOCH, BeaconValidators

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
