"""A validator set as columns, the layout `analysis.analyse_columns` reads: one numpy array
per field (stake, status code, entity id), one row per validator, and the conversion from
`Validator` objects.

Status codes: 0-3 are the members of `ValidatorStatus` in declaration order (online, jailed,
delinquent, inactive), with jailed (1) meaning jailed *inside* the consensus set (Hyperliquid:
active and jailed, its stake stays in the quorum denominator). A jailed validator outside the
consensus set (a CometBFT validator jailed out of the set) is code 4, whose status is still
`ValidatorStatus.JAILED`. So a row is in the consensus set iff its code is below 3, and in the
set but not voting (offline) iff its code is 1 or 2.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from quorumwatch.models import Validator, ValidatorStatus

StakeColumn: TypeAlias = npt.NDArray[np.uint64] | npt.NDArray[np.object_]
"""Stakes in base units: uint64 when every stake is below 2**64, else Python ints (object)."""

STATUS_ONLINE = 0
STATUS_JAILED = 1  # jailed inside the consensus set: stake in the denominator, offline
STATUS_DELINQUENT = 2  # in the consensus set, not voting (Solana)
STATUS_INACTIVE = 3
STATUS_JAILED_INACTIVE = 4  # jailed outside the consensus set

STATUS_OF_CODE: tuple[ValidatorStatus, ...] = (*ValidatorStatus, ValidatorStatus.JAILED)
"""The `ValidatorStatus` of each code, indexed by code."""

CONSENSUS_CODES_BELOW = STATUS_INACTIVE
"""A row is in the consensus set iff its status code is below this."""

UNATTRIBUTED = -1
"""The entity id of a validator in no entity map: it is its own entity, named by its address."""

_STAKE = operator.attrgetter("stake")
_ADDRESS = operator.attrgetter("address")
_IN_CONSENSUS = operator.attrgetter("in_consensus_set")
_JAILED = operator.attrgetter("jailed")
_DELINQUENT = operator.attrgetter("delinquent")


def status_code(*, in_consensus_set: bool, jailed: bool, delinquent: bool) -> int:
    """The status code of one validator's flags (agrees with `Validator.status`)."""
    if jailed:
        return STATUS_JAILED if in_consensus_set else STATUS_JAILED_INACTIVE
    if not in_consensus_set:
        return STATUS_INACTIVE
    return STATUS_DELINQUENT if delinquent else STATUS_ONLINE


def stake_column(stakes: Sequence[int]) -> StakeColumn:
    """`stakes` as uint64 if every one fits, else as an object array of the exact ints.

    Raises ValueError for a negative stake.
    """
    try:
        return np.fromiter(stakes, dtype=np.uint64, count=len(stakes))
    except OverflowError:
        column = np.array(list(stakes), dtype=object)
        if any(stake < 0 for stake in stakes):
            raise ValueError("a stake is negative") from None
        return column


@dataclass(frozen=True, slots=True)
class ValidatorColumns:
    """One validator set as columns, row i describing one validator.

    `entity_index[i]` is an index into `entity_names`, or UNATTRIBUTED (-1): the validator is
    its own entity, named `addresses[i]`. `unattributed`, when given, marks validators
    grouped into a named entity whose stake still counts as unattributed (an unmapped
    address equal to an entity's name merges into that entity, as names are the identity
    of an entity); None means exactly the UNATTRIBUTED rows.
    """

    stakes: StakeColumn
    status: npt.NDArray[np.uint8]
    entity_index: npt.NDArray[np.int64]
    entity_names: Sequence[str]
    addresses: Sequence[str]
    unattributed: npt.NDArray[np.bool_] | None = None

    @classmethod
    def from_validators(
        cls, validators: Sequence[Validator], entity_of: Mapping[str, str]
    ) -> ValidatorColumns:
        """The columns of `validators`; `entity_of` maps an address to its entity's name."""
        count = len(validators)
        try:
            stakes: StakeColumn = np.fromiter(map(_STAKE, validators), dtype=np.uint64, count=count)
        except OverflowError:
            stakes = stake_column(list(map(_STAKE, validators)))
        addresses = list(map(_ADDRESS, validators))
        entity_index, entity_names, unattributed = entity_columns(addresses, entity_of)
        return cls(
            stakes=stakes,
            status=_status_column(validators),
            entity_index=entity_index,
            entity_names=entity_names,
            addresses=addresses,
            unattributed=unattributed,
        )


def _status_column(validators: Sequence[Validator]) -> npt.NDArray[np.uint8]:
    count = len(validators)
    active = np.fromiter(map(_IN_CONSENSUS, validators), dtype=np.bool_, count=count)
    jailed = np.fromiter(map(_JAILED, validators), dtype=np.bool_, count=count)
    delinquent = np.fromiter(map(_DELINQUENT, validators), dtype=np.bool_, count=count)
    codes = np.where(active, STATUS_ONLINE, STATUS_INACTIVE).astype(np.uint8)
    codes[active & delinquent] = STATUS_DELINQUENT
    codes[jailed] = np.where(active[jailed], STATUS_JAILED, STATUS_JAILED_INACTIVE)
    return codes


def entity_columns(
    addresses: Sequence[str], entity_of: Mapping[str, str]
) -> tuple[npt.NDArray[np.int64], list[str], npt.NDArray[np.bool_] | None]:
    """Entity ids, the names they index, and the unmapped rows merged into a named entity."""
    count = len(addresses)
    if not entity_of:
        return np.full(count, UNATTRIBUTED, dtype=np.int64), [], None
    # One C-level lookup per validator: with a large map each lookup is a cache miss.
    mapped = list(map(entity_of.get, addresses))
    # First the row of each entity's first validator, then those rows ranked: dense ids.
    first_row: dict[str | None, int] = {None: UNATTRIBUTED}
    rows = map(first_row.setdefault, mapped, itertools.count())
    first = np.fromiter(rows, dtype=np.int64, count=count)
    starts = first == np.arange(count)
    dense = np.cumsum(starts, dtype=np.int64) - 1
    entity_index = np.where(first == UNATTRIBUTED, UNATTRIBUTED, dense[first])
    names: list[str] = [mapped[row] or "" for row in np.flatnonzero(starts).tolist()]
    unmapped = np.flatnonzero(first == UNATTRIBUTED)
    collisions = first_row.keys() & map(addresses.__getitem__, unmapped.tolist())
    if not collisions:
        return entity_index, names, None
    # An unmapped address that is also an entity's name is part of that entity, unattributed.
    merged = np.zeros(count, dtype=np.bool_)
    for row in unmapped.tolist():
        name: Any = addresses[row]
        if name in collisions:
            entity_index[row] = dense[first_row[name]]
            merged[row] = True
    return entity_index, names, merged
