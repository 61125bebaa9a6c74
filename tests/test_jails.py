"""Tests for the pure jail tracking in `quorumwatch.jails`.

Snapshots are written as `Validator` lists and fed to `track` as the `ValidatorTable` the monitor
hands over after each valid poll. Times are seconds, `unjailableAfter` milliseconds
(chain-apis.md §1.2).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumwatch.columns import DecimalIds, Unnamed, ValidatorTable
from quorumwatch.config import JailStormSettings
from quorumwatch.jails.events import (
    ChainState,
    EventKind,
    TrackedPoll,
    TrackedValidator,
    ValidatorEvent,
    track,
)
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS, JailCounters, jail_statistics
from quorumwatch.jails.storms import is_storm, jailed_in_window
from quorumwatch.models import Validator
from tests.builders import address as addr
from tests.builders import validator as val
from tests.store_builders import rows
from tests.store_builders import state as tracked_state

CHAIN = "hyperliquid"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T1 = T0 + 30.0
T2 = T0 + 60.0
TOTAL = 10_000  # the consensus stake each snapshot is tracked with


def track_set(
    previous: ChainState | None,
    validators: Sequence[Validator],
    at: float,
    *,
    gap: bool = False,
    chain: str = CHAIN,
) -> tuple[ChainState, list[ValidatorEvent]]:
    """`track` of the table of `validators`, with a consensus stake of TOTAL."""
    polled = track(chain, previous, ValidatorTable.of(validators), at, gap=gap, total_stake=TOTAL)
    return polled.state, polled.events


def baseline(validators: Sequence[Validator], at: float = T0) -> ChainState:
    state, events = track_set(None, validators, at)
    assert events == []
    return state


def step(
    before: Sequence[Validator], after: Sequence[Validator], *, gap: bool = False
) -> list[ValidatorEvent]:
    """Events from a baseline at T0 to a snapshot at T1."""
    _, events = track_set(baseline(before), after, T1, gap=gap)
    return events


def kinds(events: Sequence[ValidatorEvent]) -> list[tuple[str, EventKind, bool]]:
    return [(e.address, e.kind, e.inferred) for e in events]


def jail_event(
    index: int,
    at: float,
    *,
    stake: int = 1000,
    kind: EventKind = EventKind.JAILED,
    inferred: bool = False,
    jail_seconds: float | None = None,
    total_stake: int | None = None,
) -> ValidatorEvent:
    return ValidatorEvent(
        event_id=f"{index}-{kind}-{at}",
        chain=CHAIN,
        address=addr(index),
        name=f"validator {index}",
        kind=kind,
        observed_at=at,
        previous_observed_at=at - 30,
        inferred=inferred,
        after_gap=False,
        stake=stake,
        unjailable_after_ms=None,
        jail_seconds=jail_seconds,
        total_stake=total_stake,
    )


# --- baseline and restart -------------------------------------------------------------------


def test_baseline_has_no_events_and_dates_existing_jails_now() -> None:
    """A first snapshot yields no events; already-jailed validators get jailed_since = now."""
    state, events = track_set(None, [val(1), val(2, jailed=True, unjailable_after_ms=5)], T0)
    assert events == []
    assert state.observed_at == T0
    assert rows(state)[addr(1)].jailed_since is None
    assert rows(state)[addr(2)] == TrackedValidator(
        address=addr(2),
        name="validator 2",
        stake=1000,
        active=True,
        jailed=True,
        unjailable_after_ms=5,
        jailed_since=T0,
    )


def test_restart_compares_with_persisted_state_not_everybody_joined() -> None:
    """After a restart the persisted state is the comparison base: only real changes are events."""
    persisted = tracked_state(
        T0,
        TrackedValidator(addr(2), "validator 2", 1000, True, True, 9, T0 - 500),
        TrackedValidator(addr(1), "validator 1", 1000, True, False, None, None),
    )
    state, events = track_set(persisted, [val(1), val(2, jailed=True)], T1)
    assert events == []
    assert rows(state)[addr(2)].jailed_since == T0 - 500


# --- individual transitions -----------------------------------------------------------------


def test_jailed_event_fields() -> None:
    """A jail carries observed_at, previous_observed_at, stake and unjailable_after_ms of now."""
    events = step([val(1, stake=7)], [val(1, stake=8, jailed=True, unjailable_after_ms=42)])
    assert len(events) == 1
    event = events[0]
    assert (event.chain, event.address, event.name) == (CHAIN, addr(1), "validator 1")
    assert event.kind is EventKind.JAILED
    assert (event.observed_at, event.previous_observed_at) == (T1, T0)
    assert (event.stake, event.unjailable_after_ms, event.total_stake) == (8, 42, TOTAL)
    assert not event.inferred
    assert not event.after_gap
    assert event.jail_seconds is None
    assert event.unjail_delay_seconds is None


def test_new_jail_sets_jailed_since_to_observation_time() -> None:
    """A validator newly seen jailed gets jailed_since = this snapshot's time."""
    state, _ = track_set(baseline([val(1)]), [val(1, jailed=True)], T1)
    assert rows(state)[addr(1)].jailed_since == T1


