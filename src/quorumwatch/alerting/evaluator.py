"""Per-chain alert evaluation: rules on each report; state and events committed, then the sinks
told what was committed. A chain watched no more (a deregistered subnet) has its alerts
resolved the same way."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import structlog

from quorumwatch.alerting.model import ALERT_NAMES, AlertCommit, AlertEvent, AlertState
from quorumwatch.alerting.rules import RuleMemory, advance, conditions
from quorumwatch.store import alerts as alert_store

if TYPE_CHECKING:
    from quorumwatch.config import ChainSettings
    from quorumwatch.report import ChainReport
    from quorumwatch.store import AsyncStore

log = structlog.get_logger(__name__)

# Told after each evaluation what it committed (a sink: it must not block nor raise).
AlertListener = Callable[[AlertCommit], None]


class ChainAlerts:
    """Owns one chain's alert state. After a restart it starts from the persisted state, so
    nothing fires again and what resolved while the daemon was down resolves now."""

    def __init__(
        self,
        settings: ChainSettings,
        store: AsyncStore,
        listeners: Sequence[AlertListener] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._listeners = listeners
        self._clock = clock
        self._states: dict[str, AlertState] | None = None
        self._memory = RuleMemory()

    async def evaluate(self, report: ChainReport) -> list[AlertEvent]:
        """Judge the report, commit the new state and events together, then tell listeners."""
        chain = self._settings.name
        if self._states is None:
            loaded = await self._store.call(alert_store.load_alert_state, chain)
            self._states = {s.fingerprint: s for s in loaded}
        now = self._clock()
        holding, judged, memory = conditions(
            report, self._settings, self._states, self._memory, now
        )
        states, events = advance(
            chain,
            self._states.values(),
            holding,
            judged,
            now,
            for_seconds=self._settings.alerts.for_seconds,
        )
        await self._commit(self._states, states, events)
        self._memory = memory
        return events

    async def retire(self) -> list[AlertEvent]:
        """The chain is watched no more (a deregistered subnet): each of its firing alerts
        resolves and its pending ones are dropped, committed and told as an evaluation is, so
        that no sink keeps an alert of a vanished chain firing. The state is read from the
        store, after any commit of a poll cancelled on its way (store calls run in order)."""
        chain = self._settings.name
        loaded = {
            s.fingerprint: s for s in await self._store.call(alert_store.load_alert_state, chain)
        }
        states, events = advance(
            chain,
            loaded.values(),
            (),
            ALERT_NAMES,  # every alert judged, none holding
            self._clock(),
            for_seconds=self._settings.alerts.for_seconds,
        )
        # Outside any poll, whose log lines name the chain: these must too.
        with structlog.contextvars.bound_contextvars(chain=chain):
            await self._commit(loaded, states, events)
        return events

    async def _commit(
        self,
        before: Mapping[str, AlertState],
        states: list[AlertState],
        events: list[AlertEvent],
    ) -> None:
        """Commit the new state and its events (when anything changed since `before`), then
        tell the listeners."""
        chain = self._settings.name
        dropped = 0
        if events or {s.fingerprint: s for s in states} != before:
            # Committed before anything is published: the outbox makes delivery durable.
            dropped = await self._store.call(alert_store.commit_alerts, chain, states, events)
        # Nothing is awaited from here on, so listeners hear of commits in the store's order.
        self._states = {s.fingerprint: s for s in states}
        for event in events:
            log.info(
                "alert",
                alert=event.alert,
                status=str(event.status),
                severity=str(event.severity),
                fingerprint=event.fingerprint,
            )
        commit = AlertCommit(chain, tuple(states), tuple(events), dropped)
        for listener in self._listeners:
            try:
                listener(commit)
            except Exception:  # one broken sink must not keep the others from hearing
                log.exception("alert listener failed", chain=chain)
