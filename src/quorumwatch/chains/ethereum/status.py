"""Each validator's status and stake weight at an epoch, computed over whole columns.

At epoch e a validator is active when activation_epoch ≤ e < exit_epoch. Status codes are
positions in `STATUS_ORDER` (the order of `ValidatorStatus`: online 0, jailed 1, delinquent 2,
inactive 3):

- active and slashed: jailed (a slashed validator stays active until its forced exit);
- active, unslashed, with the TIMELY_TARGET flag (value 2) in the previous epoch's
  participation: online; without it: delinquent. A validator activated at e itself had no duty
  in e − 1 and counts as online. Read a state at an epoch's first slot, where the previous
  epoch's flags are complete;
- not yet activated (activation_epoch > e): inactive;
- exited (exit_epoch ≤ e): not in the set (`in_set` False; its code is inactive).

Weight is the effective balance (gwei) of the active validators, 0 for the others.

The JSON path has no participation: there every active, unslashed validator counts as online
and `liveness_known` is False, so the caller must treat the liveness margin as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from quorumwatch.chains.ethereum.ssz import BeaconValidators, read_only
from quorumwatch.models import ValidatorStatus

SLOTS_PER_EPOCH = 32
SECONDS_PER_SLOT = 12
TIMELY_TARGET = 2  # participation flag value: 1 << TIMELY_TARGET_FLAG_INDEX (1)

STATUS_ORDER: tuple[ValidatorStatus, ...] = tuple(ValidatorStatus)
STATUS_CODES: Mapping[ValidatorStatus, int] = MappingProxyType(
    {status: code for code, status in enumerate(STATUS_ORDER)}
)


@dataclass(frozen=True, slots=True, eq=False)
class Classification:
    """Per-validator columns, row for row with the BeaconValidators classified."""

    status: NDArray[np.uint8]  # a code: STATUS_ORDER[code] is the status
    in_set: NDArray[np.bool_]  # registered and not exited: active or pending
    active: NDArray[np.bool_]
    weight: NDArray[np.uint64]  # effective balance when active, else 0 (gwei)
    liveness_known: bool  # False when no participation flags were read (the JSON path)


def epoch_at_slot(slot: int) -> int:
    return slot // SLOTS_PER_EPOCH


def classify(validators: BeaconValidators, epoch: int) -> Classification:
    """The status, set membership and weight of every validator at `epoch`; no Python loop."""
    at = np.uint64(epoch)
    activation = validators.activation_epoch
    active = (activation <= at) & (at < validators.exit_epoch)
    status = np.full(validators.count, STATUS_CODES[ValidatorStatus.INACTIVE], dtype=np.uint8)
    status[active] = STATUS_CODES[ValidatorStatus.ONLINE]
    participation = validators.previous_epoch_participation
    if participation is not None:
        missed = (participation & np.uint8(TIMELY_TARGET)) == 0
        status[active & (activation < at) & missed] = STATUS_CODES[ValidatorStatus.DELINQUENT]
    status[active & validators.slashed] = STATUS_CODES[ValidatorStatus.JAILED]
    weight = np.where(active, validators.effective_balance, np.uint64(0))
    return Classification(
        status=read_only(status),
        in_set=read_only(validators.exit_epoch > at),
        active=read_only(active),
        weight=read_only(weight),
        liveness_known=participation is not None,
    )