def test_unjailed_event_measures() -> None:
    """An unjail has jail_seconds = now − jailed_since, delay = now − unjailableAfter/1000."""
    unjailable_ms = int((T0 + 10) * 1000)
    events = step(
        [val(1, jailed=True, unjailable_after_ms=unjailable_ms)],
        [val(1, stake=9, unjailable_after_ms=unjailable_ms)],
    )
    assert len(events) == 1
    event = events[0]
    assert event.kind is EventKind.UNJAILED
    assert (event.observed_at, event.previous_observed_at) == (T1, T0)
    assert (event.stake, event.unjailable_after_ms) == (9, unjailable_ms)
    assert event.jail_seconds == pytest.approx(T1 - T0)
    assert event.unjail_delay_seconds == pytest.approx(T1 - (T0 + 10))
    assert not event.inferred


def test_unjail_delay_clamped_at_zero() -> None:
    """An unjail seen before unjailableAfter (clock skew) has unjail_delay_seconds = 0."""
    future_ms = int((T1 + 3600) * 1000)
    events = step([val(1, jailed=True, unjailable_after_ms=future_ms)], [val(1)])
    assert events[0].unjail_delay_seconds == 0.0


def test_unjail_without_unjailable_after_has_no_delay() -> None:
    """An unjail whose jail had no unjailableAfter has jail_seconds but no unjail delay."""
    events = step([val(1, jailed=True)], [val(1)])
    assert events[0].jail_seconds == pytest.approx(T1 - T0)
    assert events[0].unjail_delay_seconds is None


def test_jailed_since_preserved_while_still_jailed() -> None:
    """jailed_since stays at the first jailed observation across polls; jail_seconds spans it."""
    state = baseline([val(1)])
    state, _ = track_set(state, [val(1, jailed=True)], T1)
    state, events = track_set(state, [val(1, jailed=True)], T2)
    assert events == []
    assert rows(state)[addr(1)].jailed_since == T1
    state, events = track_set(state, [val(1)], T2 + 100)
    assert [e.kind for e in events] == [EventKind.UNJAILED]
    assert events[0].jail_seconds == pytest.approx(T2 + 100 - T1)
    assert rows(state)[addr(1)].jailed_since is None


def test_joined_event() -> None:
    """A validator absent before emits exactly one joined event with its current fields."""
    events = step([val(1)], [val(1), val(2, stake=5, unjailable_after_ms=3)])
    assert kinds(events) == [(addr(2), EventKind.JOINED, False)]
    assert (events[0].stake, events[0].unjailable_after_ms) == (5, 3)
    assert (events[0].observed_at, events[0].previous_observed_at) == (T1, T0)


def test_jailed_validator_that_joins_emits_joined_and_jailed() -> None:
    """A validator that appears already jailed emits joined then jailed."""
    events = step([val(1)], [val(1), val(2, jailed=True)])
    assert kinds(events) == [
        (addr(2), EventKind.JOINED, False),
        (addr(2), EventKind.JAILED, False),
    ]


def test_left_event_carries_last_known_fields() -> None:
    """A validator missing from the snapshot emits left with its last known stake."""
    state, events = track_set(
        baseline([val(1), val(2, stake=77, unjailable_after_ms=4)]), [val(1)], T1
    )
    assert kinds(events) == [(addr(2), EventKind.LEFT, False)]
    assert (events[0].stake, events[0].unjailable_after_ms) == (77, 4)
    assert (events[0].observed_at, events[0].previous_observed_at) == (T1, T0)
    assert addr(2) not in rows(state)


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [(False, True, EventKind.ACTIVATED), (True, False, EventKind.DEACTIVATED)],
)
def test_active_flip(before: bool, after: bool, kind: EventKind) -> None:
    """An isActive flip emits activated or deactivated, and nothing else."""
    events = step([val(1, active=before)], [val(1, active=after)])
    assert kinds(events) == [(addr(1), kind, False)]
    assert (events[0].observed_at, events[0].previous_observed_at) == (T1, T0)


def test_unchanged_snapshot_has_no_events() -> None:
    """An identical snapshot yields no events."""
    validators = [val(1), val(2, jailed=True, unjailable_after_ms=5), val(3, active=False)]
    assert step(validators, validators) == []


def test_active_flip_and_jail_together() -> None:
    """A validator deactivated and jailed in one poll emits both events."""
    events = step([val(1)], [val(1, active=False, jailed=True)])
    assert sorted(e.kind for e in events) == sorted([EventKind.DEACTIVATED, EventKind.JAILED])


# --- inferred cycles and gaps ---------------------------------------------------------------


def test_inferred_cycle_when_unjailable_after_moves_forward() -> None:
    """unjailableAfter moving forward while unjailed both times gives inferred jailed+unjailed."""
    events = step([val(1, unjailable_after_ms=1000)], [val(1, unjailable_after_ms=2000)])
    assert kinds(events) == [
        (addr(1), EventKind.JAILED, True),
        (addr(1), EventKind.UNJAILED, True),
    ]
    for event in events:
        assert (event.observed_at, event.previous_observed_at) == (T1, T0)
        assert event.unjailable_after_ms == 2000
        assert event.jail_seconds is None
        assert event.unjail_delay_seconds is None
        assert not event.after_gap


