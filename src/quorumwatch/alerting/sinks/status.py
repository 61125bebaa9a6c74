"""The sinks' delivery status, kept in memory and put on the board at each change.

It is read from the store once, at start (`load`), then kept by what it is told, never by
polling: the evaluator's commits (events appended to the outbox, the oldest dropped from it
when full), the MQTT publisher's reads of the outbox (`peeked`), deliveries (`delivered`) and
connection, and the Alertmanager pusher's failures.

The store runs its calls one at a time on one thread, and asyncio resumes the callers in the
order the calls completed; every caller tells the keeper as soon as its call returns, before
it awaits anything else. So the keeper hears of outbox changes in the store's own order: a
read's result applies exactly to the state the keeper is in when it arrives, and a delete that
finds its event already dropped is recognised as such.

The outbox is modelled as the queue it is (appended at the tail, removed from the head by
deliveries and drops), in batches: each commit is one batch with one `created_at`, which the
keeper stamps when it hears of the commit (the publisher's reads then give the store's exact
value). The outbox loaded at start is known only by its count and its oldest `created_at`;
when a drop or a delivery leaves the head inside that part, unread by the publisher, the
keeper reads the outbox statistics once more to learn the new oldest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from quorumwatch.report import SinkStatus
from quorumwatch.store import StoreError
from quorumwatch.store import alerts as alert_store

if TYPE_CHECKING:
    from quorumwatch.alerting.model import AlertCommit
    from quorumwatch.report import ReportBoard
    from quorumwatch.store import AsyncStore
    from quorumwatch.store.alerts import OutboxEntry

log = structlog.get_logger(__name__)

LOAD_RETRY_SECONDS = 1.0


@dataclass(slots=True)
class _Batch:
    """`count` consecutive pending events. `exact`: one commit's, all created at `created_at`;
    otherwise loaded events of which only a lower bound of `created_at` is known."""

    created_at: float
    count: int
    exact: bool


class _Outbox:
    """The outbox as a queue of batches: its size and when its oldest event was created."""

    def __init__(self, count: int, oldest: float | None) -> None:
        self._batches: deque[_Batch] = deque()
        self.count = 0
        if count and oldest is not None:
            self._batches.append(_Batch(oldest, 1, exact=True))
            if count > 1:
                self._batches.append(_Batch(oldest, count - 1, exact=False))
            self.count = count

    @property
    def oldest(self) -> float | None:
        return self._batches[0].created_at if self._batches else None

    @property
    def head_known(self) -> bool:
        """Whether `oldest` is the oldest event's own `created_at`, not a lower bound."""
        return not self._batches or self._batches[0].exact

    def append(self, count: int, created_at: float) -> None:
        if count:
            self._batches.append(_Batch(created_at, count, exact=True))
            self.count += count

    def remove(self, count: int) -> None:
        """The `count` oldest events are gone (delivered or dropped)."""
        while count and self._batches:
            head = self._batches[0]
            taken = min(count, head.count)
            head.count -= taken
            count -= taken
            self.count -= taken
            if not head.count:
                self._batches.popleft()

    def learn(self, created_at: float) -> None:
        """The oldest event's exact `created_at`, from a read of the store."""
        if not self._batches:
            return
        head = self._batches[0]
        if head.exact or head.count == 1:
            head.created_at, head.exact = created_at, True
            return
        head.count -= 1  # the rest were created no earlier (the outbox is in commit order)
        head.created_at = max(head.created_at, created_at)
        self._batches.appendleft(_Batch(created_at, 1, exact=True))


