"""Each validator's status and stake weight at an epoch, computed over whole columns.

At epoch e a validator is active when activation_epoch ≤ e < exit_epoch. Status codes are
those of a `ValidatorTable` (`columns.STATUS_*`):

- active and slashed: jailed (a slashed validator stays active until its forced exit), code 1,
  jailed inside the consensus set: its stake stays in the denominator, and it does not vote;
- active, unslashed, with the TIMELY_TARGET flag (value 2) in the previous epoch's
  participation: online; without it: delinquent. A validator activated at e itself had no duty
  in e − 1 and counts as online. Read a state at an epoch's first slot, where the previous
  epoch's flags are complete;
- not yet activated (activation_epoch > e): inactive, slashed or not (never code 4: a
  validator is only jailed while it is active);
- exited (exit_epoch ≤ e): not in the set (`in_set` False; its code is inactive).

Weight is the effective balance (gwei) of the active validators, 0 for the others.

The JSON path has no participation: there every active, unslashed validator counts as online
and `liveness_known` is False, so the caller must treat the liveness margin as absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from quorumwatch.chains.ethereum.ssz import BeaconValidators, read_only
from quorumwatch.columns import STATUS_DELINQUENT, STATUS_INACTIVE, STATUS_JAILED, STATUS_ONLINE

SLOTS_PER_EPOCH = 32
SECONDS_PER_SLOT = 12
TIMELY_TARGET = 2  # participation flag value: 1 << TIMELY_TARGET_FLAG_INDEX (1)


@dataclass(frozen=True, slots=True, eq=False)
class Classification:
    """Per-validator columns, row for row with the BeaconValidators classified."""

    status: NDArray[np.uint8]  # a status code: columns.STATUS_*
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
    status = np.full(validators.count, STATUS_INACTIVE, dtype=np.uint8)
    status[active] = STATUS_ONLINE
    participation = validators.previous_epoch_participation
    if participation is not None:
        missed = (participation & np.uint8(TIMELY_TARGET)) == 0
        status[active & (activation < at) & missed] = STATUS_DELINQUENT
    status[active & validators.slashed] = STATUS_JAILED
    weight = np.where(active, validators.effective_balance, np.uint64(0))
    return Classification(
        status=read_only(status),
        in_set=read_only(validators.exit_epoch > at),
        active=read_only(active),
        weight=read_only(weight),
        liveness_known=participation is not None,
    )
