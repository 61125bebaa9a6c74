"""The alert repository: each chain's pending and firing alerts, and the outbox of alert events
not yet acknowledged by the MQTT broker, as functions of a `Store` (call them through
`AsyncStore.call` from the loop).

A chain's alert state and the events of one evaluation are committed in one transaction
(`commit_alerts`), the events into `outbox` and counted per (alert, status) (`AlertEvents`
counters). The MQTT publisher drains the outbox in `id` order and deletes a row only after the
broker acknowledged it: at-least-once, in order per chain, and nothing is lost or fired again
across a restart. The outbox is bounded (`Store.max_outbox_events`): beyond it the oldest
pending events are dropped in the committing transaction and counted (`OutboxDropped`, a
persisted chain-level counter).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from quorumwatch.alerting.model import AlertEvent, AlertState, AlertStatus, Severity
from quorumwatch.store import counters as counter_rows
from quorumwatch.store.counters import AlertEvents, CounterKey, OutboxDropped
from quorumwatch.store.database import Store

__all__ = [
    "OutboxEntry",
    "alert_chains",
    "commit_alerts",
    "events_generated",
    "firing",
    "load_alert_state",
    "outbox_delete",
    "outbox_dropped",
    "outbox_peek",
    "outbox_stats",
]

log = structlog.get_logger(__name__)

# While the outbox stays full every commit drops events: warn at most this often.
DROP_WARNING_INTERVAL_SECONDS = 60.0

_ALERT_STATE_COLUMNS = (
    "chain, fingerprint, alert, severity, labels, pending_since, starts_at, summary,"
    " description, value, threshold"
)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One alert event committed but not yet acknowledged by the MQTT broker."""

    id: int  # increasing in commit order: FIFO, so order per chain is kept
    chain: str
    event_id: str
    alert: str
    payload: str  # AlertEvent.to_json()
    created_at: float  # when it was committed, seconds since the epoch


def _alert_state_params(state: AlertState) -> tuple[object, ...]:
    return (
        state.chain,
        state.fingerprint,
        state.alert,
        str(state.severity),
        json.dumps(dict(state.labels), ensure_ascii=False, sort_keys=True),
        state.pending_since,
        state.starts_at,
        state.summary,
        state.description,
        state.value,
        state.threshold,
    )


def _alert_state_from_row(row: Sequence[Any]) -> AlertState:
    return AlertState(
        chain=row[0],
        fingerprint=row[1],
        alert=row[2],
        severity=Severity(row[3]),
        labels=json.loads(row[4]),
        pending_since=row[5],
        starts_at=row[6],
        summary=row[7],
        description=row[8],
        value=row[9],
        threshold=row[10],
    )


# --- reads ----------------------------------------------------------------------------------


def load_alert_state(db: Store, chain: str) -> list[AlertState]:
    """The chain's committed pending and firing alerts, ordered by alert, fingerprint."""
    return _alert_states(db, chain, firing_only=False)


def firing(db: Store, chain: str) -> list[AlertState]:
    """The chain's committed firing alerts (`starts_at` set), ordered by alert, fingerprint."""
    return _alert_states(db, chain, firing_only=True)


def _alert_states(db: Store, chain: str, *, firing_only: bool) -> list[AlertState]:
    where = " AND starts_at IS NOT NULL" if firing_only else ""
    with db.reading(f"load alert state of {chain!r}") as conn:
        rows = conn.execute(
            f"SELECT {_ALERT_STATE_COLUMNS} FROM alert_state WHERE chain = ?{where}"
            " ORDER BY alert, fingerprint",
            (chain,),
        ).fetchall()
    return [_alert_state_from_row(row) for row in rows]


def alert_chains(db: Store) -> list[str]:
    """Chains that have alert state, pending events or ever generated an event, sorted."""
    generated, params = AlertEvents.match()
    with db.reading("list alert chains") as conn:
        rows = conn.execute(
            "SELECT chain FROM alert_state UNION SELECT chain FROM outbox"
            f" UNION SELECT chain FROM counters WHERE {generated} ORDER BY chain",
            params,
        ).fetchall()
    return [chain for (chain,) in rows]


