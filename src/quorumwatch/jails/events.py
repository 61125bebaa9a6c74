"""Validator events, pure: what changed between consecutive valid snapshots of a chain.

Events are derived only by comparing a valid snapshot with the last valid state (never from
an invalid answer). A transition seen across a gap (failed polls or a daemon down longer than
two poll intervals in between) is real but its time is uncertain: it is recorded with
`after_gap`, and no jail→unjail cycle is inferred across a gap.

The state is kept as columns, like the `ValidatorTable` it is derived from: a poll aligns the
previous state's rows to the table's by address, compares the aligned columns as arrays, and
materialises only the rows whose jail, activity or `unjailableAfter` changed, joined or left.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from quorumwatch.columns import (
    CONSENSUS_CODES_BELOW,
    JAILED_CODES,
    NO_TIME,
    STATUS_OF_CODE,
    DecimalIds,
    StakeColumn,
    Unnamed,
    ValidatorTable,
)

Rows: TypeAlias = slice | npt.NDArray[np.intp]
"""Rows of a column: all of a prefix (a slice from 0, a view), or an index array."""

_JAILED_OF_CODE = np.isin(np.arange(len(STATUS_OF_CODE)), JAILED_CODES)
_Column = TypeVar("_Column", bound=npt.NDArray[Any])


class EventKind(enum.StrEnum):
    JAILED = "jailed"
    UNJAILED = "unjailed"
    JOINED = "joined"
    LEFT = "left"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"


@dataclass(frozen=True, slots=True)
class TrackedValidator:
    """One row of a `ChainState`, materialised: for the few rows an event is derived from."""

    address: str
    name: str
    stake: int
    active: bool
    jailed: bool
    unjailable_after_ms: int | None
    jailed_since: float | None  # observation time of the jail; None when not jailed


@dataclass(frozen=True, slots=True, eq=False)
class ChainState:
    """What is remembered of a chain's validators between polls (and across restarts), as
    columns, row i one validator: `active` is membership of the consensus set,
    `unjailable_after_ms` is NO_TIME for none, and `jailed_since` (the observation time of the
    jail) is NaN when not jailed. `addresses` is a list, or the `DecimalIds` of a set whose ids
    are numbers, kept as numbers."""

    observed_at: float
    addresses: Sequence[str]
    names: Sequence[str]  # a tuple (no work for the GC, once tracked), or `Unnamed`
    stakes: StakeColumn
    active: npt.NDArray[np.bool_]
    jailed: npt.NDArray[np.bool_]
    unjailable_after_ms: npt.NDArray[np.int64]
    jailed_since: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        columns = (self.names, self.stakes, self.active, self.jailed, self.unjailable_after_ms)
        if any(len(column) != len(self.addresses) for column in (*columns, self.jailed_since)):
            raise ValueError("columns differ in length")

    def __len__(self) -> int:
        return len(self.addresses)

    def row(self, index: int) -> TrackedValidator:
        unjailable = int(self.unjailable_after_ms[index])
        since = float(self.jailed_since[index])
        return TrackedValidator(
            address=self.addresses[index],
            name=self.names[index],
            stake=int(self.stakes[index]),
            active=bool(self.active[index]),
            jailed=bool(self.jailed[index]),
            unjailable_after_ms=None if unjailable == NO_TIME else unjailable,
            jailed_since=None if math.isnan(since) else since,
        )

    def jailed_since_by_address(self) -> dict[str, float]:
        """The jailed validators whose jail start is known, by address."""
        rows = np.flatnonzero(self.jailed & ~np.isnan(self.jailed_since)).tolist()
        return {self.addresses[row]: float(self.jailed_since[row]) for row in rows}


@dataclass(frozen=True, slots=True)
class ValidatorEvent:
    """One change in a validator's state, observed at `observed_at`.

    It happened after `previous_observed_at` (the last valid snapshot before it). `inferred`
    marks a jail→unjail cycle that fell between two polls; `after_gap` a change seen across
    a gap, whose timing is uncertain. `total_stake` is the chain's consensus stake at the poll
    that observed it (what a jail's share of the stake is weighed against); None on events
    stored before it was recorded.
    """

    event_id: str
    chain: str
    address: str
    name: str
    kind: EventKind
    observed_at: float
    previous_observed_at: float
    inferred: bool
    after_gap: bool
    stake: int
    unjailable_after_ms: int | None
    jail_seconds: float | None = None  # on unjailed: observed length of the jail
    unjail_delay_seconds: float | None = None  # on unjailed: from unjailableAfter to unjail
    total_stake: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class StateChange:
    """How a state differs from the one before it: its rows that changed or joined (in no
    particular order), and the addresses of the validators that left."""

    written: npt.NDArray[np.intp]
    removed: list[str]


@dataclass(frozen=True, slots=True, eq=False)
class TrackedPoll:
    """A poll tracked: the new state, its events, and what changed (None: no state before,
    so all of it is new)."""

    state: ChainState
    events: list[ValidatorEvent]
    change: StateChange | None


def _event_id(chain: str, address: str, kind: EventKind, observed_at: float, seq: int) -> str:
    # Deterministic: re-deriving the same change after a crash yields the same id.
    key = f"{chain}|{address}|{kind}|{observed_at!r}|{seq}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def track(
    chain: str,
    previous: ChainState | None,
    table: ValidatorTable,
    observed_at: float,
    *,
    gap: bool,
    total_stake: int,
) -> TrackedPoll:
    """The new state, and the events between `previous` and this valid snapshot, each
    carrying `total_stake`, the consensus stake of this snapshot.

    Without a previous state (a first run) the snapshot is the baseline: no events, and
    validators already jailed get `jailed_since` = now, the earliest time known.
    """
    addresses, names = _ids(table.addresses), _names(table.names)
    jailed = _JAILED_OF_CODE[table.status]
    active = table.status < CONSENSUS_CODES_BELOW
    stakes = _owned(table.stakes)
    unjailable = (
        np.full(len(table), NO_TIME, dtype=np.int64)
        if table.unjailable_after_ms is None
        else _owned(table.unjailable_after_ms)
    )
    jailed_since = np.where(jailed, observed_at, np.nan)
    if previous is None:
        state = ChainState(
            observed_at, addresses, names, stakes, active, jailed, unjailable, jailed_since
        )
        return TrackedPoll(state, [], None)
    now, old, joined, left = _align(previous.addresses, addresses)
    moved = (
        (jailed[now] != previous.jailed[old])
        | (active[now] != previous.active[old])
        | (unjailable[now] != previous.unjailable_after_ms[old])
    )
    still_jailed = np.flatnonzero(jailed[now] & previous.jailed[old])
    jailed_since[_at(now, still_jailed)] = previous.jailed_since[_at(old, still_jailed)]
    rewritten = (
        moved
        | (stakes[now] != previous.stakes[old])
        | _names_differ(previous.names, names, now, old)
    )
    state = ChainState(
        observed_at, addresses, names, stakes, active, jailed, unjailable, jailed_since
    )
    # Only the rows that moved, joined or left are materialised, in the order of the rows.
    changes = _Events(chain, previous.observed_at, observed_at, gap, total_stake)
    moved_rows = np.flatnonzero(moved)
    moved_now = _at(now, moved_rows)
    old_row_of = dict(zip(moved_now.tolist(), _at(old, moved_rows).tolist(), strict=True))
    for row in sorted(moved_now.tolist() + joined.tolist()):
        old_row = old_row_of.get(row)
        if old_row is None:
            changes.joined(state.row(row))
        else:
            changes.changed(previous.row(old_row), state.row(row))
    for row in left.tolist():
        changes.emit(previous.row(row), EventKind.LEFT)
    written = np.concatenate([_at(now, np.flatnonzero(rewritten)), joined])
    removed = [previous.addresses[row] for row in left.tolist()]
    return TrackedPoll(state, changes.events, StateChange(written, removed))


class _Events:
    """The events of one poll, in the order they are derived."""

    def __init__(
        self, chain: str, since: float, observed_at: float, gap: bool, total_stake: int
    ) -> None:
        self.chain = chain
        self.since = since
        self.observed_at = observed_at
        self.gap = gap
        self.total_stake = total_stake
        self.events: list[ValidatorEvent] = []
        self._seen: dict[tuple[str, EventKind], int] = {}

    def emit(
        self,
        v: TrackedValidator,
        kind: EventKind,
        *,
        inferred: bool = False,
        measures: Mapping[str, float] = MappingProxyType({}),
    ) -> None:
        seq = self._seen.get((v.address, kind), 0)
        self._seen[v.address, kind] = seq + 1
        self.events.append(
            ValidatorEvent(
                event_id=_event_id(self.chain, v.address, kind, self.observed_at, seq),
                chain=self.chain,
                address=v.address,
                name=v.name,
                kind=kind,
                observed_at=self.observed_at,
                previous_observed_at=self.since,
                inferred=inferred,
                after_gap=self.gap,
                stake=v.stake,
                unjailable_after_ms=v.unjailable_after_ms,
                jail_seconds=measures.get("jail_seconds"),
                unjail_delay_seconds=measures.get("unjail_delay_seconds"),
                total_stake=self.total_stake,
            )
        )

    def joined(self, now: TrackedValidator) -> None:
        self.emit(now, EventKind.JOINED)
        if now.jailed:
            self.emit(now, EventKind.JAILED)

    def changed(self, old: TrackedValidator, now: TrackedValidator) -> None:
        if now.active != old.active:
            self.emit(now, EventKind.ACTIVATED if now.active else EventKind.DEACTIVATED)
        if now.jailed and not old.jailed:
            self.emit(now, EventKind.JAILED)
        elif old.jailed and not now.jailed:
            self.emit(now, EventKind.UNJAILED, measures=_unjail_measures(old, self.observed_at))
        elif _cycled_between_polls(old, now) and not self.gap:
            self.emit(now, EventKind.JAILED, inferred=True)
            self.emit(now, EventKind.UNJAILED, inferred=True)


def _owned(column: _Column) -> _Column:
    """A column the state may keep: a view is copied, lest it keep alive the whole answer it
    views (a beacon state's body) while the chain is down."""
    return column if column.base is None else column.copy()


def _ids(values: Sequence[str]) -> Sequence[str]:
    """A column of ids as the state keeps it: numbers as numbers (their own copy, not a view
    of the answer they were read from), anything else as a list."""
    if isinstance(values, DecimalIds):
        return DecimalIds(_owned(values.numbers))
    return _listed(values)


def _listed(values: Sequence[str]) -> list[str]:
    """A column of strings as a list: what the state keeps, and compares in C."""
    if isinstance(values, list):
        return values
    if isinstance(values, np.ndarray):
        listed: list[str] = values.tolist()
        return listed
    return list(values)


def _align(
    before: Sequence[str], after: Sequence[str]
) -> tuple[Rows, Rows, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The rows of `after` present before and their rows in `before` (in `after`'s order),
    the rows of `after` that joined, and the rows of `before` that left.

    The usual case, the same validators in the same order as last poll, perhaps with some
    appended, is one comparison: of arrays when both are numbers (a million ids in a
    millisecond, no string made), else of lists in C. Otherwise each row of `after` is looked
    up in `before`: by a binary search of the numbers, or one dict from address to row."""
    count = len(before)
    if isinstance(before, DecimalIds) and isinstance(after, DecimalIds):
        same_prefix = count <= len(after) and np.array_equal(before.numbers, after.numbers[:count])
    else:
        # Strings on one side at least (a state restored from the store, or ids that are no
        # numbers): compared as lists, once per restart for a set of numbers.
        before, after = _listed(before), _listed(after)
        same_prefix = count <= len(after) and before == after[:count]
    if same_prefix:
        prefix = slice(0, count)
        return prefix, prefix, np.arange(count, len(after), dtype=np.intp), _NO_ROWS
    rows = _rows_in(before, after)
    present = rows >= 0
    seen = np.zeros(count, dtype=np.bool_)
    seen[rows[present]] = True
    return np.flatnonzero(present), rows[present], np.flatnonzero(~present), np.flatnonzero(~seen)


def _rows_in(before: Sequence[str], after: Sequence[str]) -> npt.NDArray[np.intp]:
    """The row in `before` of each id of `after`, or -1 (ids are unique on each side)."""
    if not before:
        return np.full(len(after), -1, dtype=np.intp)
    if isinstance(before, DecimalIds) and isinstance(after, DecimalIds):
        order = np.argsort(before.numbers, kind="stable")
        ordered = before.numbers[order]
        positions = np.minimum(np.searchsorted(ordered, after.numbers), len(ordered) - 1)
        found = ordered[positions] == after.numbers
        found_rows: npt.NDArray[np.intp] = np.where(found, order[positions], -1).astype(np.intp)
        return found_rows
    row_of = dict(zip(before, range(len(before)), strict=True))
    return np.fromiter(
        map(row_of.get, after, itertools.repeat(-1)), dtype=np.intp, count=len(after)
    )


_NO_ROWS: npt.NDArray[np.intp] = np.zeros(0, dtype=np.intp)


def _at(rows: Rows, positions: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The rows at `positions` among `rows`."""
    return positions if isinstance(rows, slice) else rows[positions]


def _names(names: Sequence[str]) -> Sequence[str]:
    """`names` as kept between polls: as a tuple, unless no validator has one (`Unnamed`)."""
    return names if isinstance(names, Unnamed) else tuple(names)


def _names_differ(
    before: Sequence[str], after: Sequence[str], now: Rows, old: Rows
) -> npt.NDArray[np.bool_] | bool:
    """Whether each aligned name changed: none between two sets without names, whatever
    joined or left (a million names compared as objects held the GIL for 40 ms); else one
    comparison of tuples in C when the rows align as they were."""
    if isinstance(before, Unnamed) and isinstance(after, Unnamed):
        return False
    before, after = tuple(before), tuple(after)
    if isinstance(now, slice) and before == after[now]:
        return False
    differ: npt.NDArray[np.bool_] = (
        np.asarray(before, dtype=object)[old] != np.asarray(after, dtype=object)[now]
    )
    return differ


def _cycled_between_polls(old: TrackedValidator, now: TrackedValidator) -> bool:
    """Unjailed both times, yet `unjailableAfter` moved on: a jail and an unjail in between."""
    return (
        not old.jailed
        and not now.jailed
        and now.unjailable_after_ms is not None
        and now.unjailable_after_ms != old.unjailable_after_ms
        and (old.unjailable_after_ms is None or now.unjailable_after_ms > old.unjailable_after_ms)
    )


def _unjail_measures(old: TrackedValidator, observed_at: float) -> dict[str, float]:
    measures: dict[str, float] = {}
    if old.jailed_since is not None:
        measures["jail_seconds"] = observed_at - old.jailed_since
    if old.unjailable_after_ms is not None:
        measures["unjail_delay_seconds"] = max(0.0, observed_at - old.unjailable_after_ms / 1000)
    return measures
