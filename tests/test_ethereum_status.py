"""Validator status and weight at an epoch, from the columns: every case, both paths."""

from __future__ import annotations

import numpy as np
import pytest

from quorumwatch.chains.ethereum.parse import parse_validators
from quorumwatch.chains.ethereum.ssz import (
    FAR_FUTURE_EPOCH,
    BeaconValidators,
    read_beacon_state,
)
from quorumwatch.chains.ethereum.status import (
    SLOTS_PER_EPOCH,
    TIMELY_TARGET,
    classify,
    epoch_at_slot,
)
from quorumwatch.columns import (
    STATUS_DELINQUENT,
    STATUS_INACTIVE,
    STATUS_JAILED,
    STATUS_OF_CODE,
    STATUS_ONLINE,
)
from quorumwatch.models import ValidatorStatus
from tests.ethereum_builders import encode_beacon_state, make_validators, validators_json

EPOCH = 100
ETH = 10**9
SOURCE, HEAD = 1, 4  # the other two participation flags
ONLINE, JAILED, DELINQUENT, INACTIVE = (
    STATUS_ONLINE,
    STATUS_JAILED,
    STATUS_DELINQUENT,
    STATUS_INACTIVE,
)
FAR = FAR_FUTURE_EPOCH

# activation, exit, slashed, flags, effective ETH → status, in the set, weight ETH
CASES = {
    "active, timely target": ((0, FAR, False, TIMELY_TARGET, 32), (ONLINE, True, 32)),
    "active, every flag": ((0, FAR, False, 7, 2048), (ONLINE, True, 2048)),
    "active, source and head only": ((0, FAR, False, SOURCE | HEAD, 32), (DELINQUENT, True, 32)),
    "active, no flag": ((EPOCH - 1, FAR, False, 0, 31), (DELINQUENT, True, 31)),
    "activated this epoch, no flag yet": ((EPOCH, FAR, False, 0, 32), (ONLINE, True, 32)),
    "exiting next epoch, on time": ((0, EPOCH + 1, False, 2, 32), (ONLINE, True, 32)),
    "slashed, still active": ((0, EPOCH + 8192, True, 0, 31), (JAILED, True, 31)),
    "slashed, still attesting": ((0, EPOCH + 8192, True, 7, 31), (JAILED, True, 31)),
    "pending activation": ((EPOCH + 1, FAR, False, 0, 32), (INACTIVE, True, 0)),
    "not yet eligible": ((FAR, FAR, False, 0, 32), (INACTIVE, True, 0)),
    "exited this epoch": ((0, EPOCH, False, 2, 32), (INACTIVE, False, 0)),
    "exited and slashed": ((0, 50, True, 0, 16), (INACTIVE, False, 0)),
}


def _validators() -> BeaconValidators:
    given = [case for case, _ in CASES.values()]
    return make_validators(
        len(given),
        activation_epoch=[c[0] for c in given],
        exit_epoch=[c[1] for c in given],
        slashed=[c[2] for c in given],
        participation=[c[3] for c in given],
        effective_balance=[c[4] * ETH for c in given],
    )


def test_codes_are_the_tables_with_slashed_jailed_inside_the_consensus_set() -> None:
    """The table's codes: online 0, jailed 1 (inside the consensus set: its stake stays in the
    denominator, as a slashed validator's does while it is active), delinquent 2, inactive 3."""
    assert (ONLINE, JAILED, DELINQUENT, INACTIVE) == (0, 1, 2, 3)
    assert [STATUS_OF_CODE[code] for code in (ONLINE, JAILED, DELINQUENT, INACTIVE)] == list(
        ValidatorStatus
    )


@pytest.mark.parametrize("path", ["ssz", "columns"])
def test_every_case_is_classified(path: str) -> None:
    validators = _validators()
    if path == "ssz":
        validators = read_beacon_state(encode_beacon_state(validators, "fulu"), "fulu")
    result = classify(validators, EPOCH)
    expected = [outcome for _, outcome in CASES.values()]
    for name, status, in_set, weight, outcome in zip(
        CASES, result.status, result.in_set, result.weight, expected, strict=True
    ):
        assert (STATUS_OF_CODE[status], bool(in_set), int(weight)) == (
            STATUS_OF_CODE[outcome[0]],
            outcome[1],
            outcome[2] * ETH,
        ), name
    assert result.liveness_known
    assert result.active.tolist() == [outcome[2] > 0 for outcome in expected]
    assert (result.status.dtype.type, result.weight.dtype.type) == (np.uint8, np.uint64)
    assert not result.status.flags.writeable


def test_without_participation_every_active_unslashed_validator_is_online() -> None:
    """The JSON path reads no flags: no delinquency can be seen, and the result says so."""
    validators = _validators()
    from_json = parse_validators(validators_json(validators), slot=0, genesis_time=0)
    result = classify(from_json, EPOCH)
    assert not result.liveness_known
    with_flags = classify(validators, EPOCH)
    expected = np.where(with_flags.status == DELINQUENT, ONLINE, with_flags.status)
    assert np.array_equal(result.status, expected)
    assert np.array_equal(result.in_set, with_flags.in_set)
    assert np.array_equal(result.weight, with_flags.weight)


def test_epoch_boundaries_at_the_ends_of_uint64() -> None:
    validators = make_validators(2, activation_epoch=[0, FAR - 1], exit_epoch=[FAR, FAR])
    assert classify(validators, 0).active.tolist() == [True, False]
    assert classify(validators, FAR - 1).active.tolist() == [True, True]
    assert classify(validators, FAR).in_set.tolist() == [False, False]


def test_epoch_at_slot() -> None:
    assert SLOTS_PER_EPOCH == 32
    assert [epoch_at_slot(s) for s in (0, 31, 32, 11_532_800)] == [0, 0, 1, 360_400]
