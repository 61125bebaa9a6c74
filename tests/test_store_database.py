"""The database: migrations, read-only access beside a writer, one-line errors, file mode,
and durability across kill -9."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from quorumwatch.jails.events import EventKind
from quorumwatch.jails.statistics import JailCounters
from quorumwatch.store import Store, StoreError, migrations
from quorumwatch.store import alerts as alert_store
from quorumwatch.store import jails as jail_store
from quorumwatch.store.migrations import SCHEMA_VERSION
from tests.builders import alert_event
from tests.store_builders import (
    CHAIN,
    T0,
    alert_state,
    contents,
    event,
    insert_event_before_total_stake,
    outbox_ids,
    raw,
    snapshot,
    state,
    tracked,
)


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db) as opened:
        yield opened


# --- concurrent reader, errors, migrations, file ------------------------------------------


def test_read_only_store_reads_alongside_a_writer_and_cannot_write(store: Store, db: Path) -> None:
    """With the writer's connection open, a read_only store sees each new commit, and any
    write through it raises StoreError."""
    jail_store.commit_poll(store, CHAIN, state(T0, tracked(1)), [event("j1")])
    with Store(db, read_only=True) as reader:
        assert jail_store.counters(reader, CHAIN).jails == 1
        assert contents(jail_store.load_state(reader, CHAIN)) == contents(
            jail_store.load_state(store, CHAIN)
        )
        jail_store.commit_poll(store, CHAIN, state(T0 + 30, tracked(2)), [event("j2", index=2)])
        assert jail_store.counters(reader, CHAIN).jails == 2
        assert [e.event_id for e in jail_store.events(reader, CHAIN)] == ["j1", "j2"]
        with pytest.raises(StoreError, match="readonly"):
            jail_store.commit_poll(reader, CHAIN, state(T0 + 60), [])
        with pytest.raises(StoreError, match="readonly"):
            jail_store.prune(reader, T0 + 100)
    assert jail_store.counters(store, CHAIN).jails == 2


def test_read_only_store_reads_a_closed_database_in_a_read_only_directory(db: Path) -> None:
    """A read_only store reads a database whose writer has exited from a directory it may not
    write to (mode 0555): it creates no file there (no -shm or -wal; as root, where the mode
    does not bite, that is what shows it) and any write through it raises StoreError."""
    with Store(db) as writer:
        jail_store.commit_poll(writer, CHAIN, state(T0, tracked(1)), [event("j1")])
    assert [p.name for p in db.parent.iterdir()] == [db.name]
    db.parent.chmod(0o555)
    try:
        with Store(db, read_only=True) as reader:
            assert jail_store.chains(reader) == [CHAIN]
            assert jail_store.counters(reader, CHAIN).jails == 1
            with pytest.raises(StoreError, match="readonly"):
                jail_store.commit_poll(reader, CHAIN, state(T0 + 60), [])
        assert [p.name for p in db.parent.iterdir()] == [db.name]
    finally:
        db.parent.chmod(0o700)


def test_read_only_on_a_missing_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    """read_only on a missing database raises StoreError naming the path, creating no file."""
    path = tmp_path / "missing" / "q.db"
    with pytest.raises(StoreError, match=r"missing/q\.db.*no such database file"):
        Store(path, read_only=True)
    assert not path.parent.exists()


def test_read_only_does_not_migrate_an_uninitialised_file(db: Path) -> None:
    """read_only on an empty (version 0) file raises StoreError and leaves it at version 0."""
    db.touch()
    with pytest.raises(StoreError, match=f"schema version 0, .* needs {SCHEMA_VERSION}"):
        Store(db, read_only=True)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (0,)


def test_not_a_database_raises_a_one_line_store_error(db: Path) -> None:
    """Opening a file that is not SQLite raises StoreError with one line naming path and step."""
    db.write_bytes(b"definitely not sqlite\n" * 200)
    with pytest.raises(StoreError) as info:
        Store(db)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{db}: open failed: ")


def test_max_outbox_events_below_1_is_refused(db: Path) -> None:
    """A bound below 1 is a ValueError, before the file is created."""
    with pytest.raises(ValueError, match="max_outbox_events must be at least 1"):
        Store(db, max_outbox_events=0)
    assert not db.exists()


def test_use_after_close_raises_store_error(db: Path) -> None:
    """Any call on a closed store raises StoreError; close is idempotent."""
    opened = Store(db)
    opened.close()
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        jail_store.chains(opened)


def test_fresh_database_gets_latest_schema_wal_and_incremental_vacuum(
    store: Store, db: Path
) -> None:
    """A new database is at the latest user_version, in WAL mode with incremental auto_vacuum."""
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # INCREMENTAL
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    assert {"chain_state", "validator_state", "events", "counters"} <= tables


def test_database_from_the_future_is_refused(db: Path) -> None:
    """A database with a user_version above the latest known raises StoreError naming both
    versions, and is left untouched."""
    Store(db).close()
    with raw(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    for read_only in (False, True):
        with pytest.raises(
            StoreError, match=f"schema version {SCHEMA_VERSION + 7} is newer than {SCHEMA_VERSION}"
        ):
            Store(db, read_only=read_only)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 7,)


def test_new_migrations_apply_in_order_and_keep_data(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening an older database applies the migrations it lacks, in order, keeping its data."""
    with Store(db) as old:
        jail_store.commit_poll(old, CHAIN, state(T0, tracked(1)), [event("j1")])
    added = (
        ("CREATE TABLE extra (n INTEGER)", "INSERT INTO extra VALUES (1)"),
        ("INSERT INTO extra SELECT n + 1 FROM extra",),
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + added)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 2)
    with Store(db) as new:
        assert jail_store.counters(new, CHAIN).jails == 1
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 2,)
        assert conn.execute("SELECT n FROM extra ORDER BY n").fetchall() == [(1,), (2,)]


