"""MQTT publishing against a real Mosquitto started by the tests: topic sanitising, QoS 1
events, retained status with a Will, retained firing sets, deleting outbox rows only after the
PUBACK, a broker outage, TLS with a password, and no password in any log."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import subprocess
import sys
import textwrap
import time
import types
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from quorumwatch.alerting.model import (
    AlertCommit,
    AlertEvent,
    AlertState,
    AlertStatus,
    rfc3339,
)
from quorumwatch.alerting.sinks.mqtt import OFFLINE_PAYLOAD, MqttPublisher, sanitise_segment
from quorumwatch.config import MqttSettings
from quorumwatch.store import AsyncStore, Store
from quorumwatch.store import alerts as alert_store
from quorumwatch.store.database import DEFAULT_MAX_OUTBOX_EVENTS
from tests.builders import alert_event, alert_state
from tests.services import WAIT_SECONDS, Broker, BrokerFactory, eventually, subscribed
from tests.tools import free_port, require_binary

PREFIX = "qwtest"
VERSION = "9.9.9-test"
CHAIN = "hyperliquid"
T0 = 1_750_000_000.0
PASSWORD = "pw-Zq8#kV/ü-never-logged"
ALERTS = f"{PREFIX}/+/alerts/#"
STATUS = f"{PREFIX}/status"


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> Broker:
    return broker_factory()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    async with await AsyncStore.open(tmp_path / "quorumwatch.db") as opened:
        yield opened


# --- helpers ---------------------------------------------------------------------------------


def settings(port: int, **overrides: Any) -> MqttSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "client_id": f"qw-test-{uuid.uuid4().hex[:12]}",
        "topic_prefix": PREFIX,
        "reconnect_max_seconds": 0.5,
    }
    values.update(overrides)
    return MqttSettings(**values)


@asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        await publisher.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def commit(
    store: AsyncStore,
    publisher: MqttPublisher,
    chain: str,
    states: Sequence[AlertState],
    events: Sequence[AlertEvent],
) -> int:
    """Commit as the evaluator does: to the store, then tell the publisher what it holds."""
    dropped = await store.call(alert_store.commit_alerts, chain, states, events)
    publisher.committed(AlertCommit(chain, tuple(states), tuple(events), dropped))
    return dropped


async def connected(publisher: MqttPublisher) -> None:
    await eventually(lambda: publisher.connected, "the publisher to connect")


# --- topic segments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "segment"),
    [
        ("a/b", "a_b"),
        ("+", "_"),
        ("#", "_"),
        ("$SYS", "_sys"),
        ("new\nline", "new_line"),
        ("bidi\u202eevil\u2066", "bidi_evil_"),
        ("zero\u200bwidth\x00nul", "zero_width_nul"),
        ("Ünïcode", "_n_code"),
        ("", "_"),
        ("EntityCanHalt", "entitycanhalt"),
        ("hyper-liquid_1.2", "hyper-liquid_1.2"),
    ],
)
def test_sanitise_segment_maps_hostile_names(name: str, segment: str) -> None:
    """Each hostile name maps to the exact expected segment: `+ # / $`, control, format and
    non-ASCII characters become `_`, ASCII is lower-cased, and the empty name becomes `_`."""
    assert sanitise_segment(name) == segment


def test_sanitise_segment_caps_10_kb_names_at_64_and_keeps_them_apart() -> None:
    """A 10 kB name becomes 64 allowed characters; two 10 kB names differing only at the end
    give different segments; the result is deterministic."""
    first = "x/" * 5000
    second = first[:-1] + "!"
    assert len(sanitise_segment(first)) == 64
    assert re.fullmatch(r"[a-z0-9_.-]{64}", sanitise_segment(first))
    assert sanitise_segment(first) != sanitise_segment(second)
    assert sanitise_segment(first) == sanitise_segment("x/" * 5000)


@given(st.text())
def test_sanitise_segment_is_always_a_safe_level(name: str) -> None:
    """For any text, the segment is 1-64 characters of [a-z0-9_.-] (so no wildcard,
    separator, `$` prefix or control character) and sanitising it again changes nothing."""
    segment = sanitise_segment(name)
    assert re.fullmatch(r"[a-z0-9_.-]{1,64}", segment)
    assert sanitise_segment(segment) == segment


# --- publishing against a real broker --------------------------------------------------------


async def test_events_are_published_at_qos1_not_retained_as_event_json(
    broker: Broker, store: AsyncStore
) -> None:
    """Each committed event arrives once on <prefix>/<sanitised chain>/alerts/<sanitised
    alert> at QoS 1 with its to_json() payload, is not retained for a later subscriber, and
    leaves the outbox empty."""
    events = [
        alert_event("e1"),
        alert_event("e2", "ChainHalted"),
        alert_event("e3", chain="evil/chain#+"),
    ]
    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    later_event = alert_event("e4", entity="e4")
    async with subscribed(broker.port, ALERTS) as live, running(publisher):
        await commit(store, publisher, CHAIN, [], events[:2])
        await commit(store, publisher, "evil/chain#+", [], events[2:])
        await live.wait(lambda s: len(s.event_ids()) >= 3, "three events")
        # The outbox is published in commit order, and the broker keeps it: a wrong duplicate
        # of the first three would arrive before an event committed after them.
        await commit(store, publisher, CHAIN, [], [later_event])
        await live.wait(lambda s: "e4" in s.event_ids(), "the event committed later")
    assert [(m.topic, m.qos, m.payload) for m in live.messages] == [
        (f"{PREFIX}/hyperliquid/alerts/entitycanhalt", 1, events[0].to_json()),
        (f"{PREFIX}/hyperliquid/alerts/chainhalted", 1, events[1].to_json()),
        (f"{PREFIX}/evil_chain__/alerts/entitycanhalt", 1, events[2].to_json()),
        (f"{PREFIX}/hyperliquid/alerts/entitycanhalt", 1, later_event.to_json()),
    ]
    assert await store.call(alert_store.outbox_stats, time.time()) == (0, None)
    # Subscribed to the alerts first, then to the retained status: once the status arrives,
    # any retained alert would have arrived before it.
    async with subscribed(broker.port, ALERTS, STATUS) as later:
        await later.wait(lambda s: bool(s.on(STATUS)), "the retained status")
    assert [m.topic for m in later.messages] == [STATUS]


@pytest.mark.parametrize("shutdown", ["close", "cancel"])
async def test_status_is_retained_online_then_offline_on_clean_shutdown(
    broker: Broker, store: AsyncStore, shutdown: str
) -> None:
    """A subscriber arriving after the connect gets the retained status {"state":"online",
    "version":...}; after close() or cancelling run(), a live subscriber receives
    {"state":"offline"}, which is also what stays retained, and connected is false."""
    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    task = asyncio.create_task(publisher.run())
    try:
        await connected(publisher)
        async with subscribed(broker.port, STATUS) as live:
            await live.wait(lambda s: bool(s.messages), "the retained status")
            first = live.messages[0]
            assert first.retain
            assert first.qos == 1
            assert first.document == {"state": "online", "version": VERSION}
            if shutdown == "close":
                await publisher.close()
                await asyncio.wait_for(task, WAIT_SECONDS)
            else:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert task.done()
            assert not publisher.connected
            await live.wait(lambda s: len(s.messages) == 2, "the offline status")
            assert live.messages[1].payload == OFFLINE_PAYLOAD
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with subscribed(broker.port, STATUS) as later:
        await later.wait(lambda s: bool(s.messages), "the retained status")
    assert (later.messages[0].payload, later.messages[0].retain) == (OFFLINE_PAYLOAD, True)


_PUBLISHER_PROCESS = textwrap.dedent(
    """
    import asyncio
    import sys
    from pathlib import Path

    from quorumwatch.config import MqttSettings
    from quorumwatch.alerting.sinks.mqtt import MqttPublisher
    from quorumwatch.store import AsyncStore

    async def main() -> None:
        store = await AsyncStore.open(Path(sys.argv[1]))
        settings = MqttSettings(
            enabled=True, host="127.0.0.1", port=int(sys.argv[2]), client_id=sys.argv[3],
            topic_prefix=sys.argv[4],
        )
        await MqttPublisher(settings, store, version="killed").run()

    asyncio.run(main())
    """
)


async def test_will_offline_is_delivered_when_the_publisher_process_is_killed(
    broker: Broker, tmp_path: Path
) -> None:
    """After SIGKILL of a process running the publisher (no DISCONNECT is sent), the broker
    delivers the Will: a live subscriber receives {"state":"offline"} after the online
    status, and it stays retained."""
    args = [str(tmp_path / "child.db"), str(broker.port), f"qw-kill-{uuid.uuid4().hex[:8]}"]
    async with subscribed(broker.port, STATUS) as live:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PUBLISHER_PROCESS, *args, PREFIX
        )
        try:
            await live.wait(
                lambda s: any(m.document.get("state") == "online" for m in s.messages),
                "the child's online status",
            )
            child.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(child.wait(), WAIT_SECONDS) == -signal.SIGKILL
            await live.wait(lambda s: s.messages[-1].payload == OFFLINE_PAYLOAD, "the Will")
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [m.document for m in live.messages] == [
        {"state": "online", "version": "killed"},
        {"state": "offline"},
    ]
    async with subscribed(broker.port, STATUS) as later:
        await later.wait(lambda s: bool(s.messages), "the retained status")
    assert (later.messages[0].payload, later.messages[0].retain) == (OFFLINE_PAYLOAD, True)


async def test_firing_set_is_retained_after_the_events_and_only_republished_on_change(
    broker: Broker, store: AsyncStore
) -> None:
    """<prefix>/<chain>/firing carries the retained JSON list of firing alerts; it is
    published after the chain's events, not again when only pending state changed, and
    becomes [] (retained) after the resolving event; a new connection publishes it again."""
    firing_topic = f"{PREFIX}/{CHAIN}/firing"
    other_topic = f"{PREFIX}/other/firing"
    firing = alert_state()
    await store.call(alert_store.commit_alerts, CHAIN, [firing], [alert_event("f1")])
    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    async with subscribed(broker.port, ALERTS, f"{PREFIX}/+/firing") as live:
        async with running(publisher):
            await live.wait(lambda s: bool(s.on(firing_topic)), "the firing set")
            assert [m.topic for m in live.messages] == [
                f"{PREFIX}/{CHAIN}/alerts/entitycanhalt",
                firing_topic,
            ]
            assert live.on(firing_topic)[0].document == [
                {
                    "fingerprint": firing.fingerprint,
                    "alert": "EntityCanHalt",
                    "severity": "critical",
                    "chain": CHAIN,
                    "labels": {"chain": CHAIN, "entity": "e1"},
                    "summary": "e1 can halt hyperliquid",
                    "description": "holds more than a third of the stake",
                    "value": 0.4,
                    "threshold": 1 / 3,
                    "starts_at": rfc3339(T0 + 60),
                }
            ]

            # Only pending state changes here; the other chain's set arriving shows that the
            # publisher has been through its loop after this commit.
            pending = alert_state(entity="e2", firing=False)
            await commit(store, publisher, CHAIN, [firing, pending], [])
            other = [alert_state(chain="other")]
            await commit(store, publisher, "other", other, [alert_event("o1", chain="other")])
            await live.wait(lambda s: bool(s.on(other_topic)), "the other chain's set")
            assert len(live.on(firing_topic)) == 1

            resolved = alert_event("r1", status=AlertStatus.RESOLVED)
            await commit(store, publisher, CHAIN, [], [resolved])
            await live.wait(lambda s: len(s.on(firing_topic)) == 2, "the emptied firing set")
            topics = [m.topic for m in live.messages]
            assert topics.index(firing_topic, 2) > live.event_ids().index("r1")
            assert live.on(firing_topic)[1].payload == "[]"

        async with subscribed(broker.port, firing_topic) as later:
            await later.wait(lambda s: bool(s.messages), "the retained firing set")
        assert (later.messages[0].payload, later.messages[0].retain) == ("[]", True)

        again = MqttPublisher(settings(broker.port), store, version=VERSION)
        async with running(again):
            await live.wait(lambda s: len(s.on(firing_topic)) == 3, "the set on reconnect")
        assert live.on(firing_topic)[2].payload == "[]"
        assert len(live.on(other_topic)) == 2


async def test_outbox_row_is_deleted_only_after_the_broker_acknowledges(
    broker: Broker, store: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the broker is frozen (SIGSTOP) after the publisher sent an event, the event's
    outbox row stays and no subscriber has it; once the broker continues and acknowledges,
    the row is deleted and the event is delivered."""
    topic = f"{PREFIX}/{CHAIN}/alerts/entitycanhalt"
    timeline: list[str] = []  # the event's publish, its PUBACK, the row's delete, in order
    real_publish = aiomqtt.Client.publish
    real_delete = alert_store.outbox_delete

    async def recording_publish(self: aiomqtt.Client, topic: str, *args: Any, **kw: Any) -> None:
        timeline.append(f"sent {topic}")
        await real_publish(self, topic, *args, **kw)  # at QoS 1: returns on the PUBACK
        timeline.append(f"acknowledged {topic}")

    def recording_delete(database: Store, entry_id: int) -> None:
        real_delete(database, entry_id)
        timeline.append("deleted")

    monkeypatch.setattr(aiomqtt.Client, "publish", recording_publish)
    monkeypatch.setattr(alert_store, "outbox_delete", recording_delete)
    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    async with subscribed(broker.port, ALERTS) as live, running(publisher):
        await connected(publisher)
        broker.pause()
        try:
            await commit(store, publisher, CHAIN, [alert_state()], [alert_event("acked-late")])
            await eventually(lambda: f"sent {topic}" in timeline, "the publish to be sent")
            assert [e.event_id for e in await store.call(alert_store.outbox_peek, 10)] == [
                "acked-late"
            ]
            assert publisher.connected
            assert not live.event_ids()
            timeline.append("broker continued")
        finally:
            broker.resume()

        async def outbox_empty() -> bool:
            return await store.call(alert_store.outbox_stats, time.time()) == (0, None)

        await eventually(outbox_empty, "the row to be deleted after the PUBACK")
        await live.wait(lambda s: s.event_ids() == ["acked-late"], "the event")
    steps = ("broker continued", "deleted")
    assert [step for step in timeline if topic in step or step in steps] == [
        f"sent {topic}",
        "broker continued",
        f"acknowledged {topic}",
        "deleted",
    ]


