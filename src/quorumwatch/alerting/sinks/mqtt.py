"""Alert events over MQTT (aiomqtt 2.x, MQTT 3.1.1), drained from the store's durable outbox.

Topics, under `[mqtt].topic_prefix`:

- `<prefix>/status`: retained `{"state":"online","version":"…"}` once connected. The Will
  (retained, QoS 1) is `{"state":"offline"}`, and the publisher publishes the same itself before
  a clean disconnect, because the broker discards the Will on a clean DISCONNECT.
- `<prefix>/<chain>/alerts/<alert>`: each AlertEvent's `to_json()`, QoS 1, not retained.
- `<prefix>/<chain>/firing`: retained JSON list of the chain's firing alerts, republished after
  the chain's events whenever it changed since it was last published on this connection. Each
  connection publishes it for every chain the store lists with alert state or alert events
  (`alert_chains`, read when it begins) and every chain committed to since.

Chain and alert names become topic segments only through `sanitise_segment` (lower-cased, so
names differing only in case share a topic; payloads carry the exact names).

Delivery is at least once, in order per chain: an event is committed to the outbox before it
is published (see `store/alerts.py`), published at QoS 1, and its row is deleted only after the
broker's PUBACK. A failure between PUBACK and delete, or a lost PUBACK, sends it again, so
consumers dedupe on `event_id`. Each connection uses a fresh aiomqtt client, so paho's
in-memory queue of a dead connection is dropped with it and the outbox alone re-sends.

Nothing is polled: the evaluator tells the publisher what each evaluation committed
(`committed`), which keeps each chain's firing set in memory (read from the store once, on the
first connection) and wakes the publisher when there is something to publish. Only then, and
when a connection begins, is the outbox read.

On shutdown, `shutdown()` first lets a connected publisher send what is pending, within a
budget, then closes: what is not acknowledged by then stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt
import structlog

from quorumwatch.alerting.model import AlertState, alert_document, compact_json
from quorumwatch.store import StoreError
from quorumwatch.store import alerts as alert_store

if TYPE_CHECKING:
    from quorumwatch.alerting.model import AlertCommit
    from quorumwatch.alerting.sinks.status import SinkStatusKeeper
    from quorumwatch.config import MqttSettings
    from quorumwatch.store import AsyncStore

__all__ = [
    "OFFLINE_PAYLOAD",
    "FlushOutcome",
    "MqttPublisher",
    "firing_payload",
    "sanitise_segment",
]

log = structlog.get_logger(__name__)

MAX_SEGMENT_LENGTH = 64
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_DIGEST_LENGTH = 8

OFFLINE_PAYLOAD = '{"state":"offline"}'
DRAIN_BATCH = 100
OFFLINE_TIMEOUT_SECONDS = 2.0  # for the PUBACK of the offline status before disconnecting
CLOSE_TIMEOUT_SECONDS = 10.0
# At shutdown, after the flush: for the offline status and DISCONNECT, before giving up on them.
SHUTDOWN_CLOSE_SECONDS = 1.0
# After giving up on a clean close: how long each cancellation gets to end one step of the
# clean-up (the offline status, then DISCONNECT) before it is cancelled again.
CANCEL_STEP_SECONDS = 0.1
BACKOFF_BASE_SECONDS = 0.5


def sanitise_segment(text: str) -> str:
    """One safe MQTT topic level from a self-chosen name: lower-case ASCII `[a-z0-9_.-]`,
    anything else (`+ # / $`, spaces, control and format characters, non-ASCII) as `_`;
    never empty; at most 64 characters (a longer name is cut and ends in a digest of the
    whole, so long names that share a beginning stay apart)."""
    mapped = "".join(
        char.lower() if char.isascii() and char.lower() in _SEGMENT_CHARS else "_" for char in text
    )
    if not mapped:
        return "_"
    if len(mapped) > MAX_SEGMENT_LENGTH:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        mapped = f"{mapped[: MAX_SEGMENT_LENGTH - _DIGEST_LENGTH - 1]}-{digest[:_DIGEST_LENGTH]}"
    return mapped


@dataclass(frozen=True, slots=True)
class FlushOutcome:
    """What the shutdown flush achieved; None where the store could not say."""

    flushed: int | None  # events acknowledged by the broker during the flush
    remaining: int | None  # events still in the outbox, sent on the next start


def firing_payload(states: Sequence[AlertState]) -> str:
    """The retained firing set: a JSON list of the firing alerts, by alert and fingerprint,
    each one's labels by name (as the store keeps them, whatever order they were made in)."""
    firing = sorted((s for s in states if s.firing), key=lambda s: (s.alert, s.fingerprint))
    return compact_json(
        [{**alert_document(s), "labels": dict(sorted(s.labels.items()))} for s in firing]
    )