def test_inferred_cycle_from_none() -> None:
    """unjailableAfter appearing (None → value) while unjailed both times is an inferred cycle."""
    events = step([val(1)], [val(1, unjailable_after_ms=2000)])
    assert kinds(events) == [
        (addr(1), EventKind.JAILED, True),
        (addr(1), EventKind.UNJAILED, True),
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [(2000, 2000), (2000, 1000), (2000, None), (None, None)],
    ids=["unchanged", "backwards", "to-none", "none"],
)
def test_no_inferred_cycle(old: int | None, new: int | None) -> None:
    """No cycle is inferred when unjailableAfter is unchanged, goes back or becomes None."""
    assert step([val(1, unjailable_after_ms=old)], [val(1, unjailable_after_ms=new)]) == []


def test_no_inferred_cycle_across_gap() -> None:
    """With gap=True a forward move of unjailableAfter infers nothing."""
    events = step([val(1, unjailable_after_ms=1000)], [val(1, unjailable_after_ms=2000)], gap=True)
    assert events == []


def test_no_inferred_cycle_while_jailed_both_times() -> None:
    """A still-jailed validator whose unjailableAfter moves yields no event."""
    events = step(
        [val(1, jailed=True, unjailable_after_ms=1000)],
        [val(1, jailed=True, unjailable_after_ms=2000)],
    )
    assert events == []


def test_real_jail_across_gap_is_flagged_after_gap() -> None:
    """With gap=True a real jail is still recorded, with after_gap=True."""
    events = step(
        [val(1, unjailable_after_ms=1000)],
        [val(1, jailed=True, unjailable_after_ms=2000)],
        gap=True,
    )
    assert kinds(events) == [(addr(1), EventKind.JAILED, False)]
    assert events[0].after_gap
    assert (events[0].observed_at, events[0].previous_observed_at) == (T1, T0)


def test_every_event_across_gap_is_flagged() -> None:
    """With gap=True unjailed, joined, left and activated events all carry after_gap=True."""
    events = step(
        [val(1, jailed=True), val(2), val(3, active=False)],
        [val(1), val(3), val(4)],
        gap=True,
    )
    assert Counter(e.kind for e in events) == Counter(
        [EventKind.UNJAILED, EventKind.LEFT, EventKind.ACTIVATED, EventKind.JOINED]
    )
    assert all(e.after_gap and not e.inferred for e in events)


# --- identity and purity --------------------------------------------------------------------


def test_event_ids_are_deterministic() -> None:
    """The same inputs give the same event ids (and equal events) on a second derivation."""
    before = [val(1), val(2, unjailable_after_ms=1), val(3, jailed=True)]
    after = [val(1, jailed=True), val(2, unjailable_after_ms=2), val(4, jailed=True)]
    first = step(before, after)
    second = step(before, after)
    assert first == second
    assert len(first) == 6


def test_event_ids_unique_within_and_across_polls() -> None:
    """Event ids are unique within a poll (incl. inferred pairs) and across polls."""
    state = baseline([val(1), val(2, unjailable_after_ms=1), val(3)])
    snapshots = [
        [val(1, jailed=True), val(2, unjailable_after_ms=2), val(4, jailed=True)],
        [val(1), val(2, unjailable_after_ms=3), val(3), val(4)],
        [val(1, jailed=True), val(2, unjailable_after_ms=4), val(4, jailed=True)],
    ]
    ids: list[str] = []
    for i, snapshot in enumerate(snapshots, start=1):
        state, events = track_set(state, snapshot, T0 + 30 * i)
        assert len({e.event_id for e in events}) == len(events)
        ids.extend(e.event_id for e in events)
    assert len(ids) > 10
    assert len(set(ids)) == len(ids)


def test_event_ids_differ_per_chain() -> None:
    """The same change on two chains yields different event ids."""
    prev = baseline([val(1)])
    _, a = track_set(prev, [val(1, jailed=True)], T1, chain="chain-a")
    _, b = track_set(prev, [val(1, jailed=True)], T1, chain="chain-b")
    assert a[0].event_id != b[0].event_id


def test_track_does_not_mutate_inputs() -> None:
    """track leaves the previous state and the snapshot's table unchanged, and the new state
    shares no column it writes with the previous one."""
    previous = baseline([val(1), val(2, jailed=True), val(3, unjailable_after_ms=1)])
    previous_rows = rows(previous)
    snapshot = [val(1, jailed=True), val(2, jailed=True), val(3, unjailable_after_ms=2), val(4)]
    table = ValidatorTable.of(snapshot)
    polled = track(CHAIN, previous, table, T1, gap=False, total_stake=TOTAL)
    assert polled.events
    assert previous.observed_at == T0
    assert rows(previous) == previous_rows
    assert table.rows(range(len(table))) == tuple(snapshot)
    assert polled.state.jailed_since is not previous.jailed_since


