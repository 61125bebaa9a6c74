"""A Cosmos chain end to end: simulator (LCD + RPC, ~200 validators over pages) → ChainMonitor."""

from __future__ import annotations

import math
from collections.abc import Sequence

import aiohttp
import pytest

from quorumwatch.analysis import Grouping, Threshold
from quorumwatch.config import ChainSettings, CosmosSettings, EndpointSettings
from quorumwatch.exporter.collector import validator_metrics
from quorumwatch.models import ValidatorStatus
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ChainReport, ReportBoard
from quorumwatch.simulator.cosmos import (
    BONDED,
    MAX_MISSED,
    POWER_REDUCTION,
    RunningCosmosSimulator,
    SimValidator,
    start_cosmos_simulator,
)


async def _poll(
    session: aiohttp.ClientSession,
    *sims: RunningCosmosSimulator,
    group_by_identity: bool = False,
) -> ChainReport:
    settings = ChainSettings(
        name="cosmoshub",
        kind="cosmos",
        endpoints=[
            EndpointSettings(name=f"ep{i}", lcd=s.base_url, rpc=s.base_url, timeout_seconds=5)
            for i, s in enumerate(sims)
        ],
        cosmos=CosmosSettings(chain_id="cosmoshub-4", group_by_identity=group_by_identity),
    )
    return await ChainMonitor(settings, session, ReportBoard()).poll_once()


def _nakamoto(powers: Sequence[int], reached: str) -> int:
    """The fewest largest holders whose power meets the threshold, counted by hand."""
    total = sum(powers)
    running = 0
    for count, power in enumerate(sorted(powers, reverse=True), start=1):
        running += power
        if (
            (reached == "halt" and 3 * running >= total)
            or (reached == "majority" and 2 * running > total)
            or (reached == "control" and 3 * running > 2 * total)
        ):
            return count
    raise AssertionError("unreachable")


def _expected_status(v: SimValidator) -> ValidatorStatus:
    if v.jailed or v.tombstoned:
        return ValidatorStatus.JAILED
    if v.status == BONDED:
        return ValidatorStatus.ONLINE
    return ValidatorStatus.INACTIVE


async def test_default_simulator_matches_a_hand_computation(
    session: aiohttp.ClientSession,
) -> None:
    """Nakamoto coefficients, statuses, declared identities, liveness margin and jail risk equal
    a hand computation."""
    async with await start_cosmos_simulator() as sim:
        report = await _poll(session, sim)
    assert report.up, report.failures
    assert report.analysis is not None
    assert report.validator_set is not None
    assert report.totals is not None
    assert report.validator_set.token_decimals == 0  # ATOM: 6 − log10(10**6)

    powers = [v.voting_power for v in sim.validators if v.status == BONDED]
    assert len(powers) == 180
    assert report.analysis.total_stake == sum(powers)
    assert report.analysis.online_stake == sum(powers)  # jailed validators left the set
    assert report.analysis.liveness_margin == pytest.approx(1 / 3)
    for grouping in (Grouping.VALIDATOR, Grouping.ENTITY):  # no entities: each its own
        nakamoto = report.analysis.groupings[grouping].nakamoto
        assert nakamoto[Threshold.HALT] == _nakamoto(powers, "halt")
        assert nakamoto[Threshold.MAJORITY] == _nakamoto(powers, "majority")
        assert nakamoto[Threshold.CONTROL] == _nakamoto(powers, "control")
    assert 1 < report.analysis.groupings[Grouping.VALIDATOR].nakamoto[Threshold.HALT] < 180

    table = report.validator_set.table
    by_address = {v.address: v for v in table.rows(range(len(table)))}
    assert set(by_address) == {v.operator_address for v in sim.validators}
    for expected in sim.validators:
        got = by_address[expected.operator_address]
        assert got.status == _expected_status(expected)
        assert got.name == expected.moniker
        assert got.entity_hint == expected.identity
        assert got.stake == (expected.voting_power or expected.tokens // POWER_REDUCTION)
        if expected.missed_blocks is None:
            assert got.jail_risk_ratio is None
        else:
            assert got.jail_risk_ratio == expected.missed_blocks / MAX_MISSED
    counts = report.totals.validators
    assert counts[ValidatorStatus.ONLINE] == 180
    assert counts[ValidatorStatus.JAILED] == 5
    assert counts[ValidatorStatus.INACTIVE] == 20
    ratios = sorted((v.jail_risk_ratio or 0.0 for v in by_address.values()), reverse=True)
    assert ratios[:2] == [1.0, 0.5]  # missed 9500 (one more jails) and 4750 of 9500
    assert sum(v.key_type == "secp256k1" for v in sim.validators) > 0  # both hashes joined

    (jail_risk,) = (m for m in validator_metrics([report]) if m.name.endswith("jail_risk_ratio"))
    exported = {s.labels["validator"]: s.value for s in jail_risk.samples}
    assert exported == {
        v.operator_address: v.missed_blocks / MAX_MISSED
        for v in sim.validators
        if v.missed_blocks is not None
    }


async def test_after_jailing_the_denominator_shrinks(session: aiohttp.ClientSession) -> None:
    """With 10 of 40 jailed, the coefficients follow the powers left in the CometBFT set."""
    async with await start_cosmos_simulator(
        validators=30, jailed=10, unbonded=0, page_limit=7, seed=7
    ) as sim:
        report = await _poll(session, sim)
    assert report.analysis is not None
    powers = [v.voting_power for v in sim.validators if v.voting_power]
    assert report.analysis.total_stake == sum(powers)
    halt = report.analysis.groupings[Grouping.VALIDATOR].nakamoto[Threshold.HALT]
    assert halt == _nakamoto(powers, "halt")
    assert report.totals is not None
    assert report.totals.validators[ValidatorStatus.JAILED] == 10
    assert math.isclose(report.analysis.liveness_margin, 1 / 3)


async def test_failover_to_the_second_endpoint(session: aiohttp.ClientSession) -> None:
    """A first endpoint on the wrong network is rejected and counted; the second one serves."""
    async with (
        await start_cosmos_simulator(chain_id="cosmoshub-3") as stale,
        await start_cosmos_simulator() as good,
    ):
        report = await _poll(session, stale, good)
    assert report.up
    assert report.validator_set is not None
    assert report.validator_set.endpoint == "ep1"
    assert report.rejections == {"wrong_chain": 1}


async def test_group_by_identity_merges_validators_declaring_one_identity(
    session: aiohttp.ClientSession,
) -> None:
    """With group_by_identity, entity coefficients are over power summed per declared identity."""
    async with await start_cosmos_simulator() as sim:
        report = await _poll(session, sim, group_by_identity=True)
    assert report.analysis is not None
    per_identity: dict[str, int] = {}
    for v in sim.validators:
        if v.status == BONDED:
            per_identity[v.identity] = per_identity.get(v.identity, 0) + v.voting_power
    entity = report.analysis.groupings[Grouping.ENTITY]
    assert entity.holders == len(per_identity)
    for threshold in Threshold:
        assert entity.nakamoto[threshold] == _nakamoto(list(per_identity.values()), threshold)
    names = {e.name for e in report.analysis.entities}
    assert names == {f"identity:{identity}" for identity in per_identity}
