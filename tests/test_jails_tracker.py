"""JailTracker over a real AsyncStore: baseline, restart, gaps, failed commits, retention, reports,
and one write a poll with reports from memory that equal the store's history.

Time is injected as `observed_at`/`now`: a tracker never reads a clock, so days run in
milliseconds.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar, cast

import pytest

from quorumwatch.columns import ValidatorTable
from quorumwatch.config import JailStormSettings
from quorumwatch.jails.events import ChainState, EventKind, ValidatorEvent
from quorumwatch.jails.statistics import JailCounters
from quorumwatch.jails.storms import is_storm, jailed_in_window
from quorumwatch.jails.tracker import JAIL_WINDOWS, JailTracker
from quorumwatch.models import Validator
from quorumwatch.report import JailReport
from quorumwatch.store import AsyncStore, Store, StoreError
from quorumwatch.store import jails as jail_store
from tests.builders import address as addr
from tests.builders import chain_settings
from tests.builders import validator as val
from tests.store_builders import contents

CHAIN = "hyperliquid"
POLL = 30.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86400.0

_P = ParamSpec("_P")
_T = TypeVar("_T")


def tracker(store: AsyncStore, *, retention_days: int = 400, **overrides: Any) -> JailTracker:
    settings = chain_settings(poll_interval_seconds=POLL, **overrides)
    return JailTracker(settings, store, retention_days)


async def observe(t: JailTracker, validators: Sequence[Validator], at: float) -> JailReport:
    total = sum(v.stake for v in validators if v.in_consensus_set)
    return await t.observe(ValidatorTable.of(validators), total, at)


def kinds(events: Sequence[ValidatorEvent]) -> list[tuple[str, EventKind, bool, bool]]:
    return [(e.address, e.kind, e.inferred, e.after_gap) for e in events]


class RecordingStore(AsyncStore):
    """An AsyncStore whose next commit_poll can be made to fail (before or after committing),
    and that records calls."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor) -> None:
        super().__init__(store, executor)
        self.fail_commits = 0
        self.lose_commit_acks = 0  # commit, then fail as if cancelled before it returned
        self.fail_prune = False
        self.attempted: list[list[ValidatorEvent]] = []
        self.pruned_before: list[float] = []

    async def call(
        self, fn: Callable[Concatenate[Store, _P], _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        lose_ack = False
        if fn is jail_store.commit_poll:
            chain, _, events = cast(tuple[str, ChainState, Sequence[ValidatorEvent]], args)
            self.attempted.append(list(events))
            if self.fail_commits:
                self.fail_commits -= 1
                raise StoreError(f"{self.path}: commit poll of {chain!r} failed: disk I/O error")
            lose_ack, self.lose_commit_acks = bool(self.lose_commit_acks), 0
        elif fn is jail_store.prune:
            (older_than,) = cast(tuple[float], args)
            self.pruned_before.append(older_than)
            if self.fail_prune:
                raise StoreError(f"{self.path}: prune events failed: database is locked")
        result = await super().call(fn, *args, **kwargs)
        if lose_ack:
            raise asyncio.CancelledError
        return result


@pytest.fixture
async def store(db: Path) -> AsyncIterator[RecordingStore]:
    opened = await RecordingStore.open(db)
    assert isinstance(opened, RecordingStore)
    try:
        yield opened
    finally:
        await opened.close()


# --- baseline and restart -------------------------------------------------------------------


async def test_first_observe_without_persisted_state_is_a_baseline(store: RecordingStore) -> None:
    """With nothing persisted, the first observe stores no event, counts no jail, and dates a
    validator already jailed from that observation."""
    report = await observe(tracker(store), [val(1), val(2, jailed=True)], T0)
    assert await store.call(jail_store.events) == []
    assert report.counters.jails == 0
    assert dict(report.windows) == dict.fromkeys(JAIL_WINDOWS, 0)
    assert dict(report.jailed_since) == {addr(2): T0}
    persisted = await store.call(jail_store.load_state, CHAIN)
    assert persisted is not None
    assert persisted.observed_at == T0


async def test_after_reopening_first_observe_compares_with_persisted_state(db: Path) -> None:
    """A new tracker on a reopened store compares with the persisted state: only the real jail
    is recorded, no `joined` event for validators already known."""
    async with await AsyncStore.open(db) as first:
        await observe(tracker(first), [val(1), val(2)], T0)
    async with await AsyncStore.open(db) as reopened:
        report = await observe(tracker(reopened), [val(1, jailed=True), val(2)], T0 + POLL)
        events = await reopened.call(jail_store.events, CHAIN)
    assert kinds(events) == [(addr(1), EventKind.JAILED, False, False)]
    assert events[0].previous_observed_at == T0
    assert report.counters.jails == 1


# --- gaps -----------------------------------------------------------------------------------


async def test_failed_poll_marks_next_transition_after_gap_and_suppresses_inferred(
    store: RecordingStore,
) -> None:
    """After note_failed_poll, the next transition is after_gap and a moved unjailableAfter
    infers no cycle; the poll after that is gap-free again and does infer one."""
    t = tracker(store)
    await observe(t, [val(1), val(2)], T0)
    t.note_failed_poll()
    moved = val(2, unjailable_after_ms=int(T0 * 1000))
    await observe(t, [val(1, jailed=True), moved], T0 + POLL)
    assert kinds(await store.call(jail_store.events, CHAIN)) == [
        (addr(1), EventKind.JAILED, False, True)
    ]

    moved_again = val(2, unjailable_after_ms=int(T0 * 1000) + 1)
    await observe(t, [val(1, jailed=True), moved_again], T0 + 2 * POLL)
    assert kinds(await store.call(jail_store.events, CHAIN, since=T0 + 2 * POLL)) == [
        (addr(2), EventKind.JAILED, True, False),
        (addr(2), EventKind.UNJAILED, True, False),
    ]


@pytest.mark.parametrize(
    ("elapsed", "after_gap"),
    [(2 * POLL, False), (2 * POLL + 0.001, True)],
    ids=["exactly-2-intervals", "just-over-2-intervals"],
)
async def test_snapshot_more_than_two_intervals_later_is_a_gap(
    store: RecordingStore, elapsed: float, after_gap: bool
) -> None:
    """A snapshot more than 2 poll intervals after the last crosses a gap; exactly 2 does not."""
    t = tracker(store)
    await observe(t, [val(1)], T0)
    await observe(t, [val(1, jailed=True)], T0 + elapsed)
    assert kinds(await store.call(jail_store.events, CHAIN)) == [
        (addr(1), EventKind.JAILED, False, after_gap)
    ]


# --- store failures -------------------------------------------------------------------------


async def test_failed_commit_does_not_advance_state_and_next_observe_rederives(
    store: RecordingStore,
) -> None:
    """When commit_poll raises StoreError nothing is stored and the state stays put; the next
    observe re-derives the same events (same ids), stored and counted exactly once."""
    t = tracker(store)
    await observe(t, [val(1)], T0)
    store.fail_commits = 1
    jailed = [val(1, jailed=True, unjailable_after_ms=int((T0 + 600) * 1000))]
    with pytest.raises(StoreError):
        await observe(t, jailed, T0 + POLL)
    assert await store.call(jail_store.events) == []
    assert dict((await t.report(T0 + POLL)).jailed_since) == {}
    persisted = await store.call(jail_store.load_state, CHAIN)
    assert persisted is not None
    assert persisted.observed_at == T0

    report = await observe(t, jailed, T0 + POLL)  # the same poll, retried
    stored = await store.call(jail_store.events, CHAIN)
    assert [e.event_id for e in stored] == [e.event_id for e in store.attempted[1]]
    assert stored == store.attempted[1]
    assert kinds(stored) == [(addr(1), EventKind.JAILED, False, False)]
    assert stored[0].previous_observed_at == T0
    assert report.counters.jails == 1
    assert dict(report.jailed_since) == {addr(1): T0 + POLL}

    report = await observe(t, jailed, T0 + 2 * POLL)
    assert len(await store.call(jail_store.events, CHAIN)) == 1
    assert report.counters.jails == 1


async def test_failed_commit_then_later_poll_records_the_jail_once(store: RecordingStore) -> None:
    """A jail whose poll failed to commit is recorded by the next poll, once, measured from the
    last committed snapshot."""
    t = tracker(store)
    await observe(t, [val(1)], T0)
    store.fail_commits = 1
    with pytest.raises(StoreError):
        await observe(t, [val(1, jailed=True)], T0 + POLL)
    report = await observe(t, [val(1, jailed=True)], T0 + 2 * POLL)
    stored = await store.call(jail_store.events, CHAIN)
    assert kinds(stored) == [(addr(1), EventKind.JAILED, False, False)]
    assert stored[0].previous_observed_at == T0
    assert report.counters.jails == 1
    assert report.windows["1h"] == 1


async def test_failed_prune_does_not_fail_the_poll(store: RecordingStore) -> None:
    """A StoreError from pruning is logged, not raised: the poll's events stay committed and
    its report is returned."""
    t = tracker(store)
    await observe(t, [val(1)], T0)
    store.fail_prune = True
    report = await observe(t, [val(1, jailed=True)], T0 + 3600)
    assert report.counters.jails == 1
    assert len(await store.call(jail_store.events, CHAIN)) == 1


# --- retention ------------------------------------------------------------------------------


async def test_retention_prunes_old_events_but_keeps_counters_and_windows(
    store: RecordingStore,
) -> None:
    """retention_days=7 over 10 simulated days: events older than 7 days are deleted, counters
    keep all 20 jails and 20 unjail delays, and the 1h/24h/7d windows count 0/2/14."""
    interval = 6 * 3600.0
    t = JailTracker(chain_settings(poll_interval_seconds=interval), store, retention_days=7)
    # Poll k at T0 + 6h·k, k = 0..40: validator 1 jailed at odd polls, free at even ones.
    report = None
    for k in range(41):
        at = T0 + k * interval
        jailed = k % 2 == 1
        v1 = val(1, jailed=jailed, unjailable_after_ms=int((at + 600) * 1000) if jailed else None)
        report = await observe(t, [v1, val(2)], at)
    assert report is not None
    now = T0 + 10 * DAY

    stored = await store.call(jail_store.events, CHAIN)
    assert min(e.observed_at for e in stored) >= now - 7 * DAY
    # Kept: polls 12..40 (observed at or after T0 + 3d): jails at 13..39, unjails at 12..40.
    assert len(stored) == 14 + 15
    assert report.counters.jails == 20
    assert dict(report.counters.validator_jails) == {addr(1): 20}
    assert report.counters.unjail_delay_count == 20
    assert report.counters.unjail_delay_sum == 20 * (interval - 600)
    # Windows from polls 40 back: 1h none, 24h the jails at 37 and 39, 7d those at 13..39.
    assert dict(report.windows) == {"1h": 0, "24h": 2, "7d": 14}


async def test_prune_runs_at_most_once_an_hour(store: RecordingStore) -> None:
    """Polls every 20 minutes for 2 hours prune at 0, 60 and 120 minutes only, each time
    before now minus the retention."""
    t = JailTracker(chain_settings(poll_interval_seconds=1200), store, retention_days=7)
    for minute in range(0, 121, 20):
        await observe(t, [val(1)], T0 + minute * 60)
    assert store.pruned_before == [T0 + m * 60 - 7 * DAY for m in (0, 60, 120)]


# --- reports --------------------------------------------------------------------------------


async def test_report_while_down_decays_windows_with_now(store: RecordingStore) -> None:
    """After note_failed_poll, report(now) still works: the jail counts in each window until
    exactly its length has passed (start inclusive), then drops out; counters and the current
    jail stay."""
    t = tracker(store)
    await observe(t, [val(1), val(2)], T0)
    jailed_at = T0 + POLL
    await observe(t, [val(1, jailed=True), val(2)], jailed_at)
    t.note_failed_poll()
    expected = {
        jailed_at + 60: {"1h": 1, "24h": 1, "7d": 1},
        jailed_at + 3600: {"1h": 1, "24h": 1, "7d": 1},
        jailed_at + 3601: {"1h": 0, "24h": 1, "7d": 1},
        jailed_at + DAY + 1: {"1h": 0, "24h": 0, "7d": 1},
        jailed_at + 7 * DAY + 1: {"1h": 0, "24h": 0, "7d": 0},
    }
    for now, windows in expected.items():
        report = await t.report(now)
        assert dict(report.windows) == windows, now
        assert report.counters.jails == 1
        assert dict(report.jailed_since) == {addr(1): jailed_at}


async def test_report_after_restart_while_down_uses_persisted_state(db: Path) -> None:
    """A tracker restarted while the chain is down reports from the persisted state: current
    jails, names, and the storm judged against the persisted consensus stake."""
    storm = {"min_validators": 10, "min_stake_ratio": 0.5, "window_seconds": 3600.0}
    validators = [val(1, stake=600), val(2, stake=400, jailed=False)]
    async with await AsyncStore.open(db) as first:
        t = tracker(first, jail_storm=storm)
        await observe(t, validators, T0)
        up = await observe(t, [val(1, stake=600, jailed=True), validators[1]], T0 + POLL)
    assert up.storm
    async with await AsyncStore.open(db) as reopened:
        t = tracker(reopened, jail_storm=storm)
        t.note_failed_poll()
        down = await t.report(T0 + 2 * POLL)
    assert down.storm
    assert dict(down.jailed_since) == {addr(1): T0 + POLL}
    assert down.names[addr(1)] == "validator 1"
    assert down.counters.jails == 1


async def test_departed_validator_keeps_its_name(store: RecordingStore) -> None:
    """A jailed validator that leaves the set keeps its last known name in the report."""
    t = tracker(store)
    await observe(t, [val(1), val(2)], T0)
    await observe(t, [val(1, jailed=True), val(2)], T0 + POLL)
    report = await observe(t, [val(2)], T0 + 2 * POLL)
    assert dict(report.counters.validator_jails) == {addr(1): 1}
    assert report.names[addr(1)] == "validator 1"
    assert dict(report.jailed_since) == {}


async def test_names_are_those_of_validators_with_jails(store: RecordingStore) -> None:
    """The report names only the validators with jail series (departed ones included) and
    those jailed now: one without jails, present or departed, is not named, so neither
    churn nor a large set grows the names."""
    t = tracker(store)
    await observe(t, [val(1), val(2), val(3), val(4, jailed=True)], T0)
    await observe(t, [val(1, jailed=True), val(2), val(3), val(4, jailed=True)], T0 + POLL)
    report = await observe(t, [val(2), val(4, jailed=True)], T0 + 2 * POLL)
    assert dict(report.names) == {addr(1): "validator 1", addr(4): "validator 4"}


async def test_a_renamed_validator_with_jails_is_named_anew(db: Path) -> None:
    """A validator with a jail series that is renamed is named by its new name, and after a
    restart by the name persisted with its state."""
    async with await AsyncStore.open(db) as first:
        t = tracker(first)
        await observe(t, [val(1), val(2)], T0)
        await observe(t, [val(1, jailed=True), val(2)], T0 + POLL)
        await observe(t, [val(1), val(2)], T0 + 2 * POLL)
        report = await observe(t, [val(1, name="new"), val(2)], T0 + 3 * POLL)
    assert dict(report.names) == {addr(1): "new"}
    async with await AsyncStore.open(db) as reopened:
        t = tracker(reopened)
        t.note_failed_poll()
        down = await t.report(T0 + 4 * POLL)
    assert dict(down.names) == {addr(1): "new"}


async def test_a_storm_weighs_each_jail_at_the_total_of_its_poll(store: RecordingStore) -> None:
    """5 % of the stake jailed, then unjailed while the rest of the stake shrinks to 400:
    no storm at either poll (50 of 1000 when jailed), where weighing the jail against the
    later total of 450 (11 %) fired a storm on a healthy set."""
    t = tracker(store)
    await observe(t, [val(1, stake=50), val(2, stake=950)], T0)
    jailed = await observe(t, [val(1, stake=50, jailed=True), val(2, stake=950)], T0 + POLL)
    assert jailed.windows["1h"] == 1
    assert not jailed.storm
    healthy = await observe(t, [val(1, stake=50), val(2, stake=400)], T0 + 2 * POLL)
    assert not healthy.storm
    (stored,) = await store.call(jail_store.events, CHAIN, kinds=[EventKind.JAILED])
    assert stored.total_stake == 1000


async def test_after_a_lost_acknowledgement_the_whole_state_is_written(
    store: RecordingStore,
) -> None:
    """After a commit that may have persisted its state though it was not acknowledged, the
    next commit writes the tracker's whole state: a validator that joined in the lost poll
    and is gone again is not left behind in the store."""
    t = tracker(store)
    await observe(t, [val(1)], T0)
    store.lose_commit_acks = 1
    with pytest.raises(asyncio.CancelledError):
        await observe(t, [val(1), val(2, jailed=True)], T0 + POLL)
    await observe(t, [val(1)], T0 + 2 * POLL)
    persisted = contents(await store.call(jail_store.load_state, CHAIN))
    assert persisted is not None
    assert list(persisted[1]) == [addr(1)]


# --- one write a poll, reports from memory ----------------------------------------------------


class TracedStore(Store):
    """A Store recording every SQL statement it runs."""

    statements: ClassVar[list[str]] = []

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        conn.set_trace_callback(self.statements.append)
        return conn


class TracedAsyncStore(AsyncStore):
    store_class = TracedStore


async def test_a_poll_is_one_write_transaction_and_no_read_after_the_first_load(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first observe has loaded the history, a poll with events runs exactly one
    transaction, BEGIN IMMEDIATE to COMMIT, without a single SELECT, writing only the validator
    that changed; a report while the chain is down runs no statement at all."""
    statements: list[str] = []
    monkeypatch.setattr(TracedStore, "statements", statements)
    async with await TracedAsyncStore.open(db) as store:
        t = tracker(store)
        await observe(t, [val(1), val(2)], T0)  # loads, commits, prunes (hourly)
        assert any(s.startswith("SELECT") for s in statements)

        statements.clear()
        report = await observe(t, [val(1, jailed=True), val(2)], T0 + POLL)
        assert report.counters.jails == 1
        assert report.windows["1h"] == 1
        verbs = [s.split()[0] for s in statements]
        assert statements[0] == "BEGIN IMMEDIATE"
        assert statements[-1] == "COMMIT"
        assert verbs.count("BEGIN") == verbs.count("COMMIT") == 1
        assert set(verbs) == {"BEGIN", "INSERT", "COMMIT"}
        assert any(s.startswith("INSERT OR IGNORE INTO events") for s in statements)
        written = [s for s in statements if s.startswith("INSERT OR REPLACE INTO validator_state")]
        assert len(written) == 1  # validator 1, jailed now; validator 2 is unchanged

        statements.clear()
        await observe(t, [val(1, jailed=True), val(2)], T0 + 2 * POLL)  # no event
        assert "SELECT" not in {s.split()[0] for s in statements}
        assert statements[0] == "BEGIN IMMEDIATE"

        statements.clear()
        t.note_failed_poll()
        down = await t.report(T0 + 3 * POLL)
        assert statements == []
        assert down.windows == report.windows


def queried_history(
    reader: Store, now: float, total_stake: int, storm: JailStormSettings
) -> tuple[JailCounters, dict[str, int], bool]:
    """Counters, windows and storm as the tracker once queried them from the store."""
    start = now - storm.window_seconds
    recent = jail_store.events(reader, CHAIN, since=start, kinds=[EventKind.JAILED])
    return (
        jail_store.counters(reader, CHAIN),
        {
            window: jail_store.count_events(reader, CHAIN, EventKind.JAILED, now - seconds)
            for window, seconds in JAIL_WINDOWS.items()
        },
        is_storm(jailed_in_window(recent, start, total_stake), storm),
    )


class Fortnight:
    """A scripted chain of eight validators: each poll flips some jails and moves some
    unjailableAfter (an unjail, or a cycle between polls), at steps from one poll to two days,
    with polls failing now and then and a few commits not acknowledged, so replayed."""

    STORM: ClassVar[dict[str, float]] = {
        "min_validators": 3,
        "min_stake_ratio": 0.3,
        "window_seconds": 2 * 3600.0,
    }
    STEPS = (POLL,) * 6 + (2 * POLL + 1, 3600.0, 6 * 3600.0, 2 * DAY)

    def __init__(self) -> None:
        self.rng = random.Random(20260101)
        self.stakes = {i: 1000 * i for i in range(1, 9)}
        self.jailed = dict.fromkeys(self.stakes, False)
        self.unjailable = dict.fromkeys(self.stakes, 0)
        self.storm = JailStormSettings.model_validate(self.STORM)
        self.now = T0
        self.compared = 0
        self.replayed_events = 0  # committed, not acknowledged, derived and committed again

    def check(self, report: JailReport, reader: Store, total: int) -> None:
        expected = queried_history(reader, self.now, total, self.storm)
        assert (report.counters, dict(report.windows), report.storm) == expected, self.now
        self.compared += 1

    def check_persisted(self, reader: Store, validators: Sequence[Validator]) -> None:
        """The store holds this poll's validators, written a change at a time."""
        persisted = contents(jail_store.load_state(reader, CHAIN))
        assert persisted is not None
        observed_at, tracked = persisted
        assert observed_at == self.now
        assert {
            a: (v.name, v.stake, v.active, v.jailed, v.unjailable_after_ms, v.jailed_since is None)
            for a, v in tracked.items()
        } == {
            v.address: (
                v.name,
                v.stake,
                v.in_consensus_set,
                v.jailed,
                v.unjailable_after_ms,
                not v.jailed,
            )
            for v in validators
        }

    def validators(self) -> tuple[Validator, ...]:
        for i in self.stakes:
            if self.rng.random() < 0.15:
                self.jailed[i] = not self.jailed[i]
            elif self.rng.random() < 0.05:
                self.unjailable[i] += 1
        return tuple(
            val(i, stake=stake, jailed=self.jailed[i], unjailable_after_ms=self.unjailable[i])
            for i, stake in self.stakes.items()
        )

    async def run(self, store: RecordingStore, reader: Store, polls: int) -> None:
        """`polls` polls with a new tracker, as after a restart: its first report is while
        the chain is down, judged against the persisted consensus stake."""
        t = tracker(store, retention_days=7, jail_storm=self.STORM)
        t.note_failed_poll()
        persisted = contents(await store.call(jail_store.load_state, CHAIN))
        total = sum(v.stake for v in persisted[1].values() if v.active) if persisted else 0
        self.check(await t.report(self.now), reader, total)
        for _ in range(polls):
            self.now += self.rng.choice(self.STEPS)
            if self.rng.random() < 0.1:
                t.note_failed_poll()
                self.check(await t.report(self.now), reader, total)
                continue
            validators = self.validators()
            total = sum(v.stake for v in validators if not v.jailed)
            if self.rng.random() < 0.05:
                store.lose_commit_acks = 1
                with pytest.raises(asyncio.CancelledError):
                    await t.observe(ValidatorTable.of(validators), total, self.now)
                self.replayed_events += len(store.attempted[-1])
            self.check(
                await t.observe(ValidatorTable.of(validators), total, self.now), reader, total
            )
            self.check_persisted(reader, validators)


async def test_reports_from_memory_equal_the_stored_history(db: Path) -> None:
    """Over a scripted fortnight (jails, inferred cycles, gaps, days down, pruning, a restart
    while down, and polls committed but not acknowledged, then replayed), every report's
    counters, windows and storm equal those queried from the store at that moment, and the
    store holds each poll's validators."""
    script = Fortnight()
    async with await RecordingStore.open(db) as first:
        with Store(db, read_only=True) as reader:
            await script.run(first, reader, 150)
    async with await RecordingStore.open(db) as second:
        with Store(db, read_only=True) as reader:
            await script.run(second, reader, 150)
            final = jail_store.counters(reader, CHAIN)
            kept = jail_store.events(reader, CHAIN)
    assert script.compared == 302
    assert script.now - T0 > 14 * DAY
    assert final.jails > 20
    assert final.unjail_delay_count > 10
    assert min(e.observed_at for e in kept) >= script.now - 8 * DAY  # retention pruned
    assert script.replayed_events > 0


async def test_a_storm_window_beyond_the_windows_and_retention_counts_what_is_stored(
    store: RecordingStore, db: Path
) -> None:
    """A storm window of 10 days keeps a jail in memory past the 7d window, until pruning
    deletes it from the store: the storm follows the store throughout."""
    storm = {"min_validators": 1, "min_stake_ratio": 1.0, "window_seconds": 10 * DAY}
    settings = JailStormSettings.model_validate(storm)
    t = tracker(store, retention_days=7, jail_storm=storm)
    await observe(t, [val(1), val(2)], T0)
    await observe(t, [val(1, jailed=True), val(2)], T0 + POLL)
    with Store(db, read_only=True) as reader:
        t.note_failed_poll()
        down = await t.report(T0 + 8 * DAY)
        assert down.storm
        assert (down.counters, dict(down.windows), down.storm) == queried_history(
            reader, T0 + 8 * DAY, 1000, settings
        )
        up = await observe(t, [val(1, jailed=True), val(2)], T0 + 8 * DAY)  # prunes
        assert not up.storm
        assert (up.counters, dict(up.windows), up.storm) == queried_history(
            reader, T0 + 8 * DAY, 1000, settings
        )