def test_the_state_keeps_no_view_of_an_answer() -> None:
    """Stakes and unjailableAfter columns that view a larger buffer (as a decoded answer's
    do) are copied into the state, which must not keep that buffer alive; owned ones are kept
    as they are."""
    answer = np.arange(8, dtype=np.uint64).reshape(4, 2)
    times = np.arange(8, dtype=np.int64)
    viewed = ValidatorTable(
        addresses=[addr(i) for i in range(4)],
        names=["a", "b", "c", "d"],
        stakes=answer[:, 1],
        status=np.zeros(4, dtype=np.uint8),
        unjailable_after_ms=times[::2],
    )
    state = track(CHAIN, None, viewed, T0, gap=False, total_stake=TOTAL).state
    assert not np.shares_memory(state.stakes, answer)
    assert not np.shares_memory(state.unjailable_after_ms, times)
    assert state.stakes.tolist() == [1, 3, 5, 7]
    owned = ValidatorTable.of([val(1, unjailable_after_ms=5)])
    kept = track(CHAIN, None, owned, T0, gap=False, total_stake=TOTAL).state
    assert kept.stakes is owned.stakes
    assert kept.unjailable_after_ms is owned.unjailable_after_ms


# --- property -------------------------------------------------------------------------------

POPULATION = 4


@st.composite
def snapshot_sequences(draw: st.DrawFn) -> tuple[list[list[Validator]], list[bool]]:
    """2–8 snapshots of up to 4 validators: random presence, jail and active, monotone ms."""
    length = draw(st.integers(min_value=2, max_value=8))
    unjailable: list[int | None] = [
        draw(st.none() | st.integers(min_value=0, max_value=3)) for _ in range(POPULATION)
    ]
    snapshots: list[list[Validator]] = []
    for _ in range(length):
        snapshot = []
        for index in range(POPULATION):
            current = unjailable[index]
            if draw(st.booleans()):
                current = (current or 0) + draw(st.integers(min_value=0, max_value=2))
            unjailable[index] = current
            if draw(st.integers(min_value=0, max_value=4)) == 0:
                continue  # absent from this snapshot
            snapshot.append(
                val(
                    index,
                    stake=draw(st.integers(min_value=1, max_value=10)),
                    jailed=draw(st.booleans()),
                    active=draw(st.booleans()),
                    unjailable_after_ms=current,
                )
            )
        snapshots.append(snapshot)
    gaps = [draw(st.booleans()) for _ in range(length)]
    return snapshots, gaps


