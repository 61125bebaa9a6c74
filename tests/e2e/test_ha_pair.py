"""An HA pair of daemons, end to end, with real components over loopback.

Two daemons run from one config file (only the metrics port and the store path differ, set
from the environment as on two hosts). Both poll one simulated chain every 0.5 s and push to
both nodes of a real two-node Alertmanager cluster (`alertmanager.urls`). A real Prometheus
scrapes both daemons as one job, evaluates the shipped rules (durations zeroed) and sends to
both nodes too. Alertmanager runs the shipped routing (deploy/alertmanager.yml) with short
timings, every receiver pointed at a webhook in the test.

The timeline: a healthy chain; a breach (one entity above 2/3) that fires EntityCanControl
(from the daemons and from Prometheus) and NakamotoCoefficientDropped (the daemons' own rule);
`kill -9` of one daemon, then of the Alertmanager node that sent the notifications; a validator
jailed as well, which makes the surviving daemon push its firing set at once; recovery.

A second test shows an MQTT subscriber deduplicating the two daemons' events on a real Mosquitto
by the documented rule (README, "Scale and high availability").
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
import yaml

from quorumwatch.simulator import RunningSimulator, parse_scenario, start_simulator
from tests.builders import daemon_settings, equal_stakes
from tests.services import (
    AlertmanagerNode,
    BrokerFactory,
    Json,
    Webhook,
    alertmanager_binary,
    daemon_process,
    eventually,
    instant,
    log_tail,
    metric_totals,
    prometheus,
    rules_copy,
    running_daemon,
    subscribed,
)
from tests.tools import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CHAIN = "hyperliquid"
ENTITY = "Big Operator"
VALIDATORS = [f"0x{i + 1:040x}" for i in range(10)]
OPERATOR = VALIDATORS[:3]  # 3 x 1000 of 10000 = 30%; at BREACH 3 x 7000 of 28000 = 75%
HOLD = 1_000_000  # requests per step: the timeline moves only when the test says so
HEALTHY, BREACH, JAILED, RECOVERED = 0, 1, 2, 3
JAILED_VALIDATOR = VALIDATORS[-1]  # outside the entity; ValidatorJailed is info: not routed

POLL_SECONDS = 0.5
RESEND_SECONDS = 5  # the daemons' Alertmanager re-send interval, the least allowed
SCRAPE_INTERVAL = "250ms"  # Prometheus' scrape and rule evaluation interval
STARTUP_WAIT = 30.0
ALERT_WAIT = 15.0
# Recovery → resolved notification from the surviving node: a poll, a push, a scrape and an
# evaluation, a group interval and the peer wait. The dead daemon's last pushes would expire
# only 3 re-send intervals after they were sent: 10 to 15 s after it died.
RESOLVE_WITHIN = 5.0

# The daemons' labels for their own alerts; Prometheus adds `job` (never `instance`: the rules
# aggregate the replicas away).
CONTROL = {
    "alertname": "EntityCanControl",
    "severity": "critical",
    "chain": CHAIN,
    "entity": ENTITY,
}
CONTROL_PROMETHEUS = {**CONTROL, "job": "quorumwatch"}
DROPPED = {"alertname": "NakamotoCoefficientDropped", "severity": "warning", "chain": CHAIN}
WATCHED = (CONTROL, CONTROL_PROMETHEUS, DROPPED)


def scenario() -> Json:
    """HEALTHY, BREACH (the entity above 2/3), JAILED (a validator jailed as well),
    RECOVERED; each held until moved."""
    return {
        "name": "ha-pair",
        "steps": [
            {
                "repeat": HOLD,
                "validators": equal_stakes(VALIDATORS),
            },
            {"repeat": HOLD, "changes": {v: {"stake_hype": "7000"} for v in OPERATOR}},
            {"repeat": HOLD, "changes": {JAILED_VALIDATOR: {"jailed": True}}},
            {
                "changes": {
                    **{v: {"stake_hype": "1000"} for v in OPERATOR},
                    JAILED_VALIDATOR: {"jailed": False},
                }
            },
        ],
    }


def chain(simulator_url: str) -> Json:
    """The chain both daemons poll: two endpoint names for the simulator, so no rule sees a
    single point of failure."""
    return {
        "name": CHAIN,
        "kind": "hyperliquid",
        "poll_interval_seconds": POLL_SECONDS,
        "endpoints": [
            {"name": name, "url": simulator_url, "timeout_seconds": 2} for name in ("a", "b")
        ],
        "entities": [{"name": ENTITY, "validators": OPERATOR}],
    }


async def goto(session: aiohttp.ClientSession, simulator: RunningSimulator, step: int) -> None:
    async with session.post(f"{simulator.base_url}/_sim/goto?step={step}") as response:
        assert response.status == 200


# --- Alertmanager ---------------------------------------------------------------------------


def am_config(directory: Path, webhook_url: str) -> Path:
    """The shipped routing, grouping and inhibitions, with every receiver's webhook pointed
    at the test's and timings short: notify at once, changes within 0.5 s, no repeats."""
    config = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text(encoding="utf-8"))
    config["route"].update(group_wait="0s", group_interval="500ms", repeat_interval="1h")
    for route in config["route"].get("routes", []):
        route.pop("repeat_interval", None)
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url
    path = directory / "alertmanager.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def cluster(directory: Path, config: Path) -> list[AlertmanagerNode]:
    """Two Alertmanager nodes, not started yet, to gossip on loopback, each the other's peer."""
    binary = alertmanager_binary()
    ports = [free_port(), free_port()]
    return [
        AlertmanagerNode(binary, directory / f"am{i}", config, cluster_port=port, peers=[other])
        for i, (port, other) in enumerate(zip(ports, reversed(ports), strict=True))
    ]


