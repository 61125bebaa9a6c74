"""Embedded store: the tracked validator state, jail events, counters, alert state and the
alert-event outbox, in SQLite.

One database file at `[storage].path`, in WAL mode so that the `jails` CLI can read it while
the daemon writes. Every write is one transaction; `synchronous=FULL` makes a committed poll
durable across kill -9 and power loss. Events carry a deterministic unique `event_id`, and
counters are only incremented for events actually inserted in the same transaction, so a poll
replayed after a crash is never counted twice.

Counters live in their own table and never shrink: events are pruned by retention, counters
continue across restarts. The schema is versioned with `PRAGMA user_version`; `MIGRATIONS`
is an ordered list, each applied in one transaction.

Values: stakes and `unjailableAfter` are Python ints of any size (the API does not bound
them) and are stored as TEXT, converted back exactly; times are REAL seconds since the
epoch; booleans 0/1.

Alerts (schema 2): a chain's pending and firing alerts and the events of one evaluation are
committed in one transaction, the events into `outbox`. The MQTT publisher drains the outbox
in `id` order and deletes a row only after the broker acknowledged it: at-least-once, in order
per chain, and nothing is lost or fired again across a restart. The outbox is bounded
(`max_outbox_events`): beyond it the oldest pending events are dropped in the committing
transaction and counted (`outbox_dropped`, a persisted chain-level counter).

`Store` is synchronous and keeps one connection; `AsyncStore` runs every call on one
dedicated worker thread so that blocking SQLite never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, ParamSpec, Self, TypeVar

import structlog

from quorumwatch.alerting.model import AlertEvent, AlertState, AlertStatus, Severity
from quorumwatch.jails.events import ChainState, EventKind, TrackedValidator, ValidatorEvent
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters

__all__ = [
    "DEFAULT_MAX_OUTBOX_EVENTS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AsyncStore",
    "JailCounters",
    "OutboxEntry",
    "Store",
    "StoreError",
]

log = structlog.get_logger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

BUSY_TIMEOUT_MS = 5000
# The WAL file is truncated back to this size after a checkpoint that emptied it.
JOURNAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024
# The default outbox bound (`[mqtt].max_outbox_events`): ~50 MB of typical event JSON.
DEFAULT_MAX_OUTBOX_EVENTS = 100_000
# While the outbox stays full every commit drops events: warn at most this often.
DROP_WARNING_INTERVAL_SECONDS = 60.0

# Each migration: the statements taking the schema from version i to i + 1, run in one
# transaction that also sets `user_version` to i + 1. Append only; never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE chain_state (
            chain TEXT PRIMARY KEY NOT NULL,
            observed_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE validator_state (
            chain TEXT NOT NULL REFERENCES chain_state (chain) ON DELETE CASCADE,
            address TEXT NOT NULL,
            name TEXT NOT NULL,
            stake TEXT NOT NULL,
            active INTEGER NOT NULL CHECK (active IN (0, 1)),
            jailed INTEGER NOT NULL CHECK (jailed IN (0, 1)),
            unjailable_after_ms TEXT,
            jailed_since REAL,
            PRIMARY KEY (chain, address)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            chain TEXT NOT NULL,
            address TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            observed_at REAL NOT NULL,
            previous_observed_at REAL NOT NULL,
            inferred INTEGER NOT NULL CHECK (inferred IN (0, 1)),
            after_gap INTEGER NOT NULL CHECK (after_gap IN (0, 1)),
            stake TEXT NOT NULL,
            unjailable_after_ms TEXT,
            jail_seconds REAL,
            unjail_delay_seconds REAL
        )
        """,
        "CREATE INDEX events_chain_time ON events (chain, observed_at)",
        "CREATE INDEX events_chain_address_time ON events (chain, address, observed_at)",
        "CREATE INDEX events_chain_kind_time ON events (chain, kind, observed_at)",
        # `value` has no declared type: integer counts stay INTEGER, the delay sum REAL.
        """
        CREATE TABLE counters (
            chain TEXT NOT NULL,
            address TEXT NOT NULL,
            name TEXT NOT NULL,
            value NOT NULL,
            PRIMARY KEY (chain, address, name)
        ) WITHOUT ROWID
        """,
    ),
    # 2: alert state (pending and firing alerts, so a restart neither re-fires nor loses one)
    # and the outbox of alert events not yet acknowledged by the MQTT broker. The count of
    # events generated per (alert, status) lives in `counters` (chain level, `events_*`).
    (
        """
        CREATE TABLE alert_state (
            chain TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            alert TEXT NOT NULL,
            severity TEXT NOT NULL,
            labels TEXT NOT NULL,
            pending_since REAL NOT NULL,
            starts_at REAL,
            summary TEXT NOT NULL,
            description TEXT NOT NULL,
            value REAL,
            threshold REAL,
            PRIMARY KEY (chain, fingerprint)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chain TEXT NOT NULL,
            event_id TEXT NOT NULL UNIQUE,
            topic_alert TEXT NOT NULL,
            created_at REAL NOT NULL,
            payload TEXT NOT NULL
        )
        """,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_CHAIN = ""  # counters.address of chain-level counters
_JAILS = "jails"
_DELAY_SUM = "unjail_delay_sum"
_DELAY_COUNT = "unjail_delay_count"
_OUTBOX_DROPPED = "outbox_dropped"  # chain-level: events of the chain dropped from the outbox


def _bucket_name(bound: float) -> str:
    return f"unjail_delay_le_{bound:g}"


_EVENTS_PREFIX = "events_"


def _events_counter_name(alert: str, status: AlertStatus) -> str:
    """`events_<alert>_<status>`; the status never contains `_`, so the name splits back."""
    return f"{_EVENTS_PREFIX}{alert}_{status}"


_ALERT_STATE_COLUMNS = (
    "chain, fingerprint, alert, severity, labels, pending_since, starts_at, summary,"
    " description, value, threshold"
)


_EVENT_COLUMNS = (
    "event_id, chain, address, name, kind, observed_at, previous_observed_at, inferred,"
    " after_gap, stake, unjailable_after_ms, jail_seconds, unjail_delay_seconds"
)


class StoreError(Exception):
    """A storage failure, in one line naming the database and what failed."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One alert event committed but not yet acknowledged by the MQTT broker."""

    id: int  # increasing in commit order: FIFO, so order per chain is kept
    chain: str
    event_id: str
    alert: str
    payload: str  # AlertEvent.to_json()
    created_at: float  # when it was committed, seconds since the epoch


def _one_line(text: str) -> str:
    return " ".join(text.split())


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


def _counter_increments(event: ValidatorEvent) -> list[tuple[str, str, float]]:
    """(address, counter name, increment) for one newly inserted event."""
    if event.kind is EventKind.JAILED:
        return [(_CHAIN, _JAILS, 1), (event.address, _JAILS, 1)]
    if event.kind is EventKind.UNJAILED and event.unjail_delay_seconds is not None:
        delay = event.unjail_delay_seconds
        increments: list[tuple[str, str, float]] = [
            (_CHAIN, _bucket_name(bound), 1) for bound in UNJAIL_DELAY_BUCKETS if delay <= bound
        ]
        increments += [(_CHAIN, _DELAY_SUM, delay), (_CHAIN, _DELAY_COUNT, 1)]
        return increments
    return []


def _create_private_file(path: Path) -> None:
    """Create `path` (and its parent) with mode 0600 if missing; leave an existing file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)  # umask-independent
    finally:
        os.close(fd)


class Store:
    """Synchronous; one connection; use from one thread at a time (AsyncStore does that).

    The connection is bound to the thread that opened it (sqlite3's `check_same_thread`).
    """

    def __init__(
        self,
        path: Path,
        *,
        read_only: bool = False,
        max_outbox_events: int = DEFAULT_MAX_OUTBOX_EVENTS,
    ) -> None:
        if max_outbox_events < 1:
            raise ValueError(f"max_outbox_events must be at least 1, got {max_outbox_events}")
        self.path = path
        self.read_only = read_only
        self.max_outbox_events = max_outbox_events
        self._drops_not_logged = 0
        self._next_drop_warning = float("-inf")  # time.monotonic()
        self._conn: sqlite3.Connection | None = None
        with self._errors("open"):
            if read_only and not path.is_file():
                raise StoreError(f"{path}: open failed: no such database file")
            if not read_only:
                _create_private_file(path)
            self._conn = self._connect()
            try:
                self._configure()
            except BaseException:
                self._conn.close()
                self._conn = None
                raise

    # --- connection ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The one place a connection is made (tests subclass it to trace statements)."""
        if self.read_only:
            uri = "file:" + urllib.parse.quote(str(self.path.absolute())) + "?mode=ro"
            target: str | Path = uri
        else:
            target = self.path
        # isolation_level=None: no implicit transactions; every write says BEGIN itself.
        return sqlite3.connect(
            target,
            uri=self.read_only,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )

    def _configure(self) -> None:
        conn = self._db
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if self.read_only:
            conn.execute("PRAGMA query_only = ON")
            version = self._user_version()
            self._check_known(version)
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version}, this quorumwatch needs "
                    f"{SCHEMA_VERSION}; run the daemon once to migrate it"
                )
            return
        # auto_vacuum must be chosen before the first table exists (a no-op afterwards).
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: open failed: cannot enable WAL (mode {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
        self._migrate()

    def _user_version(self) -> int:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        return version

    def _check_known(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than {SCHEMA_VERSION}, "
                "the latest this quorumwatch knows; upgrade quorumwatch"
            )

    def _migrate(self) -> None:
        self._check_known(self._user_version())
        while True:
            with self._transaction():
                # Re-read inside the write lock: another process may have migrated meanwhile.
                version = self._user_version()
                self._check_known(version)
                if version == SCHEMA_VERSION:
                    return
                for statement in MIGRATIONS[version]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {version + 1}")

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(_one_line(f"{self.path}: {what} failed: {exc}")) from exc
        except OSError as exc:
            raise StoreError(
                _one_line(f"{self.path}: {what} failed: {exc.strerror or exc}")
            ) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        conn = self._db
        # IMMEDIATE: take the write lock up front, so busy_timeout applies at BEGIN and a
        # transaction never fails half-way on a lock upgrade.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same committed state."""
        conn = self._db
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # nothing was written; ends the read snapshot

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with self._errors("close"):
            if not self.read_only:
                conn.execute("PRAGMA optimize")
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- reads --------------------------------------------------------------------------

    def load_state(self, chain: str) -> ChainState | None:
        """The last committed state of `chain`; None if the chain was never committed."""
        # One snapshot: the state and its validators from the same commit.
        with self._errors(f"load state of {chain!r}"), self._snapshot() as conn:
            row = conn.execute(
                "SELECT observed_at FROM chain_state WHERE chain = ?", (chain,)
            ).fetchone()
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

    def counters(self, chain: str) -> JailCounters:
        """The chain's jail counters (zero for a chain never seen)."""
        with self._errors(f"read counters of {chain!r}"):
            rows = self._db.execute(
                "SELECT address, name, value FROM counters WHERE chain = ?", (chain,)
            ).fetchall()
        chain_level: dict[str, float] = {}
        validator_jails: dict[str, int] = {}
        for address, name, value in rows:
            if address == _CHAIN:
                chain_level[name] = value
            elif name == _JAILS:
                validator_jails[address] = int(value)
        return JailCounters(
            jails=int(chain_level.get(_JAILS, 0)),
            validator_jails=MappingProxyType(dict(sorted(validator_jails.items()))),
            unjail_delay_bucket_counts=tuple(
                int(chain_level.get(_bucket_name(bound), 0)) for bound in UNJAIL_DELAY_BUCKETS
            ),
            unjail_delay_sum=float(chain_level.get(_DELAY_SUM, 0.0)),
            unjail_delay_count=int(chain_level.get(_DELAY_COUNT, 0)),
        )

    def count_events(self, chain: str, kind: EventKind, since: float) -> int:
        """Stored events of `kind` on `chain` with `observed_at >= since`."""
        with self._errors(f"count events of {chain!r}"):
            count: int = self._db.execute(
                "SELECT count(*) FROM events WHERE chain = ? AND kind = ? AND observed_at >= ?",
                (chain, str(kind), since),
            ).fetchone()[0]
        return count

    def events(
        self,
        chain: str | None = None,
        *,
        since: float | None = None,
        validator: str | None = None,
        kinds: Collection[EventKind] | None = None,
    ) -> list[ValidatorEvent]:
        """Stored events matching every filter given, ordered by observation time then
        insertion. An empty `kinds` matches nothing."""
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
        with self._errors("read events"):
            rows = self._db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events{where} ORDER BY observed_at, id", params
            ).fetchall()
        return [_event_from_row(row) for row in rows]

    def chains(self) -> list[str]:
        """Chains with a committed state, sorted."""
        with self._errors("list chains"):
            rows = self._db.execute("SELECT chain FROM chain_state ORDER BY chain").fetchall()
        return [chain for (chain,) in rows]

    # --- alerts and the outbox: reads ---------------------------------------------------

    def load_alert_state(self, chain: str) -> list[AlertState]:
        """The chain's committed pending and firing alerts, ordered by alert, fingerprint."""
        return self._alert_states(chain, firing_only=False)

    def firing(self, chain: str) -> list[AlertState]:
        """The chain's committed firing alerts (`starts_at` set), ordered by alert, fingerprint."""
        return self._alert_states(chain, firing_only=True)

    def _alert_states(self, chain: str, *, firing_only: bool) -> list[AlertState]:
        where = " AND starts_at IS NOT NULL" if firing_only else ""
        with self._errors(f"load alert state of {chain!r}"):
            rows = self._db.execute(
                f"SELECT {_ALERT_STATE_COLUMNS} FROM alert_state WHERE chain = ?{where}"
                " ORDER BY alert, fingerprint",
                (chain,),
            ).fetchall()
        return [_alert_state_from_row(row) for row in rows]

    def alert_chains(self) -> list[str]:
        """Chains that have alert state, pending events or ever generated an event, sorted."""
        with self._errors("list alert chains"):
            rows = self._db.execute(
                "SELECT chain FROM alert_state UNION SELECT chain FROM outbox"
                " UNION SELECT chain FROM counters WHERE address = ? AND name LIKE ? ESCAPE '!'"
                " ORDER BY chain",
                (_CHAIN, _EVENTS_PREFIX.replace("_", "!_") + "%"),
            ).fetchall()
        return [chain for (chain,) in rows]

    def outbox_peek(self, limit: int) -> list[OutboxEntry]:
        """The oldest `limit` events not yet acknowledged, in commit order (FIFO)."""
        with self._errors("read the outbox"):
            rows = self._db.execute(
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

    def outbox_stats(self, now: float) -> tuple[int, float | None]:
        """(events pending, age in seconds of the oldest at `now`, None when empty)."""
        with self._errors("read outbox statistics"):
            count, oldest = self._db.execute(
                "SELECT count(*), min(created_at) FROM outbox"
            ).fetchone()
        return int(count), None if oldest is None else max(0.0, now - oldest)

    def outbox_dropped(self) -> int:
        """Events ever dropped from the full outbox, over all chains; kept across restarts."""
        with self._errors("read the outbox drop counter"):
            (total,) = self._db.execute(
                "SELECT coalesce(sum(value), 0) FROM counters WHERE address = ? AND name = ?",
                (_CHAIN, _OUTBOX_DROPPED),
            ).fetchone()
        return int(total)

    def events_generated(self) -> dict[tuple[str, AlertStatus], int]:
        """Alert events ever committed per (alert, status), summed over chains; kept across
        restarts and outbox deletes."""
        with self._errors("read alert event counters"):
            rows = self._db.execute(
                "SELECT name, sum(value) FROM counters WHERE address = ? AND name LIKE ?"
                " ESCAPE '!' GROUP BY name",
                (_CHAIN, _EVENTS_PREFIX.replace("_", "!_") + "%"),
            ).fetchall()
        generated: dict[tuple[str, AlertStatus], int] = {}
        for name, total in rows:
            alert, _, status = name[len(_EVENTS_PREFIX) :].rpartition("_")
            if alert and status in AlertStatus.__members__.values():
                generated[alert, AlertStatus(status)] = int(total)
        return dict(sorted(generated.items()))

    # --- writes -------------------------------------------------------------------------

    def commit_poll(self, chain: str, state: ChainState, events: Sequence[ValidatorEvent]) -> int:
        """Persist one poll in one transaction; return the number of events newly inserted.

        The chain's tracked validators become exactly `state.validators`. Events already
        stored (same `event_id`) are skipped and not counted again, so replaying a poll is
        harmless.
        """
        for event in events:
            if event.chain != chain:
                raise ValueError(
                    f"event {event.event_id} is for chain {event.chain!r}, not {chain!r}"
                )
        with self._errors(f"commit poll of {chain!r}"), self._transaction() as conn:
            conn.execute(
                "INSERT INTO chain_state (chain, observed_at) VALUES (?, ?)"
                " ON CONFLICT (chain) DO UPDATE SET observed_at = excluded.observed_at",
                (chain, state.observed_at),
            )
            conn.execute("DELETE FROM validator_state WHERE chain = ?", (chain,))
            conn.executemany(
                "INSERT INTO validator_state (chain, address, name, stake, active, jailed,"
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
                    for v in state.validators.values()
                ],
            )
            inserted = 0
            increments: dict[tuple[str, str], float] = {}
            for event in events:
                cursor = conn.execute(
                    f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _event_params(event),
                )
                if cursor.rowcount != 1:
                    continue  # already stored: counted when it was inserted
                inserted += 1
                for address, name, amount in _counter_increments(event):
                    increments[address, name] = increments.get((address, name), 0) + amount
            conn.executemany(
                "INSERT INTO counters (chain, address, name, value) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (chain, address, name) DO UPDATE SET value = value + excluded.value",
                [(chain, address, name, amount) for (address, name), amount in increments.items()],
            )
        return inserted

    def prune(self, older_than: float) -> int:
        """Delete events observed before `older_than` (all chains); counters are untouched.
        Returns the number of events deleted; their pages go back to the filesystem."""
        with self._errors("prune events"), self._transaction() as conn:
            # Per chain, so each delete is a range scan of events_chain_time.
            chains = [c for (c,) in conn.execute("SELECT DISTINCT chain FROM events")]
            deleted = 0
            for chain in chains:
                cursor = conn.execute(
                    "DELETE FROM events WHERE chain = ? AND observed_at < ?", (chain, older_than)
                )
                deleted += cursor.rowcount
        if deleted:
            # Give the freed pages back to the filesystem (auto_vacuum=INCREMENTAL), as its own
            # transaction. executescript steps the pragma to the end; execute() would stop
            # after its first step, which frees a single page.
            with self._errors("vacuum after prune"):
                self._db.executescript("PRAGMA incremental_vacuum;")
        return deleted

    def commit_alerts(
        self, chain: str, states: Sequence[AlertState], events: Sequence[AlertEvent]
    ) -> int:
        """In one transaction: the chain's alert state becomes exactly `states`, and each
        event is appended to the outbox (its payload `to_json()`) and counted. An event already
        in the outbox (same `event_id`) is skipped and not counted again. If the outbox then
        holds more than `max_outbox_events`, the oldest are dropped; returns how many."""
        others = [s.fingerprint for s in states if s.chain != chain]
        others += [e.event_id for e in events if e.chain != chain]
        if others:
            raise ValueError(f"alert {others[0]} is not for chain {chain!r}")
        created_at = time.time()
        with self._errors(f"commit alerts of {chain!r}"), self._transaction() as conn:
            conn.execute("DELETE FROM alert_state WHERE chain = ?", (chain,))
            conn.executemany(
                f"INSERT INTO alert_state ({_ALERT_STATE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_alert_state_params(state) for state in states],
            )
            increments: dict[str, int] = {}
            for event in events:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO outbox (chain, event_id, topic_alert, created_at,"
                    " payload) VALUES (?, ?, ?, ?, ?)",
                    (chain, event.event_id, event.alert, created_at, event.to_json()),
                )
                if cursor.rowcount != 1:
                    continue  # still pending: counted when it was appended
                name = _events_counter_name(event.alert, event.status)
                increments[name] = increments.get(name, 0) + 1
            conn.executemany(
                "INSERT INTO counters (chain, address, name, value) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (chain, address, name) DO UPDATE SET value = value + excluded.value",
                [(chain, _CHAIN, name, amount) for name, amount in increments.items()],
            )
            dropped = self._drop_oldest_outbox_events(conn) if increments else {}
        self._warn_of_drops(sum(dropped.values()))
        return sum(dropped.values())

    def _warn_of_drops(self, dropped: int) -> None:
        """The first drop is logged at once, later ones summed into one line a minute."""
        self._drops_not_logged += dropped
        now = time.monotonic()
        if not self._drops_not_logged or now < self._next_drop_warning:
            return
        log.warning(
            "outbox full: oldest undelivered alert events dropped",
            dropped=self._drops_not_logged,
            max_outbox_events=self.max_outbox_events,
        )
        self._drops_not_logged = 0
        self._next_drop_warning = now + DROP_WARNING_INTERVAL_SECONDS

    def _drop_oldest_outbox_events(self, conn: sqlite3.Connection) -> dict[str, int]:
        """Within the caller's transaction, cut the outbox back to `max_outbox_events` by
        deleting its oldest rows, counted per chain; returns the counts per chain.

        Dropping loses history, never the current state: the retained `<chain>/firing` topic
        is republished from `alert_state`, not from the outbox. Only a prefix in `id` order
        goes, so what is kept stays in commit order per chain.
        """
        (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        excess = int(count) - self.max_outbox_events
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
        conn.executemany(
            "INSERT INTO counters (chain, address, name, value) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (chain, address, name) DO UPDATE SET value = value + excluded.value",
            [(chain, _CHAIN, _OUTBOX_DROPPED, n) for chain, n in dropped.items()],
        )
        return dropped

    def outbox_delete(self, entry_id: int) -> None:
        """Remove one event from the outbox, once the broker has acknowledged it."""
        with self._errors("delete from the outbox"), self._transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))


