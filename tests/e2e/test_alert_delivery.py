"""Alert delivery end to end, with real components over loopback.

The daemon runs as a subprocess against two simulated chains whose validators are jailed and
unjailed in turn, so events keep coming. A real Mosquitto is stopped for 60 seconds, and the
daemon is killed with SIGKILL and started again. Every event the store says was generated must
reach a deduplicating subscriber, in order per chain, with firing and resolved alternating per
alert (nothing re-fired). A real Alertmanager receives the alerts and their resolution.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.simulator import RunningSimulator, parse_scenario, start_simulator
from quorumwatch.store import AsyncStore
from quorumwatch.store import alerts as alert_store
from tests.services import Broker, BrokerFactory
from tests.tools import free_port

CHAINS = ("alpha", "beta")
PREFIX = "qwe2e"
CYCLE_STEPS = 3000  # far more polls than the test makes; then a quiet final step
VALIDATORS = [f"0x{i + 1:040x}" for i in range(10)]
OUTAGE_SECONDS = 60.0


def rolling_jails() -> dict[str, Any]:
    """Every 4 polls the next validator is jailed for 2 polls; the last step jails nobody."""
    steps: list[dict[str, Any]] = [
        {
            "validators": [
                {"validator": v, "name": f"validator {i}", "stake_hype": "1000"}
                for i, v in enumerate(VALIDATORS)
            ]
        }
    ]
    for step in range(1, CYCLE_STEPS):
        validator = VALIDATORS[(step // 4) % len(VALIDATORS)]
        if step % 4 == 0:
            steps.append({"changes": {validator: {"jailed": True}}})
        elif step % 4 == 2:
            steps.append({"changes": {validator: {"jailed": False}}})
        else:
            steps.append({})
    steps.append({"changes": {v: {"jailed": False} for v in VALIDATORS}})
    return {"name": "rolling-jails", "steps": steps}


@dataclass
class DedupingSubscriber:
    """A persistent-session subscriber that reconnects, keeping each event's first arrival."""

    port: int
    identifier: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:8]}")
    arrivals: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set)

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.identifier, clean_session=False
                ) as client:
                    await client.subscribe(f"{PREFIX}/+/alerts/#", qos=1)
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        self._receive(json.loads(message.payload))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def _receive(self, document: dict[str, Any]) -> None:
        if document["event_id"] in self._seen:
            self.duplicates += 1
            return
        self._seen.add(document["event_id"])
        self.arrivals.append(document)


def config(
    tmp_path: Path, broker: Broker, alertmanager: str, simulators: list[RunningSimulator]
) -> tuple[Path, str]:
    """The daemon's config file, and the URL of its /metrics."""
    port = free_port()
    chains = "".join(
        f'[[chains]]\nname = "{chain}"\nkind = "hyperliquid"\npoll_interval_seconds = 0.2\n'
        f'[[chains.endpoints]]\nname = "sim"\nurl = "{sim.base_url}"\ntimeout_seconds = 2\n'
        for chain, sim in zip(CHAINS, simulators, strict=True)
    )
    path = tmp_path / "quorumwatch.toml"
    path.write_text(
        f'log_level = "warning"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\npath = "{tmp_path / "quorumwatch.db"}"\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'topic_prefix = "{PREFIX}"\nreconnect_max_seconds = 1\n'
        f'[alertmanager]\nurl = "{alertmanager}"\nresend_interval_seconds = 5\n' + chains
    )
    return path, f"http://127.0.0.1:{port}/metrics"