async def settled(session: aiohttp.ClientSession, nodes: list[AlertmanagerNode]) -> bool:
    """True once every node reports the cluster ready with all nodes as peers."""
    for node in nodes:
        async with session.get(f"{node.url}/api/v2/status") as response:
            status = (await response.json())["cluster"]
        if status["status"] != "ready" or len(status["peers"]) != len(nodes):
            return False
    return True


async def alerts(session: aiohttp.ClientSession, node: AlertmanagerNode) -> list[Json]:
    async with session.get(f"{node.url}/api/v2/alerts") as response:
        assert response.status == 200
        found: list[Json] = await response.json()
        return found


def instant_of(rfc3339: str) -> datetime:
    """Alertmanager's RFC 3339 times, nanoseconds cut to what datetime holds."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", rfc3339))


def with_labels(found: Iterable[Json], labels: dict[str, str]) -> Json | None:
    return next((a for a in found if a["labels"] == labels), None)


# --- what the webhook received --------------------------------------------------------------


def labels_of(alert: Json) -> dict[str, str]:
    labels: dict[str, str] = alert["labels"]
    return labels


def notified(webhook: Webhook, labels: dict[str, str], status: str) -> list[int]:
    """Indexes of the payloads carrying the alert with exactly these labels in this status."""
    return [
        index
        for index, payload in enumerate(webhook.payloads)
        if any(labels_of(a) == labels and a["status"] == status for a in payload["alerts"])
    ]


def repeated_notifications(webhook: Webhook) -> list[str]:
    """Payloads that told a group something it had been told already: the same alerts in
    the same states (what a second node, or a second daemon, would add)."""
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    repeats = []
    for payload in webhook.payloads:
        content = frozenset((a["fingerprint"], a["status"]) for a in payload["alerts"])
        key = (payload["groupKey"], content)
        if key in seen:
            repeats.append(f"{payload['externalURL']}: {payload['groupKey']} {sorted(content)}")
        seen.add(key)
    return repeats


def label_sets(webhook: Webhook, alertname: str) -> list[dict[str, str]]:
    """Every distinct label set the webhook saw for `alertname`."""
    found: list[dict[str, str]] = []
    for payload in webhook.payloads:
        for alert in payload["alerts"]:
            labels = labels_of(alert)
            if labels["alertname"] == alertname and labels not in found:
                found.append(labels)
    return found


# --- the daemons and Prometheus -------------------------------------------------------------


@dataclass
class Daemon:
    """One of the pair: its /metrics port and store, from the environment."""

    name: str
    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        return {
            "QUORUMWATCH_METRICS__LISTEN": f"127.0.0.1:{self.port}",
            "QUORUMWATCH_STORAGE__PATH": str(self.directory / f"{self.name}.db"),
        }

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"


def daemon_config(directory: Path, simulator_url: str, nodes: list[AlertmanagerNode]) -> Path:
    """The one config file both daemons run."""
    path = directory / "quorumwatch.toml"
    lines = [
        'log_level = "info"',
        "[alertmanager]",
        f"urls = {json.dumps([node.url for node in nodes])}",
        f"resend_interval_seconds = {RESEND_SECONDS}",
        "timeout_seconds = 2",
    ]
    settings = chain(simulator_url)
    lines += [
        "[[chains]]",
        *(f"{key} = {json.dumps(settings[key])}" for key in ("name", "kind")),
        f"poll_interval_seconds = {POLL_SECONDS}",
        *(
            line
            for endpoint in settings["endpoints"]
            for line in (
                "[[chains.endpoints]]",
                *(f"{key} = {json.dumps(value)}" for key, value in endpoint.items()),
            )
        ),
        "[[chains.entities]]",
        f"name = {json.dumps(ENTITY)}",
        f"validators = {json.dumps(OPERATOR)}",
        # One jailing here is never a storm: it only makes the daemons push at once.
        "[chains.jail_storm]",
        "min_stake_ratio = 0.5",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def prometheus_config(daemons: list[Daemon], rules: Path, nodes: list[AlertmanagerNode]) -> Json:
    """Both daemons as targets of one job; alerts to every Alertmanager node, as Prometheus
    must be configured for a cluster (never through a load balancer)."""
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [node.url.removeprefix("http://")]}]}
                for node in nodes
            ]
        },
        "scrape_configs": [
            {
                "job_name": "quorumwatch",
                "static_configs": [{"targets": [f"127.0.0.1:{d.port}" for d in daemons]}],
            }
        ],
    }


async def node_metric(session: aiohttp.ClientSession, node: AlertmanagerNode, name: str) -> float:
    return (await metric_totals(session, f"{node.url}/metrics")).get(name, 0.0)


@dataclass
class Stack:
    """The running HA stack: both daemons up in Prometheus, the cluster settled."""

    session: aiohttp.ClientSession
    simulator: RunningSimulator
    nodes: list[AlertmanagerNode]
    processes: list[asyncio.subprocess.Process]


@asynccontextmanager
async def ha_stack(
    tmp_path: Path, prometheus_binary: str, webhook: Webhook
) -> AsyncIterator[Stack]:
    """Start everything (the daemons first, as they take longest, the rest meanwhile) and wait
    until the cluster has settled and Prometheus sees both daemons' chain up."""
    daemons = [Daemon("qw-a", tmp_path), Daemon("qw-b", tmp_path)]
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        simulator = await stack.enter_async_context(
            await start_simulator(parse_scenario(scenario()))
        )
        nodes = cluster(tmp_path, am_config(tmp_path, webhook.url))
        for node in nodes:
            stack.callback(node.stop)
        config = daemon_config(tmp_path, simulator.base_url, nodes)
        processes = [
            await stack.enter_async_context(daemon_process(config, d.log, d.env)) for d in daemons
        ]
        starting = asyncio.gather(*(asyncio.to_thread(node.start) for node in nodes))
        prom = await stack.enter_async_context(
            prometheus(
                prometheus_binary,
                tmp_path / "prometheus",
                prometheus_config(daemons, rules_copy(tmp_path), nodes),
            )
        )
        await starting
        await eventually(lambda: settled(session, nodes), "the cluster to settle", STARTUP_WAIT)

        async def both_up() -> bool:
            result, _ = await instant(session, prom, "count(quorumwatch_chain_up == 1) == 2")
            return bool(result)

        await eventually(
            both_up,
            lambda: (
                "Prometheus to see both daemons up: "
                + " | ".join(log_tail(d.log, 600) for d in daemons)
            ),
            STARTUP_WAIT,
        )
        yield Stack(session, simulator, nodes, processes)


