"""A slowloris endpoint end to end: it stalls neither /metrics nor another chain, and the
daemon never holds its connection past the total deadline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from quorumwatch.config import Settings
from quorumwatch.simulator import load_scenario, start_simulator
from tests.builders import daemon_settings
from tests.services import (
    RawServer,
    Samples,
    eventually,
    metric,
    raw_server,
    running_daemon,
    scrape,
    slowloris,
)

TOTAL_SECONDS = 1.0  # the stuck chain's timeout_seconds
STUCK_INTERVAL_SECONDS = 1.5  # leaves the server time to see each connection closed
WATCH_TIMEOUTS = 3  # the watch lasts until the stuck chain has timed out this many more times
SCRAPE_EVERY_SECONDS = 0.2  # the scrape rate


def requests(samples: Samples, chain: str, endpoint: str, outcome: str) -> float:
    labels = {"chain": chain, "endpoint": endpoint, "outcome": outcome}
    return metric(samples, "quorumwatch_endpoint_requests_total", **labels) or 0


@dataclass
class Watch:
    """What the scrapes saw: how long each took, the slowloris server's open connections at
    each, and the first and last samples with the time they were taken."""

    durations: list[float] = field(default_factory=list)
    open_connections: list[int] = field(default_factory=list)
    readings: list[tuple[float, Samples]] = field(default_factory=list)

    async def scrape(self, session: aiohttp.ClientSession, url: str, drip: RawServer) -> Samples:
        started = time.monotonic()
        samples = await scrape(session, url)
        self.durations.append(time.monotonic() - started)
        self.open_connections.append(drip.open_connections)
        self.readings.append((started, samples))
        return samples


def two_chains(store: Path, stuck_url: str, live_url: str) -> Settings:
    return daemon_settings(
        store,
        chains=[
            {
                "name": "stuck",
                "kind": "hyperliquid",
                "poll_interval_seconds": STUCK_INTERVAL_SECONDS,
                "endpoints": [{"name": "drip", "url": stuck_url, "timeout_seconds": TOTAL_SECONDS}],
            },
            {
                "name": "live",
                "kind": "hyperliquid",
                "poll_interval_seconds": 1,
                "endpoints": [{"name": "sim", "url": live_url}],
            },
        ],
    )


async def watch_daemon(settings: Settings, drip: RawServer) -> Watch:
    """Run the daemon; once the live chain has polled, scrape it until the stuck chain has
    timed out WATCH_TIMEOUTS more times and the dripping server has seen as many connections
    closed."""
    seen = Watch()
    async with running_daemon(settings) as url, aiohttp.ClientSession() as session:

        async def count(chain: str, endpoint: str, outcome: str) -> float:
            return requests(await seen.scrape(session, url, drip), chain, endpoint, outcome)

        async def live_polled() -> bool:
            return await count("live", "sim", "ok") >= 2

        await eventually(live_polled, "the live chain to poll", every=SCRAPE_EVERY_SECONDS)
        seen.readings = seen.readings[-1:]  # the watch starts at the first live poll
        before = requests(seen.readings[0][1], "stuck", "drip", "timeout")

        async def watched() -> bool:
            timeouts = await count("stuck", "drip", "timeout")
            return timeouts >= before + WATCH_TIMEOUTS and len(drip.lifetimes) >= WATCH_TIMEOUTS

        await eventually(watched, "the stuck chain to time out", 20, every=SCRAPE_EVERY_SECONDS)
    return seen


@pytest.mark.slow
async def test_slowloris_endpoint_stalls_nothing(tmp_path: Path) -> None:
    """While one chain's only endpoint drips a byte every 0.2 s forever, every scrape answers
    within 1 s, a chain polling every second keeps its schedule, the stuck chain counts
    timeouts, and the dripping server never has more than one connection open, each closed
    by the daemon at the total deadline."""
    async with (
        raw_server(slowloris) as drip,
        await start_simulator(load_scenario("healthy")) as simulator,
    ):
        settings = two_chains(tmp_path / "qw.db", drip.base_url, simulator.base_url)
        seen = await watch_daemon(settings, drip)
    (started, first), (ended, last) = seen.readings[0], seen.readings[-1]
    elapsed = ended - started

    assert max(seen.durations) < 1.0, f"slowest scrape {max(seen.durations):.2f}s"
    polls = (requests(last, "live", "sim", "ok") - requests(first, "live", "sim", "ok")) / 2
    assert polls >= elapsed - 1.5, f"{polls} live polls in {elapsed:.1f}s"  # 2 requests a poll
    timeouts = requests(last, "stuck", "drip", "timeout") - requests(
        first, "stuck", "drip", "timeout"
    )
    assert timeouts >= elapsed // STUCK_INTERVAL_SECONDS - 1, f"{timeouts} in {elapsed:.1f}s"
    assert requests(last, "stuck", "drip", "ok") == 0
    assert max(seen.open_connections) <= 1
    assert drip.peak_connections == 1
    assert max(drip.lifetimes) < TOTAL_SECONDS + 0.5, f"lifetimes {drip.lifetimes}"