class MqttPublisher:
    """Publishes the outbox and firing sets; reconnects with backoff until closed or cancelled.

    Run `run()` in its own task; call `committed()` after each `commit_alerts` (or `wake()`
    after committing events alone), and `close()` on shutdown. MQTT and store failures are
    logged and retried; anything else ends `run()`. `status`, if given, hears of each read and
    delete of the outbox and of the connection.
    """

    def __init__(
        self,
        settings: MqttSettings,
        store: AsyncStore,
        *,
        version: str,
        status: SinkStatusKeeper | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._version = version
        self._status = status
        self.status_topic = f"{settings.topic_prefix}/status"
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._connected = False
        # Catching up: each wake() starts a generation; the loop records the latest generation
        # whose events and firing sets were all published, and `_progress` signals any change
        # of that, or of the connection, to a waiting flush.
        self._wakes = 0
        self._caught_up_to = -1
        self._progress = asyncio.Event()
        self._failures = 0
        self._run_task: asyncio.Task[Any] | None = None
        # Each chain's latest committed firing set, and the chains whose set this connection
        # publishes (listed by the store when it began, or committed to since).
        self._firing: dict[str, tuple[AlertState, ...]] = {}
        self._listed: set[str] = set()
        # Events committed so far, as told: a drain is done when none came during its last read.
        self._committed_events = 0

    @property
    def connected(self) -> bool:
        """True while connected with the online status acknowledged (for the metric)."""
        return self._connected

    def alert_topic(self, chain: str, alert: str) -> str:
        prefix = self._settings.topic_prefix
        return f"{prefix}/{sanitise_segment(chain)}/alerts/{sanitise_segment(alert)}"

    def firing_topic(self, chain: str) -> str:
        return f"{self._settings.topic_prefix}/{sanitise_segment(chain)}/firing"

    def wake(self) -> None:
        """Publish now what is in the outbox, then the firing sets that changed."""
        self._wakes += 1
        self._wake.set()

    def committed(self, commit: AlertCommit) -> None:
        """The evaluator's listener: keep the chain's firing set, and wake the publisher if
        events were appended or the set (or the list of chains) changed."""
        firing = tuple(commit.firing)
        changed = self._firing.get(commit.chain, ()) != firing
        self._firing[commit.chain] = firing
        if (commit.states or commit.events) and commit.chain not in self._listed:
            self._listed.add(commit.chain)
            changed = True
        self._committed_events += len(commit.events)
        if commit.events or changed:
            self.wake()

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, publish, reconnect after any failure; returns after `close()`."""
        if self._run_task is not None:
            raise RuntimeError("MqttPublisher.run() is already running")
        task = asyncio.current_task()
        self._run_task = task
        try:
            while not self._stop.is_set():
                try:
                    await self._connection()
                except Exception as exc:
                    if task is not None and task.cancelling():
                        # A failed clean disconnect must not swallow a cancellation.
                        raise asyncio.CancelledError from exc
                    if self._stop.is_set():
                        break
                    delay = self._next_delay()
                    # A broker or store failure is expected now and then; anything else is
                    # a bug, logged louder, but it must not end publishing for good either.
                    expected = isinstance(exc, aiomqtt.MqttError | StoreError)
                    (log.warning if expected else log.error)(
                        "mqtt publishing failed",
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in_seconds=round(delay, 2),
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            self._set_connected(False)
            self._run_task = None

    async def close(self, grace_seconds: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Stop `run()`: the retained offline status is published if connected, then the
        connection is closed cleanly, unless that takes more than `grace_seconds`. Final: a
        later `run()` returns at once."""
        self._stop.set()
        self._wake.set()
        task = self._run_task
        if task is None or task is asyncio.current_task():
            return
        done, _ = await asyncio.wait({task}, timeout=grace_seconds)
        while not done:
            # Stuck connecting, or the broker stopped answering: give up on a clean goodbye.
            # One cancellation ends only the step it interrupts; the clean-up after it (the
            # offline status, DISCONNECT) would wait on the same silent broker again.
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=CANCEL_STEP_SECONDS)

    async def shutdown(self, flush_seconds: float) -> FlushOutcome:
        """Flush, then close: if connected, wait up to `flush_seconds` until everything
        pending in the outbox (and each changed firing set) is acknowledged; return early
        when that is done or the connection is lost. Never connects anew: with the broker
        unreachable, the events stay in the outbox at once. Logs and returns the counts."""
        before = await self._pending()
        if self._connected and flush_seconds > 0:
            log.info(
                "mqtt flushing the outbox before shutdown",
                pending=before,
                budget_seconds=flush_seconds,
            )
            await self._flush(flush_seconds)
        await self.close(SHUTDOWN_CLOSE_SECONDS)
        after = await self._pending()
        outcome = FlushOutcome(
            flushed=None if before is None or after is None else max(0, before - after),
            remaining=after,
        )
        log.info(
            "mqtt outbox flushed at shutdown",
            flushed=outcome.flushed,
            remaining=outcome.remaining,
        )
        return outcome

    async def _flush(self, budget: float) -> None:
        """Wait until the loop has caught up with everything committed before this call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        self.wake()
        target = self._wakes
        while True:
            self._progress.clear()
            remaining = deadline - loop.time()
            if self._caught_up_to >= target or not self._connected or remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)

    async def _pending(self) -> int | None:
        try:
            pending, _ = await self._store.call(alert_store.outbox_stats, time.time())
        except StoreError as exc:
            log.warning("outbox not counted", error=str(exc))
            return None
        return pending

    def _next_delay(self) -> float:
        """Exponential backoff with jitter: half the step fixed, half random, capped."""
        step: float = min(
            self._settings.reconnect_max_seconds,
            BACKOFF_BASE_SECONDS * 2.0 ** min(self._failures, 32),
        )
        self._failures += 1
        return step / 2 + random.uniform(0, step / 2)

    def _client(self) -> aiomqtt.Client:
        """A new client for one connection (aiomqtt needs the running loop)."""
        settings = self._settings
        tls_params = None
        if settings.tls:
            ca_certs = None if settings.ca_file is None else str(settings.ca_file)
            tls_params = aiomqtt.TLSParameters(ca_certs=ca_certs)  # None: system trust store
        password = None if settings.password is None else settings.password.get_secret_value()
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=password,
            identifier=settings.client_id,
            keepalive=settings.keepalive_seconds,
            will=aiomqtt.Will(self.status_topic, OFFLINE_PAYLOAD, qos=1, retain=True),
            tls_params=tls_params,
        )
        # aiomqtt runs paho's blocking connect in an executor thread and has no setting for
        # its timeout (paho's default is 5 s), so it is set on the paho client it wraps.
        client._client.connect_timeout = settings.connect_timeout_seconds
        return client

    # --- one connection -----------------------------------------------------------------

    async def _connection(self) -> None:
        """One connection, until close() (returns) or a failure (raises)."""
        async with self._client() as client:
            try:
                await self._serve(client)
            finally:
                self._set_connected(False)
                self._progress.set()
                await self._say_offline(client)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Best effort: the Will is not sent after the clean DISCONNECT that follows."""
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self.status_topic,
                OFFLINE_PAYLOAD,
                qos=1,
                retain=True,
                timeout=OFFLINE_TIMEOUT_SECONDS,
            )

    async def _serve(self, client: aiomqtt.Client) -> None:
        """The publishing loop, raced against the loss of the connection."""
        work = asyncio.create_task(self._work(client))
        watch = asyncio.create_task(self._watch(client))
        try:
            done, _ = await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            work.cancel()
            watch.cancel()
            await asyncio.gather(work, watch, return_exceptions=True)
        for task in (work, watch):
            if task in done:
                task.result()  # the failure, if any; `work` returns only when closing

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        """Raise MqttError when the connection is lost (nothing is subscribed, so no message
        ever arrives: the iterator only ends by raising on disconnection)."""
        async for _message in client.messages:
            pass
        raise aiomqtt.MqttError("message iteration ended")

    async def _work(self, client: aiomqtt.Client) -> None:
        online = compact_json({"state": "online", "version": self._version})
        await client.publish(self.status_topic, online, qos=1, retain=True)
        self._set_connected(True)
        self._failures = 0
        log.info("mqtt connected", client_id=self._settings.client_id)
        await self._list_chains()
        published: dict[str, str] = {}  # firing topic -> payload, on this connection
        while not self._stop.is_set():
            self._wake.clear()
            generation = self._wakes
            if not await self._drain(client):
                continue  # closing
            await self._publish_firing(client, published)
            self._caught_up_to = generation
            self._progress.set()
            await self._wake.wait()

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            if self._status is not None:
                self._status.mqtt_connection(connected)

    async def _list_chains(self) -> None:
        """The chains whose firing set this connection publishes; the sets of those not
        known yet (all of them on the first connection) are read from the store."""
        chains = await self._store.call(alert_store.alert_chains)
        self._listed = set(chains)
        for chain in chains:
            if chain not in self._firing:
                states = await self._store.call(alert_store.firing, chain)
                self._firing.setdefault(chain, tuple(states))  # a commit told meanwhile wins

    async def _drain(self, client: aiomqtt.Client) -> bool:
        """Publish the outbox in commit order; delete each row only after its PUBACK. True
        once a read found it empty and no event was committed during that read."""
        while not self._stop.is_set():
            committed = self._committed_events
            entries = await self._store.call(alert_store.outbox_peek, DRAIN_BATCH)
            if self._status is not None:
                self._status.peeked(entries)
            if not entries:
                if self._committed_events == committed:
                    return True
                continue
            for entry in entries:
                if self._stop.is_set():
                    return False
                topic = self.alert_topic(entry.chain, entry.alert)
                await client.publish(topic, entry.payload, qos=1, retain=False)
                await self._store.call(alert_store.outbox_delete, entry.id)
                if self._status is not None:
                    self._status.delivered(entry)
        return False

    async def _publish_firing(self, client: aiomqtt.Client, published: dict[str, str]) -> None:
        """Publish each listed chain's firing set that changed since it was last published on
        this connection. Called right after a drain: every set taken here was committed with
        events that are published already, so a chain's events precede its firing set."""
        payloads = {
            self.firing_topic(chain): firing_payload(self._firing.get(chain, ()))
            for chain in sorted(self._listed)
        }
        for topic, payload in payloads.items():
            if published.get(topic) != payload:
                await client.publish(topic, payload, qos=1, retain=True)
                published[topic] = payload
