"""The jail repository: each chain's tracked validators, its validator events and its jail
counters, as functions of a `Store` (call them through `AsyncStore.call` from the loop).

A poll is committed in one transaction (`commit_poll`). Events carry a deterministic unique
`event_id`, and counters only grow by what the events actually inserted in that transaction
count (`JailCounters.counted`), so a poll replayed after a crash is never counted twice.
Events are pruned by retention; counters never shrink.

Stakes and `unjailableAfter` are Python ints of any size (the API does not bound them) and are
stored as TEXT, converted back exactly; times are REAL seconds since the epoch; booleans 0/1.
A chain's tracked state is written and read in chunks of rows, straight from and into its
columns, never as one Python object per validator.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from quorumwatch.columns import NO_TIME, stake_column
from quorumwatch.jails.events import ChainState, EventKind, StateChange, ValidatorEvent
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters
from quorumwatch.store import counters as counter_rows
from quorumwatch.store.counters import (
    ChainJails,
    CounterKey,
    UnjailDelayBucket,
    UnjailDelayCount,
    UnjailDelaySum,
    ValidatorJails,
)
from quorumwatch.store.database import Store

__all__ = [
    "JailHistory",
    "chains",
    "commit_poll",
    "count_events",
    "counters",
    "events",
    "load_history",
    "load_state",
    "prune",
]

_EVENT_COLUMNS = (
    "event_id, chain, address, name, kind, observed_at, previous_observed_at, inferred,"
    " after_gap, stake, unjailable_after_ms, jail_seconds, unjail_delay_seconds, total_stake"
)
_STATE_COLUMNS = "address, name, stake, active, jailed, unjailable_after_ms, jailed_since"
# Rows of a tracked state converted at a time: bounds the Python objects alive at once (and
# so the full garbage collections their creation triggers).
CHUNK_ROWS = 1024
_INT64 = np.iinfo(np.int64)


@dataclass(frozen=True, slots=True)
class JailHistory:
    """What a tracker needs of one chain when it starts, read in one snapshot."""

    state: ChainState | None  # None if the chain was never committed
    counters: JailCounters
    jails: list[ValidatorEvent]  # its JAILED events observed at or after `since`, in order


def _int_text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _text_int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _event_params(event: ValidatorEvent) -> tuple[object, ...]:
    return (
        event.event_id,
        event.chain,
        event.address,
        event.name,
        str(event.kind),
        event.observed_at,
        event.previous_observed_at,
        int(event.inferred),
        int(event.after_gap),
        str(event.stake),
        _int_text(event.unjailable_after_ms),
        event.jail_seconds,
        event.unjail_delay_seconds,
        _int_text(event.total_stake),
    )


def _event_from_row(row: Sequence[Any]) -> ValidatorEvent:
    return ValidatorEvent(
        event_id=row[0],
        chain=row[1],
        address=row[2],
        name=row[3],
        kind=EventKind(row[4]),
        observed_at=row[5],
        previous_observed_at=row[6],
        inferred=bool(row[7]),
        after_gap=bool(row[8]),
        stake=int(row[9]),
        unjailable_after_ms=_text_int(row[10]),
        jail_seconds=row[11],
        unjail_delay_seconds=row[12],
        total_stake=_text_int(row[13]),
    )


def _counter_increments(counted: JailCounters) -> dict[CounterKey, float]:
    """The rows `counted` adds to: only those it increments, as the store always wrote."""
    increments: dict[CounterKey, float] = {}
    if counted.jails:
        increments[ChainJails()] = counted.jails
    for address, jails in counted.validator_jails.items():
        if jails:
            increments[ValidatorJails(address)] = jails
    for bound, count in zip(UNJAIL_DELAY_BUCKETS, counted.unjail_delay_bucket_counts, strict=True):
        if count:
            increments[UnjailDelayBucket(bound)] = count
    if counted.unjail_delay_count:
        increments[UnjailDelaySum()] = counted.unjail_delay_sum
        increments[UnjailDelayCount()] = counted.unjail_delay_count
    return increments


# --- reads ----------------------------------------------------------------------------------


def load_state(db: Store, chain: str) -> ChainState | None:
    """The last committed state of `chain`; None if the chain was never committed."""
    # One snapshot: the state and its validators from the same commit.
    with db.snapshot(f"load state of {chain!r}") as conn:
        return _load_state(conn, chain)


def counters(db: Store, chain: str) -> JailCounters:
    """The chain's jail counters (zero for a chain never seen)."""
    with db.reading(f"read counters of {chain!r}") as conn:
        return _counters(conn, chain)


