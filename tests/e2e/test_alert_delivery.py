"""Alert delivery end to end, with real components over loopback.

The daemon runs as a subprocess against two simulated chains whose validators are jailed and
unjailed in turn, so events keep coming. A real Mosquitto is stopped, and the daemon is killed
with SIGKILL and started again. Every event the store says was generated must reach a
deduplicating subscriber, in order per chain, with firing and resolved alternating per alert
(nothing re-fired). A real Alertmanager receives the alerts and their resolution.

The outage lasts until the publisher is in the state a long outage leaves it in, which takes
seconds: a backlog in the outbox, and reconnects failing at the capped backoff. With
`reconnect_max_seconds = 1` and the 0.5 s base, the delay is at its cap from the second failure
on; after that, a longer outage only repeats the same refused connect. (A stopped broker closes
its connections, so the keepalive plays no part; nothing in the outbox expires with time.)
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from quorumwatch.simulator import RunningSimulator, parse_scenario, start_simulator
from quorumwatch.store import AsyncStore
from quorumwatch.store import alerts as alert_store
from tests.services import (
    Broker,
    BrokerFactory,
    daemon_process,
    eventually,
    log_records,
    log_tail,
    metric_totals,
)
from tests.tools import free_port

CHAINS = ("alpha", "beta")
PREFIX = "qwe2e"
CYCLE_STEPS = 3000  # far more polls than the test makes; then a quiet final step
VALIDATORS = [f"0x{i + 1:040x}" for i in range(10)]
PUBLISHING_FAILED = "mqtt publishing failed"
RECONNECT_MAX_SECONDS = 1.0  # at the cap, each delay is between half of this and this
OUTAGE_BACKLOG = 20  # events queued in the outbox before the broker returns
# Failures logged in the outage before the broker returns: the lost connection, then refused
# reconnects; from the second on, each waited the capped delay.
OUTAGE_FAILURES = 5
FINAL_POLLS = 3  # polls of the quiet final step, per chain, before the end is checked
HTTP_EVERY = 0.1  # how often a wait asks /metrics or Alertmanager again


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
        f'[[chains]]\nname = "{chain}"\nkind = "hyperliquid"\npoll_interval_seconds = 0.1\n'
        f'[[chains.endpoints]]\nname = "sim"\nurl = "{sim.base_url}"\ntimeout_seconds = 2\n'
        for chain, sim in zip(CHAINS, simulators, strict=True)
    )
    path = tmp_path / "quorumwatch.toml"
    path.write_text(
        f'log_level = "warning"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\npath = "{tmp_path / "quorumwatch.db"}"\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'topic_prefix = "{PREFIX}"\nreconnect_max_seconds = {RECONNECT_MAX_SECONDS}\n'
        f'[alertmanager]\nurl = "{alertmanager}"\nresend_interval_seconds = 5\n' + chains
    )
    return path, f"http://127.0.0.1:{port}/metrics"


async def active_alerts(session: aiohttp.ClientSession, alertmanager: str) -> list[dict[str, Any]]:
    """Alertmanager's active, unsilenced, uninhibited ValidatorJailed alerts."""
    url = f"{alertmanager}/api/v2/alerts?active=true&silenced=false&inhibited=false"
    async with session.get(url) as response:
        alerts: list[dict[str, Any]] = await response.json()
    return [a for a in alerts if a["labels"].get("alertname") == "ValidatorJailed"]


@dataclass
class Run:
    """What the phases of the test share."""

    session: aiohttp.ClientSession
    metrics_url: str
    alertmanager: str
    log: Path
    subscriber: DedupingSubscriber

    async def metric(self, name: str) -> float | None:
        return (await metric_totals(self.session, self.metrics_url)).get(name)

    async def arrived(self, count: int, what: str) -> None:
        await eventually(lambda: len(self.subscriber.arrivals) >= count, what, 30)

    async def alerts_active(self, active: bool, what: str) -> None:
        async def check() -> bool:
            return bool(await active_alerts(self.session, self.alertmanager)) == active

        await eventually(check, what, every=HTTP_EVERY)


