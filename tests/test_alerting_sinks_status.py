"""The daemon's alert sinks are woken by what the evaluator commits, not by polling: the status
on the board equals what the store says after any mix of commits, deliveries and drops; a
start reads the firing sets and the counts once; and while nothing is committed, nothing reads
the store."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from quorumwatch.alerting.model import (
    AlertCommit,
    AlertEvent,
    AlertState,
    AlertStatus,
    fingerprint,
)
from quorumwatch.alerting.sinks.mqtt import firing_payload
from quorumwatch.alerting.sinks.status import SinkStatusKeeper
from quorumwatch.config import MqttSettings, Settings
from quorumwatch.daemon import _Sinks
from quorumwatch.report import ReportBoard, SinkStatus
from quorumwatch.store import AsyncStore
from quorumwatch.store import alerts as alert_store
from quorumwatch.store.alerts import OutboxEntry
from tests.builders import FakeClock, alert_event, alert_state, chain_settings
from tests.services import BrokerFactory, Subscriber, eventually, subscribed
from tests.tools import free_port

T0 = 1_800_000_000.0
PREFIX = "qwsinks"


class RecordingStore:
    """Forwards every call to a real AsyncStore and counts the calls by store function name."""

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls[fn.__name__] += 1
        return await self.store.call(fn, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The wall clock (the store stamps `created_at` with it), moved only by the test."""
    fake = FakeClock(T0)
    monkeypatch.setattr(time, "time", fake)
    return fake


async def store_status(store: AsyncStore) -> tuple[int, float | None, int, dict[Any, int]]:
    """What the store says: pending events, the oldest's created_at, drops, events by kind."""
    count, _ = await store.call(alert_store.outbox_stats, time.time())
    head = await store.call(alert_store.outbox_peek, 1)
    generated = await store.call(alert_store.events_generated)
    return (
        count,
        head[0].created_at if head else None,
        await store.call(alert_store.outbox_dropped),
        {(alert, str(status)): n for (alert, status), n in generated.items()},
    )


def kept_status(status: SinkStatus | None) -> tuple[int, float | None, int, dict[Any, int]]:
    assert status is not None
    return (
        status.outbox_events,
        status.outbox_oldest_created_at,
        status.outbox_dropped_events,
        dict(status.events_generated),
    )


class Outbox:
    """Commits as the evaluator does and reads and deletes as the MQTT publisher does, telling
    the keeper of each at once, as they do."""

    def __init__(self, store: AsyncStore, keeper: SinkStatusKeeper) -> None:
        self.store = store
        self.keeper = keeper
        self.batch: list[OutboxEntry] = []  # as last read, less what was deleted since

    async def commit(self, events: int, *, chain: str = "alpha", resolved: bool = False) -> int:
        status = AlertStatus.RESOLVED if resolved else AlertStatus.FIRING
        committed = [
            alert_event(uuid.uuid4().hex, chain=chain, status=status) for _ in range(events)
        ]
        dropped = await self.store.call(alert_store.commit_alerts, chain, [], committed)
        self.keeper.committed(AlertCommit(chain, (), tuple(committed), dropped))
        return dropped

    async def peek(self, limit: int) -> None:
        self.batch = await self.store.call(alert_store.outbox_peek, limit)
        self.keeper.peeked(self.batch)

    async def deliver(self) -> None:
        """Delete the next event read, which a drop may have removed already."""
        entry = self.batch.pop(0)
        await self.store.call(alert_store.outbox_delete, entry.id)
        self.keeper.delivered(entry)


async def matches_store(keeper: SinkStatusKeeper, board: ReportBoard, store: AsyncStore) -> None:
    # One turn of the loop lets a read the keeper has just started reach the store first.
    await asyncio.sleep(0)
    expected = await store_status(store)
    assert board.sinks == keeper.status
    assert kept_status(keeper.status) == expected


@pytest.fixture
async def small_store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    async with await AsyncStore.open(tmp_path / "q.db", max_outbox_events=10) as store:
        yield store


