"""`netuids = "all"`: a Bittensor chain made one chain per subnet the node lists, and the watch
that lists them again while the daemon runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from quorumwatch.chains.bittensor import SubnetListError
from quorumwatch.chains.bittensor.subnets import SubnetWatch, expand_all
from quorumwatch.config import ChainSettings, Settings
from quorumwatch.report import ReportBoard, SubnetListing
from quorumwatch.simulator.bittensor import SUBNETS, FaultKind, start_bittensor_simulator
from tests.builders import FakeClock, daemon_settings
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


async def test_a_chain_named_like_a_subnet_still_names_its_subnets_after_it(
    session: aiohttp.ClientSession,
) -> None:
    """A chain of "all" subnets named x-sn3 that lists subnet 3 alone watches x-sn3-sn3, as it
    would among others: the name does not depend on how many subnets are listed."""
    async with await start_bittensor_simulator(subnets={3: SUBNETS[3]}) as sim:
        settings = _settings(sim.base_url)
        renamed = settings.chains[0].model_copy(update={"name": "x-sn3"})
        expanded = await expand_all(settings.model_copy(update={"chains": [renamed]}), session)
    assert [c.name for c in expanded.chains] == ["x-sn3-sn3"]


class _Watched:
    """A SubnetWatch of chain tao, listed at start as `netuids`, and what it started and
    stopped."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, netuids: Sequence[int], clock: FakeClock
    ) -> None:
        self.board = ReportBoard()
        self.started: list[str] = []
        self.stopped: list[str] = []
        (chain,) = _settings(url).chains[:1]
        self.watch = SubnetWatch(
            chain,
            netuids,
            session,
            self.board,
            start=lambda subnet: self.started.append(subnet.name),
            stop=self._stop,
            clock=clock,
        )

    async def _stop(self, subnet: ChainSettings) -> None:
        self.stopped.append(subnet.name)


async def test_a_relist_starts_new_subnets_and_stops_those_gone(
    session: aiohttp.ClientSession,
) -> None:
    """Watching subnets 1 and 2, a re-list finding 2 and 3 starts tao-sn3 and stops tao-sn1,
    each logged once with its chain and netuid, and dates the listing; a re-list finding the
    same again starts and stops nothing."""
    clock = FakeClock(1000.0)
    async with await start_bittensor_simulator(subnets={2: SUBNETS[2], 3: SUBNETS[3]}) as sim:
        watched = _Watched(session, sim.base_url, [1, 2], clock)
        assert watched.board.subnet_listings == {"tao": SubnetListing("tao", 1000.0, 0)}
        clock.now = 1600.0
        with capture_logs() as logs:
            await watched.watch.refresh()
            await watched.watch.refresh()
    assert (watched.started, watched.stopped) == (["tao-sn3"], ["tao-sn1"])
    assert [c.name for c in watched.watch.chains] == ["tao-sn2", "tao-sn3"]
    assert [(e["event"], e["chain"], e["netuid"]) for e in logs] == [
        ("subnet listed: watching it", "tao-sn3", 3),
        ("subnet no longer listed: not watching it", "tao-sn1", 1),
    ]
    assert watched.board.subnet_listings == {"tao": SubnetListing("tao", 1600.0, 0)}


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("error", None),  # a JSON-RPC error
        ("close", None),  # the socket closed: no answer
        ("result", ["0x1234"]),  # garbage: a key that is no netuid
        ("result", []),  # no subnet at all
    ],
)
async def test_a_failed_relist_changes_nothing_and_is_counted(
    session: aiohttp.ClientSession, kind: FaultKind, result: object
) -> None:
    """A re-list that no endpoint answers with subnets (an error, no answer, garbage, an empty
    list) starts and stops nothing and keeps the listing's date; it is counted and logged as a
    warning naming the chain and the endpoint, not its address."""
    clock = FakeClock(1000.0)
    async with await start_bittensor_simulator(subnets={3: SUBNETS[3]}) as sim:
        watched = _Watched(session, sim.base_url, [1, 2], clock)
        sim.set_fault("state_getKeysPaged", kind, result)
        clock.now = 1600.0
        with capture_logs() as logs:
            await watched.watch.refresh()
    assert (watched.started, watched.stopped) == ([], [])
    assert [c.name for c in watched.watch.chains] == ["tao-sn1", "tao-sn2"]
    assert watched.board.subnet_listings == {"tao": SubnetListing("tao", 1000.0, 1)}
    [warning] = [e for e in logs if e["event"] == "subnets not listed again: watching the same"]
    assert (warning["log_level"], warning["chain"]) == ("warning", "tao")
    assert warning["error"].startswith("chain tao: no endpoint listed the subnets (ep0: ")
    assert "127.0.0.1" not in warning["error"]
