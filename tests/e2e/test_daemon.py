"""The daemon end to end: simulator → poll loop → /metrics over loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from quorumwatch.simulator import RunningSimulator, load_scenario, parse_scenario, start_simulator
from tests.builders import daemon_settings
from tests.services import Samples, eventually, metric, running_daemon, scrape


def scenario_with(*steps: dict[str, Any]) -> dict[str, Any]:
    """The healthy set, then `steps` (faults on validatorSummaries), then healthy forever."""
    healthy = load_scenario("healthy")
    validators = [
        {"validator": v.validator, "name": v.name, "stake": v.stake, "active": v.active}
        for v in healthy.steps[0].validators
    ]
    return {"name": "test", "steps": [{"validators": validators}, *steps, {}]}


@contextlib.asynccontextmanager
async def daemon(store: Path, *simulators: RunningSimulator) -> AsyncIterator[str]:
    """Run the daemon against the simulators; yields the /metrics URL."""
    settings = daemon_settings(
        store,
        chains=[
            {
                "name": "hyperliquid",
                "kind": "hyperliquid",
                "poll_interval_seconds": 0.05,
                "endpoints": [
                    {"name": f"ep{i}", "url": s.base_url, "timeout_seconds": 0.5}
                    for i, s in enumerate(simulators)
                ],
            }
        ],
    )
    async with running_daemon(settings, stop_within=5) as url:
        yield url


async def scrape_until(
    session: aiohttp.ClientSession,
    url: str,
    done: Callable[[Samples], bool],
    what: str,
    seen: list[Samples],
) -> Samples:
    """Scrape until `done(samples)`, `what` it waits for; every scrape is appended to `seen`."""

    async def check() -> bool:
        seen.append(await scrape(session, url))
        return done(seen[-1])

    await eventually(check, what, 20)
    return seen[-1]


def requests(samples: Samples, endpoint: str, outcome: str) -> float:
    labels = {"chain": "hyperliquid", "endpoint": endpoint, "outcome": outcome}
    return metric(samples, "quorumwatch_endpoint_requests_total", **labels) or 0


async def test_faults_are_classified_and_invalid_data_never_published(tmp_path: Path) -> None:
    """Through 5xx, 429, malformed JSON and an empty set the daemon counts each outcome,
    withdraws analysis while data is invalid, and recovers."""
    steps = scenario_with(
        {"repeat": 3, "fault": {"kind": "http_status", "status": 500}},
        {"repeat": 2, "fault": {"kind": "http_status", "status": 429}},
        {"repeat": 5, "fault": {"kind": "malformed_json"}},
        {"repeat": 5, "fault": {"kind": "empty_set"}},
    )
    seen: list[Samples] = []
    async with (
        await start_simulator(parse_scenario(steps)) as simulator,
        daemon(tmp_path / "qw.db", simulator) as url,
        aiohttp.ClientSession() as session,
    ):
        final = await scrape_until(
            session,
            url,
            lambda s: (
                requests(s, "ep0", "invalid_payload") >= 10
                and metric(s, "quorumwatch_chain_up", chain="hyperliquid") == 1
            ),
            "ten invalid payloads, then the chain up again",
            seen,
        )
    assert requests(final, "ep0", "http_5xx") == 3
    assert requests(final, "ep0", "http_429") == 2
    rejections = "quorumwatch_snapshot_rejections_total"
    assert metric(final, rejections, chain="hyperliquid", reason="malformed_json") == 5
    assert metric(final, rejections, chain="hyperliquid", reason="empty_set") == 5
    down = [s for s in seen if metric(s, "quorumwatch_chain_up", chain="hyperliquid") == 0]
    assert down, "no scrape caught the chain down"
    for samples in down:
        assert not any(name == "quorumwatch_nakamoto_coefficient" for name, _ in samples)
    halt = {"chain": "hyperliquid", "grouping": "entity", "threshold": "halt"}
    assert metric(final, "quorumwatch_nakamoto_coefficient", **halt) is not None


async def test_failover_keeps_the_chain_up(tmp_path: Path) -> None:
    """When the first endpoint fails, the second serves the set: the chain stays up,
    the failing endpoint is down, and one healthy endpoint is reported."""
    failing = scenario_with({"fault": {"kind": "http_status", "status": 502}})
    failing["steps"] = [failing["steps"][0] | {"fault": {"kind": "http_status", "status": 502}}]
    seen: list[Samples] = []
    async with (
        await start_simulator(parse_scenario(failing)) as broken,
        await start_simulator(load_scenario("healthy")) as healthy,
        daemon(tmp_path / "qw.db", broken, healthy) as url,
        aiohttp.ClientSession() as session,
    ):
        final = await scrape_until(
            session, url, lambda s: requests(s, "ep0", "http_5xx") >= 3, "three 5xx on ep0", seen
        )
    reported = [metric(s, "quorumwatch_chain_up", chain="hyperliquid") for s in seen]
    reported = [up for up in reported if up is not None]  # before the first poll: no series
    assert reported, "the chain was never reported"
    assert all(up == 1 for up in reported)
    assert metric(final, "quorumwatch_endpoint_up", chain="hyperliquid", endpoint="ep0") == 0
    assert metric(final, "quorumwatch_endpoint_up", chain="hyperliquid", endpoint="ep1") == 1
    assert metric(final, "quorumwatch_endpoints_healthy", chain="hyperliquid") == 1
    assert requests(final, "ep1", "ok") >= 3
