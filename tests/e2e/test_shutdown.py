"""SIGTERM with alert events still undelivered, end to end with real components over loopback.

The daemon runs as a subprocess against a simulated Hyperliquid chain and a real Mosquitto.
Once it is connected and has delivered everything, one validator is made to hold more than
two thirds of the stake, so EntityCanControl (and EntityCanHalt) fire at the next poll while
the broker cannot acknowledge them: frozen (SIGSTOP) in the first case, stopped in the second.
SIGTERM follows. Frozen and continued right after the SIGTERM, the broker gets every event
during the shutdown flush; stopped, the events stay in the outbox for the next start. Either
way the daemon exits 0 within 5 s, and its store is sound.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quorumwatch.simulator import parse_scenario, start_simulator
from quorumwatch.store import AsyncStore, OutboxEntry, StoreError
from quorumwatch.store import alerts as alert_store
from tests.services import (
    BrokerFactory,
    daemon_process,
    eventually,
    log_records,
    log_tail,
    metric_totals,
    subscribed,
)
from tests.tools import free_port, unanswered_port

CHAIN = "hyperliquid"
PREFIX = "qwshutdown"
EXIT_SECONDS = 5.0
CONNECT_TIMEOUT = 1.0
FLUSHING = "mqtt flushing the outbox before shutdown"
FLUSHED = "mqtt outbox flushed at shutdown"
VALIDATORS = [f"0x{i + 1:040x}" for i in range(4)]
POLL_EVERY = 0.1  # how often a wait asks /metrics or the store again

pytestmark = pytest.mark.slow  # each starts the daemon as a subprocess beside a broker


def takeover() -> dict[str, Any]:
    """Four equal validators for as many polls as any test makes, then the first holds 10/13
    of the stake; `goto?step=1` makes the change."""
    return {
        "name": "takeover",
        "steps": [
            {
                "repeat": 1_000_000,
                "validators": [
                    {"validator": v, "name": f"validator {i}", "stake_hype": "1000"}
                    for i, v in enumerate(VALIDATORS)
                ],
            },
            {"changes": {VALIDATORS[0]: {"stake_hype": "10000"}}},
        ],
    }


def config(
    tmp_path: Path, broker_port: int, api_url: str, *, connect_timeout: float = 3.0
) -> tuple[Path, str]:
    """The daemon's config file (info logs, for the flush line), and its /metrics URL."""
    port = free_port()
    path = tmp_path / "quorumwatch.toml"
    path.write_text(
        f'log_level = "info"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\npath = "{tmp_path / "quorumwatch.db"}"\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker_port}\n'
        f'topic_prefix = "{PREFIX}"\nreconnect_max_seconds = 1\n'
        f"connect_timeout_seconds = {connect_timeout}\n"
        f'[[chains]]\nname = "{CHAIN}"\nkind = "hyperliquid"\npoll_interval_seconds = 0.2\n'
        f'[[chains.endpoints]]\nname = "sim"\nurl = "{api_url}"\ntimeout_seconds = 2\n'
    )
    return path, f"http://127.0.0.1:{port}/metrics"


async def _ready(session: aiohttp.ClientSession, url: str) -> bool:
    """Connected to the broker, the chain polled, and nothing waiting in the outbox."""
    sample = await metric_totals(session, url)
    return (
        sample.get("quorumwatch_mqtt_connected") == 1
        and sample.get("quorumwatch_chain_up") == 1
        and sample.get("quorumwatch_outbox_events") == 0
    )


async def _disconnected(session: aiohttp.ClientSession, url: str) -> bool:
    return (await metric_totals(session, url)).get("quorumwatch_mqtt_connected") == 0


async def _pending_takeover(store: Path) -> list[OutboxEntry]:
    """The outbox once the takeover's EntityCanControl is committed in it, else []."""
    try:
        async with await AsyncStore.open(store, read_only=True) as reader:
            pending = await reader.call(alert_store.outbox_peek, 1000)
    except StoreError:
        return []
    return pending if any(e.alert == "EntityCanControl" for e in pending) else []


async def _generated(store: Path) -> int:
    async with await AsyncStore.open(store, read_only=True) as reader:
        return sum((await reader.call(alert_store.events_generated)).values())


async def _outbox(store: Path) -> list[OutboxEntry]:
    async with await AsyncStore.open(store, read_only=True) as reader:
        return await reader.call(alert_store.outbox_peek, 1000)


async def _take_over(session: aiohttp.ClientSession, api_url: str, store: Path) -> list[str]:
    """Make the takeover happen; the event_ids pending once it has been committed."""
    async with session.post(f"{api_url}/_sim/goto?step=1") as response:
        assert response.status == 200
    pending: list[OutboxEntry] = []

    async def committed() -> bool:
        pending[:] = await _pending_takeover(store)
        return bool(pending)

    await eventually(committed, "the takeover's events in the outbox", every=POLL_EVERY)
    return [entry.event_id for entry in pending]


async def _terminate(
    process: asyncio.subprocess.Process, then: Callable[[], Awaitable[None]] | None = None
) -> tuple[int, float]:
    """SIGTERM, then `then()`; the exit code and the seconds from SIGTERM to exit."""
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    if then is not None:
        await then()
    code = await asyncio.wait_for(process.wait(), 3 * EXIT_SECONDS)
    return code, time.monotonic() - sent


