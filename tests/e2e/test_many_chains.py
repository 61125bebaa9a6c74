"""Many chains in one daemon: a hanging chain never delays another."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.simulator import load_scenario, start_simulator
from tests.builders import daemon_settings
from tests.services import eventually, raw_server, running_daemon, silent

WATCH_POLLS = 3  # live polls watched while the stuck chain's request hangs


async def ok_requests(session: aiohttp.ClientSession, url: str, chain: str) -> float:
    async with session.get(url) as response:
        text = await response.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "quorumwatch_endpoint_requests_total"
        and s.labels.get("chain") == chain
        and s.labels.get("outcome") == "ok"
    )


@pytest.mark.slow
async def test_hanging_chain_does_not_delay_a_chain_polling_every_second(tmp_path: Path) -> None:
    """While one chain's endpoint holds every request open for 60 s, a chain polling every
    second completes a poll (two requests) about every second."""
    async with (
        raw_server(silent) as hung,
        await start_simulator(load_scenario("healthy")) as sim,
    ):
        settings = daemon_settings(
            tmp_path / "qw.db",
            chains=[
                {
                    "name": "stuck",
                    "kind": "hyperliquid",
                    "poll_interval_seconds": 1,
                    "endpoints": [{"name": "hung", "url": hung.base_url, "timeout_seconds": 60}],
                },
                {
                    "name": "live",
                    "kind": "hyperliquid",
                    "poll_interval_seconds": 1,
                    "endpoints": [{"name": "sim", "url": sim.base_url}],
                },
            ],
        )
        async with running_daemon(settings) as url, aiohttp.ClientSession() as session:

            async def live_at_least(requests: float) -> bool:
                return await ok_requests(session, url, "live") >= requests

            # The stuck chain's request is held open, and the live chain has polled once.
            await eventually(lambda: hung.open_connections >= 1, "the stuck chain's request")
            await eventually(lambda: live_at_least(2), "the live chain's first poll")
            before, started = await ok_requests(session, url, "live"), time.monotonic()
            await eventually(
                lambda: live_at_least(before + 2 * WATCH_POLLS),
                f"{WATCH_POLLS} more live polls",
                every=0.1,
            )
            after, elapsed = await ok_requests(session, url, "live"), time.monotonic() - started
            stuck = await ok_requests(session, url, "stuck")
            assert hung.open_connections >= 1  # still held: the whole watch was under the hang
    polls = (after - before) / 2  # exchangeStatus + validatorSummaries per poll
    assert polls >= elapsed - 1.5, f"{polls} polls in {elapsed:.1f}s"
    assert stuck == 0