def outbox_peek(db: Store, limit: int) -> list[OutboxEntry]:
    """The oldest `limit` events not yet acknowledged, in commit order (FIFO)."""
    with db.reading("read the outbox") as conn:
        rows = conn.execute(
            "SELECT id, chain, event_id, topic_alert, payload, created_at FROM outbox"
            " ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
    return [
        OutboxEntry(
            id=row[0],
            chain=row[1],
            event_id=row[2],
            alert=row[3],
            payload=row[4],
            created_at=row[5],
        )
        for row in rows
    ]


def outbox_stats(db: Store, now: float) -> tuple[int, float | None]:
    """(events pending, age in seconds of the oldest at `now`, None when empty)."""
    with db.reading("read outbox statistics") as conn:
        count, oldest = conn.execute("SELECT count(*), min(created_at) FROM outbox").fetchone()
    return int(count), None if oldest is None else max(0.0, now - oldest)


def outbox_dropped(db: Store) -> int:
    """Events ever dropped from the full outbox, over all chains; kept across restarts."""
    with db.reading("read the outbox drop counter") as conn:
        totals = counter_rows.totals(conn, OutboxDropped)
    return int(totals.get(OutboxDropped(), 0))


def events_generated(db: Store) -> dict[tuple[str, AlertStatus], int]:
    """Alert events ever committed per (alert, status), summed over chains; kept across
    restarts and outbox deletes."""
    with db.reading("read alert event counters") as conn:
        totals = counter_rows.totals(conn, AlertEvents)
    generated = {
        (key.alert, key.status): int(total)
        for key, total in totals.items()
        if isinstance(key, AlertEvents)
    }
    return dict(sorted(generated.items()))


# --- writes ---------------------------------------------------------------------------------


def commit_alerts(
    db: Store, chain: str, states: Sequence[AlertState], events: Sequence[AlertEvent]
) -> int:
    """In one transaction: the chain's alert state becomes exactly `states`, and each event is
    appended to the outbox (its payload `to_json()`) and counted. An event already in the
    outbox (same `event_id`) is skipped and not counted again. If the outbox then holds more
    than `db.max_outbox_events`, the oldest are dropped; returns how many."""
    others = [s.fingerprint for s in states if s.chain != chain]
    others += [e.event_id for e in events if e.chain != chain]
    if others:
        raise ValueError(f"alert {others[0]} is not for chain {chain!r}")
    created_at = time.time()
    with db.transaction(f"commit alerts of {chain!r}") as conn:
        conn.execute("DELETE FROM alert_state WHERE chain = ?", (chain,))
        conn.executemany(
            f"INSERT INTO alert_state ({_ALERT_STATE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_alert_state_params(state) for state in states],
        )
        increments: dict[CounterKey, float] = {}
        for event in events:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO outbox (chain, event_id, topic_alert, created_at,"
                " payload) VALUES (?, ?, ?, ?, ?)",
                (chain, event.event_id, event.alert, created_at, event.to_json()),
            )
            if cursor.rowcount != 1:
                continue  # still pending: counted when it was appended
            key = AlertEvents(event.alert, event.status)
            increments[key] = increments.get(key, 0) + 1
        counter_rows.add(conn, chain, increments)
        dropped = _drop_oldest_outbox_events(conn, db.max_outbox_events) if increments else {}
    _warn_of_drops(db, sum(dropped.values()))
    return sum(dropped.values())


def _drop_oldest_outbox_events(conn: sqlite3.Connection, max_events: int) -> dict[str, int]:
    """Within the caller's transaction, cut the outbox back to `max_events` by deleting its
    oldest rows, counted per chain; returns the counts per chain.

    Dropping loses history, never the current state: the retained `<chain>/firing` topic is
    republished from `alert_state`, not from the outbox. Only a prefix in `id` order goes, so
    what is kept stays in commit order per chain.
    """
    (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
    excess = int(count) - max_events
    if excess <= 0:
        return {}
    oldest = "SELECT id FROM outbox ORDER BY id LIMIT ?"
    dropped = {
        chain: int(n)
        for chain, n in conn.execute(
            f"SELECT chain, count(*) FROM outbox WHERE id IN ({oldest})"
            " GROUP BY chain ORDER BY chain",
            (excess,),
        )
    }
    conn.execute(f"DELETE FROM outbox WHERE id IN ({oldest})", (excess,))
    for chain, n in dropped.items():
        counter_rows.add(conn, chain, {OutboxDropped(): n})
    return dropped


def _warn_of_drops(db: Store, dropped: int) -> None:
    """The first drop is logged at once, later ones summed into one line a minute."""
    db.outbox_drops_not_logged += dropped
    now = time.monotonic()
    if not db.outbox_drops_not_logged or now < db.next_outbox_drop_warning:
        return
    log.warning(
        "outbox full: oldest undelivered alert events dropped",
        dropped=db.outbox_drops_not_logged,
        max_outbox_events=db.max_outbox_events,
    )
    db.outbox_drops_not_logged = 0
    db.next_outbox_drop_warning = now + DROP_WARNING_INTERVAL_SECONDS


def outbox_delete(db: Store, entry_id: int) -> None:
    """Remove one event from the outbox, once the broker has acknowledged it."""
    with db.transaction("delete from the outbox") as conn:
        conn.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
