"""Per-chain jail history: derive events from each valid snapshot and keep them in the store."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog

from quorumwatch.jails.events import EventKind, track
from quorumwatch.jails.storms import is_storm, jailed_in_window
from quorumwatch.report import JailReport
from quorumwatch.store import StoreError
from quorumwatch.store import jails as jail_store

if TYPE_CHECKING:
    from quorumwatch.config import ChainSettings
    from quorumwatch.jails.events import ChainState
    from quorumwatch.models import Validator
    from quorumwatch.store import AsyncStore

JAIL_WINDOWS: Mapping[str, float] = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
PRUNE_EVERY_SECONDS = 3600.0
# A snapshot further apart than this many poll intervals from the last one crosses a gap.
GAP_POLL_INTERVALS = 2

log = structlog.get_logger(__name__)


class JailTracker:
    """Owns one chain's last valid state; every change is committed before it is reported."""

    def __init__(self, settings: ChainSettings, store: AsyncStore, retention_days: int) -> None:
        self._settings = settings
        self._store = store
        self._retention_seconds = retention_days * 86400.0
        self._state: ChainState | None = None
        self._loaded = False
        self._missed_poll = False
        self._last_prune = float("-inf")
        self._total_stake = 0
        # Last known names of current validators and of departed ones with jail series: a
        # validator that left keeps its `name` label instead of flapping to "". Names of
        # others that left are forgotten, so churn (Solana) cannot grow this for ever.
        self._names: dict[str, str] = {}

    def note_failed_poll(self) -> None:
        """A poll gave no valid snapshot: the next comparison crosses a gap."""
        self._missed_poll = True

    async def observe(
        self, validators: tuple[Validator, ...], total_stake: int, observed_at: float
    ) -> JailReport:
        """Record the events since the last valid snapshot, then report the history."""
        chain = self._settings.name
        await self._load()
        previous = self._state
        gap = previous is not None and (
            self._missed_poll
            or observed_at - previous.observed_at
            > GAP_POLL_INTERVALS * self._settings.poll_interval_seconds
        )
        state, events = await asyncio.to_thread(
            track, chain, previous, validators, observed_at, gap=gap
        )
        inserted = await self._store.call(jail_store.commit_poll, chain, state, events)
        self._state = state
        self._missed_poll = False
        self._total_stake = total_stake
        self._names.update((a, v.name) for a, v in state.validators.items())
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
        """The history as of `now`, from the store: also valid while the chain is down."""
        chain = self._settings.name
        storm = self._settings.jail_storm
        # Down since a restart: report with the persisted state (names, current jails, stake),
        # not with none, so that labels do not change when the chain comes back.
        await self._load()
        windows = {
            window: await self._store.call(
                jail_store.count_events, chain, EventKind.JAILED, now - seconds
            )
            for window, seconds in JAIL_WINDOWS.items()
        }
        recent = await self._store.call(
            jail_store.events, chain, since=now - storm.window_seconds, kinds=[EventKind.JAILED]
        )
        counters = await self._store.call(jail_store.counters, chain)
        tracked = self._state.validators if self._state is not None else {}
        labelled = tracked.keys() | counters.validator_jails.keys()
        for address in self._names.keys() - labelled:
            del self._names[address]
        return JailReport(
            counters=counters,
            windows=MappingProxyType(windows),
            storm=is_storm(
                jailed_in_window(recent, now - storm.window_seconds), self._total_stake, storm
            ),
            jailed_since=MappingProxyType(
                {
                    v.address: v.jailed_since
                    for v in tracked.values()
                    if v.jailed and v.jailed_since is not None
                }
            ),
            names=MappingProxyType(dict(self._names)),
        )

    async def _load(self) -> None:
        """Load the persisted state once: after a restart, compare with what was persisted,
        not "everybody just joined". Retried on the next call if the store fails."""
        if self._loaded:
            return
        state = await self._store.call(jail_store.load_state, self._settings.name)
        self._state = state
        self._loaded = True
        if state is not None:
            # The consensus stake as analysis computes it, until the next valid poll.
            self._total_stake = sum(v.stake for v in state.validators.values() if v.active)
            self._names.update((a, v.name) for a, v in state.validators.items())

    async def _prune(self, now: float) -> None:
        """Housekeeping, attempted at most once an hour: a failure is logged and does not
        fail the poll, whose events are already committed."""
        if now - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = now
        try:
            deleted = await self._store.call(jail_store.prune, now - self._retention_seconds)
        except StoreError as exc:
            log.warning("pruning old events failed", error=str(exc))
            return
        if deleted:
            log.info("pruned old events", deleted=deleted)