@contextlib.asynccontextmanager
async def daemon(config_file: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorumwatch", "run", "--config", str(config_file),
            stdout=output, stderr=output,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Unlabelled samples and per-name sums from the daemon's /metrics, {} while it is down."""
    try:
        async with session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


async def until(check: Callable[[], Any], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def active_alerts(session: aiohttp.ClientSession, alertmanager: str) -> list[dict[str, Any]]:
    url = f"{alertmanager}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    async with session.get(url) as response:
        alerts: list[dict[str, Any]] = await response.json()
    return [a for a in alerts if a["labels"].get("alertname") == "ValidatorJailed"]


async def test_every_event_arrives_once_in_order_through_outage_and_kill(
    tmp_path: Path, broker_factory: BrokerFactory, alertmanager: str
) -> None:
    """Through a 60 s broker outage and a daemon SIGKILL, every generated event reaches the
    subscriber (deduplicated) in order per chain without re-firing; Alertmanager sees the
    alerts fire and resolve."""
    broker = broker_factory(
        "persistence true",
        "persistence_location {dir}/",
        "max_queued_messages 100000",
    )
    scenario = parse_scenario(rolling_jails())
    async with (
        await start_simulator(scenario) as alpha,
        await start_simulator(scenario) as beta,
        aiohttp.ClientSession() as session,
    ):
        config_file, metrics_url = config(tmp_path, broker, alertmanager, [alpha, beta])
        subscriber = DedupingSubscriber(broker.port)
        listening = asyncio.create_task(subscriber.run())
        log = tmp_path / "daemon.log"
        try:
            async with daemon(config_file, log) as first:
                await until(lambda: _arrived(subscriber, 10), "the first events")
                await until(
                    lambda: _has_active(session, alertmanager), "Alertmanager to see an alert"
                )
                await broker.astop()
                outage_started = time.monotonic()
                await until(
                    lambda: _metric_at_least(session, metrics_url, "quorumwatch_outbox_events", 20),
                    "events to queue in the outbox",
                )
                assert (await metrics(session, metrics_url))["quorumwatch_mqtt_connected"] == 0
                await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
                during_outage = len(subscriber.arrivals)
                await broker.astart()
                await until(lambda: _arrived(subscriber, during_outage + 20), "the backlog")
                first.send_signal(signal.SIGKILL)
                await first.wait()
            async with daemon(config_file, log) as second:
                after_kill = len(subscriber.arrivals) + 10
                await until(
                    lambda: _arrived(subscriber, after_kill),
                    "events after the kill",
                )
                for simulator in (alpha, beta):
                    async with session.post(f"{simulator.base_url}/_sim/goto?step={CYCLE_STEPS}"):
                        pass
                await until(lambda: _quiet(session, metrics_url), "the last events to drain", 60)
                await until(
                    lambda: _no_active(session, alertmanager), "Alertmanager to see them resolve"
                )
                second.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(second.wait(), 10) == 0
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    async with await AsyncStore.open(tmp_path / "quorumwatch.db", read_only=True) as store:
        generated = sum((await store.call(alert_store.events_generated)).values())
        pending = len(await store.call(alert_store.outbox_peek, 1000))
    assert pending == 0
    assert len(subscriber.arrivals) == generated, log.read_text()[-3000:]
    for chain in CHAINS:
        events = [e for e in subscriber.arrivals if e["chain"] == chain]
        assert events, chain
        observed = [e["observed_at"] for e in events]
        assert observed == sorted(observed), f"{chain}: out of order"
        statuses: dict[str, list[str]] = {}
        for event in events:
            statuses.setdefault(event["fingerprint"], []).append(event["status"])
        for fingerprint, sequence in statuses.items():
            expected = ["firing", "resolved"] * len(sequence)
            assert sequence == expected[: len(sequence)], f"{chain} {fingerprint}: {sequence}"


async def _arrived(subscriber: DedupingSubscriber, count: int) -> bool:
    return len(subscriber.arrivals) >= count


async def _metric_at_least(
    session: aiohttp.ClientSession, url: str, name: str, value: float
) -> bool:
    return (await metrics(session, url)).get(name, 0.0) >= value


async def _quiet(session: aiohttp.ClientSession, url: str) -> bool:
    """Nobody jailed on either chain, and over two samples more than one status refresh
    apart: connected, outbox empty, no new events."""
    samples = []
    for pause in (0.0, 1.5):
        await asyncio.sleep(pause)
        samples.append(await metrics(session, url))
    return all(
        s.get("quorumwatch_mqtt_connected") == 1
        and s.get("quorumwatch_outbox_events") == 0
        and s.get("quorumwatch_validator_jailed", 1.0) == 0
        and s.get("quorumwatch_chain_up") == len(CHAINS)
        for s in samples
    ) and samples[0].get("quorumwatch_events_total") == samples[1].get("quorumwatch_events_total")


async def _has_active(session: aiohttp.ClientSession, alertmanager: str) -> bool:
    return bool(await active_alerts(session, alertmanager))


async def _no_active(session: aiohttp.ClientSession, alertmanager: str) -> bool:
    return not await active_alerts(session, alertmanager)
