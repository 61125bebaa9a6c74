"""The generic JSON simulator: one swappable document at one path."""

from __future__ import annotations

import aiohttp

from quorumwatch.simulator.generic import start_generic_simulator


async def test_get_and_post_answer_the_current_document_and_are_counted() -> None:
    """GET and POST on the path answer the document as it is now; each request is counted."""
    async with (
        await start_generic_simulator({"v": 1}, path="/set") as sim,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(sim.base_url + "/set") as response:
            assert await response.json() == {"v": 1}
        sim.document = [1, 2]
        async with session.post(sim.base_url + "/set", json={"ignored": True}) as response:
            assert await response.json() == [1, 2]
        async with session.get(sim.base_url + "/other") as response:
            assert response.status == 404
    assert sim.requests == 2
