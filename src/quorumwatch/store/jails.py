"""The jail repository: each chain's tracked validators, its validator events and its jail
counters, as functions of a `Store` (call them through `AsyncStore.call` from the loop).

A poll is committed in one transaction (`commit_poll`). Events carry a deterministic unique
`event_id`, and counters only grow by what the events actually inserted in that transaction
count (`JailCounters.counted`), so a poll replayed after a crash is never counted twice.
Events are pruned by retention; counters never shrink.

Stakes and `unjailableAfter` are Python ints of any size (the API does not bound them) and are
stored as TEXT, converted back exactly; times are REAL seconds since the epoch; booleans 0/1.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from quorumwatch.jails.events import ChainState, EventKind, TrackedValidator, ValidatorEvent
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
    " after_gap, stake, unjailable_after_ms, jail_seconds, unjail_delay_seconds"
)


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
    rows = conn.execute(
        "SELECT address, name, stake, active, jailed, unjailable_after_ms,"
        " jailed_since FROM validator_state WHERE chain = ? ORDER BY address",
        (chain,),
    ).fetchall()
    if row is None:
        return None
    validators = {
        address: TrackedValidator(
            address=address,
            name=name,
            stake=int(stake),
            active=bool(active),
            jailed=bool(jailed),
            unjailable_after_ms=_text_int(unjailable_after_ms),
            jailed_since=jailed_since,
        )
        for address, name, stake, active, jailed, unjailable_after_ms, jailed_since in rows
    }
    return ChainState(observed_at=row[0], validators=MappingProxyType(validators))


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
    previous: ChainState | None = None,
) -> list[ValidatorEvent]:
    """Persist one poll in one transaction; return the events newly inserted, in order.

    The chain's tracked validators become exactly `state.validators`. Given `previous`, the
    state the last commit persisted, only what changed since is written (a large set changes
    little from poll to poll); without it, the whole state is. Events already stored (same
    `event_id`) are skipped and not counted again, so replaying a poll is harmless.
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
        written: Collection[TrackedValidator]
        if previous is None:
            conn.execute("DELETE FROM validator_state WHERE chain = ?", (chain,))
            written = state.validators.values()
        else:
            before = previous.validators
            conn.executemany(
                "DELETE FROM validator_state WHERE chain = ? AND address = ?",
                [(chain, address) for address in before.keys() - state.validators.keys()],
            )
            written = [
                v
                for address, v in state.validators.items()
                if (old := before.get(address)) is not v and old != v
            ]
        conn.executemany(
            "INSERT OR REPLACE INTO validator_state (chain, address, name, stake, active, jailed,"
            " unjailable_after_ms, jailed_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    chain,
                    v.address,
                    v.name,
                    str(v.stake),
                    int(v.active),
                    int(v.jailed),
                    _int_text(v.unjailable_after_ms),
                    v.jailed_since,
                )
                for v in written
            ],
        )
        inserted: list[ValidatorEvent] = []
        for event in events:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _event_params(event),
            )
            if cursor.rowcount == 1:  # else already stored: counted when it was inserted
                inserted.append(event)
        counter_rows.add(conn, chain, _counter_increments(JailCounters.counted(inserted)))
    return inserted


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