# --- the tests ------------------------------------------------------------------------------


async def test_ha_pair_pages_once_and_survives_a_daemon_and_a_node_killed(
    prometheus_binary: str, webhook: Webhook, tmp_path: Path
) -> None:
    """Two daemons and Prometheus push to a two-node Alertmanager cluster: EntityCanControl
    reaches the webhook as exactly two alerts (the daemons' one, Prometheus' one) and
    NakamotoCoefficientDropped as one, and no group is told the same thing twice; after
    `kill -9` of one daemon and then of the notifying node, every watched alert stays firing
    on the surviving node (the surviving daemon's pushes renew it), no notification before
    the recovery carries a resolved alert, and the surviving node notifies each watched
    resolution within RESOLVE_WITHIN s of the recovery."""
    async with ha_stack(tmp_path, prometheus_binary, webhook) as stack:
        session, simulator, nodes = stack.session, stack.simulator, stack.nodes
        await goto(session, simulator, BREACH)
        await eventually(
            lambda: all(notified(webhook, labels, "firing") for labels in WATCHED),
            lambda: f"every watched alert to fire; {webhook.summary()}",
            ALERT_WAIT,
        )
        notifier_url = webhook.payloads[notified(webhook, CONTROL, "firing")[0]]["externalURL"]
        [notifier] = [node for node in nodes if node.url == notifier_url]
        [survivor] = [node for node in nodes if node is not notifier]

        async def survivor_heard_every_notification() -> bool:
            sent = await node_metric(session, notifier, "alertmanager_notifications_total")
            heard = await node_metric(
                session, survivor, "alertmanager_nflog_gossip_messages_propagated_total"
            )
            return heard >= sent

        await eventually(
            survivor_heard_every_notification,
            lambda: (
                "the survivor to hear of the notifications; repeated: "
                + "\n".join(repeated_notifications(webhook))
            ),
        )

        stack.processes[0].kill()
        await stack.processes[0].wait()
        before = with_labels(await alerts(session, survivor), CONTROL)
        assert before is not None
        notifier.kill()

        async def renewed_by_the_survivor() -> bool:
            now = with_labels(await alerts(session, survivor), CONTROL)
            return now is not None and instant_of(now["endsAt"]) > instant_of(before["endsAt"])

        # A newly firing alert makes the surviving daemon push its whole firing set at once,
        # rather than at its next re-send.
        await goto(session, simulator, JAILED)
        await eventually(
            renewed_by_the_survivor,
            "the surviving daemon to renew EntityCanControl on the surviving node",
        )
        active = await alerts(session, survivor)
        for labels in WATCHED:
            alert = with_labels(active, labels)
            assert alert is not None, (labels, active)
            assert alert["status"]["state"] == "active", alert

        recovered_at = len(webhook.payloads)
        await goto(session, simulator, RECOVERED)
        started = time.monotonic()
        await eventually(
            lambda: all(notified(webhook, labels, "resolved") for labels in WATCHED),
            lambda: f"every watched alert to resolve; {webhook.summary()}",
            ALERT_WAIT,
        )
        resolved_after = time.monotonic() - started

    assert resolved_after <= RESOLVE_WITHIN, webhook.summary()
    early = [a for p in webhook.payloads[:recovered_at] for a in p["alerts"]]
    assert all(a["status"] == "firing" for a in early), webhook.summary()
    for labels in WATCHED:
        resolutions = notified(webhook, labels, "resolved")
        assert {webhook.payloads[i]["externalURL"] for i in resolutions} == {survivor.url}
    assert label_sets(webhook, "EntityCanControl") in (
        [CONTROL, CONTROL_PROMETHEUS],
        [CONTROL_PROMETHEUS, CONTROL],
    ), webhook.summary()
    assert label_sets(webhook, "NakamotoCoefficientDropped") == [DROPPED], webhook.summary()
    assert not repeated_notifications(webhook), "\n".join(repeated_notifications(webhook))


