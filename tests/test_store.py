"""The embedded SQLite store: exact round trips, atomic polls, no double counting, retention,
migrations, concurrent read-only access, file mode, durability across kill -9, and AsyncStore
keeping SQLite off the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from quorumwatch.jails.events import ChainState, EventKind, TrackedValidator, ValidatorEvent
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters
from quorumwatch.store import AsyncStore, Store, StoreError, migrations
from quorumwatch.store import alerts as alert_store
from quorumwatch.store import jails as jail_store
from quorumwatch.store.migrations import SCHEMA_VERSION
from tests.builders import alert_event

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
    return ChainState(observed_at, {v.address: v for v in validators})


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


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "quorumwatch.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db) as opened:
        yield opened


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
        jail_store.load_state(store, chain),
        jail_store.counters(store, chain),
        jail_store.events(store, chain),
    )


# --- round trips -------------------------------------------------------------------------


def test_state_round_trip_is_exact(store: Store) -> None:
    """A committed ChainState loads back equal: stakes above 2**64 exact, None fields kept."""
    committed = state(T0 + 0.125, tracked(1), tracked(2, jailed=True), tracked(3, stake=0))
    jail_store.commit_poll(store, CHAIN, committed, [])
    loaded = jail_store.load_state(store, CHAIN)
    assert loaded == committed
    assert loaded is not None
    assert loaded.validators[f"0x{1:040x}"].stake == BIG
    assert loaded.validators[f"0x{1:040x}"].jailed_since is None
    assert loaded.validators[f"0x{1:040x}"].unjailable_after_ms is None


def test_load_state_of_unknown_chain_is_none(store: Store) -> None:
    """load_state returns None for a chain that was never committed, even if others were."""
    jail_store.commit_poll(store, "other", state(T0, tracked(1)), [])
    assert jail_store.load_state(store, CHAIN) is None
    assert jail_store.chains(store) == ["other"]


def test_replacing_state_deletes_departed_validators(store: Store, db: Path) -> None:
    """A new state replaces the old: departed validators' rows are deleted, others updated."""
    jail_store.commit_poll(store, CHAIN, state(T0, tracked(1), tracked(2)), [])
    jail_store.commit_poll(store, "other", state(T0, tracked(9)), [])
    newer = state(T0 + 30, tracked(2, jailed=True), tracked(3))
    jail_store.commit_poll(store, CHAIN, newer, [])
    assert jail_store.load_state(store, CHAIN) == newer
    with raw(db) as conn:
        rows = conn.execute("SELECT chain, address FROM validator_state ORDER BY 1, 2").fetchall()
    assert rows == [(CHAIN, f"0x{2:040x}"), (CHAIN, f"0x{3:040x}"), ("other", f"0x{9:040x}")]


def test_events_round_trip_is_exact(store: Store) -> None:
    """Events load back equal, every field: flags, None and float measures, huge ints."""
    events = [
        event("a", EventKind.JAILED, inferred=True, unjailable_after_ms=2**70),
        event(
            "b",
            EventKind.UNJAILED,
            after_gap=True,
            jail_seconds=1234.5,
            unjail_delay_seconds=0.25,
            stake=2**127 + 1,
        ),
        event("c", EventKind.LEFT, stake=0),
    ]
    assert jail_store.commit_poll(store, CHAIN, state(T0), events) == events
    assert jail_store.events(store, CHAIN) == events


def test_large_ints_round_trip_exactly(store: Store) -> None:
    """Any int stake and unjailableAfter (negative, 0, beyond 2**63) reads back exactly."""
    counter = iter(range(10**9))

    @settings(max_examples=60, deadline=None)
    @given(stake=st.integers(), unjailable=st.none() | st.integers())
    def check(stake: int, unjailable: int | None) -> None:
        n = next(counter)
        v = TrackedValidator("0xab", "n", stake, True, False, unjailable, None)
        e = event(f"h{n}", stake=stake, unjailable_after_ms=unjailable, observed_at=float(n))
        jail_store.commit_poll(store, CHAIN, state(float(n), v), [e])
        loaded = jail_store.load_state(store, CHAIN)
        assert loaded is not None
        assert loaded.validators["0xab"] == v
        assert jail_store.events(store, CHAIN, since=float(n)) == [e]

    check()