class SinkStatusKeeper:
    """Keeps the sinks' `SinkStatus` from a single load and the sinks' notifications; puts a
    fresh one on the board at each change (once everything is loaded). The collector derives
    the oldest event's age from it at each scrape."""

    def __init__(
        self,
        store: AsyncStore,
        board: ReportBoard,
        *,
        mqtt: bool,
        alertmanager: bool,
        clock: Callable[[], float] = time.time,  # the store's clock for `created_at`
    ) -> None:
        self._store = store
        self._board = board
        self._clock = clock
        # Each is None until loaded; what the keeper hears before that, the load includes.
        self._outbox: _Outbox | None = None
        self._dropped: int | None = None
        self._generated: dict[tuple[str, str], int] | None = None
        # The oldest pending events as the publisher last read them, less those gone since.
        self._head: deque[OutboxEntry] = deque()
        self._mqtt_connected = False if mqtt else None
        self._alertmanager_failures = 0 if alertmanager else None
        self._reading: asyncio.Task[None] | None = None

    @property
    def status(self) -> SinkStatus | None:
        """The current status; None until loaded."""
        if self._outbox is None or self._dropped is None or self._generated is None:
            return None
        return SinkStatus(
            outbox_events=self._outbox.count,
            outbox_oldest_created_at=self._head[0].created_at
            if self._head
            else self._outbox.oldest,
            outbox_dropped_events=self._dropped,
            events_generated=dict(self._generated),
            mqtt_connected=self._mqtt_connected,
            alertmanager_failures=self._alertmanager_failures,
        )

    async def load(self) -> None:
        """Read the outbox statistics, the drop counter and the event counters, once; while
        the store fails, log and try again every LOAD_RETRY_SECONDS."""
        while True:
            try:
                if self._outbox is None:
                    now = self._clock()
                    count, age = await self._store.call(alert_store.outbox_stats, now)
                    self._outbox = _Outbox(count, None if age is None else now - age)
                if self._dropped is None:
                    self._dropped = await self._store.call(alert_store.outbox_dropped)
                if self._generated is None:
                    generated = await self._store.call(alert_store.events_generated)
                    self._generated = {(a, str(s)): n for (a, s), n in generated.items()}
            except StoreError as exc:
                log.warning("sink status not loaded", error=str(exc))
                await asyncio.sleep(LOAD_RETRY_SECONDS)
                continue
            self._settle()
            return

    async def close(self) -> None:
        """Stop a read of the outbox still under way (before the store closes)."""
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading

    # --- what the keeper is told ----------------------------------------------------------

    def committed(self, commit: AlertCommit) -> None:
        """The evaluator's listener: events appended to the outbox, the oldest dropped."""
        if not commit.events and not commit.dropped:
            return
        if self._outbox is not None:
            self._outbox.append(len(commit.events), self._clock())
            self._outbox.remove(commit.dropped)
        for _ in range(min(commit.dropped, len(self._head))):
            self._head.popleft()
        if self._dropped is not None:
            self._dropped += commit.dropped
        if self._generated is not None:
            for event in commit.events:
                key = (event.alert, str(event.status))
                self._generated[key] = self._generated.get(key, 0) + 1
        self._settle()

    def peeked(self, entries: Sequence[OutboxEntry]) -> None:
        """The MQTT publisher read the oldest pending events (all of them, if fewer)."""
        self._head = deque(entries)
        if not entries and self._outbox is not None:
            self._outbox = _Outbox(0, None)  # what the store says now; a count astray heals
        self._settle()

    def delivered(self, entry: OutboxEntry) -> None:
        """The MQTT publisher deleted an acknowledged event it had read: the oldest, unless
        a drop removed it first (then nothing changes)."""
        if not self._head or self._head[0].id != entry.id:
            return
        self._head.popleft()
        if self._outbox is not None:
            self._outbox.remove(1)
        self._settle()

    def mqtt_connection(self, connected: bool) -> None:
        self._mqtt_connected = connected
        self._settle()

    def alertmanager_failed(self) -> None:
        """One more failed push, to any of the Alertmanagers."""
        assert self._alertmanager_failures is not None, "Alertmanager is not configured"
        self._alertmanager_failures += 1
        self._settle()

    # --- keeping the board current -------------------------------------------------------

    def _settle(self) -> None:
        """Learn the oldest event's `created_at` if it is known, or read it if need be; then
        put the status on the board."""
        outbox = self._outbox
        if outbox is not None and outbox.count:
            if self._head:
                outbox.learn(self._head[0].created_at)
            elif not outbox.head_known and (self._reading is None or self._reading.done()):
                self._reading = asyncio.get_running_loop().create_task(self._read_oldest())
        status = self.status
        if status is not None:
            self._board.sinks = status

    async def _read_oldest(self) -> None:
        now = self._clock()
        try:
            count, age = await self._store.call(alert_store.outbox_stats, now)
        except StoreError as exc:
            log.warning("oldest outbox event not read", error=str(exc))
            return
        outbox = self._outbox
        if outbox is None or self._head or outbox.head_known:
            return
        if count != outbox.count or age is None:  # the store is right: start from it again
            self._outbox = _Outbox(count, None if age is None else now - age)
        else:
            outbox.learn(now - age)
        self._settle()
