"""Many chains in one daemon: a hanging chain never delays another."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.config import load_settings
from quorumwatch.simulator import load_scenario, start_simulator
from tests.services import running_daemon


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and reads requests but never answers: a hung endpoint."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


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


async def test_hanging_chain_does_not_delay_a_chain_polling_every_second(tmp_path: Path) -> None:
    """While one chain's endpoint holds every request open for 60 s, a chain polling every
    second completes a poll (two requests) about every second."""
    async with silent_server() as hung, await start_simulator(load_scenario("healthy")) as sim:
        settings = load_settings(
            None,
            metrics={"listen": "127.0.0.1:0"},
            storage={"path": str(tmp_path / "qw.db")},
            chains=[
                {
                    "name": "stuck",
                    "kind": "hyperliquid",
                    "poll_interval_seconds": 1,
                    "endpoints": [{"name": "hung", "url": hung, "timeout_seconds": 60}],
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
            await asyncio.sleep(1.5)
            before, started = await ok_requests(session, url, "live"), time.monotonic()
            await asyncio.sleep(5)
            after, elapsed = await ok_requests(session, url, "live"), time.monotonic() - started
            stuck = await ok_requests(session, url, "stuck")
    polls = (after - before) / 2  # exchangeStatus + validatorSummaries per poll
    assert polls >= elapsed - 1.5, f"{polls} polls in {elapsed:.1f}s"
    assert stuck == 0