async def test_status_equals_the_store_after_commits_deliveries_and_drops(
    small_store: AsyncStore, clock: FakeClock
) -> None:
    """After a restart with a full outbox (of which only the count and the oldest are loaded),
    drops into it, reads and deliveries, drops of events read but not yet deleted, and the
    deletes that then find nothing: count, oldest created_at, drops and events generated
    equal the store's at every step, on the board too."""
    before = Outbox(
        small_store,
        SinkStatusKeeper(small_store, ReportBoard(), mqtt=True, alertmanager=False, clock=clock),
    )
    for n, events in enumerate((3, 3, 3, 4)):  # 13 into 10: 3 dropped
        clock.now = T0 + 10 * n
        await before.commit(events)

    board = ReportBoard()
    keeper = SinkStatusKeeper(small_store, board, mqtt=True, alertmanager=False, clock=clock)
    outbox = Outbox(small_store, keeper)
    await keeper.load()
    await matches_store(keeper, board, small_store)
    assert kept_status(keeper.status)[:3] == (10, T0 + 10, 3)

    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: outbox.commit(2),  # drops 2 loaded events: the oldest is read again
        lambda: outbox.commit(1, resolved=True),
        lambda: outbox.peek(4),
        outbox.deliver,
        outbox.deliver,
        lambda: outbox.commit(3),  # drops the 2 events read and one more
        outbox.deliver,  # dropped already: nothing changes
        lambda: outbox.peek(100),
        outbox.deliver,
    ]
    for n, step in enumerate(steps):
        clock.now = T0 + 40 + 10 * n
        await step()
        await matches_store(keeper, board, small_store)


@pytest.mark.parametrize("seed", range(6))
async def test_status_equals_the_store_in_any_order(
    small_store: AsyncStore, clock: FakeClock, seed: int
) -> None:
    """Random commits (some dropping), reads and deliveries, from a loaded outbox: the kept
    status equals the store's after every step."""
    rng = random.Random(seed)
    prefill = Outbox(
        small_store,
        SinkStatusKeeper(small_store, ReportBoard(), mqtt=True, alertmanager=False, clock=clock),
    )
    for n in range(rng.randrange(0, 6)):
        clock.now = T0 + n
        await prefill.commit(rng.randrange(1, 5))
    board = ReportBoard()
    keeper = SinkStatusKeeper(small_store, board, mqtt=True, alertmanager=False, clock=clock)
    outbox = Outbox(small_store, keeper)
    await keeper.load()
    for step in range(120):
        clock.now = T0 + 100 + step
        action = rng.random()
        if action < 0.35:
            await outbox.commit(rng.randrange(0, 5), chain=rng.choice(["a", "b"]))
        elif action < 0.5:
            await outbox.peek(rng.randrange(1, 6))
        elif outbox.batch:
            await outbox.deliver()
        await matches_store(keeper, board, small_store)


# --- the daemon's wiring, against a real broker ----------------------------------------------

ALPHA = alert_state(chain="alpha")  # firing
BETA = alert_state(chain="beta", firing=False)  # pending only


@dataclass
class Started:
    store: AsyncStore
    recording: RecordingStore
    board: ReportBoard
    sinks: _Sinks
    live: Subscriber