@pytest.mark.slow
async def test_broker_outage_loses_nothing_and_keeps_order_per_chain(
    broker_factory: BrokerFactory, store: AsyncStore
) -> None:
    """With the broker stopped, committed events stay in the outbox and connected is false;
    after the broker restarts on the same port, the outbox empties and a persistent
    subscriber receives every event_id, in commit order per chain after dedupe on event_id."""
    broker = broker_factory("persistence true", "persistence_location {dir}/")
    subscriber = {"identifier": f"qw-sub-{uuid.uuid4().hex[:8]}", "clean_session": False}
    async with subscribed(broker.port, ALERTS, **subscriber):
        pass  # the session and its QoS 1 subscription outlive the connection

    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    async with running(publisher):
        await connected(publisher)
        with capture_logs() as logs:
            await broker.astop()
            await eventually(lambda: not publisher.connected, "the publisher to notice")

            expected: dict[str, list[str]] = {"chain-a": [], "chain-b": []}
            for n in range(12):
                chain = ("chain-a", "chain-b")[n % 2]
                events = [
                    alert_event(f"{chain}-{n}-{k}", chain=chain, entity=f"e{k}") for k in (0, 1)
                ]
                await commit(store, publisher, chain, [], events)
                expected[chain] += [e.event_id for e in events]
            count, age = await store.call(alert_store.outbox_stats, time.time())
            assert count == 24
            assert age is not None
            assert not publisher.connected
            # The rest of a short outage: the lost connection, then two refused reconnects.
            await eventually(
                lambda: sum(e["event"] == "mqtt publishing failed" for e in logs) >= 3,
                "two failed reconnects",
            )

        await broker.astart()

        async def outbox_empty() -> bool:
            return await store.call(alert_store.outbox_stats, time.time()) == (0, None)

        await eventually(outbox_empty, "the outbox to drain after the outage", 15)
        assert publisher.connected

    every = {event_id for ids in expected.values() for event_id in ids}
    async with subscribed(broker.port, **subscriber) as live:
        await live.wait(lambda s: set(s.event_ids()) >= every, "every event")
    first_seen = list(dict.fromkeys(live.event_ids()))  # dedupe on event_id
    assert sorted(first_seen) == sorted(every)
    for chain, ids in expected.items():
        assert [i for i in first_seen if i.startswith(chain)] == ids


