"""A validator set as columns: `ValidatorTable`, one numpy array (or sequence) per field and
one row per validator, which every source builds and analysis, jail tracking and exposition
read, so that no per-validator Python object is made on the poll path; and the entity
columns `analysis.analyse_columns` reads beside it.

Status codes: 0-3 are the members of `ValidatorStatus` in declaration order (online, jailed,
delinquent, inactive), with jailed (1) meaning jailed *inside* the consensus set (Hyperliquid:
active and jailed, its stake stays in the quorum denominator). A jailed validator outside the
consensus set (a CometBFT validator jailed out of the set) is code 4, whose status is still
`ValidatorStatus.JAILED`. So a row is in the consensus set iff its code is below 3, and in the
set but not voting (offline) iff its code is 1 or 2.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias, overload

import numpy as np
import numpy.typing as npt

from quorumwatch.models import NO_UPTIME, Validator, ValidatorStatus

StakeColumn: TypeAlias = npt.NDArray[np.uint64] | npt.NDArray[np.object_]
"""Stakes in base units: uint64 when every stake is below 2**64, else Python ints (object)."""

STATUS_ONLINE = 0
STATUS_JAILED = 1  # jailed inside the consensus set: stake in the denominator, offline
STATUS_DELINQUENT = 2  # in the consensus set, not voting (Solana)
STATUS_INACTIVE = 3
STATUS_JAILED_INACTIVE = 4  # jailed outside the consensus set

JAILED_CODES = (STATUS_JAILED, STATUS_JAILED_INACTIVE)
"""The codes of jailed rows, inside the consensus set or out of it."""

STATUS_OF_CODE: tuple[ValidatorStatus, ...] = (*ValidatorStatus, ValidatorStatus.JAILED)
"""The `ValidatorStatus` of each code, indexed by code."""

CONSENSUS_CODES_BELOW = STATUS_INACTIVE
"""A row is in the consensus set iff its status code is below this."""

LIMB_BITS = 32
"""Width of the limbs an exact uint64 sum is split into when it could wrap."""
LIMB_MASK = np.uint64(2**LIMB_BITS - 1)
LIMB_SHIFT = np.uint64(LIMB_BITS)

UNATTRIBUTED = -1
"""The entity id of a validator in no entity map: it is its own entity, named by its address."""

NO_TIME = -1
"""`ValidatorTable.unjailable_after_ms` of a validator without one."""


class DecimalIds(Sequence[str]):
    """Validator ids that are integers written in decimal (Ethereum's indices), kept as the
    integers and each written when read: a million strings are never made for the few a
    report names, and sets of them are compared as arrays (`numbers`)."""

    __slots__ = ("numbers",)

    def __init__(self, numbers: npt.NDArray[np.uint64]) -> None:
        self.numbers = numbers

    def __len__(self) -> int:
        return len(self.numbers)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> DecimalIds: ...
    def __getitem__(self, index: int | slice) -> str | DecimalIds:
        if isinstance(index, slice):
            return DecimalIds(self.numbers[index])
        return str(self.numbers.item(index))

    def __iter__(self) -> Iterator[str]:
        return map(str, self.numbers.tolist())


class Unnamed(Sequence[str]):
    """The names of `count` validators none of which has one (Ethereum's): "" for each, with no
    million-entry tuple to build and compare every poll, and two sets of them compared as
    their lengths."""

    __slots__ = ("_count",)

    def __init__(self, count: int) -> None:
        self._count = count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Unnamed: ...
    def __getitem__(self, index: int | slice) -> str | Unnamed:
        if isinstance(index, slice):
            return Unnamed(len(range(self._count)[index]))
        if not -self._count <= index < self._count:
            raise IndexError("row out of range")
        return ""

    def __iter__(self) -> Iterator[str]:
        return itertools.repeat("", self._count)

    def __repr__(self) -> str:
        return f"Unnamed({self._count})"


_EMPTY_UPTIME: Mapping[str, npt.NDArray[np.float64]] = MappingProxyType({})
_FLAGS_OF_CODE: tuple[tuple[bool, bool, bool], ...] = (
    # (in_consensus_set, jailed, delinquent) of each status code
    (True, False, False),
    (True, True, False),
    (True, False, True),
    (False, False, False),
    (False, True, False),
)


def status_codes(
    in_consensus_set: Sequence[bool],
    jailed: Sequence[bool],
    delinquent: Sequence[bool] | None = None,
) -> npt.NDArray[np.uint8]:
    """The status code of each row of parallel flag columns (agrees with `Validator.status`)."""
    count = len(in_consensus_set)
    active = np.fromiter(in_consensus_set, dtype=np.bool_, count=count)
    jail = np.fromiter(jailed, dtype=np.bool_, count=count)
    codes = np.where(active, STATUS_ONLINE, STATUS_INACTIVE).astype(np.uint8)
    if delinquent is not None:
        codes[active & np.fromiter(delinquent, dtype=np.bool_, count=count)] = STATUS_DELINQUENT
    codes[jail] = np.where(active[jail], STATUS_JAILED, STATUS_JAILED_INACTIVE)
    return codes


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
class StatusTotals:
    """Validator count and stake (base units) per disjoint status, over all registered."""

    validators: Mapping[ValidatorStatus, int]
    stake: Mapping[ValidatorStatus, int]


@dataclass(frozen=True, slots=True, eq=False)
class ValidatorTable:
    """Validators as columns, row i one validator, stakes in the chain's base unit.

    `addresses` are the validators' ids (unique; a source may compute them on access),
    `names` their self-chosen names ("" when none), `status` their status codes (STATUS_*).
    The optional columns are None (or empty) where a source has no such data:
    `unjailable_after_ms` (NO_TIME for none), `uptime_ratio` by window (NaN for none),
    `jail_risk_ratio` (missed blocks over the number that jails; NaN for none) and
    `entity_hints` (a self-declared operator identity, a claim; "" for none).
    """

    addresses: Sequence[str]
    names: Sequence[str]
    stakes: StakeColumn
    status: npt.NDArray[np.uint8]
    unjailable_after_ms: npt.NDArray[np.int64] | None = None
    uptime_ratio: Mapping[str, npt.NDArray[np.float64]] = field(
        default_factory=lambda: _EMPTY_UPTIME
    )
    jail_risk_ratio: npt.NDArray[np.float64] | None = None
    entity_hints: Sequence[str] | None = None

    def __post_init__(self) -> None:
        columns: list[Sized] = [self.addresses, self.names, self.status]
        columns += [c for c in (self.unjailable_after_ms, self.jail_risk_ratio) if c is not None]
        columns += [] if self.entity_hints is None else [self.entity_hints]
        columns += self.uptime_ratio.values()
        if any(len(column) != len(self.stakes) for column in columns):
            raise ValueError("columns differ in length")

    def __len__(self) -> int:
        return len(self.stakes)

    @classmethod
    def of(cls, validators: Sequence[Validator]) -> ValidatorTable:
        """The table of `validators` (small sets and tests: a source builds its columns)."""
        unjailable = [v.unjailable_after_ms for v in validators]
        risks = [v.jail_risk_ratio for v in validators]
        hints = [v.entity_hint or "" for v in validators]
        windows = sorted({window for v in validators for window in v.uptime_ratio})
        return cls(
            addresses=[v.address for v in validators],
            names=[v.name for v in validators],
            stakes=stake_column([v.stake for v in validators]),
            status=status_codes(
                [v.in_consensus_set for v in validators],
                [v.jailed for v in validators],
                [v.delinquent for v in validators],
            ),
            unjailable_after_ms=(
                np.array([NO_TIME if u is None else u for u in unjailable], dtype=np.int64)
                if any(u is not None for u in unjailable)
                else None
            ),
            uptime_ratio=MappingProxyType(
                {
                    window: np.array(
                        [v.uptime_ratio.get(window, math.nan) for v in validators],
                        dtype=np.float64,
                    )
                    for window in windows
                }
            ),
            jail_risk_ratio=(
                np.array([math.nan if r is None else r for r in risks], dtype=np.float64)
                if any(r is not None for r in risks)
                else None
            ),
            entity_hints=hints if any(hints) else None,
        )

    def row(self, index: int) -> Validator:
        """Row `index` as a `Validator`: for the few a report names one by one."""
        in_consensus_set, jailed, delinquent = _FLAGS_OF_CODE[int(self.status[index])]
        unjailable = None
        if self.unjailable_after_ms is not None:
            at = int(self.unjailable_after_ms[index])
            unjailable = None if at == NO_TIME else at
        risk = None
        if self.jail_risk_ratio is not None and not math.isnan(self.jail_risk_ratio[index]):
            risk = float(self.jail_risk_ratio[index])
        uptime = {
            window: float(ratios[index])
            for window, ratios in self.uptime_ratio.items()
            if not math.isnan(ratios[index])
        }
        return Validator(
            address=self.addresses[index],
            name=self.names[index],
            stake=int(self.stakes[index]),
            in_consensus_set=in_consensus_set,
            jailed=jailed,
            unjailable_after_ms=unjailable,
            uptime_ratio=MappingProxyType(uptime) if uptime else NO_UPTIME,
            delinquent=delinquent,
            jail_risk_ratio=risk,
            entity_hint=(self.entity_hints[index] or None) if self.entity_hints else None,
        )

    def rows(self, indices: Iterable[int]) -> tuple[Validator, ...]:
        return tuple(map(self.row, indices))

    def rows_with_status(self, *codes: int) -> npt.NDArray[np.intp]:
        """The rows whose status code is one of `codes`, in row order."""
        return np.flatnonzero(np.isin(self.status, codes))

    def totals(self) -> StatusTotals:
        """Validator count and stake per disjoint status."""
        counts = dict.fromkeys(ValidatorStatus, 0)
        stake = dict.fromkeys(ValidatorStatus, 0)
        for code, status in enumerate(STATUS_OF_CODE):
            rows = self.status == code
            counts[status] += int(np.count_nonzero(rows))
            stake[status] += column_sum(self.stakes[rows])
        return StatusTotals(MappingProxyType(counts), MappingProxyType(stake))

    def largest(self, count: int) -> npt.NDArray[np.intp]:
        """The rows of the `count` largest validators by stake, ties by address, largest
        first: those given their own series."""
        size = len(self)
        if count <= 0 or size == 0:
            return np.zeros(0, dtype=np.intp)
        stakes = self.stakes
        kth = stakes.min() if count >= size else np.partition(stakes, size - count)[size - count]
        above = np.flatnonzero(stakes > kth)
        tied = np.flatnonzero(stakes == kth).tolist()
        addresses = self.addresses
        chosen = above.tolist() + heapq.nsmallest(
            count - len(above), tied, key=addresses.__getitem__
        )
        chosen.sort(key=lambda row: (-int(stakes[row]), addresses[row]))
        return np.array(chosen, dtype=np.intp)


def column_sum(column: StakeColumn) -> int:
    """The exact sum of a stake column (uint64 sums in 32-bit limbs when they could wrap)."""
    if len(column) == 0:
        return 0
    if column.dtype != np.uint64:
        return exact_sum(column.tolist())
    if int(column.max()) * len(column) < 2**64:
        return int(column.sum(dtype=np.uint64))
    low = int((column & LIMB_MASK).sum(dtype=np.uint64))
    high = int((column >> LIMB_SHIFT).sum(dtype=np.uint64))
    return low + (high << LIMB_BITS)


def exact_sum(values: Sequence[int]) -> int:
    """Exact integer sum, in chunks so CPython's machine-word fast path of `sum` applies."""
    chunk = 1024
    if len(values) <= chunk:
        return sum(values)
    return sum([sum(values[i : i + chunk]) for i in range(0, len(values), chunk)])


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
    if set(names).isdisjoint(addresses):  # a C-level pass: names are few, addresses many
        return entity_index, names, None
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
