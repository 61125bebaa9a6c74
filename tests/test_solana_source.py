"""Solana source over the simulator: epoch probe, ordered failover, classification."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING

import aiohttp
import pytest

from quorumwatch.chains.solana.source import SolanaSource
from quorumwatch.config import ChainSettings, EndpointSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import Outcome, ValidatorStatus
from quorumwatch.simulator.solana import (
    SLOTS_PER_EPOCH,
    VoteAccountSpec,
    base58,
    start_solana_simulator,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from quorumwatch.simulator.solana import RunningSolanaSimulator

WALL = 1_750_000_000.0
BIG = 2**60 + 7  # above 2**53: must survive the HTTP round trip exactly


def _key(n: int) -> str:
    return base58(n.to_bytes(32, "big") if n else b"\x01" * 32)


ACCOUNTS = [
    VoteAccountSpec(_key(11), _key(21), BIG),
    VoteAccountSpec(_key(12), _key(22), 3 * 10**18, delinquent=True),
    VoteAccountSpec(_key(13), _key(23), 0),
    VoteAccountSpec(_key(14), _key(24), 0, delinquent=True),  # dropped by the node
]


@contextlib.asynccontextmanager
async def _simulators(count: int) -> AsyncIterator[list[RunningSolanaSimulator]]:
    async with contextlib.AsyncExitStack() as stack:
        sims = [
            await stack.enter_async_context(
                await start_solana_simulator(ACCOUNTS, clock=lambda: WALL)
            )
            for _ in range(count)
        ]
        yield sims


def _source(
    session: aiohttp.ClientSession, *sims: RunningSolanaSimulator
) -> tuple[SolanaSource, EndpointPool]:
    settings = ChainSettings(
        name="sol",
        kind="solana",
        endpoints=[
            EndpointSettings(name=f"ep{i}", url=s.base_url, timeout_seconds=5)
            for i, s in enumerate(sims)
        ],
    )
    pool = EndpointPool(settings.endpoints, session, max_response_bytes=1 << 24)
    return SolanaSource(pool, settings, clock=lambda: WALL), pool


async def test_set_is_fetched_and_classified(session: aiohttp.ClientSession) -> None:
    """One healthy node gives the 3 served accounts (unstaked delinquent dropped), exact stakes,
    statuses online/delinquent/inactive, 9 decimals, from ep0 at the clock's time."""
    async with _simulators(1) as (sim,):
        source, pool = _source(session, sim)
        result = await source.fetch()
    assert result.failures == ()
    assert result.rejection_reasons == ()
    validator_set = result.validator_set
    assert validator_set is not None
    assert validator_set.endpoint == "ep0"
    assert validator_set.fetched_at == WALL
    assert validator_set.token_decimals == 9
    table = validator_set.table
    assert [(v.address, v.name, v.stake, v.status) for v in table.rows(range(len(table)))] == [
        (_key(11), _key(21), BIG, ValidatorStatus.ONLINE),
        (_key(13), _key(23), 0, ValidatorStatus.INACTIVE),
        (_key(12), _key(22), 3 * 10**18, ValidatorStatus.DELINQUENT),
    ]
    assert sim.requests == {"getEpochInfo": 1, "getBlockTime": 1, "getVoteAccounts": 1}
    assert pool.endpoints[0].up is True


async def test_failover_on_http_error(session: aiohttp.ClientSession) -> None:
    """A 503 on getVoteAccounts at ep0 fails over to ep1, which serves; ep0 is down."""
    async with _simulators(2) as (broken, healthy):
        broken.set_fault("getVoteAccounts", status=503)
        source, pool = _source(session, broken, healthy)
        result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert len(result.failures) == 1
    assert result.failures[0].startswith("ep0: http_5xx")
    assert result.rejection_reasons == ()
    assert [e.up for e in pool.endpoints] == [False, True]