async def test_close_while_the_broker_is_unreachable_ends_run_promptly(
    store: AsyncStore,
) -> None:
    """With nothing listening, run() keeps retrying (connected stays false, events stay in
    the outbox); close() ends it within a second, and a later run() returns at once."""
    publisher = MqttPublisher(settings(free_port()), store, version=VERSION)
    await store.call(alert_store.commit_alerts, CHAIN, [], [alert_event("kept")])
    with capture_logs() as logs:
        task = asyncio.create_task(publisher.run())
        await eventually(lambda: len(logs) >= 2, "two failed attempts")
        assert not publisher.connected
        started = time.monotonic()
        await publisher.close()
        assert task.done()
        assert time.monotonic() - started < 1.0
        await asyncio.wait_for(publisher.run(), 1.0)
    assert {entry["event"] for entry in logs} == {"mqtt publishing failed"}
    assert [e.event_id for e in await store.call(alert_store.outbox_peek, 10)] == ["kept"]


# --- shutdown: a bounded flush ----------------------------------------------------------------

FLUSHING = "mqtt flushing the outbox before shutdown"
FLUSHED = "mqtt outbox flushed at shutdown"


async def commit_while_frozen(
    broker: Broker, store: AsyncStore, publisher: MqttPublisher, sent: list[str], count: int
) -> list[str]:
    """Freeze the broker (SIGSTOP), commit `count` events and wait until the publisher has
    sent the first one, so that all of them are pending and none can be acknowledged."""
    await connected(publisher)
    broker.pause()
    event_ids = [f"pending-{n}" for n in range(count)]
    events = [alert_event(event_id, entity=event_id) for event_id in event_ids]
    await commit(store, publisher, CHAIN, [], events)
    await eventually(lambda: any("/alerts/" in topic for topic in sent), "the first publish")
    return event_ids


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The topics of every publish the code under test sends, in order."""
    topics: list[str] = []
    real_publish = aiomqtt.Client.publish

    async def recording_publish(self: aiomqtt.Client, topic: str, *args: Any, **kw: Any) -> None:
        topics.append(topic)
        await real_publish(self, topic, *args, **kw)

    monkeypatch.setattr(aiomqtt.Client, "publish", recording_publish)
    return topics


async def test_shutdown_flushes_every_pending_event_then_says_offline(
    broker: Broker, store: AsyncStore, sent: list[str]
) -> None:
    """Events pending at shutdown (broker frozen, then continued once the flush began) are
    all acknowledged and delivered before run() ends, well within the budget; the outcome
    and the log say 5 flushed, 0 remaining; the retained firing set and the offline status
    follow the events."""
    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    task = asyncio.create_task(publisher.run())
    try:
        async with subscribed(broker.port, ALERTS, STATUS) as live:
            event_ids = await commit_while_frozen(broker, store, publisher, sent, 5)
            with capture_logs() as logs:
                started = time.monotonic()
                shutdown = asyncio.create_task(publisher.shutdown(3.0))
                await eventually(lambda: any(e["event"] == FLUSHING for e in logs), "the flush")
                broker.resume()
                outcome = await shutdown
                elapsed = time.monotonic() - started
                assert task.done()
            await live.wait(lambda s: s.messages[-1].payload == OFFLINE_PAYLOAD, "offline")
    finally:
        broker.resume()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert elapsed < 3.0
    assert (outcome.flushed, outcome.remaining) == (5, 0)
    assert await store.call(alert_store.outbox_stats, time.time()) == (0, None)
    assert live.event_ids() == event_ids
    assert [(e["pending"], e["budget_seconds"]) for e in logs if e["event"] == FLUSHING] == [
        (5, 3.0)
    ]
    assert [(e["flushed"], e["remaining"]) for e in logs if e["event"] == FLUSHED] == [(5, 0)]
    alert_topics = [t for t in sent if "/alerts/" in t]
    assert sent.index(f"{PREFIX}/{CHAIN}/firing") > sent.index(alert_topics[-1])


@pytest.mark.slow
async def test_shutdown_gives_up_on_a_silent_broker_within_the_budget(
    broker: Broker, store: AsyncStore, sent: list[str]
) -> None:
    """With the broker frozen for good, shutdown(0.5) returns within the budget plus the
    1 s close grace (and some slack), run() has ended, and every event is still pending."""
    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    task = asyncio.create_task(publisher.run())
    try:
        event_ids = await commit_while_frozen(broker, store, publisher, sent, 3)
        started = time.monotonic()
        outcome = await publisher.shutdown(0.5)
        elapsed = time.monotonic() - started
        assert task.done()
    finally:
        broker.resume()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert 0.5 <= elapsed < 0.5 + 1.0 + 0.5
    assert (outcome.flushed, outcome.remaining) == (0, 3)
    assert [e.event_id for e in await store.call(alert_store.outbox_peek, 10)] == event_ids


async def test_shutdown_with_the_broker_unreachable_returns_at_once_keeping_events(
    store: AsyncStore,
) -> None:
    """With nothing listening, shutdown(3.0) does not wait for the budget nor try to
    reconnect: it returns within half a second, run() has ended, and the events stay
    pending; the log says 0 flushed, 2 remaining."""
    publisher = MqttPublisher(settings(free_port()), store, version=VERSION)
    await store.call(
        alert_store.commit_alerts, CHAIN, [], [alert_event("k1"), alert_event("k2", entity="e2")]
    )
    with capture_logs() as logs:
        task = asyncio.create_task(publisher.run())
        await eventually(lambda: bool(logs), "a failed attempt")
        started = time.monotonic()
        outcome = await publisher.shutdown(3.0)
        elapsed = time.monotonic() - started
        assert task.done()
    assert elapsed < 0.5
    assert (outcome.flushed, outcome.remaining) == (0, 2)
    assert [e.event_id for e in await store.call(alert_store.outbox_peek, 10)] == ["k1", "k2"]
    assert [(e["flushed"], e["remaining"]) for e in logs if e["event"] == FLUSHED] == [(0, 2)]
    assert not any(e["event"] == FLUSHING for e in logs)


async def test_shutdown_stops_flushing_when_the_connection_is_lost(
    broker: Broker, store: AsyncStore, sent: list[str]
) -> None:
    """When the broker dies during the flush, shutdown(3.0) returns long before the budget
    is spent, and the unacknowledged events stay pending."""
    publisher = MqttPublisher(settings(broker.port), store, version=VERSION)
    task = asyncio.create_task(publisher.run())
    try:
        await commit_while_frozen(broker, store, publisher, sent, 2)
        with capture_logs() as logs:
            started = time.monotonic()
            shutdown = asyncio.create_task(publisher.shutdown(3.0))
            await eventually(lambda: any(e["event"] == FLUSHING for e in logs), "the flush")
            assert broker.process is not None
            broker.process.kill()  # SIGKILL works on a stopped process: the socket closes
            await asyncio.to_thread(broker.process.wait)
            outcome = await shutdown
            elapsed = time.monotonic() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert elapsed < 1.5
    assert outcome.remaining == 2
    assert (await store.call(alert_store.outbox_stats, time.time()))[0] == 2


def test_shutdown_and_outbox_settings_defaults_and_bounds() -> None:
    """mqtt.shutdown_flush_seconds defaults to 2.0 and accepts 0 but not less;
    mqtt.max_outbox_events defaults to the store's 100000 and refuses less than 100."""
    defaults = MqttSettings()
    assert defaults.shutdown_flush_seconds == 2.0
    assert defaults.max_outbox_events == DEFAULT_MAX_OUTBOX_EVENTS == 100_000
    assert MqttSettings(shutdown_flush_seconds=0).shutdown_flush_seconds == 0
    assert MqttSettings(max_outbox_events=100).max_outbox_events == 100
    with pytest.raises(ValidationError, match="shutdown_flush_seconds"):
        MqttSettings(shutdown_flush_seconds=-0.1)
    with pytest.raises(ValidationError, match="max_outbox_events"):
        MqttSettings(max_outbox_events=99)