def test_a_failing_migration_is_rolled_back_whole(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration whose 2nd statement fails raises StoreError; its 1st statement and the
    version bump are rolled back."""
    Store(db).close()
    broken = (("CREATE TABLE half (n INTEGER)", "CREATE TABLE half (n INTEGER)"),)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + broken)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="open failed: table half already exists"):
        Store(db)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT name FROM sqlite_schema WHERE name = 'half'").fetchone() is None


def test_migration_from_a_v1_database_keeps_its_data(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database created with only migration 1 opens at the latest version with its state,
    events and counters unchanged, and the alert tables usable."""
    tracked_state = state(T0, tracked(1, jailed=True))
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        patched.setattr(migrations, "SCHEMA_VERSION", 1)
        with Store(db) as old:
            jail_store.commit_poll(old, CHAIN, tracked_state, [])
    with raw(db) as conn:
        insert_event_before_total_stake(conn, event("j1"))
        conn.executemany(
            "INSERT INTO counters VALUES (?, ?, 'jails', 1)",
            [(CHAIN, ""), (CHAIN, tracked(1).address)],
        )
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        assert "outbox" not in tables
    with Store(db) as new:
        before = (contents(tracked_state), JailCounters.counted([event("j1")]), [event("j1")])
        assert snapshot(new) == before
        assert alert_store.load_alert_state(new, CHAIN) == []
        assert alert_store.outbox_stats(new, T0) == (0, None)
        alert_store.commit_alerts(new, CHAIN, [alert_state()], [alert_event("f1")])
        assert outbox_ids(new) == ["f1"]
        assert jail_store.counters(new, CHAIN) == before[1]
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_released_migrations_are_unchanged() -> None:
    """Migrations 1 and 2 are released: their statements stay exactly as shipped (append a
    migration instead of editing one)."""
    released = hashlib.sha256(repr(migrations.MIGRATIONS[:2]).encode()).hexdigest()
    assert released == "fe4ebe2023168313c09da0918cfb62bf762febac23b7e18b1bccbdb5f49f89b0"


def test_creating_the_storage_directory_is_logged(tmp_path: Path) -> None:
    """Opening a store in a missing directory logs `storage directory created` naming it,
    once; opening it again, the directory there, logs nothing."""
    path = tmp_path / "a" / "b" / "q.db"
    with capture_logs() as created:
        Store(path).close()
    assert created == [
        {
            "event": "storage directory created",
            "directory": str(path.parent),
            "log_level": "info",
        }
    ]
    with capture_logs() as reopened:
        Store(path).close()
    assert reopened == []


def test_database_file_is_created_0600_in_a_new_directory(tmp_path: Path) -> None:
    """With umask 0, a new database (and its WAL) is created mode 0600, parent dirs included."""
    path = tmp_path / "a" / "b" / "q.db"
    previous = os.umask(0)
    try:
        with Store(path) as created:
            jail_store.commit_poll(created, CHAIN, state(T0), [])
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(Path(f"{path}-wal").stat().st_mode) == 0o600
    finally:
        os.umask(previous)


# --- durability --------------------------------------------------------------------------

_COMMIT_FOREVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np

    from quorumwatch.jails.events import ChainState, EventKind, ValidatorEvent
    from quorumwatch.store import Store, jails

    store = Store(Path(sys.argv[1]))
    poll = 0
    while True:
        poll += 1
        address = f"0x{poll:040x}"
        state = ChainState(
            float(poll), [address], ["v"], np.array([2**70 + poll], dtype=object),
            np.array([False]), np.array([True]), np.array([-1], dtype=np.int64),
            np.array([float(poll)]),
        )
        event = ValidatorEvent(
            f"kill9-{poll}", "c", address, "v", EventKind.JAILED, float(poll),
            float(poll - 1), False, False, 2**70 + poll, None,
        )
        jails.commit_poll(store, "c", state, [event])
        sys.stdout.write(f"{poll}\\n")
        sys.stdout.flush()
    """
)


def test_kill_9_loses_no_committed_poll_and_counts_none_twice(db: Path) -> None:
    """After SIGKILL of a process committing polls in a loop: integrity_check is ok, and the
    chain jail counter equals the jailed event rows and the last stored poll, which is at
    least the last poll the process reported committed."""
    target = 300
    child = subprocess.Popen(
        [sys.executable, "-c", _COMMIT_FOREVER, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(6.0, child.kill)  # bounds the test if commits are slow
    watchdog.start()
    last = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            last = int(line)
            if last >= target:
                break
        child.send_signal(signal.SIGKILL)
        rest, errors = child.communicate(timeout=5)
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    complete_lines = rest.split("\n")[:-1]  # a line cut by the kill is not a report
    last = max([last, *map(int, complete_lines)])
    assert child.returncode == -signal.SIGKILL
    assert last >= target, f"child reported only {last} commits: {errors[-2000:]}"

    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with Store(db) as reopened:
        jails = jail_store.counters(reopened, "c").jails
        rows = jail_store.count_events(reopened, "c", EventKind.JAILED, float("-inf"))
        latest = jail_store.load_state(reopened, "c")
        assert latest is not None
        assert (
            jails
            == rows
            == int(latest.observed_at)
            == len(jail_store.counters(reopened, "c").validator_jails)
        )
        assert jails >= last
        assert latest.addresses == [f"0x{jails:040x}"]
        assert latest.row(0).stake == 2**70 + jails