@pytest.fixture
async def started(broker_factory: BrokerFactory, tmp_path: Path) -> AsyncIterator[Started]:
    """The daemon's sinks, started on a store holding alpha's firing alert, beta's pending
    one and 120 of gamma's events (21 dropped: the outbox keeps 100), once they have
    published the outbox and the firing sets; a subscriber has seen all of it."""
    broker = broker_factory()
    settings = Settings(
        chains=[chain_settings()],
        storage={"path": tmp_path / "q.db"},
        mqtt=MqttSettings(
            enabled=True,
            host="127.0.0.1",
            port=broker.port,
            client_id=f"qw-sinks-{uuid.uuid4().hex[:8]}",
            topic_prefix=PREFIX,
            max_outbox_events=100,
        ),
    )
    async with await AsyncStore.open(settings.storage.path, max_outbox_events=100) as store:
        await store.call(
            alert_store.commit_alerts, "alpha", [ALPHA], [alert_event("a1", chain="alpha")]
        )
        await store.call(alert_store.commit_alerts, "beta", [BETA], [])
        gamma = [alert_event(f"g{n}", chain="gamma", entity=f"e{n}") for n in range(120)]
        assert await store.call(alert_store.commit_alerts, "gamma", [], gamma) == 21
        recording = RecordingStore(store)
        board = ReportBoard()
        async with (
            subscribed(broker.port, f"{PREFIX}/+/firing", f"{PREFIX}/+/alerts/#") as live,
            aiohttp.ClientSession() as session,
        ):
            sinks = _Sinks(settings, cast(AsyncStore, recording), session, board, time.time)
            sinks.start()
            try:
                await live.wait(lambda s: len(s.on(f"{PREFIX}/gamma/firing")) == 1, "the sets")
                await eventually(
                    lambda: board.sinks is not None and board.sinks.outbox_events == 0, "empty"
                )
                yield Started(store, recording, board, sinks, live)
            finally:
                await sinks.close(1.0)


def evaluated(
    sinks: _Sinks, chain: str, states: Sequence[AlertState], events: Sequence[AlertEvent] = ()
) -> None:
    """Tell the sinks what an evaluation committed (or, without events, left unchanged)."""
    commit = AlertCommit(chain, tuple(states), tuple(events))
    for listener in sinks.listeners:
        listener(commit)


async def test_start_reads_the_firing_sets_and_counts_once(started: Started) -> None:
    """At start the sinks read the chain list, each chain's firing set, the outbox statistics,
    the drop counter and the event counters once each; they publish the pending events, then
    each chain's firing set; the board shows what the store says, and MQTT connected."""
    calls = started.recording.calls
    assert {k: n for k, n in calls.items() if k not in ("outbox_peek", "outbox_delete")} == {
        "alert_chains": 1,
        "firing": 3,
        "outbox_stats": 1,
        "outbox_dropped": 1,
        "events_generated": 1,
    }
    assert calls["outbox_delete"] == 100
    assert kept_status(started.board.sinks) == await store_status(started.store)
    assert started.board.sinks is not None
    assert started.board.sinks.mqtt_connected is True
    topics = [m.topic for m in started.live.messages]
    assert sum("/alerts/" in topic for topic in topics) == 100
    firing = [f"{PREFIX}/{chain}/firing" for chain in ("alpha", "beta", "gamma")]
    assert [t for t in topics if t.endswith("/firing")] == firing
    assert topics.index(firing[0]) > max(i for i, t in enumerate(topics) if "/alerts/" in t)
    assert started.live.on(firing[0])[0].payload == firing_payload([ALPHA])
    assert started.live.on(firing[1])[0].payload == "[]"