# --- credentials and TLS ---------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1: (ca, cert, key)."""
    openssl = require_binary("openssl")
    ca_key, ca, key, csr, cert = (
        directory / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    commands = [
        [
            *(openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2"),
            *("-subj", "/CN=quorumwatch test CA"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        ],
        [openssl, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            *(openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key),
            *("-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extensions),
        ],
    ]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    return ca, cert, key


@dataclass(frozen=True)
class Secure:
    broker: Broker
    ca: Path


@pytest.fixture
def secure(broker_factory: BrokerFactory, tmp_path: Path) -> Secure:
    """A TLS-only broker (certificate for 127.0.0.1) that requires user quorumwatch's
    PASSWORD, from a password file made by mosquitto_passwd."""
    passwd = require_binary("mosquitto_passwd")
    password_file = tmp_path / "passwords"
    subprocess.run([passwd, "-b", "-c", str(password_file), "quorumwatch", PASSWORD], check=True)
    ca, cert, key = make_certificates(tmp_path)
    broker = broker_factory(
        f"cafile {ca}",
        f"certfile {cert}",
        f"keyfile {key}",
        "allow_anonymous false",
        f"password_file {password_file}",
    )
    return Secure(broker, ca)


async def test_tls_and_password_reach_the_broker_and_the_password_is_never_logged(
    secure: Secure, store: AsyncStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Against a TLS-only broker requiring a password: the publisher with the CA file and
    the right password delivers an event; with a wrong password, or without the CA, it stays
    disconnected and logs the failure; no log record (structlog or stdlib, DEBUG included)
    contains either password."""
    broker, ca = secure.broker, secure.ca
    tls = {"tls": True, "ca_file": ca, "username": "quorumwatch"}
    wrong = "wrong-" + PASSWORD[::-1]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mqtt")  # aiomqtt's (and paho's) logger
    with capture_logs() as logs:
        good = MqttPublisher(
            settings(broker.port, password=SecretStr(PASSWORD), **tls), store, version=VERSION
        )
        subscriber = {
            "username": "quorumwatch",
            "password": PASSWORD,
            "tls_params": aiomqtt.TLSParameters(ca_certs=str(ca)),
        }
        async with subscribed(broker.port, ALERTS, **subscriber) as live, running(good):
            await commit(store, good, CHAIN, [], [alert_event("over-tls")])
            await live.wait(lambda s: s.event_ids() == ["over-tls"], "the event over TLS")

        refused = MqttPublisher(
            settings(broker.port, password=SecretStr(wrong), **tls), store, version=VERSION
        )
        untrusted = MqttPublisher(
            settings(broker.port, password=SecretStr(PASSWORD), tls=True, username="quorumwatch"),
            store,
            version=VERSION,
        )
        async with running(refused), running(untrusted):
            await eventually(
                lambda: sum(e["event"] == "mqtt publishing failed" for e in logs) >= 4,
                "failed connection attempts",
            )
            assert not refused.connected
            assert not untrusted.connected

    errors = [e["error"] for e in logs if e["event"] == "mqtt publishing failed"]
    assert any("MqttConnectError" in error and "Not authorized" in error for error in errors)
    assert any("CERTIFICATE_VERIFY_FAILED" in error for error in errors)
    texts = [repr(entry) for entry in logs] + [caplog.text]
    for text in texts:
        assert PASSWORD not in text
        assert wrong not in text
    assert "Sending CONNECT" in caplog.text  # paho's DEBUG records were captured


async def test_client_receives_the_settings_as_aiomqtt_arguments(
    store: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiomqtt.Client is built with host, port, username, the SecretStr's value, client_id
    as identifier, keepalive, a retained QoS 1 offline Will on <prefix>/status and TLS
    parameters (the system trust store without ca_file; none without tls)."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class Refused:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            calls.append((args, kwargs))
            self._client = types.SimpleNamespace(connect_timeout=5.0)  # paho's, as aiomqtt's

        async def __aenter__(self) -> Refused:
            raise aiomqtt.MqttError("refused by the test")

        async def __aexit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(aiomqtt, "Client", Refused)
    for overrides in (
        {"tls": True, "username": "u", "password": SecretStr(PASSWORD), "keepalive_seconds": 15},
        {"tls": False},
    ):
        publisher = MqttPublisher(
            settings(1883, host="mqtt.example", client_id="qw-1", **overrides),
            store,
            version=VERSION,
        )
        with capture_logs() as logs:
            async with running(publisher):
                await eventually(lambda: bool(logs), "a failed attempt")
        assert PASSWORD not in repr(logs)
    (args, kwargs), (plain_args, plain) = calls[0], calls[-1]
    assert args == ("mqtt.example", 1883)
    assert kwargs == {
        "username": "u",
        "password": PASSWORD,
        "identifier": "qw-1",
        "keepalive": 15,
        "will": aiomqtt.Will(f"{PREFIX}/status", OFFLINE_PAYLOAD, qos=1, retain=True),
        "tls_params": aiomqtt.TLSParameters(ca_certs=None),
    }
    assert plain_args == ("mqtt.example", 1883)
    assert plain["tls_params"] is None
    assert plain["username"] is None
    assert plain["password"] is None


async def test_connect_timeout_defaults_to_3s_and_reaches_the_paho_client() -> None:
    """mqtt.connect_timeout_seconds defaults to 3, refuses 0 and over 30, and is the connect
    timeout of the paho client each connection uses."""
    assert MqttSettings().connect_timeout_seconds == 3.0
    for bad in (0, 31):
        with pytest.raises(ValidationError, match="connect_timeout_seconds"):
            MqttSettings(connect_timeout_seconds=bad)
    publisher = MqttPublisher(
        MqttSettings(enabled=True, connect_timeout_seconds=1.5), cast(AsyncStore, None), version="t"
    )
    assert publisher._client()._client.connect_timeout == 1.5


async def test_an_unexpected_error_is_logged_as_an_error_and_publishing_goes_on(
    store: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection attempt failing with an error no broker causes (a bug) is logged at error
    level, and the publisher tries again instead of stopping for good."""
    attempts = 0

    class Broken:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._client = types.SimpleNamespace(connect_timeout=5.0)

        async def __aenter__(self) -> Broken:
            nonlocal attempts
            attempts += 1
            raise RuntimeError("a bug")

        async def __aexit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(aiomqtt, "Client", Broken)
    publisher = MqttPublisher(settings(1883), store, version=VERSION)
    with capture_logs() as logs:
        async with running(publisher):
            await eventually(lambda: attempts >= 2, "a second attempt")
    first = next(entry for entry in logs if entry["event"] == "mqtt publishing failed")
    assert (first["log_level"], first["error"]) == ("error", "RuntimeError: a bug")