async def test_epoch_probe_failure_fails_the_endpoint(session: aiohttp.ClientSession) -> None:
    """A JSON-RPC error on getEpochInfo fails ep0 without fetching its set; ep1 serves."""
    async with _simulators(2) as (broken, healthy):
        broken.set_fault(
            "getEpochInfo", body=b'{"jsonrpc":"2.0","error":{"code":-32005,"message":"x"},"id":1}'
        )
        source, _ = _source(session, broken, healthy)
        result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert result.rejection_reasons == ("rpc_error",)
    assert result.failures[0].startswith("ep0: invalid_payload")
    assert "getVoteAccounts" not in broken.requests


async def test_invalid_set_is_rejected_and_next_endpoint_serves(
    session: aiohttp.ClientSession,
) -> None:
    """An empty vote-account set at ep0 counts empty_set and ep1's set is used."""
    async with _simulators(2) as (broken, healthy):
        broken.set_accounts([])
        source, _ = _source(session, broken, healthy)
        result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert result.rejection_reasons == ("empty_set",)


async def test_all_endpoints_failing_gives_no_set(session: aiohttp.ClientSession) -> None:
    """Malformed JSON at ep0 and a 500 at ep1 give no set, both failures, one rejection."""
    async with _simulators(2) as (first, second):
        first.set_fault("getVoteAccounts", body=b"{")
        second.set_fault("getEpochInfo", status=500)
        source, pool = _source(session, first, second)
        result = await source.fetch()
    assert result.validator_set is None
    assert [f.split(":")[0] for f in result.failures] == ["ep0", "ep1"]
    assert result.rejection_reasons == ("malformed_json",)
    assert pool.endpoints[0].requests[Outcome.INVALID_PAYLOAD] == 1
    assert pool.endpoints[1].requests[Outcome.HTTP_5XX] == 1


async def test_endpoint_behind_an_epoch_already_seen_is_stale(
    session: aiohttp.ClientSession,
) -> None:
    """After ep1 reported a later epoch, ep0 still in the previous epoch is skipped as stale."""
    async with _simulators(2) as (lagging, current):
        source, pool = _source(session, lagging, current)
        lagging.set_fault("getVoteAccounts", status=502)
        current.slot = lagging.slot + SLOTS_PER_EPOCH
        first = await source.fetch()
        assert first.validator_set is not None
        assert first.validator_set.endpoint == "ep1"
        lagging.clear_faults()
        second = await source.fetch()
    assert second.validator_set is not None
    assert second.validator_set.endpoint == "ep1"
    assert second.failures[0].startswith("ep0: stale: epoch")
    assert lagging.requests["getVoteAccounts"] == 1  # only the faulted one
    assert pool.endpoints[0].up is False


@pytest.mark.parametrize(
    ("offset", "reason"), [(-3600, "stale_block"), (3600, "future_block")], ids=["past", "future"]
)
async def test_block_time_far_from_the_clock_rejects_the_endpoint(
    session: aiohttp.ClientSession, offset: int, reason: str
) -> None:
    """A newest block dated an hour off (either way) rejects ep0 unread; ep1 serves the set."""
    async with _simulators(2) as (skewed, healthy):
        body = {"jsonrpc": "2.0", "result": int(WALL) + offset, "id": 1}
        skewed.set_fault("getBlockTime", body=json.dumps(body).encode())
        source, pool = _source(session, skewed, healthy)
        result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert result.rejection_reasons == (reason,)
    assert "getVoteAccounts" not in skewed.requests
    assert pool.endpoints[0].up is False
    assert pool.endpoints[0].clock_skew_seconds == offset


async def test_skipped_slot_has_no_time_and_the_endpoint_is_used(
    session: aiohttp.ClientSession,
) -> None:
    """getBlockTime error -32007 (slot skipped) leaves freshness to the epoch: ep0 serves."""
    async with _simulators(1) as (sim,):
        error = {"code": -32007, "message": "Slot 5 was skipped"}
        body = {"jsonrpc": "2.0", "error": error, "id": 1}
        sim.set_fault("getBlockTime", body=json.dumps(body).encode())
        source, pool = _source(session, sim)
        result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep0"
    assert pool.endpoints[0].clock_skew_seconds is None
