"""CosmosSource over the simulator: page walks, fail-closed checks and failover."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import numpy as np
import pytest

from quorumwatch.chains.base import FetchResult
from quorumwatch.chains.cosmos.parse import REJECTION_REASONS, SlashingParams
from quorumwatch.chains.cosmos.source import (
    SIGNING_INFOS_PATH,
    VALIDATORS_PATH,
    CosmosSource,
    display_decimals,
    join,
    valcons_prefix,
)
from quorumwatch.config import ChainSettings, CosmosSettings, EndpointSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import DataError, ValidatorStatus
from quorumwatch.simulator.cosmos import (
    BONDED,
    MAX_MISSED,
    POWER_REDUCTION,
    RunningCosmosSimulator,
    start_cosmos_simulator,
)


@pytest.fixture
async def sim() -> AsyncIterator[RunningCosmosSimulator]:
    async with await start_cosmos_simulator(
        validators=60, jailed=3, unbonded=7, page_limit=20
    ) as s:
        yield s


async def _fetch(
    session: aiohttp.ClientSession, *sims: RunningCosmosSimulator, chain_id: str = "cosmoshub-4"
) -> FetchResult:
    settings = ChainSettings(
        name="hub",
        kind="cosmos",
        endpoints=[
            EndpointSettings(name=f"ep{i}", lcd=s.base_url, rpc=s.base_url, timeout_seconds=5)
            for i, s in enumerate(sims)
        ],
        cosmos=CosmosSettings(chain_id=chain_id),
    )
    pool = EndpointPool(settings.endpoints, session, max_response_bytes=1 << 24)
    return await CosmosSource(pool, settings).fetch()


async def test_complete_walk_follows_escaped_keys_to_an_empty_last_page(
    session: aiohttp.ClientSession, sim: RunningCosmosSimulator
) -> None:
    """Each next_key (+, / and =) goes back URL-escaped and intact, up to an empty last page."""
    result = await _fetch(session, sim)
    assert result.validator_set is not None
    assert len(result.validator_set.table) == 70
    walked = [r for r in sim.requests if r.path == VALIDATORS_PATH]
    keys = [r.query.get("pagination.key") for r in walked]
    assert keys[0] is None
    assert len(walked) == 5  # 70 rows in pages of 20, then the empty page
    for key in keys[1:]:
        assert key is not None
        assert "+" in key
        assert "/" in key
        assert key.endswith("=")
        base64.b64decode(key, validate=True)
    for request in walked[1:]:
        assert "+" not in request.raw_query
        assert "=" not in request.raw_query.split("key=")[1]
    assert any(r.path == SIGNING_INFOS_PATH and r.query.get("pagination.key") for r in sim.requests)


async def test_the_table_joins_staking_voting_power_and_signing_info(
    session: aiohttp.ClientSession, sim: RunningCosmosSimulator
) -> None:
    """Each operator's row has its moniker, voting power (tokens over the power reduction out
    of the set), status (jailed when jailed or tombstoned), missed blocks over the number that
    jails (NaN without signing info) and declared identity as its entity hint."""
    result = await _fetch(session, sim)
    assert result.validator_set is not None
    table = result.validator_set.table
    assert table.jail_risk_ratio is not None
    assert table.entity_hints is not None
    row_of = {address: row for row, address in enumerate(table.addresses)}
    assert row_of.keys() == {v.operator_address for v in sim.validators}
    for expected in sim.validators:
        row = row_of[expected.operator_address]
        assert table.names[row] == expected.moniker
        assert table.entity_hints[row] == expected.identity
        assert table.stakes[row] == (expected.voting_power or expected.tokens // POWER_REDUCTION)
        status = ValidatorStatus.ONLINE if expected.status == BONDED else ValidatorStatus.INACTIVE
        if expected.jailed or expected.tombstoned:
            status = ValidatorStatus.JAILED
        assert table.row(row).status is status
        if expected.missed_blocks is None:
            assert np.isnan(table.jail_risk_ratio[row])
        else:
            assert table.jail_risk_ratio[row] == expected.missed_blocks / MAX_MISSED
    assert any(v.missed_blocks is None for v in sim.validators)  # both cases are met


async def test_rpc_pages_are_pinned_to_the_status_height(
    session: aiohttp.ClientSession, sim: RunningCosmosSimulator
) -> None:
    """The RPC walk asks every page at the /status height."""
    await _fetch(session, sim)
    pages = [r.query for r in sim.requests if r.path == "/validators"]
    assert {p["height"] for p in pages} == {"1000000"}
    assert [p["page"] for p in pages] == ["1"]  # 60 validators fit one page of 100


@pytest.mark.parametrize("page", [0, 1, 3])
async def test_a_failing_lcd_page_fails_the_whole_fetch(
    session: aiohttp.ClientSession, sim: RunningCosmosSimulator, page: int
) -> None:
    """An HTTP 500 on any validators page, the empty last one included, yields no set."""
    sim.faults.fail_page = (VALIDATORS_PATH, page)
    result = await _fetch(session, sim)
    assert result.validator_set is None
    assert "http_5xx" in result.failures[0]


async def test_a_failing_signing_info_page_fails_the_whole_fetch(
    session: aiohttp.ClientSession, sim: RunningCosmosSimulator
) -> None:
    """An HTTP 500 on a later signing-infos page yields no set."""
    sim.faults.fail_page = (SIGNING_INFOS_PATH, 2)
    assert (await _fetch(session, sim)).validator_set is None


@pytest.mark.parametrize(
    ("fault", "value", "reason"),
    [
        ("chain_id", "theta-testnet-001", "wrong_chain"),
        ("catching_up", True, "catching_up"),
        ("block_age_seconds", 600.0, "stale_block"),
        ("block_age_seconds", -600.0, "future_block"),
        ("rpc_total_offset", 1, ""),  # the node refuses the page past the end: http_5xx
        ("rpc_total_offset", -1, "incomplete_set"),
        ("pool_offset", 1, "pool_mismatch"),
    ],
)
async def test_fail_closed_checks_reject_and_fail_over(
    session: aiohttp.ClientSession,
    sim: RunningCosmosSimulator,
    fault: str,
    value: object,
    reason: str,
) -> None:
    """Wrong chain, catching up, stale or future block, Σcount ≠ total, pool mismatch: next one
    serves."""
    async with await start_cosmos_simulator(validators=60, jailed=3, unbonded=7) as good:
        setattr(sim.faults, fault, value)
        result = await _fetch(session, sim, good)
        assert result.validator_set is not None
        assert result.validator_set.endpoint == "ep1"
        assert result.rejection_reasons == ((reason,) if reason else ())
        assert not reason or reason in REJECTION_REASONS
        assert result.failures[0].startswith("ep0: ")


async def test_consensus_validator_missing_from_lcd_is_rejected(
    session: aiohttp.ClientSession, sim: RunningCosmosSimulator
) -> None:
    """An RPC validator with no LCD match rejects the set, even with the pool made consistent."""
    hidden = next(v for v in sim.validators if v.voting_power > 0)
    sim.faults.hidden_operator = hidden.operator_address
    sim.faults.pool_offset = -hidden.tokens
    result = await _fetch(session, sim)
    assert result.validator_set is None
    assert result.rejection_reasons == ("unmatched_validator",)


async def test_all_endpoints_failing_yields_nothing(
    session: aiohttp.ClientSession, sim: RunningCosmosSimulator
) -> None:
    """With the only endpoint on the wrong network, no set and one failure per endpoint."""
    result = await _fetch(session, sim, chain_id="osmosis-1")
    assert result.validator_set is None
    assert len(result.failures) == 1
    assert result.rejection_reasons == ("wrong_chain",)


def test_join_rejects_an_empty_list() -> None:
    """join: an empty LCD list is rejected as empty_set."""
    params = SlashingParams(100, Decimal("0.5"))
    with pytest.raises(DataError) as caught:
        join([], [], infos=[], params=params, bonded_tokens=0, power_reduction=1)
    assert caught.value.reason == "empty_set"


@pytest.mark.parametrize(
    ("exponent", "reduction", "decimals"), [(6, 10**6, 0), (18, 10**18, 0), (18, 10**6, 12)]
)
def test_display_decimals(exponent: int, reduction: int, decimals: int) -> None:
    """Display decimals of voting power are token_exponent − log10(power_reduction)."""
    assert display_decimals(exponent, reduction) == decimals


@pytest.mark.parametrize(("exponent", "reduction"), [(6, 3 * 10**5), (6, 10**7)])
def test_display_decimals_rejects_odd_reductions(exponent: int, reduction: int) -> None:
    """A power_reduction that is not a power of ten, or exceeds the exponent, is refused."""
    with pytest.raises(ValueError, match="power of ten"):
        display_decimals(exponent, reduction)


@pytest.mark.parametrize(
    ("operator", "prefix"),
    [
        ("cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlv2ftf", "cosmosvalcons"),
        ("x1chainvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq9lwxv", "x1chainvalcons"),
    ],
    ids=["cosmoshub", "prefix_with_a_1"],
)
def test_valcons_prefix_ends_at_the_last_separator(operator: str, prefix: str) -> None:
    """The consensus prefix comes from the operator prefix up to the last "1", as bech32 reads."""
    assert valcons_prefix(operator) == prefix
