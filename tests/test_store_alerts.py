"""The alert repository: alert state round trips, atomic commits, the FIFO outbox, event
counters, and the outbox bound."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from quorumwatch.alerting.model import AlertStatus
from quorumwatch.store import OutboxEntry, Store, StoreError
from quorumwatch.store import alerts as alert_store
from quorumwatch.store import jails as jail_store
from tests.builders import alert_event
from tests.store_builders import (
    CHAIN,
    T0,
    alert_state,
    outbox_ids,
    raw,
)


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db) as opened:
        yield opened


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