def count_events(db: Store, chain: str, kind: EventKind, since: float) -> int:
    """Stored events of `kind` on `chain` with `observed_at >= since`."""
    with db.reading(f"count events of {chain!r}") as conn:
        count: int = conn.execute(
            "SELECT count(*) FROM events WHERE chain = ? AND kind = ? AND observed_at >= ?",
            (chain, str(kind), since),
        ).fetchone()[0]
    return count


def events(
    db: Store,
    chain: str | None = None,
    *,
    since: float | None = None,
    validator: str | None = None,
    kinds: Collection[EventKind] | None = None,
) -> list[ValidatorEvent]:
    """Stored events matching every filter given, ordered by observation time then
    insertion. An empty `kinds` matches nothing."""
    with db.reading("read events") as conn:
        return _events(conn, chain, since=since, validator=validator, kinds=kinds)


def chains(db: Store) -> list[str]:
    """Chains with a committed state, sorted."""
    with db.reading("list chains") as conn:
        rows = conn.execute("SELECT chain FROM chain_state ORDER BY chain").fetchall()
    return [chain for (chain,) in rows]


def load_history(db: Store, chain: str, since: float) -> JailHistory:
    """The chain's state, counters and JAILED events observed at or after `since`, all from
    the same commit."""
    with db.snapshot(f"load history of {chain!r}") as conn:
        return JailHistory(
            state=_load_state(conn, chain),
            counters=_counters(conn, chain),
            jails=_events(conn, chain, since=since, kinds=[EventKind.JAILED]),
        )


def _load_state(conn: sqlite3.Connection, chain: str) -> ChainState | None:
    row = conn.execute("SELECT observed_at FROM chain_state WHERE chain = ?", (chain,)).fetchone()
    cursor = conn.execute(
        f"SELECT {_STATE_COLUMNS} FROM validator_state WHERE chain = ? ORDER BY address",
        (chain,),
    )
    if row is None:
        return None
    columns: list[list[Any]] = [[] for _ in range(7)]
    while rows := cursor.fetchmany(CHUNK_ROWS):
        for column, values in zip(columns, zip(*rows, strict=True), strict=True):
            column.extend(values)
    addresses, names, stakes, active, jailed, unjailable, since = columns
    return ChainState(
        observed_at=row[0],
        addresses=addresses,
        names=names,
        stakes=stake_column(list(map(int, stakes))),
        active=np.array(active, dtype=np.bool_),
        jailed=np.array(jailed, dtype=np.bool_),
        unjailable_after_ms=np.fromiter(map(_time_ms, unjailable), np.int64, len(unjailable)),
        jailed_since=np.array(since, dtype=np.float64),
    )


def _time_ms(text: str | None) -> int:
    """A stored `unjailableAfter` for the state's int64 column: NO_TIME for none, and for a
    value beyond int64 that an older release stored (no table can hold one)."""
    if text is None:
        return NO_TIME
    value = int(text)
    return value if _INT64.min <= value <= _INT64.max else NO_TIME


def _counters(conn: sqlite3.Connection, chain: str) -> JailCounters:
    values = counter_rows.read_chain(conn, chain)
    validator_jails = {
        key.address: int(value) for key, value in values.items() if isinstance(key, ValidatorJails)
    }
    return JailCounters(
        jails=int(values.get(ChainJails(), 0)),
        validator_jails=MappingProxyType(dict(sorted(validator_jails.items()))),
        unjail_delay_bucket_counts=tuple(
            int(values.get(UnjailDelayBucket(bound), 0)) for bound in UNJAIL_DELAY_BUCKETS
        ),
        unjail_delay_sum=float(values.get(UnjailDelaySum(), 0.0)),
        unjail_delay_count=int(values.get(UnjailDelayCount(), 0)),
    )


