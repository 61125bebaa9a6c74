"""Upgrades through the migrations: the store the previous release (0.1.0) wrote opens under
this code, migrates to the latest schema, keeps every row and reads back as 0.1.0 read it; a
store with a newer schema (a downgrade) is refused and left byte for byte as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from quorumwatch.jails.events import ChainState, EventKind, ValidatorEvent
from quorumwatch.store import NewerSchemaError, Store
from quorumwatch.store import alerts as alert_store
from quorumwatch.store import jails as jail_store
from quorumwatch.store.migrations import SCHEMA_VERSION
from tests.fixtures.make_store_0_1_0 import plain
from tests.store_builders import (
    RELEASE_0_1_0_DESCRIPTION,
    newer_schema_copy,
    raw,
    release_0_1_0_copy,
)

READ_BY_0_1_0 = RELEASE_0_1_0_DESCRIPTION["read_back"]


@pytest.fixture
def released(tmp_path: Path) -> Path:
    return release_0_1_0_copy(tmp_path / "quorumwatch.db")


def _tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a stable order."""
    with raw(path) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"
            )
        ]
        return {name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall()) for name in names}


def _user_version(path: Path) -> int:
    with raw(path) as conn:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def test_the_0_1_0_store_holds_every_kind_of_row() -> None:
    """The fixture is what it claims: schema 2, jail events of every kind on two chains, jail
    and alert counters with drops, firing and pending alerts, and an outbox of 100 events."""
    assert {e["kind"] for e in READ_BY_0_1_0["events"]} == {str(kind) for kind in EventKind}
    assert READ_BY_0_1_0["chains"] == ["hyperliquid", "hyperliquid-testnet"]
    for chain in READ_BY_0_1_0["chains"]:
        assert READ_BY_0_1_0["counters"][chain]["jails"] > 0
        assert READ_BY_0_1_0["counters"][chain]["unjail_delay_count"] > 0
    states = [s for chain in READ_BY_0_1_0["alert_state"].values() for s in chain]
    assert {s["starts_at"] is None for s in states} == {True, False}  # pending and firing
    assert len(READ_BY_0_1_0["outbox"]) == 100
    assert READ_BY_0_1_0["outbox_dropped"] > 0
    assert READ_BY_0_1_0["events_generated"]["ValidatorJailed|resolved"] > 0


def test_every_row_of_the_0_1_0_store_survives_the_upgrade(released: Path) -> None:
    """Opening the 0.1.0 store read-write migrates it to the latest schema version and leaves
    every row of every table it had exactly as it was, a column a migration adds empty."""
    before = _tables(released)
    assert _user_version(released) == 2
    assert all(before[table] for table in ("events", "counters", "alert_state", "outbox"))
    Store(released).close()
    assert _user_version(released) == SCHEMA_VERSION
    after = _tables(released)
    for table, rows in before.items():
        width = len(rows[0]) if rows else 0
        assert [row[:width] for row in after[table]] == rows
        assert {value for row in after[table] for value in row[width:]} <= {None}


def _state_as_0_1_0(state: ChainState | None) -> Any:
    """A chain's tracked state in 0.1.0's shape: the validators by address."""
    if state is None:
        return None
    rows = {address: plain(state.row(i)) for i, address in enumerate(state.addresses)}
    return {"observed_at": state.observed_at, "validators": rows}


def _event_as_0_1_0(event: ValidatorEvent) -> Any:
    """An event in 0.1.0's shape: the consensus stake of its poll, unknown then, is not there."""
    fields = plain(event)
    assert isinstance(fields, dict)
    assert fields.pop("total_stake") is None
    return fields


@pytest.mark.parametrize("read_only", [False, True])
def test_the_0_1_0_store_reads_back_as_0_1_0_read_it(released: Path, read_only: bool) -> None:
    """Tracked state, jail events, jail counters, alert state, the outbox and the alert event
    and drop counters read through this code's store API (read-write after the migration, or
    read-only) equal what 0.1.0's own store API read from the same file."""
    if read_only:
        Store(released).close()  # migrated first, as the daemon does
    with Store(released, read_only=read_only) as store:
        chains = jail_store.chains(store)
        alert_chains = alert_store.alert_chains(store)
        read: dict[str, Any] = {
            "chains": chains,
            "state": {c: _state_as_0_1_0(jail_store.load_state(store, c)) for c in chains},
            "events": [_event_as_0_1_0(event) for event in jail_store.events(store)],
            "counters": {c: plain(jail_store.counters(store, c)) for c in chains},
            "alert_chains": alert_chains,
            "alert_state": {c: plain(alert_store.load_alert_state(store, c)) for c in alert_chains},
            "outbox": plain(alert_store.outbox_peek(store, 10**6)),
            "events_generated": plain(alert_store.events_generated(store)),
            "outbox_dropped": alert_store.outbox_dropped(store),
        }
    assert read == READ_BY_0_1_0


@pytest.mark.parametrize("read_only", [False, True])
def test_a_newer_schema_is_refused_and_left_byte_for_byte(tmp_path: Path, read_only: bool) -> None:
    """A store whose schema version is above the latest known raises NewerSchemaError, one
    line naming the file, both versions and what to do, and the file is not changed at all."""
    newer = newer_schema_copy(tmp_path / "quorumwatch.db")
    digest = hashlib.sha256(newer.read_bytes()).hexdigest()
    with pytest.raises(NewerSchemaError) as refused:
        Store(newer, read_only=read_only)
    message = str(refused.value)
    assert message == (
        f"{newer}: schema version {SCHEMA_VERSION + 1} is newer than {SCHEMA_VERSION}, the "
        f"latest quorumwatch {__import__('quorumwatch').__version__} knows (a downgrade?); the "
        "file is left as it is: run the release that wrote it or a later one"
    )
    assert hashlib.sha256(newer.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quorumwatch.db"]
