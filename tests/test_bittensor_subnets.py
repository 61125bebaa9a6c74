"""`netuids = "all"`: a Bittensor chain made one chain per subnet the node lists."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from quorumwatch.chains.bittensor import SubnetListError
from quorumwatch.chains.bittensor.subnets import expand_all
from quorumwatch.config import Settings
from quorumwatch.simulator.bittensor import start_bittensor_simulator
from tests.builders import daemon_settings
from tests.tools import refused_url


def _settings(*urls: str) -> Settings:
    return daemon_settings(
        Path("never-opened.db"),
        chains=[
            {
                "name": "tao",
                "kind": "bittensor",
                "endpoints": [{"name": f"ep{i}", "url": u} for i, u in enumerate(urls)],
            },
            {"name": "hl", "kind": "hyperliquid", "endpoints": [{"name": "e", "url": "http://x"}]},
        ],
    )


async def test_all_is_every_listed_subnet_after_a_failed_endpoint(
    session: aiohttp.ClientSession,
) -> None:
    """With netuids left out ("all"), the chain becomes tao-sn1 .. tao-sn5, the subnets the
    second endpoint lists when the first refuses, each with its one netuid; other chains stay."""
    async with await start_bittensor_simulator() as sim:
        refused = "ws" + refused_url().removeprefix("http")
        settings = _settings(refused, sim.base_url)
        assert [c.name for c in settings.chains] == ["tao", "hl"]
        expanded = await expand_all(settings, session)
    assert [c.name for c in expanded.chains] == [
        "tao-sn1",
        "tao-sn2",
        "tao-sn3",
        "tao-sn4",
        "tao-sn5",
        "hl",
    ]
    sections = [c.bittensor for c in expanded.chains[:5]]
    assert [s.netuids for s in sections if s is not None] == [[1], [2], [3], [4], [5]]


async def test_no_endpoint_listing_the_subnets_is_an_error(
    session: aiohttp.ClientSession,
) -> None:
    """When no endpoint lists the subnets, SubnetListError names the chain and each endpoint's
    failure."""
    refused = "ws" + refused_url().removeprefix("http")
    with pytest.raises(SubnetListError) as caught:
        await expand_all(_settings(refused), session)
    assert str(caught.value).startswith("chain tao: no endpoint listed the subnets (ep0: ")
    assert "connect_error" in str(caught.value)


async def test_a_key_that_is_no_netuid_fails_the_endpoint(session: aiohttp.ClientSession) -> None:
    """A NetworksAdded key longer than prefix and netuid is a metadata mismatch: that endpoint
    lists nothing."""
    async with await start_bittensor_simulator() as sim:
        sim.set_fault("state_getKeysPaged", "result", ["0x1234"])
        with pytest.raises(SubnetListError) as caught:
            await expand_all(_settings(sim.base_url), session)
    assert "metadata_mismatch" in str(caught.value)