def _assert_sound(store: Path) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_sigterm_flushes_events_the_broker_had_not_acknowledged(
    tmp_path: Path, broker_factory: BrokerFactory
) -> None:
    """Events committed while the broker is frozen are all delivered during the shutdown
    flush (the broker continues once the daemon logged that the flush began): exit 0 within
    5 s, the subscriber has every generated event, the outbox is empty, the log says all
    were flushed and none remain, and the store passes integrity_check."""
    broker = broker_factory()
    store = tmp_path / "quorumwatch.db"
    log = tmp_path / "daemon.log"
    async with (
        await start_simulator(parse_scenario(takeover())) as simulator,
        aiohttp.ClientSession() as session,
        subscribed(broker.port, f"{PREFIX}/+/alerts/#") as live,
    ):
        config_file, metrics_url = config(tmp_path, broker.port, simulator.base_url)

        async def resume_once_flushing() -> None:
            async def flushing() -> bool:
                return bool(log_records(log, FLUSHING))

            await eventually(flushing, "the daemon to begin its flush", EXIT_SECONDS)
            broker.resume()

        async with daemon_process(config_file, log) as process:
            await eventually(
                lambda: _ready(session, metrics_url), "the daemon to be ready", 30, every=POLL_EVERY
            )
            broker.pause()
            try:
                pending = await _take_over(session, simulator.base_url, store)
                code, elapsed = await _terminate(process, then=resume_once_flushing)
            finally:
                broker.resume()
        generated = await _generated(store)
        await live.wait(lambda s: len(set(s.event_ids())) >= generated, "every event")
    output = log_tail(log, 3000)
    assert code == 0, output
    assert elapsed < EXIT_SECONDS, f"exit took {elapsed:.2f} s"
    assert set(pending) <= set(live.event_ids())
    assert len(set(live.event_ids())) == generated
    assert await _outbox(store) == []
    assert [line["pending"] for line in log_records(log, FLUSHING)] == [len(pending)], output
    assert [(line["flushed"], line["remaining"]) for line in log_records(log, FLUSHED)] == [
        (len(pending), 0)
    ], output
    _assert_sound(store)


async def test_sigterm_with_the_broker_down_keeps_the_events_for_the_next_start(
    tmp_path: Path, broker_factory: BrokerFactory
) -> None:
    """With the broker stopped, SIGTERM still exits 0 within 5 s; the events generated
    meanwhile stay in the outbox, in commit order, as the log says, and the store passes
    integrity_check. (Before that, /metrics exports the outbox drop counter at 0.)"""
    broker = broker_factory()
    store = tmp_path / "quorumwatch.db"
    log = tmp_path / "daemon.log"
    async with (
        await start_simulator(parse_scenario(takeover())) as simulator,
        aiohttp.ClientSession() as session,
    ):
        config_file, metrics_url = config(tmp_path, broker.port, simulator.base_url)
        async with daemon_process(config_file, log) as process:
            await eventually(
                lambda: _ready(session, metrics_url), "the daemon to be ready", 30, every=POLL_EVERY
            )
            sample = await metric_totals(session, metrics_url)
            assert sample["quorumwatch_outbox_dropped_events_total"] == 0
            await broker.astop()
            await eventually(
                lambda: _disconnected(session, metrics_url),
                "the daemon to notice",
                every=POLL_EVERY,
            )
            pending = await _take_over(session, simulator.base_url, store)
            code, elapsed = await _terminate(process)
    output = log_tail(log, 3000)
    assert code == 0, output
    assert elapsed < EXIT_SECONDS, f"exit took {elapsed:.2f} s"
    kept = [entry.event_id for entry in await _outbox(store)]
    assert kept[: len(pending)] == pending
    assert [(line["flushed"], line["remaining"]) for line in log_records(log, FLUSHED)] == [
        (0, len(kept))
    ], output
    assert log_records(log, FLUSHING) == []  # not connected: no attempt, no wait
    _assert_sound(store)


async def test_sigterm_during_a_hanging_broker_connect_waits_only_the_connect_timeout(
    tmp_path: Path,
) -> None:
    """With the broker's address dropping every connect (a full accept queue), SIGTERM during
    a connect attempt exits 0 once mqtt.connect_timeout_seconds (1 s here) has run out at
    the latest, not after paho's own 5 s."""
    log = tmp_path / "daemon.log"
    async with (
        await start_simulator(parse_scenario(takeover())) as simulator,
        aiohttp.ClientSession() as session,
    ):
        with unanswered_port() as broker_port:
            config_file, metrics_url = config(
                tmp_path, broker_port, simulator.base_url, connect_timeout=CONNECT_TIMEOUT
            )
            async with daemon_process(config_file, log) as process:

                async def polled_unconnected() -> bool:
                    sample = await metric_totals(session, metrics_url)
                    return (
                        sample.get("quorumwatch_chain_up") == 1
                        and sample.get("quorumwatch_mqtt_connected") == 0
                    )

                await eventually(
                    polled_unconnected,
                    "the chain polled while the connect hangs",
                    30,
                    every=POLL_EVERY,
                )
                code, elapsed = await _terminate(process)
    assert code == 0, log_tail(log, 3000)
    assert elapsed < CONNECT_TIMEOUT + 1.0, f"exit took {elapsed:.2f} s"
