"""Per-chain jail history: derive events from each valid snapshot, commit them to the store, and
report the history from memory.

The tracker reads the store once, when it first needs to (the persisted state, the counters,
and the jails of the longest window it reports on). After that a poll is one write
transaction and no read: the counters, the window counts and the recent jails are kept in
memory and advanced by what each commit actually inserted, so a replayed event is not counted
twice there either. Memory only advances after a commit succeeded; after a failed or
interrupted one the history is read back before the next report.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Mapping, Sequence
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import structlog

from quorumwatch.columns import column_sum
from quorumwatch.jails.events import EventKind, ValidatorEvent, track
from quorumwatch.jails.statistics import JailCounters
from quorumwatch.jails.storms import is_storm, jailed_in_window
from quorumwatch.report import JailReport
from quorumwatch.store import StoreError
from quorumwatch.store import jails as jail_store

if TYPE_CHECKING:
    from quorumwatch.columns import ValidatorTable
    from quorumwatch.config import ChainSettings
    from quorumwatch.jails.events import ChainState
    from quorumwatch.store import AsyncStore

JAIL_WINDOWS: Mapping[str, float] = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
PRUNE_EVERY_SECONDS = 3600.0
# A snapshot further apart than this many poll intervals from the last one crosses a gap.
GAP_POLL_INTERVALS = 2

log = structlog.get_logger(__name__)

_observed_at = attrgetter("observed_at")


class _RecentJails:
    """The chain's jail events of the last `horizon` seconds, in store order (observation
    time, then commit order): what the windows and the storm are counted from."""

    def __init__(self, jails: Sequence[ValidatorEvent]) -> None:
        self._jails = list(jails)

    def add(self, events: Sequence[ValidatorEvent]) -> None:
        for event in events:
            if event.kind is EventKind.JAILED:
                bisect.insort_right(self._jails, event, key=_observed_at)

    def since(self, start: float) -> list[ValidatorEvent]:
        """Those observed at or after `start`."""
        return self._jails[self._first_at_or_after(start) :]

    def count_since(self, start: float) -> int:
        return len(self._jails) - self._first_at_or_after(start)

    def forget_before(self, start: float) -> None:
        del self._jails[: self._first_at_or_after(start)]

    def _first_at_or_after(self, start: float) -> int:
        return bisect.bisect_left(self._jails, start, key=_observed_at)


class JailTracker:
    """Owns one chain's last valid state; every change is committed before it is reported."""

    def __init__(self, settings: ChainSettings, store: AsyncStore, retention_days: int) -> None:
        self._settings = settings
        self._store = store
        self._retention_seconds = retention_days * 86400.0
        # How far back a report looks: its longest window, or the storm window if longer.
        self._horizon = max(*JAIL_WINDOWS.values(), settings.jail_storm.window_seconds)
        self._state: ChainState | None = None
        self._state_loaded = False
        # Whether the store holds exactly `_state`: not after a commit that failed or was
        # cancelled, which may have persisted the next state after all.
        self._state_persisted = True
        # The history as committed; None until loaded, and again after a failed commit.
        self._counters: JailCounters | None = None
        self._recent = _RecentJails(())
        self._missed_poll = False
        self._last_prune = float("-inf")
        self._total_stake = 0
        # Names of the validators with jail series (the current name, or the last known after
        # they left), so that a departed one keeps its `name` label instead of flapping to "".
        # Only validators with jails: a name per validator of a large set is not kept twice.
        self._names: dict[str, str] = {}

    async def after_poll(
        self, table: ValidatorTable | None, total_stake: int, now: float
    ) -> JailReport | None:
        """The history after a poll that gave the validators of `table` (None: no valid set),
        or None if the store failed. A store failure loses nothing: the tracked state only
        advances once a commit succeeds, so the next poll derives the same events again."""
        try:
            if table is None:
                self.note_failed_poll()
                return await self.report(now)
            return await self.observe(table, total_stake, now)
        except StoreError as exc:
            log.error("jail history not recorded", error=str(exc))
            return None

    def note_failed_poll(self) -> None:
        """A poll gave no valid snapshot: the next comparison crosses a gap."""
        self._missed_poll = True

    async def observe(
        self, table: ValidatorTable, total_stake: int, observed_at: float
    ) -> JailReport:
        """Record the events since the last valid snapshot, then report the history."""
        chain = self._settings.name
        counters = await self._load(observed_at)
        previous = self._state
        gap = previous is not None and (
            self._missed_poll
            or observed_at - previous.observed_at
            > GAP_POLL_INTERVALS * self._settings.poll_interval_seconds
        )
        tracked = await asyncio.to_thread(
            track, chain, previous, table, observed_at, gap=gap, total_stake=total_stake
        )
        state, events = tracked.state, tracked.events
        change = tracked.change if self._state_persisted else None
        try:
            inserted = await self._store.call(
                jail_store.commit_poll, chain, state, events, change=change
            )
        except BaseException:
            # Nothing is committed on a StoreError, as a rule; but a commit cancelled while
            # running may have been: read the history back rather than guess, and write the
            # whole state next time rather than what changed since the one persisted.
            self._counters = None
            self._state_persisted = False
            raise
        self._counters = counters + JailCounters.counted(inserted)
        self._recent.add(inserted)
        self._state = state
        self._state_persisted = True
        self._missed_poll = False
        self._total_stake = total_stake
        written = None if change is None else change.written.tolist()
        self._name_jailed_validators(state, written)
        for event in events:
            log.info(
                "validator event",
                validator=event.address,
                name=event.name,
                kind=str(event.kind),
                inferred=event.inferred,
                after_gap=event.after_gap,
            )
        if len(inserted) != len(events):
            log.warning("events already recorded", expected=len(events), inserted=len(inserted))
        await self._prune(observed_at)
        return await self.report(observed_at)

    async def report(self, now: float) -> JailReport:
        """The history as of `now`: also valid while the chain is down."""
        storm = self._settings.jail_storm
        # Down since a restart: report with the persisted state (names, current jails, stake),
        # not with none, so that labels do not change when the chain comes back.
        counters = await self._load(now)
        self._recent.forget_before(now - self._horizon)
        windows = {
            window: self._recent.count_since(now - seconds)
            for window, seconds in JAIL_WINDOWS.items()
        }
        start = now - storm.window_seconds
        recent = self._recent.since(start)
        state = self._state
        jailed_since = {} if state is None else state.jailed_since_by_address()
        names = dict(self._names)
        if state is not None:
            rows = np.flatnonzero(state.jailed).tolist()
            names.update((state.addresses[row], state.names[row]) for row in rows)
        return JailReport(
            counters=counters,
            windows=MappingProxyType(windows),
            storm=is_storm(jailed_in_window(recent, start, self._total_stake), storm),
            jailed_since=MappingProxyType(jailed_since),
            names=MappingProxyType(names),
        )

    async def _load(self, now: float) -> JailCounters:
        """The counters, after reading the history once (again after a failed commit). The
        persisted state is read only the first time: after a restart, compare with what was
        persisted, not "everybody just joined". Retried on the next call if the store fails."""
        if self._counters is not None:
            return self._counters
        history = await self._store.call(
            jail_store.load_history, self._settings.name, now - self._horizon
        )
        if not self._state_loaded:
            self._state = history.state
            self._state_loaded = True
            if history.state is not None:
                # The consensus stake as analysis computes it, until the next valid poll.
                self._total_stake = column_sum(history.state.stakes[history.state.active])
        self._counters = history.counters
        self._recent = _RecentJails(history.jails)
        if self._state is not None and history.counters.validator_jails.keys() - self._names:
            self._name_jailed_validators(self._state, None)
        return history.counters

    def _name_jailed_validators(self, state: ChainState, rows: list[int] | None) -> None:
        """Take the names of the validators with jail series from `state`, at `rows` (those
        written: any rename is among them) or at all of its rows."""
        with_jails = self._counters.validator_jails if self._counters is not None else {}
        if not with_jails:
            return
        for row in range(len(state)) if rows is None else rows:
            address = state.addresses[row]
            if address in with_jails:
                self._names[address] = state.names[row]

    async def _prune(self, now: float) -> None:
        """Housekeeping, attempted at most once an hour: a failure is logged and does not
        fail the poll, whose events are already committed."""
        if now - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = now
        cutoff = now - self._retention_seconds
        try:
            deleted = await self._store.call(jail_store.prune, cutoff)
        except StoreError as exc:
            log.warning("pruning old events failed", error=str(exc))
            return
        self._recent.forget_before(cutoff)  # as the store did
        if deleted:
            log.info("pruned old events", deleted=deleted)