def _events(
    conn: sqlite3.Connection,
    chain: str | None,
    *,
    since: float | None,
    validator: str | None = None,
    kinds: Collection[EventKind] | None,
) -> list[ValidatorEvent]:
    if kinds is not None and not kinds:
        return []
    clauses: list[str] = []
    params: list[object] = []
    if chain is not None:
        clauses.append("chain = ?")
        params.append(chain)
    if validator is not None:
        clauses.append("address = ?")
        params.append(validator)
    if since is not None:
        clauses.append("observed_at >= ?")
        params.append(since)
    if kinds is not None:
        names = sorted({str(kind) for kind in kinds})
        clauses.append(f"kind IN ({', '.join('?' * len(names))})")
        params.extend(names)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events{where} ORDER BY observed_at, id", params
    ).fetchall()
    return [_event_from_row(row) for row in rows]


# --- writes ---------------------------------------------------------------------------------


def commit_poll(
    db: Store,
    chain: str,
    state: ChainState,
    events: Sequence[ValidatorEvent],
    *,
    change: StateChange | None = None,
) -> list[ValidatorEvent]:
    """Persist one poll in one transaction; return the events newly inserted, in order.

    The chain's tracked validators become exactly those of `state`. Given `change`, how
    `state` differs from the state the last commit persisted, only its rows are written (a
    large set changes little from poll to poll); without it, the whole state is. Events
    already stored (same `event_id`) are skipped and not counted again, so replaying a poll
    is harmless.
    """
    for event in events:
        if event.chain != chain:
            raise ValueError(f"event {event.event_id} is for chain {event.chain!r}, not {chain!r}")
    with db.transaction(f"commit poll of {chain!r}") as conn:
        conn.execute(
            "INSERT INTO chain_state (chain, observed_at) VALUES (?, ?)"
            " ON CONFLICT (chain) DO UPDATE SET observed_at = excluded.observed_at",
            (chain, state.observed_at),
        )
        if change is None:
            conn.execute("DELETE FROM validator_state WHERE chain = ?", (chain,))
            written: Iterable[int] = range(len(state))
        else:
            conn.executemany(
                "DELETE FROM validator_state WHERE chain = ? AND address = ?",
                [(chain, address) for address in change.removed],
            )
            written = change.written.tolist()
        # In the table's key order: its B-tree is then filled page after page, not at random
        # (a whole large set is written several times faster).
        in_order = sorted(written, key=state.addresses.__getitem__)
        conn.executemany(
            f"INSERT OR REPLACE INTO validator_state (chain, {_STATE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            _state_rows(chain, state, in_order),
        )
        inserted: list[ValidatorEvent] = []
        for event in events:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _event_params(event),
            )
            if cursor.rowcount == 1:  # else already stored: counted when it was inserted
                inserted.append(event)
        counter_rows.add(conn, chain, _counter_increments(JailCounters.counted(inserted)))
    return inserted


def _state_rows(chain: str, state: ChainState, rows: list[int]) -> Iterator[tuple[object, ...]]:
    """The validator_state rows of `state` at `rows`, converted a chunk at a time."""
    for start in range(0, len(rows), CHUNK_ROWS):
        at = rows[start : start + CHUNK_ROWS]
        chunk = np.array(at, dtype=np.intp)
        yield from zip(
            itertools.repeat(chain),
            [state.addresses[row] for row in at],
            [state.names[row] for row in at],
            map(str, state.stakes[chunk].tolist()),
            state.active[chunk].astype(np.uint8).tolist(),
            state.jailed[chunk].astype(np.uint8).tolist(),
            [
                None if ms == NO_TIME else str(ms)
                for ms in state.unjailable_after_ms[chunk].tolist()
            ],
            [None if math.isnan(t) else t for t in state.jailed_since[chunk].tolist()],
        )


def prune(db: Store, older_than: float) -> int:
    """Delete events observed before `older_than` (all chains); counters are untouched.
    Returns the number of events deleted; their pages go back to the filesystem."""
    with db.transaction("prune events") as conn:
        # Per chain, so each delete is a range scan of events_chain_time.
        pruned = [c for (c,) in conn.execute("SELECT DISTINCT chain FROM events")]
        deleted = 0
        for chain in pruned:
            cursor = conn.execute(
                "DELETE FROM events WHERE chain = ? AND observed_at < ?", (chain, older_than)
            )
            deleted += cursor.rowcount
    if deleted:
        # Give the freed pages back to the filesystem (auto_vacuum=INCREMENTAL), as its own
        # transaction. executescript steps the pragma to the end; execute() would stop after
        # its first step, which frees a single page.
        with db.reading("vacuum after prune") as conn:
            conn.executescript("PRAGMA incremental_vacuum;")
    return deleted
