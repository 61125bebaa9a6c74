"""Builders for store tests: tracked validators, states, events and alert states, a raw SQLite
connection to inspect the file behind the store's back, and copies of the store 0.1.0 wrote."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from quorumwatch.alerting.model import AlertState, Severity, fingerprint
from quorumwatch.columns import NO_TIME, stake_column
from quorumwatch.jails.events import ChainState, EventKind, TrackedValidator, ValidatorEvent
from quorumwatch.store import Store, migrations
from quorumwatch.store import alerts as alert_store
from quorumwatch.store import jails as jail_store

CHAIN = "hyperliquid"
T0 = 1_750_000_000.0
BIG = 2**64 + 12345  # beyond SQLite's 64-bit INTEGER


def tracked(index: int, *, jailed: bool = False, stake: int = BIG) -> TrackedValidator:
    """A tracked validator with address 0x…<index>."""
    return TrackedValidator(
        address=f"0x{index:040x}",
        name=f"validator {index}",
        stake=stake,
        active=not jailed,
        jailed=jailed,
        unjailable_after_ms=int(T0 * 1000) + index if jailed else None,
        jailed_since=T0 if jailed else None,
    )


def state(observed_at: float, *validators: TrackedValidator) -> ChainState:
    """The state of `validators`, in their order."""
    return ChainState(
        observed_at=observed_at,
        addresses=[v.address for v in validators],
        names=[v.name for v in validators],
        stakes=stake_column([v.stake for v in validators]),
        active=np.array([v.active for v in validators], dtype=np.bool_),
        jailed=np.array([v.jailed for v in validators], dtype=np.bool_),
        unjailable_after_ms=np.array(
            [
                NO_TIME if v.unjailable_after_ms is None else v.unjailable_after_ms
                for v in validators
            ],
            dtype=np.int64,
        ),
        jailed_since=np.array(
            [np.nan if v.jailed_since is None else v.jailed_since for v in validators],
            dtype=np.float64,
        ),
    )


def rows(chain_state: ChainState) -> dict[str, TrackedValidator]:
    """The rows of a state by address: how states are compared, whatever their row order."""
    return {row.address: row for row in map(chain_state.row, range(len(chain_state)))}


def contents(chain_state: ChainState | None) -> tuple[float, dict[str, TrackedValidator]] | None:
    """A state's time and rows (None for none): equal for equal states."""
    return None if chain_state is None else (chain_state.observed_at, rows(chain_state))


def event(
    event_id: str,
    kind: EventKind = EventKind.JAILED,
    *,
    index: int = 1,
    observed_at: float = T0,
    chain: str = CHAIN,
    **fields: Any,
) -> ValidatorEvent:
    """An event of validator <index>; `fields` override the remaining attributes."""
    values: dict[str, Any] = {
        "event_id": event_id,
        "chain": chain,
        "address": f"0x{index:040x}",
        "name": f"validator {index}",
        "kind": kind,
        "observed_at": observed_at,
        "previous_observed_at": observed_at - 30,
        "inferred": False,
        "after_gap": False,
        "stake": BIG,
        "unjailable_after_ms": None,
    }
    values.update(fields)
    return ValidatorEvent(**values)


def insert_event_before_total_stake(conn: sqlite3.Connection, stored: ValidatorEvent) -> None:
    """Insert `stored` as the schema before migration 3 held an event: without total_stake."""
    conn.execute(
        "INSERT INTO events (event_id, chain, address, name, kind, observed_at,"
        " previous_observed_at, inferred, after_gap, stake, unjailable_after_ms, jail_seconds,"
        " unjail_delay_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        jail_store._event_params(stored)[:-1],
    )


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection, to inspect or tamper with the file behind the store's back."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def snapshot(store: Store, chain: str = CHAIN) -> tuple[object, ...]:
    """Everything a poll can change: state, counters, stored events."""
    return (
        contents(jail_store.load_state(store, chain)),
        jail_store.counters(store, chain),
        jail_store.events(store, chain),
    )


def alert_state(
    alert: str = "EntityCanHalt",
    *,
    chain: str = CHAIN,
    entity: str = "e1",
    firing: bool = True,
    **fields: Any,
) -> AlertState:
    """An alert instance of `entity`; firing since T0 + 60 unless `firing` is False."""
    labels = {"chain": chain, "entity": entity}
    values: dict[str, Any] = {
        "fingerprint": fingerprint(alert, labels),
        "alert": alert,
        "severity": Severity.CRITICAL,
        "chain": chain,
        "labels": labels,
        "pending_since": T0,
        "starts_at": T0 + 60 if firing else None,
        "summary": f"{entity} can halt {chain}",
        "description": "holds more than a third of the stake",
        "value": 0.4,
        "threshold": 1 / 3,
    }
    values.update(fields)
    return AlertState(**values)


def outbox_ids(store: Store) -> list[str]:
    return [entry.event_id for entry in alert_store.outbox_peek(store, 1000)]


# --- the previous release's store (tests/fixtures/make_store_0_1_0.py built it) --------------

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE_0_1_0 = FIXTURES / "store-0.1.0.sqlite"
# The chains and scenarios 0.1.0 ran to write it, and what its own store API read back.
RELEASE_0_1_0_DESCRIPTION: dict[str, Any] = json.loads(
    (FIXTURES / "store-0.1.0.json").read_text(encoding="utf-8")
)


def release_0_1_0_copy(path: Path) -> Path:
    """A private copy of the store 0.1.0 wrote, at `path`."""
    shutil.copyfile(RELEASE_0_1_0, path)
    return path


def newer_schema_copy(path: Path) -> Path:
    """A store as a later release might leave it: 0.1.0's rows, a table this code does not
    know, a schema version one above the latest it knows, and out of WAL mode (so that turning
    WAL on would rewrite its header)."""
    release_0_1_0_copy(path)
    with raw(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("CREATE TABLE from_a_later_release (n INTEGER)")
        conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    return path