async def test_nothing_reads_the_store_while_nothing_is_committed(
    started: Started, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many evaluations that commit nothing, and the loop clock moved on by an hour so that
    every timer is due: no store call at all. One commit with an event then costs exactly
    one delete and two reads of the outbox, and the board follows it."""
    recording = started.recording
    before = Counter(recording.calls)
    for _ in range(50):
        evaluated(started.sinks, "alpha", [ALPHA])
        evaluated(started.sinks, "beta", [BETA])
        evaluated(started.sinks, "gamma", [])
    loop = asyncio.get_running_loop()
    real_time = loop.time
    monkeypatch.setattr(loop, "time", lambda: real_time() + 3600.0)
    for _ in range(20):
        await asyncio.sleep(0)
    await started.store.call(
        alert_store.outbox_stats, time.time()
    )  # what was queued before this has run
    for _ in range(20):
        await asyncio.sleep(0)
    assert recording.calls == before

    event = alert_event("a2", chain="alpha", entity="e2")
    await started.store.call(alert_store.commit_alerts, "alpha", [ALPHA], [event])
    evaluated(started.sinks, "alpha", [ALPHA], [event])
    await started.live.wait(lambda s: "a2" in s.event_ids(), "the new event")
    await eventually(lambda: recording.calls["outbox_peek"] == before["outbox_peek"] + 2, "reads")
    assert recording.calls - before == Counter({"outbox_peek": 2, "outbox_delete": 1})
    assert kept_status(started.board.sinks) == await store_status(started.store)


async def test_a_committed_firing_set_is_published_as_the_store_would_give_it(
    started: Started,
) -> None:
    """A firing set told by the evaluator, with labels made in another order than by name, is
    published byte for byte as the one read back from the store (labels by name)."""
    labels = {"chain": "alpha", "validator": "0xab", "entity": "e9"}
    jailed = replace(
        ALPHA, alert="ValidatorJailed", fingerprint=fingerprint("ValidatorJailed", labels)
    )
    jailed = replace(jailed, labels=labels)
    event = alert_event("j1", "ValidatorJailed", chain="alpha", entity="e9")
    await started.store.call(alert_store.commit_alerts, "alpha", [ALPHA, jailed], [event])
    evaluated(started.sinks, "alpha", [ALPHA, jailed], [event])
    topic = f"{PREFIX}/alpha/firing"
    await started.live.wait(lambda s: len(s.on(topic)) == 2, "the changed set")
    published = started.live.on(topic)[1].payload
    assert published == firing_payload(await started.store.call(alert_store.firing, "alpha"))
    assert '"labels":{"chain":"alpha","entity":"e9","validator":"0xab"}' in published


async def _push_failures_seen(
    settings: Settings, store: AsyncStore, board: ReportBoard, counts: tuple[int, ...]
) -> None:
    """Run the sinks until the board has shown each of `counts` failed pushes in turn, an
    alert firing anew after each (which prompts the next pushes)."""
    async with aiohttp.ClientSession() as session:
        sinks = _Sinks(settings, store, session, board, time.time)
        sinks.start()
        try:
            for failures in counts:
                await eventually(
                    lambda n=failures: (
                        board.sinks is not None and board.sinks.alertmanager_failures == n
                    ),
                    f"{failures} failed pushes",
                )
                evaluated(sinks, "alpha", [ALPHA])
        finally:
            await sinks.close(0.1)


async def test_alertmanager_failures_reach_the_board_without_mqtt(tmp_path: Path) -> None:
    """Without MQTT, with Alertmanager refusing connections: the failed first push, and the
    one a newly firing alert prompts, each show on the board at once (mqtt_connected None);
    the store is read only by the one load."""
    settings = Settings(
        chains=[chain_settings()],
        storage={"path": tmp_path / "q.db"},
        alertmanager={"url": f"http://127.0.0.1:{free_port()}"},
    )
    async with await AsyncStore.open(settings.storage.path) as store:
        recording = RecordingStore(store)
        board = ReportBoard()
        await _push_failures_seen(settings, cast(AsyncStore, recording), board, (1, 2))
    assert board.sinks is not None
    assert board.sinks.mqtt_connected is None
    assert recording.calls == Counter(
        {"outbox_stats": 1, "outbox_dropped": 1, "events_generated": 1}
    )


async def test_failures_of_every_alertmanager_add_up(tmp_path: Path) -> None:
    """With `alertmanager.urls` naming two Alertmanagers that refuse connections, each pushes
    on its own: their first pushes make 2 failures on the board, and the pushes a newly
    firing alert prompts make 4."""
    refused = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        chains=[chain_settings()],
        storage={"path": tmp_path / "q.db"},
        alertmanager={"urls": [f"{refused}/one", f"{refused}/two"]},
    )
    board = ReportBoard()
    async with await AsyncStore.open(settings.storage.path) as store:
        await _push_failures_seen(settings, store, board, (2, 4))