async def outage_then_kill(run: Run, broker: Broker, config_file: Path) -> None:
    """Stop the broker until the publisher has a backlog and failed reconnects at the capped
    backoff; start it again; SIGKILL the daemon once the backlog is arriving."""
    async with daemon_process(config_file, run.log) as daemon:
        await run.arrived(10, "the first events")
        await run.alerts_active(True, "Alertmanager to see an alert")
        failures = len(log_records(run.log, PUBLISHING_FAILED))
        await broker.astop()

        async def backlog() -> bool:
            return (await run.metric("quorumwatch_outbox_events") or 0) >= OUTAGE_BACKLOG

        await eventually(backlog, "events to queue in the outbox", 30, every=HTTP_EVERY)
        await eventually(
            lambda: len(log_records(run.log, PUBLISHING_FAILED)) >= failures + OUTAGE_FAILURES,
            "reconnects to fail at the capped backoff",
            every=HTTP_EVERY,
        )
        assert await run.metric("quorumwatch_mqtt_connected") == 0
        retries = [r["retry_in_seconds"] for r in log_records(run.log, PUBLISHING_FAILED)]
        assert min(retries[failures + 1 :]) >= RECONNECT_MAX_SECONDS / 2, retries  # at the cap
        during_outage = len(run.subscriber.arrivals)
        await broker.astart()
        await run.arrived(during_outage + OUTAGE_BACKLOG, "the backlog")
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()


async def restart_to_the_end(
    run: Run, config_file: Path, simulators: tuple[RunningSimulator, ...]
) -> None:
    """Start the daemon again; move the chains to the quiet final step; once it is polled
    and drained and Alertmanager has nothing firing, SIGTERM: the daemon exits 0."""
    async with daemon_process(config_file, run.log) as daemon:
        await run.arrived(len(run.subscriber.arrivals) + 10, "events after the kill")
        for simulator in simulators:
            async with run.session.post(f"{simulator.base_url}/_sim/goto?step={CYCLE_STEPS}"):
                pass
        served = [simulator.timeline.requests for simulator in simulators]

        async def settled() -> bool:
            """Each chain polled the final step FINAL_POLLS times (so the first of those polls
            has committed its events): nobody jailed, all published."""
            totals = await metric_totals(run.session, run.metrics_url)
            return (
                all(
                    simulator.timeline.requests >= before + FINAL_POLLS
                    for simulator, before in zip(simulators, served, strict=True)
                )
                and totals.get("quorumwatch_validator_jailed") == 0
                and totals.get("quorumwatch_chain_up") == len(CHAINS)
                and totals.get("quorumwatch_mqtt_connected") == 1
                and totals.get("quorumwatch_outbox_events") == 0
            )

        await eventually(settled, "the final step to be polled and drained", 30, every=HTTP_EVERY)
        await run.alerts_active(False, "Alertmanager to see them resolve")
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 10) == 0


async def test_every_event_arrives_once_in_order_through_outage_and_kill(
    tmp_path: Path,
    broker_factory: BrokerFactory,
    alertmanager: str,
    session: aiohttp.ClientSession,
) -> None:
    """Through a broker outage (a backlog queued, reconnects failing at the capped backoff)
    and a daemon SIGKILL, every generated event reaches the subscriber (deduplicated) in order
    per chain without re-firing; Alertmanager sees the alerts fire and resolve."""
    broker = broker_factory(
        "persistence true",
        "persistence_location {dir}/",
        "max_queued_messages 100000",
    )
    database = tmp_path / "quorumwatch.db"
    log = tmp_path / "daemon.log"
    subscriber = DedupingSubscriber(broker.port)
    scenario = parse_scenario(rolling_jails())
    async with await start_simulator(scenario) as alpha, await start_simulator(scenario) as beta:
        config_file, metrics_url = config(tmp_path, broker, alertmanager, [alpha, beta])
        run = Run(session, metrics_url, alertmanager, log, subscriber)
        listening = asyncio.create_task(subscriber.run())
        try:
            await outage_then_kill(run, broker, config_file)
            await restart_to_the_end(run, config_file, (alpha, beta))
            # The daemon has exited, so the store is final: all it generated must arrive.
            generated = await _generated(database)
            await run.arrived(generated, f"all {generated} generated events")
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    async with await AsyncStore.open(database, read_only=True) as store:
        generated = sum((await store.call(alert_store.events_generated)).values())
        pending = len(await store.call(alert_store.outbox_peek, 1000))
    assert pending == 0
    assert len(subscriber.arrivals) == generated, log_tail(log, 3000)
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


async def _generated(database: Path) -> int:
    async with await AsyncStore.open(database, read_only=True) as store:
        return sum((await store.call(alert_store.events_generated)).values())