# --- MQTT ---------------------------------------------------------------------------------


@dataclass
class Deduplicator:
    """A subscriber's deduplication, as the README documents it: per `fingerprint`, keep
    the last status accepted; an event whose status equals it is a copy (from the other
    daemon, or sent again) and is dropped."""

    last: dict[str, str] = field(default_factory=dict)
    accepted: list[Json] = field(default_factory=list)

    def offer(self, event: Json) -> None:
        if self.last.get(event["fingerprint"]) != event["status"]:
            self.last[event["fingerprint"]] = event["status"]
            self.accepted.append(event)


@pytest.mark.slow
async def test_a_subscriber_deduplicates_the_pairs_mqtt_events(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """Two daemons with the same config publish every EntityCanControl transition of two
    breach episodes (each event twice, with one fingerprint across daemons and episodes);
    deduplicating by fingerprint and status leaves exactly firing, resolved, firing,
    resolved, in order, the second firing starting after the first resolution."""
    broker = broker_factory()
    prefixes = ["qw-a", "qw-b"]
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        simulator = await stack.enter_async_context(
            await start_simulator(parse_scenario(scenario()))
        )
        subscriber = await stack.enter_async_context(
            subscribed(broker.port, *(f"{prefix}/+/alerts/+" for prefix in prefixes))
        )
        for prefix in prefixes:
            settings = daemon_settings(
                tmp_path / f"{prefix}.db",
                mqtt={
                    "enabled": True,
                    "port": broker.port,
                    "host": "127.0.0.1",
                    "client_id": prefix,
                    "topic_prefix": prefix,
                },
                chains=[chain(simulator.base_url)],
            )
            await stack.enter_async_context(running_daemon(settings))

        def control_events() -> list[Json]:
            return [
                m.document
                for m in subscriber.messages
                if m.topic.endswith("/alerts/entitycancontrol")
            ]

        async def transition(step: int, status: str, count: int) -> None:
            await goto(session, simulator, step)
            await eventually(
                lambda: [e["status"] for e in control_events()].count(status) == count,
                f"{count} {status} EntityCanControl events from the two daemons",
            )

        for episode in (1, 2):
            await transition(BREACH, "firing", 2 * episode)
            await transition(RECOVERED, "resolved", 2 * episode)

    events = control_events()
    assert len({e["fingerprint"] for e in events}) == 1, events
    assert len({e["event_id"] for e in events}) == len(events) == 8, events
    deduplicator = Deduplicator()
    for event in events:
        deduplicator.offer(event)
    assert [e["status"] for e in deduplicator.accepted] == [
        "firing",
        "resolved",
        "firing",
        "resolved",
    ]
    first_resolved, second_firing = deduplicator.accepted[1:3]
    assert second_firing["starts_at"] > first_resolved["ends_at"], deduplicator.accepted
