"""Bittensor source over WebSocket: the real mainnet recording replayed, the simulator's
subnets, metadata per specVersion, and each fault failing one endpoint over to the next."""

from __future__ import annotations

import contextlib
import json
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from quorumwatch.analysis import Grouping, analyse
from quorumwatch.chains.base import FetchResult, VersionedSet
from quorumwatch.chains.bittensor.source import BittensorSource
from quorumwatch.columns import STATUS_INACTIVE, STATUS_ONLINE
from quorumwatch.config import BittensorSettings, ChainSettings, EndpointSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import Outcome
from quorumwatch.simulator.bittensor import (
    SUBNETS,
    TAO,
    RunningBittensorSimulator,
    start_bittensor_simulator,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

FIXTURES = Path(__file__).parent / "fixtures" / "bittensor"
WALL = 1_750_000_000.0
# The recorded header's Aura pre-runtime digest names slot 146,898,962; Bittensor's slots
# are 12 s, so the block was authored at slot x 12 s. The recording holds no Timestamp.Now,
# so the replay serves this derived moment (and a synthetic Aura.Authorities).
RECORDED_SLOT = int.from_bytes(bytes.fromhex("1280c10800000000"), "little")
RECORDED_AT = RECORDED_SLOT * 12.0
REPLAYED_AUTHORITIES = 3


class Replay(RunningBittensorSimulator):
    """Answers from the recording of subnet 1 at block 6,852,690 (the selective metagraph
    answer holds every field, a superset of those the source asks for)."""

    def __init__(self) -> None:
        super().__init__({}, lambda: RECORDED_AT, authorities=REPLAYED_AUTHORITIES)
        recording = json.loads((FIXTURES / "sn1_block_6852690.json").read_text())
        self._recorded = {
            (call["method"], call["params"][0] if call["method"] == "state_call" else ""): call
            for call in recording["calls"]
        }
        self._metadata = (FIXTURES / "metadata_v15_spec343.hex").read_text().strip()

    def answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method == "chain_getFinalizedHead":
            return {"result": self._recorded[("chain_getHead", "")]["result"]}
        if method in ("chain_getHeader", "state_getRuntimeVersion"):
            return {"result": self._recorded[(method, "")]["result"]}
        if method == "state_call" and params[0] == "Metadata_metadata_at_version":
            return {"result": self._metadata}
        if method == "state_call":
            return {"result": self._recorded[("state_call", params[0])]["result"]}
        return super().answer(method, params)


def _settings(*urls: str, netuid: int = 1, skew: float = 60.0) -> ChainSettings:
    return ChainSettings(
        name=f"tao-sn{netuid}",
        kind="bittensor",
        max_clock_skew_seconds=skew,
        endpoints=[
            EndpointSettings(name=f"ep{i}", url=url, timeout_seconds=5)
            for i, url in enumerate(urls)
        ],
        bittensor=BittensorSettings(netuids=[netuid]),
    )


def _source(
    session: aiohttp.ClientSession, settings: ChainSettings, now: float
) -> tuple[BittensorSource, EndpointPool]:
    pool = EndpointPool(settings.endpoints, session, max_response_bytes=16 << 20)
    return BittensorSource(pool, settings, clock=lambda: now), pool


@contextlib.asynccontextmanager
async def _simulators(count: int) -> AsyncIterator[list[RunningBittensorSimulator]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(await start_bittensor_simulator(clock=lambda: WALL))
            for _ in range(count)
        ]


async def _fetch(
    session: aiohttp.ClientSession, *sims: RunningBittensorSimulator, netuid: int = 1
) -> FetchResult:
    source, _ = _source(session, _settings(*(s.base_url for s in sims), netuid=netuid), WALL)
    return await source.fetch()


async def test_recording_replays_to_its_readme_facts(session: aiohttp.ClientSession) -> None:
    """The mainnet recording gives 12 permit holders (10 active, 2 inactive), each its own
    coldkey, the largest 37.7 % of all permit stake and 38.02 % (645,173,460,056,565 of
    1,696,880,514,237,877 rao) of the active, and Nakamoto coefficients 1, 2 and 3."""
    async with Replay() as replay:
        await replay.serve(replay.build(), "127.0.0.1", 0)
        source, _ = _source(session, _settings(replay.base_url), RECORDED_AT + 5)
        result = await source.fetch()
    assert result.failures == ()
    validator_set = result.validator_set
    assert validator_set is not None
    table = validator_set.table
    assert len(table) == 12
    assert list(table.status).count(STATUS_ONLINE) == 10
    assert list(table.status).count(STATUS_INACTIVE) == 2
    stakes = [int(s) for s in table.stakes]
    assert round(max(stakes) / sum(stakes), 3) == 0.377
    active = [int(s) for s, code in zip(table.stakes, table.status, strict=True) if code == 0]
    assert (max(active), sum(active)) == (645_173_460_056_565, 1_696_880_514_237_877)
    largest = table.largest(1)[0]
    assert table.addresses[largest] == "5CGLCBndTR1BvQZzn429ckT8GyxduzyjMgt4K1UVTYa8gKfb"
    attribution = validator_set.attribution
    assert attribution is not None
    assert len(set(attribution.entity_index.tolist())) == 12
    assert attribution.entity_names[attribution.entity_index[largest]] == "Macrocosmos"
    analysis = analyse(validator_set, {})
    entities = analysis.groupings[Grouping.ENTITY]
    assert round(entities.largest_ratio, 4) == 0.3802
    # Active stakes, largest first (10^12 rao): 645.2, 347.2, 171.4, ... of 1,696.9: the
    # first passes 1/3, two pass 1/2 (992.4), three pass 2/3 (1,163.8).
    assert entities.nakamoto == {"halt": 1, "majority": 2, "control": 3}
    assert validator_set.token_decimals == 9


async def test_replay_reports_kappa_block_and_authorities(session: aiohttp.ClientSession) -> None:
    """The recorded kappa is 32767/65535 of the stake, the set's version is block 6,852,690,
    and the served Aura authorities are counted."""
    async with Replay() as replay:
        await replay.serve(replay.build(), "127.0.0.1", 0)
        source, pool = _source(session, _settings(replay.base_url), RECORDED_AT)
        got = await source._attempt(pool.endpoints[0])
    assert isinstance(got, VersionedSet)
    assert got.consensus_threshold == Fraction(32767, 65535)
    assert got.version == 6_852_690
    assert got.block_authorities == REPLAYED_AUTHORITIES


async def test_simulated_subnet_sets(session: aiohttp.ClientSession) -> None:
    """Subnet 1 serves its 3 permit holders (the miner without a permit left out) at their
    stakes; subnet 3 marks its 2 inactive permit holders inactive."""
    async with _simulators(1) as (sim,):
        concentrated = await _fetch(session, sim, netuid=1)
        inactive = await _fetch(session, sim, netuid=3)
    assert concentrated.validator_set is not None
    assert [int(s) for s in concentrated.validator_set.table.stakes] == [
        600 * TAO,
        250 * TAO,
        150 * TAO,
    ]
    assert inactive.validator_set is not None
    assert list(inactive.validator_set.table.status) == [0, 0, 3, 3]


async def test_metadata_is_read_once_per_spec_version(session: aiohttp.ClientSession) -> None:
    """Two polls of one runtime read the V15 metadata once."""
    async with _simulators(1) as (sim,):
        source, _ = _source(session, _settings(sim.base_url), WALL)
        await source.fetch()
        await source.fetch()
    assert sim.calls.count("state_call") == 3  # the metadata once, the metagraph twice


@pytest.mark.parametrize(
    ("netuid", "reason"),
    [(4, "empty_set"), (9, "no_subnet")],
)
async def test_subnet_without_a_set_is_rejected(
    session: aiohttp.ClientSession, netuid: int, reason: str
) -> None:
    """A subnet whose UIDs hold no validator permit, or no such subnet, gives no set."""
    async with _simulators(1) as (sim,):
        result = await _fetch(session, sim, netuid=netuid)
    assert result.validator_set is None
    assert result.rejection_reasons == (reason,)


TRUNCATED = "0x01" + "00" * 3


@pytest.mark.parametrize(
    ("method", "kind", "result", "expected"),
    [
        ("state_getRuntimeVersion", "error", None, ("rpc_error", Outcome.INVALID_PAYLOAD)),
        (
            "Metadata_metadata_at_version",
            "result",
            "0x01106d657461",  # Some("meta"): no V15 metadata behind the magic
            ("metadata_mismatch", Outcome.INVALID_PAYLOAD),
        ),
        (
            "SubnetInfoRuntimeApi_get_selective_mechagraph",
            "result",
            TRUNCATED,
            ("undecodable_scale", Outcome.INVALID_PAYLOAD),
        ),
        ("chain_getHeader", "result", [1, 2], ("wrong_type", Outcome.INVALID_PAYLOAD)),
        ("chain_getFinalizedHead", "close", None, (None, Outcome.CONNECT_ERROR)),
    ],
)
async def test_fault_fails_over(
    session: aiohttp.ClientSession,
    method: str,
    kind: Any,
    result: Any,
    expected: tuple[str | None, Outcome],
) -> None:
    """A fault on the first endpoint is classified (outcome, rejection reason) and the
    second endpoint's set is used."""
    reason, outcome = expected
    async with _simulators(2) as (bad, good):
        bad.set_fault(method, kind, result)
        source, pool = _source(session, _settings(bad.base_url, good.base_url), WALL)
        fetched = await source.fetch()
    assert fetched.validator_set is not None
    assert fetched.validator_set.endpoint == "ep1"
    assert fetched.rejection_reasons == (() if reason is None else (reason,))
    assert pool.endpoints[0].requests[outcome] == 1
    assert not pool.endpoints[0].up


async def test_stale_block_fails_over(session: aiohttp.ClientSession) -> None:
    """A node whose finalized block is dated beyond max_clock_skew_seconds is rejected
    (stale_block) and the next endpoint's set is used."""
    async with _simulators(2) as (bad, good):
        bad.block_age_seconds = 120
        source, pool = _source(session, _settings(bad.base_url, good.base_url, skew=60), WALL)
        fetched = await source.fetch()
    assert fetched.validator_set is not None
    assert fetched.rejection_reasons == ("stale_block",)
    assert pool.endpoints[0].clock_skew_seconds == pytest.approx(-120, abs=1)


async def test_refused_connection_is_connect_error(session: aiohttp.ClientSession) -> None:
    """A WebSocket that cannot be opened is one connect_error request on that endpoint."""
    async with _simulators(1) as (sim,):
        url = sim.base_url
    source, pool = _source(session, _settings(url), WALL)
    fetched = await source.fetch()
    assert fetched.validator_set is None
    assert pool.endpoints[0].requests[Outcome.CONNECT_ERROR] == 1
    assert SUBNETS[1].netuid == 1
