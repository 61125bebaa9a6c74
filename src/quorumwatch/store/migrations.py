"""The schema: the ordered migrations and the version they lead to.

Append only: a released migration is never edited, so that a database written by any earlier
release migrates to the same schema. `PRAGMA user_version` holds the number applied.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

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
    # 3: the consensus stake at the poll that observed each event, against which a jail's
    # share is weighed; NULL on the events stored before it.
    ("ALTER TABLE events ADD COLUMN total_stake TEXT",),
)
SCHEMA_VERSION = len(MIGRATIONS)