class AsyncStore:
    """Runs every Store call on one dedicated worker thread (a ThreadPoolExecutor(max_workers=1)),
    so blocking SQLite never runs on the event loop and the connection is only ever used from
    that thread."""

    store_class: ClassVar[type[Store]] = Store

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        """Use `AsyncStore.open`: `store` must have been opened on `executor`'s thread."""
        self._store = store
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        read_only: bool = False,
        max_outbox_events: int = DEFAULT_MAX_OUTBOX_EVENTS,
    ) -> AsyncStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quorumwatch-store")
        loop = asyncio.get_running_loop()
        opener = functools.partial(
            cls.store_class, path, read_only=read_only, max_outbox_events=max_outbox_events
        )
        try:
            store = await loop.run_in_executor(executor, opener)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    @property
    def path(self) -> Path:
        return self._store.path

    async def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._closed:
            raise StoreError(f"{self._store.path}: the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        """Close after the calls already queued have run; idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._store.close)
        finally:
            self._executor.shutdown(wait=False)  # the worker is idle: it exits on its own

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def load_state(self, chain: str) -> ChainState | None:
        return await self._call(self._store.load_state, chain)

    async def commit_poll(
        self, chain: str, state: ChainState, events: Sequence[ValidatorEvent]
    ) -> int:
        return await self._call(self._store.commit_poll, chain, state, events)

    async def counters(self, chain: str) -> JailCounters:
        return await self._call(self._store.counters, chain)

    async def count_events(self, chain: str, kind: EventKind, since: float) -> int:
        return await self._call(self._store.count_events, chain, kind, since)

    async def events(
        self,
        chain: str | None = None,
        *,
        since: float | None = None,
        validator: str | None = None,
        kinds: Collection[EventKind] | None = None,
    ) -> list[ValidatorEvent]:
        return await self._call(
            self._store.events, chain, since=since, validator=validator, kinds=kinds
        )

    async def prune(self, older_than: float) -> int:
        return await self._call(self._store.prune, older_than)

    async def chains(self) -> list[str]:
        return await self._call(self._store.chains)

    async def load_alert_state(self, chain: str) -> list[AlertState]:
        return await self._call(self._store.load_alert_state, chain)

    async def firing(self, chain: str) -> list[AlertState]:
        return await self._call(self._store.firing, chain)

    async def alert_chains(self) -> list[str]:
        return await self._call(self._store.alert_chains)

    async def commit_alerts(
        self, chain: str, states: Sequence[AlertState], events: Sequence[AlertEvent]
    ) -> int:
        return await self._call(self._store.commit_alerts, chain, states, events)

    async def outbox_peek(self, limit: int) -> list[OutboxEntry]:
        return await self._call(self._store.outbox_peek, limit)

    async def outbox_delete(self, entry_id: int) -> None:
        await self._call(self._store.outbox_delete, entry_id)

    async def outbox_stats(self, now: float) -> tuple[int, float | None]:
        return await self._call(self._store.outbox_stats, now)

    async def events_generated(self) -> dict[tuple[str, AlertStatus], int]:
        return await self._call(self._store.events_generated)

    async def outbox_dropped(self) -> int:
        return await self._call(self._store.outbox_dropped)