def run(
    snapshots: Sequence[Sequence[Validator]], gaps: Sequence[bool]
) -> tuple[list[dict[str, TrackedValidator]], list[ValidatorEvent]]:
    state: ChainState | None = None
    states: list[dict[str, TrackedValidator]] = []
    events: list[ValidatorEvent] = []
    for i, (snapshot, gap) in enumerate(zip(snapshots, gaps, strict=True)):
        state, new = track_set(state, snapshot, T0 + 30.0 * i, gap=gap)
        states.append(rows(state))
        events.extend(new)
    return states, events


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(snapshot_sequences())
def test_jail_balance_and_replay(sequence: tuple[list[list[Validator]], list[bool]]) -> None:
    """Non-inferred jailed − unjailed equals jailed now − jailed at baseline; replay is equal."""
    snapshots, gaps = sequence
    states, events = run(snapshots, gaps)
    first = {v.address: v for v in snapshots[0]}
    last = {v.address: v for v in snapshots[-1]}
    throughout = set(first).intersection(*({v.address for v in s} for s in snapshots))
    for address in throughout:
        real = Counter(e.kind for e in events if e.address == address and not e.inferred)
        assert real[EventKind.JAILED] - real[EventKind.UNJAILED] == int(last[address].jailed) - int(
            first[address].jailed
        )
        assert real[EventKind.JOINED] == real[EventKind.LEFT] == 0
    for state in states:
        for tracked in state.values():
            assert (tracked.jailed_since is not None) == tracked.jailed
    assert not any(e.inferred and e.after_gap for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert run(snapshots, gaps) == (states, events)


# --- the columns against the per-validator reference -----------------------------------------


def reference_track(
    previous: tuple[float, dict[str, TrackedValidator]] | None,
    validators: Sequence[Validator],
    observed_at: float,
    *,
    gap: bool,
) -> tuple[dict[str, TrackedValidator], list[ValidatorEvent], set[str]]:
    """The tracking the columns replace, one object per validator: the new rows by address,
    the events, and the addresses whose stored row the poll rewrites."""
    current: dict[str, TrackedValidator] = {}
    events: list[ValidatorEvent] = []
    since, before = previous if previous is not None else (observed_at, {})

    def emit(
        v: TrackedValidator,
        kind: EventKind,
        inferred: bool = False,
        measures: dict[str, float] | None = None,
    ) -> None:
        seq = sum(1 for e in events if e.address == v.address and e.kind is kind)
        key = f"{CHAIN}|{v.address}|{kind}|{observed_at!r}|{seq}".encode()
        events.append(
            ValidatorEvent(
                hashlib.sha256(key).hexdigest()[:32], CHAIN, v.address, v.name, kind,
                observed_at, since, inferred, gap, v.stake, v.unjailable_after_ms,
                (measures or {}).get("jail_seconds"),
                (measures or {}).get("unjail_delay_seconds"), TOTAL,
            )
        )  # fmt: skip

    for validator in validators:
        old = before.get(validator.address)
        jailed_since = None
        if validator.jailed:
            jailed_since = old.jailed_since if old is not None and old.jailed else observed_at
        now = TrackedValidator(
            validator.address, validator.name, validator.stake, validator.in_consensus_set,
            validator.jailed, validator.unjailable_after_ms, jailed_since,
        )  # fmt: skip
        current[now.address] = now
        if previous is None:
            continue
        if old is None:
            emit(now, EventKind.JOINED)
            if now.jailed:
                emit(now, EventKind.JAILED)
            continue
        if now.active != old.active:
            emit(now, EventKind.ACTIVATED if now.active else EventKind.DEACTIVATED)
        if now.jailed and not old.jailed:
            emit(now, EventKind.JAILED)
        elif old.jailed and not now.jailed:
            measures: dict[str, float] = {}
            if old.jailed_since is not None:
                measures["jail_seconds"] = observed_at - old.jailed_since
            if old.unjailable_after_ms is not None:
                delay = max(0.0, observed_at - old.unjailable_after_ms / 1000)
                measures["unjail_delay_seconds"] = delay
            emit(now, EventKind.UNJAILED, measures=measures)
        elif (
            not gap
            and not now.jailed
            and now.unjailable_after_ms is not None
            and now.unjailable_after_ms != old.unjailable_after_ms
            and (
                old.unjailable_after_ms is None or now.unjailable_after_ms > old.unjailable_after_ms
            )
        ):
            emit(now, EventKind.JAILED, inferred=True)
            emit(now, EventKind.UNJAILED, inferred=True)
    for address, old in before.items():
        if previous is not None and address not in current:
            emit(old, EventKind.LEFT)
    rewritten = {a for a, v in current.items() if before.get(a) != v}
    return current, events, rewritten


@st.composite
def reordered_polls(draw: st.DrawFn) -> list[tuple[list[Validator], bool]]:
    """2–6 snapshots of up to 6 validators, each the last one's rows with some appended (the
    rows aligned as a prefix) or any of them in any order (aligned by address); stakes on
    both sides of 2**64, two names, jails, activity, `unjailableAfter` back and forth."""
    polls: list[tuple[list[Validator], bool]] = []
    order: list[int] = []
    for _ in range(draw(st.integers(min_value=2, max_value=6))):
        newcomers = [index for index in range(6) if index not in order]
        if draw(st.booleans()) and newcomers:
            order = order + draw(st.lists(st.sampled_from(newcomers), unique=True))
        else:
            order = draw(st.permutations(range(6)))[: draw(st.integers(0, 6))]
        snapshot = [
            val(
                index,
                stake=draw(st.sampled_from([0, 7, 2**64 + 7])),
                name=draw(st.sampled_from(["a", "b"])),
                jailed=draw(st.booleans()),
                active=draw(st.booleans()),
                unjailable_after_ms=draw(st.none() | st.integers(min_value=0, max_value=3)),
            )
            for index in order
        ]
        polls.append((snapshot, draw(st.booleans())))
    return polls


@settings(max_examples=100, deadline=None)
@given(reordered_polls())
def test_track_equals_the_per_validator_reference(
    polls: list[tuple[list[Validator], bool]],
) -> None:
    """Over any sequence of snapshots, with rows appended, reordered, joining and leaving,
    track gives the reference's events (ids and order included) and rows, and its change
    rewrites exactly the rows the reference rewrites and removes those that left."""
    state: ChainState | None = None
    reference: tuple[float, dict[str, TrackedValidator]] | None = None
    for i, (snapshot, gap) in enumerate(polls):
        at = T0 + 30.0 * i
        expected, expected_events, rewritten = reference_track(reference, snapshot, at, gap=gap)
        polled = track(CHAIN, state, ValidatorTable.of(snapshot), at, gap=gap, total_stake=TOTAL)
        assert polled.events == expected_events
        assert rows(polled.state) == expected
        if state is None:
            assert polled.change is None
        else:
            assert polled.change is not None
            written = [polled.state.addresses[row] for row in polled.change.written.tolist()]
            assert sorted(written) == sorted(rewritten)
            assert polled.change.removed == [a for a in rows(state) if a not in expected]
        state, reference = polled.state, (at, expected)


def assert_tracked_alike(polled: TrackedPoll, expected: TrackedPoll) -> None:
    """The same events, rows and change in each."""
    assert polled.events == expected.events
    assert rows(polled.state) == rows(expected.state)
    if expected.change is None:
        assert polled.change is None
    else:
        assert polled.change is not None
        assert polled.change.written.tolist() == expected.change.written.tolist()
        assert polled.change.removed == expected.change.removed


@settings(max_examples=60, deadline=None)
@given(reordered_polls(), st.integers(min_value=1, max_value=5))
def test_ids_kept_as_numbers_track_as_their_decimal_strings(
    polls: list[tuple[list[Validator], bool]], restored_at: int
) -> None:
    """Ids kept as numbers (DecimalIds) give the events, rows and changes of the same ids as
    strings, over appended, reordered, joining and leaving rows, also right after a restart
    restored the state's ids as strings."""
    number_of = {addr(index): index for index in range(6)}
    as_strings: ChainState | None = None
    as_numbers: ChainState | None = None
    for i, (snapshot, gap) in enumerate(polls):
        at = T0 + 30.0 * i
        numbers = np.array([number_of[v.address] for v in snapshot], dtype=np.uint64)
        table = ValidatorTable.of(snapshot)
        strings = replace(table, addresses=[str(n) for n in numbers.tolist()])
        if i == restored_at and as_numbers is not None:  # as the store restores it
            as_numbers = replace(as_numbers, addresses=list(as_numbers.addresses))
        by_strings = track(CHAIN, as_strings, strings, at, gap=gap, total_stake=TOTAL)
        by_numbers = track(
            CHAIN,
            as_numbers,
            replace(table, addresses=DecimalIds(numbers)),
            at,
            gap=gap,
            total_stake=TOTAL,
        )
        assert isinstance(by_numbers.state.addresses, DecimalIds)
        assert_tracked_alike(by_numbers, by_strings)
        as_strings, as_numbers = by_strings.state, by_numbers.state


@settings(max_examples=60, deadline=None)
@given(reordered_polls(), st.integers(min_value=1, max_value=5))
def test_unnamed_validators_track_as_empty_names(
    polls: list[tuple[list[Validator], bool]], restored_at: int
) -> None:
    """Names given as `Unnamed` give the events, rows and changes of the same empty names as
    strings, over appended, reordered, joining and leaving rows, also right after a restart
    restored them as a list; and are kept as `Unnamed`."""
    as_strings: ChainState | None = None
    as_unnamed: ChainState | None = None
    for i, (snapshot, gap) in enumerate(polls):
        at = T0 + 30.0 * i
        table = replace(ValidatorTable.of(snapshot), names=[""] * len(snapshot))
        if i == restored_at and as_unnamed is not None:  # as the store restores it
            as_unnamed = replace(as_unnamed, names=list(as_unnamed.names))
        by_strings = track(CHAIN, as_strings, table, at, gap=gap, total_stake=TOTAL)
        by_unnamed = track(
            CHAIN,
            as_unnamed,
            replace(table, names=Unnamed(len(table))),
            at,
            gap=gap,
            total_stake=TOTAL,
        )
        assert isinstance(by_unnamed.state.names, Unnamed)
        assert_tracked_alike(by_unnamed, by_strings)
        as_strings, as_unnamed = by_strings.state, by_unnamed.state


def test_a_name_restored_from_the_store_that_is_gone_is_rewritten() -> None:
    """A name in the restored state that the set now gives as `Unnamed` is a change: its row
    is rewritten, with the empty name."""
    previous = replace(baseline([val(1), val(2, name="gone")]), names=["validator 1", "gone"])
    unnamed = replace(ValidatorTable.of([val(1), val(2)]), names=Unnamed(2))
    polled = track(CHAIN, previous, unnamed, T1, gap=False, total_stake=TOTAL)
    assert polled.change is not None
    assert polled.change.written.tolist() == [0, 1]
    assert rows(polled.state)[addr(2)].name == ""


def test_a_stake_or_name_change_is_rewritten_without_an_event() -> None:
    """A validator whose stake or name alone changed gets no event but is in the change's
    rewritten rows; unchanged ones are not, joined ones are, and one that left is removed."""
    previous = baseline([val(1), val(2), val(3), val(4)])
    snapshot = [val(3), val(1, stake=5), val(2, name="renamed"), val(5)]
    polled = track(CHAIN, previous, ValidatorTable.of(snapshot), T1, gap=False, total_stake=TOTAL)
    assert kinds(polled.events) == [
        (addr(5), EventKind.JOINED, False),
        (addr(4), EventKind.LEFT, False),
    ]
    assert polled.change is not None
    written = {polled.state.addresses[row] for row in polled.change.written.tolist()}
    assert written == {addr(1), addr(2), addr(5)}
    assert polled.change.removed == [addr(4)]


def test_rows_in_a_new_order_are_aligned_by_address() -> None:
    """The same validators in another order, one of them jailed, give only that jail, rewrite
    only its row, and keep the jail start of one jailed throughout."""
    before = [val(1), val(2, jailed=True), val(3)]
    previous = baseline(before)
    polled = track(
        CHAIN,
        previous,
        ValidatorTable.of([val(3, jailed=True), val(2, jailed=True), val(1)]),
        T1,
        gap=False,
        total_stake=TOTAL,
    )
    assert kinds(polled.events) == [(addr(3), EventKind.JAILED, False)]
    assert polled.change is not None
    assert polled.change.written.tolist() == [0]
    assert rows(polled.state)[addr(2)].jailed_since == T0
    assert rows(polled.state)[addr(3)].jailed_since == T1


# --- storms ---------------------------------------------------------------------------------

DEFAULTS = JailStormSettings()


def test_storm_defaults() -> None:
    """The storm defaults are 3 validators, 10 % of stake and a 1 h window."""
    assert DEFAULTS.min_validators == 3
    assert DEFAULTS.min_stake_ratio == 0.10
    assert DEFAULTS.window_seconds == 3600.0


def test_storm_at_exactly_min_validators() -> None:
    """Exactly N distinct jailed validators is a storm, whatever their shares."""
    assert is_storm(dict.fromkeys([addr(1), addr(2), addr(3)], Fraction(1, 10_000)), DEFAULTS)


def test_no_storm_below_both_thresholds() -> None:
    """N − 1 validators holding just under X % of the stake is not a storm."""
    assert not is_storm({addr(1): Fraction(50, 1000), addr(2): Fraction(49, 1000)}, DEFAULTS)


def test_storm_at_exactly_stake_ratio() -> None:
    """N − 1 validators holding exactly X % of the stake is a storm."""
    assert is_storm({addr(1): Fraction(50, 1000), addr(2): Fraction(50, 1000)}, DEFAULTS)


@pytest.mark.parametrize(
    ("ratio", "jailed", "total"),
    [(0.07, 7, 100), (0.14, 7, 50), (0.28, 7, 25), (0.1, 4 * 10**15, 4 * 10**16)],
)
def test_storm_ratio_boundary_is_exact(ratio: float, jailed: int, total: int) -> None:
    """Exactly the configured ratio is a storm and one base unit less is not (no float error)."""
    storm = JailStormSettings(min_validators=5, min_stake_ratio=ratio)
    at_ratio = [jail_event(1, T0, stake=jailed, total_stake=total)]
    below = [jail_event(1, T0, stake=jailed - 1, total_stake=total)]
    assert is_storm(jailed_in_window(at_ratio, T0, total), storm)
    assert not is_storm(jailed_in_window(below, T0, total), storm)


def test_no_share_of_a_total_of_zero() -> None:
    """A jail at a poll without consensus stake has a share of 0: only the validator count
    can make a storm then."""
    jailed = jailed_in_window([jail_event(1, T0, stake=5, total_stake=0)], T0, 1000)
    assert jailed == {addr(1): 0}
    assert not is_storm(jailed, DEFAULTS)
    assert not is_storm({}, DEFAULTS)


def test_jailed_in_window_start_inclusive() -> None:
    """A jail exactly at the window start counts; one just before does not."""
    events = [jail_event(1, T0 - 0.001), jail_event(2, T0), jail_event(3, T1)]
    assert jailed_in_window(events, T0, 4000) == dict.fromkeys([addr(2), addr(3)], Fraction(1, 4))


def test_jailed_in_window_deduplicates_and_keeps_latest_share() -> None:
    """A validator jailed twice counts once, with its share at the latest jail."""
    events = [
        jail_event(1, T0, stake=10, total_stake=100),
        jail_event(1, T1, stake=20, inferred=True, total_stake=400),
        jail_event(2, T1, kind=EventKind.UNJAILED),
        jail_event(3, T1, kind=EventKind.JOINED),
    ]
    assert jailed_in_window(events, T0, 1000) == {addr(1): Fraction(20, 400)}


def test_each_jail_is_weighed_against_the_total_stake_of_its_poll() -> None:
    """A jail's share is its stake over the consensus stake of the poll that observed it, not
    over a later total; an event stored without a total falls back to the current one."""
    events = [
        jail_event(1, T0, stake=50, total_stake=1000),
        jail_event(2, T1, stake=30, total_stake=600),
        jail_event(3, T1, stake=9),  # stored before totals were recorded
    ]
    assert jailed_in_window(events, T0, 450) == {
        addr(1): Fraction(1, 20),
        addr(2): Fraction(1, 20),
        addr(3): Fraction(1, 50),
    }


def test_a_total_that_shrank_after_a_jail_makes_no_storm() -> None:
    """5 % jailed at a poll of 1000 stays 5 % when the total later falls to 450 (an unjailed
    set whose stake moved out): no storm, though 50 of 450 would be one."""
    jailed = jailed_in_window([jail_event(1, T0, stake=50, total_stake=1000)], T0, 450)
    assert not is_storm(jailed, DEFAULTS)
    assert is_storm({addr(1): Fraction(50, 450)}, DEFAULTS)


def test_storm_from_tracked_events() -> None:
    """Three validators jailed across polls within the window make a storm; two do not."""
    state = baseline([val(i, stake=10) for i in range(1, 30)])
    snapshots = [
        [val(i, stake=10, jailed=i in jailed) for i in range(1, 30)]
        for jailed in ({1}, {1, 2}, {2, 3})
    ]
    events: list[ValidatorEvent] = []
    for i, snapshot in enumerate(snapshots, start=1):
        state, new = track_set(state, snapshot, T0 + 600 * i)
        events.extend(new)
    window = DEFAULTS.window_seconds
    assert is_storm(jailed_in_window(events, T0 + 1800 - window, 290), DEFAULTS)
    assert not is_storm(jailed_in_window(events, T0 + 1200, 290), DEFAULTS)


# --- statistics -----------------------------------------------------------------------------


def test_jail_statistics() -> None:
    """Counts incl. inferred, mean time between jails, median observed jail length, ordering."""
    events = [
        jail_event(2, T0 + 400, inferred=True),
        jail_event(2, T0 + 400, kind=EventKind.UNJAILED, inferred=True),
        jail_event(2, T0),
        jail_event(2, T0 + 100, kind=EventKind.UNJAILED, jail_seconds=100),
        jail_event(2, T0 + 1000),
        jail_event(2, T0 + 1300, kind=EventKind.UNJAILED, jail_seconds=300),
        jail_event(2, T0 + 2000),
        jail_event(2, T0 + 2050, kind=EventKind.UNJAILED, jail_seconds=50),
        jail_event(1, T0 + 5),
        jail_event(3, T0 + 5),
        jail_event(3, T0 + 905),
        jail_event(4, T0, kind=EventKind.JOINED),
    ]
    stats = jail_statistics(events)
    assert [s.address for s in stats] == [addr(2), addr(3), addr(1)]
    two, three, one = stats
    assert (two.jails, two.inferred_jails) == (4, 1)
    assert two.mean_seconds_between_jails == pytest.approx(2000 / 3)
    assert two.median_seconds_to_unjail == 100
    assert two.last_jailed_at == T0 + 2000
    assert two.name == "validator 2"
    assert (three.jails, three.inferred_jails) == (2, 0)
    assert three.mean_seconds_between_jails == pytest.approx(900)
    assert three.median_seconds_to_unjail is None
    assert (one.jails, one.mean_seconds_between_jails, one.last_jailed_at) == (1, None, T0 + 5)


def test_jail_statistics_median_of_even_count_and_only_jailed() -> None:
    """The median of two jail lengths is their mean; validators never jailed are absent."""
    events = [
        jail_event(1, T0),
        jail_event(1, T0 + 10, kind=EventKind.UNJAILED, jail_seconds=10),
        jail_event(1, T0 + 100),
        jail_event(1, T0 + 130, kind=EventKind.UNJAILED, jail_seconds=30),
        jail_event(2, T0, kind=EventKind.UNJAILED, jail_seconds=5),
    ]
    stats = jail_statistics(events)
    assert [s.address for s in stats] == [addr(1)]
    assert stats[0].median_seconds_to_unjail == 20
    assert jail_statistics([]) == []


def test_jail_statistics_from_tracked_cycle() -> None:
    """Statistics of tracked events: one real jail of 60 s plus one inferred jail."""
    state = baseline([val(1, unjailable_after_ms=1)])
    events: list[ValidatorEvent] = []
    for at, snapshot in [
        (T1, [val(1, jailed=True, unjailable_after_ms=2)]),
        (T1 + 60, [val(1, unjailable_after_ms=2)]),
        (T1 + 90, [val(1, unjailable_after_ms=3)]),
    ]:
        state, new = track_set(state, snapshot, at)
        events.extend(new)
    (stats,) = jail_statistics(events)
    assert (stats.jails, stats.inferred_jails) == (2, 1)
    assert stats.mean_seconds_between_jails == pytest.approx(90)
    assert stats.median_seconds_to_unjail == pytest.approx(60)


def test_counted_jails_and_the_unjail_delay_histogram() -> None:
    """JailCounters.counted: a jail (inferred too) counts for the chain and its validator; an
    unjail with a delay falls in every bucket whose bound it does not exceed (a bound is
    inclusive) and adds to the sum and count; other events count nothing."""
    events = [
        jail_event(1, T0),
        jail_event(1, T0 + 1, inferred=True),
        jail_event(2, T0),
        replace(jail_event(1, T0, kind=EventKind.UNJAILED), unjail_delay_seconds=60.0),
        replace(jail_event(2, T0, kind=EventKind.UNJAILED), unjail_delay_seconds=0.5),
        replace(jail_event(2, T0, kind=EventKind.UNJAILED), unjail_delay_seconds=10.0**6),
        jail_event(3, T0, kind=EventKind.UNJAILED),  # no delay
        jail_event(4, T0, kind=EventKind.JOINED),
        jail_event(4, T0, kind=EventKind.DEACTIVATED),
    ]
    counted = JailCounters.counted(events)
    assert UNJAIL_DELAY_BUCKETS == (0, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
    assert counted == JailCounters(
        jails=3,
        validator_jails={addr(1): 2, addr(2): 1},
        unjail_delay_bucket_counts=(0, 2, 2, 2, 2, 2, 2, 2, 2),
        unjail_delay_sum=60.5 + 10.0**6,
        unjail_delay_count=3,
    )
    assert JailCounters.counted([]) == JailCounters.zero()
    assert JailCounters.zero() == JailCounters(0, {}, (0,) * len(UNJAIL_DELAY_BUCKETS), 0.0, 0)


def test_counters_add_up_to_the_count_of_all_events() -> None:
    """Counting in parts and adding gives what counting at once gives, validators sorted."""
    events = [
        jail_event(3, T0),
        replace(jail_event(1, T0, kind=EventKind.UNJAILED), unjail_delay_seconds=300.0),
        jail_event(1, T0 + 1),
        jail_event(3, T0 + 2),
        replace(jail_event(3, T0, kind=EventKind.UNJAILED), unjail_delay_seconds=7000.25),
    ]
    for split in range(len(events) + 1):
        parts = JailCounters.counted(events[:split]) + JailCounters.counted(events[split:])
        assert parts == JailCounters.counted(events)
    one_by_one = JailCounters.zero()
    for event in events:
        one_by_one = one_by_one + JailCounters.counted([event])
    assert one_by_one == JailCounters.counted(events)
    assert list(one_by_one.validator_jails) == [addr(1), addr(3)]


def test_replace_keeps_frozen_events_comparable() -> None:
    """Events are frozen values: equal fields compare equal, a changed field does not."""
    event = jail_event(1, T0)
    assert replace(event) == event
    assert replace(event, inferred=True) != event