# --- atomicity and idempotence -----------------------------------------------------------


def test_commit_poll_rolls_back_when_an_insert_fails_midway(store: Store, db: Path) -> None:
    """A constraint failing on the 2nd event raises StoreError and leaves state, counters
    and events exactly as before the poll."""
    jail_store.commit_poll(store, CHAIN, state(T0, tracked(1)), [event("first")])
    before = snapshot(store)
    with raw(db) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.event_id = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    poll = [event("ok", index=2, observed_at=T0 + 30), event("boom", observed_at=T0 + 30)]
    with pytest.raises(StoreError, match="commit poll of 'hyperliquid' failed: boom"):
        jail_store.commit_poll(store, CHAIN, state(T0 + 30, tracked(2)), poll)
    assert snapshot(store) == before
    assert jail_store.counters(store, CHAIN).jails == 1


def test_commit_poll_rolls_back_on_any_exception(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-SQLite exception after the first event insert propagates unwrapped, and the
    state, counters and events are unchanged."""
    jail_store.commit_poll(store, CHAIN, state(T0, tracked(1)), [event("first")])
    before = snapshot(store)
    real = jail_store._event_params
    calls = 0

    def fail_second(e: ValidatorEvent) -> tuple[object, ...]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("injected")
        return real(e)

    monkeypatch.setattr(jail_store, "_event_params", fail_second)
    poll = [event("x", observed_at=T0 + 30), event("y", index=2, observed_at=T0 + 30)]
    with pytest.raises(RuntimeError, match="injected"):
        jail_store.commit_poll(store, CHAIN, state(T0 + 30, tracked(2)), poll)
    assert calls == 2
    assert snapshot(store) == before
    monkeypatch.undo()
    assert jail_store.commit_poll(store, CHAIN, state(T0 + 30, tracked(2)), poll) == poll


def test_recommitting_the_same_poll_does_not_double_count(store: Store, db: Path) -> None:
    """Re-committing a poll's events returns 0 and leaves counters and event rows unchanged."""
    poll = [
        event("j1"),
        event("j2", index=2, inferred=True),
        event("u1", EventKind.UNJAILED, index=3, unjail_delay_seconds=100.0),
    ]
    assert jail_store.commit_poll(store, CHAIN, state(T0, tracked(1)), poll) == poll
    counted = jail_store.counters(store, CHAIN)
    assert jail_store.commit_poll(store, CHAIN, state(T0, tracked(1)), poll) == []
    assert jail_store.commit_poll(
        store, CHAIN, state(T0 + 1, tracked(1)), [*poll, event("j3")]
    ) == [event("j3")]
    assert jail_store.counters(store, CHAIN).jails == counted.jails + 1
    assert jail_store.counters(store, CHAIN).unjail_delay_count == counted.unjail_delay_count
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (4,)


def test_commit_poll_rejects_an_event_of_another_chain(store: Store) -> None:
    """An event whose chain differs from the poll's raises ValueError and writes nothing."""
    with pytest.raises(ValueError, match="not 'hyperliquid'"):
        jail_store.commit_poll(store, CHAIN, state(T0, tracked(1)), [event("x", chain="other")])
    assert jail_store.load_state(store, CHAIN) is None
    assert jail_store.events(store) == []


# --- counters ----------------------------------------------------------------------------


def test_counters_count_jails_and_unjail_delays(store: Store) -> None:
    """Jails (inferred included) count per chain and validator; unjails with a delay fill the
    cumulative histogram, sum and count; other kinds and delay-less unjails count nothing."""
    poll = [
        event("j1", index=1),
        event("j2", index=1, observed_at=T0 + 1),
        event("j3", index=2, inferred=True),
        event("u1", EventKind.UNJAILED, index=1, unjail_delay_seconds=0.0),
        event("u2", EventKind.UNJAILED, index=2, unjail_delay_seconds=300.0),
        event("u3", EventKind.UNJAILED, index=2, unjail_delay_seconds=10**6),
        event("u4", EventKind.UNJAILED, index=2, unjail_delay_seconds=None),
        event("x1", EventKind.JOINED, index=4),
        event("x2", EventKind.DEACTIVATED, index=4),
    ]
    jail_store.commit_poll(store, CHAIN, state(T0), poll)
    jail_store.commit_poll(store, "other", state(T0), [event("o1", chain="other")])
    expected_buckets = tuple(
        sum(1 for d in (0.0, 300.0, 10**6) if d <= bound) for bound in UNJAIL_DELAY_BUCKETS
    )
    assert jail_store.counters(store, CHAIN) == JailCounters(
        jails=3,
        validator_jails={f"0x{1:040x}": 2, f"0x{2:040x}": 1},
        unjail_delay_bucket_counts=expected_buckets,
        unjail_delay_sum=300.0 + 10**6,
        unjail_delay_count=3,
    )
    assert expected_buckets[:3] == (1, 1, 2)  # le 0, le 60, le 300
    assert jail_store.counters(store, "other").jails == 1
    assert jail_store.counters(store, "never") == JailCounters(
        0, {}, (0,) * len(UNJAIL_DELAY_BUCKETS), 0, 0
    )


def test_counters_continue_across_close_and_reopen(db: Path) -> None:
    """Counters and state read after close/reopen equal those before, and keep counting."""
    with Store(db) as first:
        jail_store.commit_poll(
            first, CHAIN, state(T0, tracked(1)), [event("j1"), event("j2", index=2)]
        )
        before = snapshot(first)
    with Store(db) as second:
        assert snapshot(second) == before
        jail_store.commit_poll(
            second, CHAIN, state(T0 + 30, tracked(1)), [event("j3", observed_at=T0 + 30)]
        )
        assert jail_store.counters(second, CHAIN).jails == 3
        assert jail_store.counters(second, CHAIN).validator_jails[f"0x{1:040x}"] == 2


def test_prune_keeps_counters_and_windowed_counts(store: Store) -> None:
    """prune deletes only events older than the cutoff (all chains), returns how many, leaves
    counters unchanged, and count_events over windows after the cutoff is unchanged by it."""
    poll = [event(f"j{i}", index=i, observed_at=T0 + 100 * i) for i in range(10)]
    jail_store.commit_poll(store, CHAIN, state(T0 + 1000), poll)
    jail_store.commit_poll(store, "other", state(T0), [event("o", chain="other", observed_at=T0)])
    counters = jail_store.counters(store, CHAIN)
    assert jail_store.count_events(store, CHAIN, EventKind.JAILED, T0 + 500) == 5
    assert jail_store.count_events(store, CHAIN, EventKind.JAILED, T0 + 450) == 5
    assert jail_store.count_events(store, CHAIN, EventKind.JAILED, 0) == 10
    assert jail_store.count_events(store, CHAIN, EventKind.UNJAILED, 0) == 0

    assert jail_store.prune(store, T0 + 500) == 6  # j0..j4 and "other"'s event
    assert jail_store.counters(store, CHAIN) == counters
    assert jail_store.counters(store, "other").jails == 1
    assert jail_store.count_events(store, CHAIN, EventKind.JAILED, T0 + 500) == 5
    assert jail_store.count_events(store, CHAIN, EventKind.JAILED, 0) == 5
    assert [e.event_id for e in jail_store.events(store)] == [f"j{i}" for i in range(5, 10)]
    assert jail_store.prune(store, T0 + 500) == 0


def test_prune_returns_freed_pages_to_the_filesystem(store: Store, db: Path) -> None:
    """After a prune that deleted rows, the file has no free pages and fewer pages in total."""
    filler = "x" * 2000
    for n in range(20):
        poll = [event(f"e{n}-{i}", name=filler, observed_at=T0 + n, index=i) for i in range(10)]
        jail_store.commit_poll(store, CHAIN, state(T0 + n), poll)
    with raw(db) as conn:
        pages_before = conn.execute("PRAGMA page_count").fetchone()[0]
    assert jail_store.prune(store, T0 + 100) == 200
    with raw(db) as conn:
        assert conn.execute("PRAGMA freelist_count").fetchone() == (0,)
        assert conn.execute("PRAGMA page_count").fetchone()[0] < pages_before // 4


# --- queries -----------------------------------------------------------------------------


def test_events_filters_and_ordering(store: Store) -> None:
    """events() applies chain, since, validator and kinds together (empty kinds matches
    nothing) and orders by observed_at, then insertion."""
    jail_store.commit_poll(
        store,
        CHAIN,
        state(T0 + 60),
        [
            event("late", index=1, observed_at=T0 + 60),
            event("early", index=2, observed_at=T0),
            event("tie-1", EventKind.UNJAILED, index=1, observed_at=T0 + 30),
            event("tie-2", EventKind.JOINED, index=2, observed_at=T0 + 30),
        ],
    )
    jail_store.commit_poll(
        store, "other", state(T0), [event("elsewhere", chain="other", observed_at=T0)]
    )

    def ids(**filters: Any) -> list[str]:
        return [e.event_id for e in jail_store.events(store, **filters)]

    assert ids() == ["early", "elsewhere", "tie-1", "tie-2", "late"]
    assert ids(chain=CHAIN) == ["early", "tie-1", "tie-2", "late"]
    assert ids(chain=CHAIN, since=T0 + 30) == ["tie-1", "tie-2", "late"]
    assert ids(chain=CHAIN, validator=f"0x{1:040x}") == ["tie-1", "late"]
    assert ids(validator=f"0x{1:040x}") == ["elsewhere", "tie-1", "late"]
    assert ids(chain=CHAIN, kinds={EventKind.JAILED}) == ["early", "late"]
    assert ids(kinds=[EventKind.UNJAILED, EventKind.JOINED]) == ["tie-1", "tie-2"]
    assert ids(chain=CHAIN, since=T0 + 1, validator=f"0x{1:040x}", kinds={EventKind.JAILED}) == [
        "late"
    ]
    assert ids(kinds=set()) == []
    assert ids(chain="nope") == []


# --- concurrent reader, errors, migrations, file ------------------------------------------


def test_read_only_store_reads_alongside_a_writer_and_cannot_write(store: Store, db: Path) -> None:
    """With the writer's connection open, a read_only store sees each new commit, and any
    write through it raises StoreError."""
    jail_store.commit_poll(store, CHAIN, state(T0, tracked(1)), [event("j1")])
    with Store(db, read_only=True) as reader:
        assert jail_store.counters(reader, CHAIN).jails == 1
        assert jail_store.load_state(reader, CHAIN) == jail_store.load_state(store, CHAIN)
        jail_store.commit_poll(store, CHAIN, state(T0 + 30, tracked(2)), [event("j2", index=2)])
        assert jail_store.counters(reader, CHAIN).jails == 2
        assert [e.event_id for e in jail_store.events(reader, CHAIN)] == ["j1", "j2"]
        with pytest.raises(StoreError, match="readonly"):
            jail_store.commit_poll(reader, CHAIN, state(T0 + 60), [])
        with pytest.raises(StoreError, match="readonly"):
            jail_store.prune(reader, T0 + 100)
    assert jail_store.counters(store, CHAIN).jails == 2


def test_read_only_store_reads_after_the_writer_closed(db: Path) -> None:
    """A read_only store opens and reads a database whose writer has exited."""
    with Store(db) as writer:
        jail_store.commit_poll(writer, CHAIN, state(T0, tracked(1)), [event("j1")])
    with Store(db, read_only=True) as reader:
        assert jail_store.chains(reader) == [CHAIN]
        assert jail_store.counters(reader, CHAIN).jails == 1


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

    from quorumwatch.jails.events import ChainState, EventKind, TrackedValidator, ValidatorEvent
    from quorumwatch.store import Store, jails

    store = Store(Path(sys.argv[1]))
    poll = 0
    while True:
        poll += 1
        address = f"0x{poll:040x}"
        v = TrackedValidator(address, "v", 2**70 + poll, False, True, None, float(poll))
        event = ValidatorEvent(
            f"kill9-{poll}", "c", address, "v", EventKind.JAILED, float(poll),
            float(poll - 1), False, False, v.stake, None,
        )
        jails.commit_poll(store, "c", ChainState(float(poll), {address: v}), [event])
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
        assert len(latest.validators) == 1
        assert latest.validators[f"0x{jails:040x}"].stake == 2**70 + jails


# --- AsyncStore --------------------------------------------------------------------------


async def test_async_store_runs_all_sqlite_on_one_worker_thread(db: Path) -> None:
    """Every AsyncStore method works from the loop, and every SQL statement (open, migrate,
    reads, writes, close) runs on one single thread that is not the event loop's thread."""
    threads: set[int] = set()
    statements = 0

    def trace(_sql: str) -> None:
        nonlocal statements
        statements += 1
        threads.add(threading.get_ident())

    class TracedStore(Store):
        def _connect(self) -> sqlite3.Connection:
            conn = super()._connect()
            conn.set_trace_callback(trace)
            return conn

    class TracedAsyncStore(AsyncStore):
        store_class = TracedStore

    store = await TracedAsyncStore.open(db)
    async with store:
        polls = [
            store.call(
                jail_store.commit_poll,
                CHAIN,
                state(T0 + i, tracked(1)),
                [event(f"j{i}", observed_at=T0 + i)],
            )
            for i in range(20)
        ]
        assert [len(inserted) for inserted in await asyncio.gather(*polls)] == [1] * 20
        assert (await store.call(jail_store.counters, CHAIN)).jails == 20
        assert await store.call(jail_store.count_events, CHAIN, EventKind.JAILED, T0 + 10) == 10
        assert (
            len(await store.call(jail_store.events, CHAIN, since=T0 + 15, kinds={EventKind.JAILED}))
            == 5
        )
        assert await store.call(jail_store.prune, T0 + 5) == 5
        assert await store.call(jail_store.chains) == [CHAIN]
        loaded = await store.call(jail_store.load_state, CHAIN)
        assert loaded is not None
        assert loaded.observed_at >= T0
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.call(jail_store.chains)

    assert statements > 30
    assert len(threads) == 1
    assert threading.get_ident() not in threads

    threads.clear()
    reader = await TracedAsyncStore.open(db, read_only=True)
    assert (await reader.call(jail_store.counters, CHAIN)).jails == 20
    await reader.close()
    assert len(threads) == 1  # its own worker, again not the loop's thread
    assert threading.get_ident() not in threads


async def test_async_open_failure_raises_store_error(tmp_path: Path) -> None:
    """AsyncStore.open on a missing database in read_only mode raises StoreError."""
    with pytest.raises(StoreError, match="no such database file"):
        await AsyncStore.open(tmp_path / "none.db", read_only=True)


# --- alert state and the outbox (schema 2) ------------------------------------------------

import time  # noqa: E402

from quorumwatch.alerting.model import (  # noqa: E402
    AlertState,
    AlertStatus,
    Severity,
    fingerprint,
)
from quorumwatch.store import OutboxEntry  # noqa: E402


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


def test_alert_state_round_trip_is_exact(store: Store) -> None:
    """Committed alert states load back equal (pending and firing, None value and threshold,
    non-ASCII labels), firing() returns only those with starts_at, chains stay apart, and a
    new commit replaces the chain's states."""
    pending = alert_state("ChainHalted", firing=False, value=None, threshold=None)
    firing = alert_state(entity="Ünïcode \u202e name", pending_since=T0 + 0.125)
    other = alert_state(chain="other")
    alert_store.commit_alerts(store, CHAIN, [firing, pending], [])
    alert_store.commit_alerts(store, "other", [other], [])
    assert alert_store.load_alert_state(store, CHAIN) == [pending, firing]  # by alert, fingerprint
    assert alert_store.firing(store, CHAIN) == [firing]
    assert alert_store.load_alert_state(store, "other") == [other]
    assert alert_store.load_alert_state(store, "never") == []
    assert alert_store.firing(store, "never") == []

    alert_store.commit_alerts(store, CHAIN, [pending], [])
    assert alert_store.load_alert_state(store, CHAIN) == [pending]
    assert alert_store.firing(store, CHAIN) == []
    assert alert_store.load_alert_state(store, "other") == [other]


def test_alert_state_and_outbox_survive_reopen(db: Path) -> None:
    """Alert state, pending outbox rows and event counters read after close/reopen equal
    those before."""
    with Store(db) as first:
        alert_store.commit_alerts(first, CHAIN, [alert_state()], [alert_event("f1")])
        before = (
            alert_store.load_alert_state(first, CHAIN),
            alert_store.outbox_peek(first, 10),
            alert_store.events_generated(first),
        )
    with Store(db) as second:
        after = (
            alert_store.load_alert_state(second, CHAIN),
            alert_store.outbox_peek(second, 10),
            alert_store.events_generated(second),
        )
    assert after == before
    assert before[2] == {("EntityCanHalt", AlertStatus.FIRING): 1}


def test_commit_alerts_is_atomic(store: Store, db: Path) -> None:
    """When the 2nd outbox insert fails, commit_alerts raises StoreError and leaves alert
    state, outbox and event counters as before; an event or state of another chain raises
    ValueError and writes nothing."""
    alert_store.commit_alerts(
        store, CHAIN, [alert_state(entity="e0")], [alert_event("first", entity="e0")]
    )

    def everything() -> tuple[object, ...]:
        return (
            alert_store.load_alert_state(store, CHAIN),
            alert_store.outbox_peek(store, 100),
            alert_store.events_generated(store),
        )

    before = everything()
    with raw(db) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON outbox WHEN NEW.event_id = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    with pytest.raises(StoreError, match="commit alerts of 'hyperliquid' failed: boom"):
        alert_store.commit_alerts(
            store,
            CHAIN,
            [alert_state(entity="e1"), alert_state(entity="e2")],
            [alert_event("ok", entity="e1"), alert_event("boom", entity="e2")],
        )
    assert everything() == before

    with pytest.raises(ValueError, match="not for chain 'hyperliquid'"):
        alert_store.commit_alerts(store, CHAIN, [alert_state(chain="other")], [])
    with pytest.raises(ValueError, match="not for chain 'hyperliquid'"):
        alert_store.commit_alerts(store, CHAIN, [], [alert_event("x", chain="other")])
    assert everything() == before


def test_outbox_is_fifo_across_commits_and_delete_removes_one(store: Store) -> None:
    """outbox_peek returns entries in commit order across chains and commits (limit
    respected) with the event's JSON as payload; outbox_delete removes exactly one; an
    event_id already pending is not appended or counted twice."""
    first = [alert_event("a1"), alert_event("a2", "ChainHalted")]
    alert_store.commit_alerts(store, CHAIN, [], first)
    alert_store.commit_alerts(store, "other", [], [alert_event("b1", chain="other")])
    alert_store.commit_alerts(store, CHAIN, [], [alert_event("a3", status=AlertStatus.RESOLVED)])
    entries = alert_store.outbox_peek(store, 10)
    assert [e.event_id for e in entries] == ["a1", "a2", "b1", "a3"]
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert entries[1] == OutboxEntry(
        id=entries[1].id,
        chain=CHAIN,
        event_id="a2",
        alert="ChainHalted",
        payload=first[1].to_json(),
        created_at=entries[1].created_at,
    )
    assert [e.chain for e in entries] == [CHAIN, CHAIN, "other", CHAIN]
    assert outbox_ids(store)[:2] == [e.event_id for e in alert_store.outbox_peek(store, 2)]

    alert_store.outbox_delete(store, entries[1].id)
    assert outbox_ids(store) == ["a1", "b1", "a3"]
    alert_store.outbox_delete(store, entries[1].id)  # already gone: nothing else is touched
    assert outbox_ids(store) == ["a1", "b1", "a3"]

    alert_store.commit_alerts(store, CHAIN, [], [alert_event("a1"), alert_event("a4")])
    assert outbox_ids(store) == ["a1", "b1", "a3", "a4"]
    assert (
        alert_store.events_generated(store)[("EntityCanHalt", AlertStatus.FIRING)] == 3
    )  # a1 b1 a4
    for entry in alert_store.outbox_peek(store, 100):
        alert_store.outbox_delete(store, entry.id)
    assert alert_store.outbox_peek(store, 100) == []
    alert_store.commit_alerts(store, CHAIN, [], [alert_event("a5")])
    later = alert_store.outbox_peek(store, 1)
    assert later[0].id > entries[-1].id  # AUTOINCREMENT: ids never reused, FIFO holds


def test_outbox_stats_and_events_generated(store: Store) -> None:
    """outbox_stats gives the pending count and the oldest row's age (None when empty);
    events_generated sums per (alert, status) over chains and is not reduced by deletes."""
    assert alert_store.outbox_stats(store, T0) == (0, None)
    assert alert_store.events_generated(store) == {}
    before = time.time()
    alert_store.commit_alerts(
        store, CHAIN, [], [alert_event("a1"), alert_event("a2", "Alert_With_Underscore")]
    )
    alert_store.commit_alerts(store, "other", [], [alert_event("b1", chain="other")])
    alert_store.commit_alerts(
        store, "other", [], [alert_event("b2", chain="other", status=AlertStatus.RESOLVED)]
    )
    after = time.time()
    count, age = alert_store.outbox_stats(store, after + 100)
    assert count == 4
    assert age is not None
    assert 100 <= age <= 100 + (after - before)
    assert alert_store.outbox_stats(store, before - 50) == (
        4,
        0.0,
    )  # a clock step back is not negative

    expected = {
        ("Alert_With_Underscore", AlertStatus.FIRING): 1,
        ("EntityCanHalt", AlertStatus.FIRING): 2,
        ("EntityCanHalt", AlertStatus.RESOLVED): 1,
    }
    assert alert_store.events_generated(store) == expected
    for entry in alert_store.outbox_peek(store, 100):
        alert_store.outbox_delete(store, entry.id)
    assert alert_store.outbox_stats(store, after) == (0, None)
    assert alert_store.events_generated(store) == expected
    assert alert_store.alert_chains(store) == [CHAIN, "other"]
    assert jail_store.counters(store, CHAIN).jails == 0  # jail counters are not disturbed


def test_migration_from_a_v1_database_keeps_its_data(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database created with only migration 1 opens at version 2 with its state, events
    and counters unchanged, and the alert tables usable."""
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        patched.setattr(migrations, "SCHEMA_VERSION", 1)
        with Store(db) as old:
            jail_store.commit_poll(old, CHAIN, state(T0, tracked(1, jailed=True)), [event("j1")])
            before = snapshot(old)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        assert "outbox" not in tables
    assert SCHEMA_VERSION == 2
    with Store(db) as new:
        assert snapshot(new) == before
        assert alert_store.load_alert_state(new, CHAIN) == []
        assert alert_store.outbox_stats(new, T0) == (0, None)
        alert_store.commit_alerts(new, CHAIN, [alert_state()], [alert_event("f1")])
        assert outbox_ids(new) == ["f1"]
        assert jail_store.counters(new, CHAIN) == before[1]
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_async_store_alert_methods(db: Path) -> None:
    """Every alert and outbox method of AsyncStore returns what the Store method returns."""
    async with await AsyncStore.open(db) as store:
        await store.call(
            alert_store.commit_alerts,
            CHAIN,
            [alert_state(), alert_state(entity="e2", firing=False)],
            [alert_event("f1")],
        )
        assert len(await store.call(alert_store.load_alert_state, CHAIN)) == 2
        assert await store.call(alert_store.firing, CHAIN) == [alert_state()]
        assert await store.call(alert_store.alert_chains) == [CHAIN]
        entries = await store.call(alert_store.outbox_peek, 10)
        assert [e.event_id for e in entries] == ["f1"]
        assert (await store.call(alert_store.outbox_stats, time.time()))[0] == 1
        assert await store.call(alert_store.events_generated) == {
            ("EntityCanHalt", AlertStatus.FIRING): 1
        }
        await store.call(alert_store.outbox_delete, entries[0].id)
        assert await store.call(alert_store.outbox_peek, 10) == []


# --- the outbox bound ---------------------------------------------------------------------


def test_full_outbox_drops_the_oldest_in_commit_order_and_warns_once(db: Path) -> None:
    """Beyond max_outbox_events a commit drops the oldest pending events (across chains),
    returns and counts how many, keeps the rest in commit order per chain, keeps them in
    events_generated, and logs one warning for the first drop only within the interval."""
    with Store(db, max_outbox_events=4) as store, capture_logs() as logs:
        first = [alert_event("a1"), alert_event("a2", entity="e2")]
        assert alert_store.commit_alerts(store, CHAIN, [], first) == 0
        assert (
            alert_store.commit_alerts(store, "other", [], [alert_event("b1", chain="other")]) == 0
        )
        assert alert_store.commit_alerts(store, CHAIN, [], [alert_event("a3", entity="e3")]) == 0
        assert alert_store.outbox_dropped(store) == 0
        assert logs == []

        dropped = alert_store.commit_alerts(
            store,
            "other",
            [],
            [alert_event("b2", chain="other", entity="e2"), alert_event("b3", chain="other")],
        )
        assert dropped == 2
        assert outbox_ids(store) == ["b1", "a3", "b2", "b3"]
        assert alert_store.outbox_dropped(store) == 2
        assert [(e["event"], e["log_level"], e["dropped"]) for e in logs] == [
            ("outbox full: oldest undelivered alert events dropped", "warning", 2)
        ]

        assert alert_store.commit_alerts(store, CHAIN, [], [alert_event("a4", entity="e4")]) == 1
        assert outbox_ids(store) == ["a3", "b2", "b3", "a4"]
        assert alert_store.outbox_dropped(store) == 3
        assert len(logs) == 1  # the next warning waits for the interval
        assert sum(alert_store.events_generated(store).values()) == 7


def test_commit_alerts_returns_0_when_the_outbox_is_not_over_the_bound(db: Path) -> None:
    """commit_alerts that appends nothing (state only, or an event already pending) drops
    nothing even with the outbox at its bound."""
    with Store(db, max_outbox_events=1) as store:
        assert alert_store.commit_alerts(store, CHAIN, [], [alert_event("a1")]) == 0
        assert alert_store.commit_alerts(store, CHAIN, [alert_state()], []) == 0
        assert alert_store.commit_alerts(store, CHAIN, [], [alert_event("a1")]) == 0
        assert outbox_ids(store) == ["a1"]
        assert alert_store.outbox_dropped(store) == 0


def test_drop_is_rolled_back_with_its_commit(db: Path) -> None:
    """The drop is part of the commit's transaction: when counting the drop fails, the
    dropped events are back, the new ones are not appended and nothing is counted."""
    with Store(db, max_outbox_events=2) as store:
        alert_store.commit_alerts(
            store, CHAIN, [], [alert_event("a1"), alert_event("a2", entity="e2")]
        )
        before = alert_store.events_generated(store)
        with raw(db) as conn:
            conn.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON counters WHEN NEW.name = 'outbox_dropped'"
                " BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        with pytest.raises(StoreError, match="boom"):
            alert_store.commit_alerts(store, CHAIN, [], [alert_event("a3", entity="e3")])
        assert outbox_ids(store) == ["a1", "a2"]
        assert alert_store.outbox_dropped(store) == 0
        assert alert_store.events_generated(store) == before


def test_drop_count_is_kept_across_reopen_and_a_lower_bound_applies_at_the_next_commit(
    db: Path,
) -> None:
    """outbox_dropped reads the same after close and reopen; reopened with a lower bound,
    the next commit cuts the outbox back to it and adds to the same count."""
    with Store(db, max_outbox_events=2) as first:
        alert_store.commit_alerts(
            first, CHAIN, [], [alert_event(f"a{n}", entity=f"e{n}") for n in range(5)]
        )
        assert alert_store.outbox_dropped(first) == 3
    with Store(db) as second:
        assert alert_store.outbox_dropped(second) == 3
        assert outbox_ids(second) == ["a3", "a4"]
    with Store(db, max_outbox_events=1) as third:
        assert (
            alert_store.commit_alerts(third, "other", [], [alert_event("b1", chain="other")]) == 2
        )
        assert outbox_ids(third) == ["b1"]
        assert alert_store.outbox_dropped(third) == 5


def test_max_outbox_events_below_1_is_refused(db: Path) -> None:
    """A bound below 1 is a ValueError, before the file is created."""
    with pytest.raises(ValueError, match="max_outbox_events must be at least 1"):
        Store(db, max_outbox_events=0)
    assert not db.exists()


async def test_async_store_passes_the_bound_and_reads_the_drop_count(db: Path) -> None:
    """AsyncStore.open(max_outbox_events=...) bounds the outbox; commit_alerts returns the
    number dropped and outbox_dropped the total."""
    async with await AsyncStore.open(db, max_outbox_events=1) as store:
        assert await store.call(alert_store.commit_alerts, CHAIN, [], [alert_event("a1")]) == 0
        assert (
            await store.call(alert_store.commit_alerts, CHAIN, [], [alert_event("a2", entity="e2")])
            == 1
        )
        assert await store.call(alert_store.outbox_dropped) == 1
        assert [e.event_id for e in await store.call(alert_store.outbox_peek, 10)] == ["a2"]
