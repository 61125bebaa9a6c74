"""The jail repository: exact round trips, atomic polls, no double counting, counters,
retention and event queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumwatch.jails.events import EventKind, StateChange, TrackedValidator, ValidatorEvent
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters
from quorumwatch.store import Store, StoreError, migrations
from quorumwatch.store import jails as jail_store
from tests.store_builders import (
    BIG,
    CHAIN,
    T0,
    contents,
    event,
    insert_event_before_total_stake,
    raw,
    rows,
    snapshot,
    state,
    tracked,
)


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db) as opened:
        yield opened


# --- round trips -------------------------------------------------------------------------


def test_state_round_trip_is_exact(store: Store) -> None:
    """A committed ChainState loads back equal: stakes above 2**64 exact, None fields kept."""
    committed = state(T0 + 0.125, tracked(1), tracked(2, jailed=True), tracked(3, stake=0))
    jail_store.commit_poll(store, CHAIN, committed, [])
    loaded = jail_store.load_state(store, CHAIN)
    assert contents(loaded) == contents(committed)
    assert loaded is not None
    assert rows(loaded)[f"0x{1:040x}"].stake == BIG
    assert rows(loaded)[f"0x{1:040x}"].jailed_since is None
    assert rows(loaded)[f"0x{1:040x}"].unjailable_after_ms is None


def test_state_loads_in_chunks_into_columns(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state of more rows than a chunk, all stakes below 2**64, is written and read back a
    chunk at a time, exactly, with its stakes as a uint64 column."""
    monkeypatch.setattr(jail_store, "CHUNK_ROWS", 3)
    committed = state(T0, *(tracked(i, jailed=i % 3 == 0, stake=i) for i in range(1, 11)))
    jail_store.commit_poll(store, CHAIN, committed, [])
    loaded = jail_store.load_state(store, CHAIN)
    assert contents(loaded) == contents(committed)
    assert loaded is not None
    assert loaded.stakes.dtype == np.uint64


def test_commit_against_the_previous_state_persists_the_same_state(store: Store) -> None:
    """Committing only the change from the previous state (the changed and joined rows, the
    departed addresses) loads back exactly the new state, and other chains are untouched."""
    first = state(T0, tracked(1), tracked(2), tracked(3), tracked(4))
    jail_store.commit_poll(store, CHAIN, first, [])
    jail_store.commit_poll(store, "other", first, [])
    second = state(T0 + 30, tracked(1), tracked(2, jailed=True), tracked(4, stake=7), tracked(5))
    change = StateChange(written=np.array([1, 2, 3], dtype=np.intp), removed=[f"0x{3:040x}"])
    jail_store.commit_poll(store, CHAIN, second, [], change=change)
    assert contents(jail_store.load_state(store, CHAIN)) == contents(second)
    assert contents(jail_store.load_state(store, "other")) == contents(first)


def test_a_change_writes_only_its_rows(store: Store) -> None:
    """Only the rows a change names are written: a row it leaves out keeps its stored value."""
    jail_store.commit_poll(store, CHAIN, state(T0, tracked(1), tracked(2)), [])
    second = state(T0 + 30, tracked(1, stake=5), tracked(2, stake=6))
    change = StateChange(written=np.array([1], dtype=np.intp), removed=[])
    jail_store.commit_poll(store, CHAIN, second, [], change=change)
    loaded = jail_store.load_state(store, CHAIN)
    assert loaded is not None
    assert {a: v.stake for a, v in rows(loaded).items()} == {
        f"0x{1:040x}": BIG,
        f"0x{2:040x}": 6,
    }


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
    assert contents(jail_store.load_state(store, CHAIN)) == contents(newer)
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
        event("c", EventKind.LEFT, stake=0, total_stake=2**130),
    ]
    assert jail_store.commit_poll(store, CHAIN, state(T0), events) == events
    assert jail_store.events(store, CHAIN) == events


def test_large_ints_round_trip_exactly(store: Store) -> None:
    """Any int stake and event unjailableAfter (negative, 0, beyond 2**63) reads back exactly;
    so does a tracked state's stake of any size beside an unjailableAfter of int64 (the
    width of a table's column)."""
    counter = iter(range(10**9))

    @settings(max_examples=60, deadline=None)
    @given(
        stake=st.integers(min_value=0),
        unjailable=st.none() | st.integers(),
        tracked_ms=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    )
    def check(stake: int, unjailable: int | None, tracked_ms: int | None) -> None:
        n = next(counter)
        v = TrackedValidator("0xab", "n", stake, True, False, tracked_ms, None)
        e = event(f"h{n}", stake=stake, unjailable_after_ms=unjailable, observed_at=float(n))
        jail_store.commit_poll(store, CHAIN, state(float(n), v), [e])
        loaded = jail_store.load_state(store, CHAIN)
        assert loaded is not None
        assert rows(loaded)["0xab"] == v
        assert jail_store.events(store, CHAIN, since=float(n)) == [e]

    check()


def test_a_tracked_unjailable_after_beyond_int64_loads_as_none(store: Store, db: Path) -> None:
    """A tracked unjailableAfter stored beyond int64 (as an older release could) loads as
    none, the only way a table's int64 column can hold it; the row is read otherwise."""
    jail_store.commit_poll(store, CHAIN, state(T0, tracked(1, jailed=True)), [])
    with raw(db) as conn:
        conn.execute("UPDATE validator_state SET unjailable_after_ms = ?", (str(2**70),))
    loaded = jail_store.load_state(store, CHAIN)
    assert loaded is not None
    (row,) = rows(loaded).values()
    assert (row.unjailable_after_ms, row.jailed, row.stake) == (None, True, BIG)


def test_events_stored_before_the_total_stake_load_without_it(db: Path) -> None:
    """An event stored by the schema before `total_stake` was recorded loads after the
    migration with total_stake None and every other field as stored."""
    with raw(db) as conn:
        for migration in migrations.MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
    stored = event("old", stake=BIG, unjailable_after_ms=7)
    with raw(db) as conn:
        insert_event_before_total_stake(conn, stored)
    with Store(db) as migrated:
        assert jail_store.events(migrated, CHAIN) == [stored]
    assert stored.total_stake is None


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


def test_load_history_is_state_counters_and_recent_jails(store: Store) -> None:
    """load_history gives what load_state, counters and events(since, JAILED) give, and a
    chain never committed has no state, zero counters and no jails."""
    poll = [
        event("old", index=1, observed_at=T0),
        event("u", EventKind.UNJAILED, index=1, observed_at=T0 + 60, unjail_delay_seconds=5.0),
        event("new", index=2, observed_at=T0 + 120),
        event("joined", EventKind.JOINED, index=3, observed_at=T0 + 120),
    ]
    jail_store.commit_poll(store, CHAIN, state(T0 + 120, tracked(2, jailed=True)), poll)
    history = jail_store.load_history(store, CHAIN, T0 + 1)
    assert contents(history.state) == contents(jail_store.load_state(store, CHAIN))
    assert history.counters == jail_store.counters(store, CHAIN)
    assert history.jails == jail_store.events(store, CHAIN, since=T0 + 1, kinds=[EventKind.JAILED])
    assert [e.event_id for e in history.jails] == ["new"]
    never = jail_store.load_history(store, "never", T0)
    assert (never.state, never.counters, never.jails) == (None, JailCounters.zero(), [])
