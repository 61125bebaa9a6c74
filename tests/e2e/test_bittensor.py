"""Bittensor end to end: the daemon over the simulated subtensor node's four subnets, each its
own chain, every coefficient worked out by hand below."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from quorumwatch.simulator.bittensor import start_bittensor_simulator
from tests.builders import daemon_settings
from tests.services import Samples, eventually, metric, running_daemon, scrape

KAPPA = 32767 / 65535


def _nakamoto(samples: Samples, chain: str) -> dict[str, float | None]:
    return {
        threshold: metric(
            samples,
            "quorumwatch_nakamoto_coefficient",
            chain=chain,
            grouping="entity",
            threshold=threshold,
        )
        for threshold in ("halt", "majority", "control")
    }


async def test_daemon_reports_each_subnet_as_its_own_chain(tmp_path: Path) -> None:
    """Subnets 1-3 are up with their hand-computed Nakamoto coefficients, kappa and 4 Aura
    authorities; subnet 1's 600-of-1,000 coldkey has the majority; subnet 4 (no permit holder)
    is down with reason empty_set."""
    async with await start_bittensor_simulator(authorities=4) as sim:
        settings = daemon_settings(
            tmp_path / "store.db",
            chains=[
                {
                    "name": "tao",
                    "kind": "bittensor",
                    "poll_interval_seconds": 0.2,
                    "bittensor": {"netuids": [1, 2, 3, 4]},
                    "endpoints": [{"name": "sim", "url": sim.base_url, "timeout_seconds": 5}],
                }
            ],
        )
        async with running_daemon(settings) as url, aiohttp.ClientSession() as session:
            seen: list[Samples] = []

            async def polled() -> bool:
                seen.append(await scrape(session, url))
                samples = seen[-1]
                return all(
                    metric(samples, "quorumwatch_last_success_timestamp_seconds", chain=c)
                    for c in ("tao-sn1", "tao-sn2", "tao-sn3")
                ) and bool(
                    metric(
                        samples,
                        "quorumwatch_snapshot_rejections_total",
                        chain="tao-sn4",
                        reason="empty_set",
                    )
                )

            await eventually(polled, "every subnet polled", 30)
    samples = seen[-1]
    up = {c: metric(samples, "quorumwatch_chain_up", chain=f"tao-sn{c}") for c in (1, 2, 3, 4)}
    assert up == {1: 1, 2: 1, 3: 1, 4: 0}
    # Subnet 1: 600, 250, 150 (T = 1,000), one coldkey each. halt 3·600 ≥ 1,000; majority
    # 2·600 > 1,000; control 3·600 = 1,800 is not > 2,000, 3·850 = 2,550 is.
    assert _nakamoto(samples, "tao-sn1") == {"halt": 1, "majority": 1, "control": 2}
    # Subnet 2: ten of 100. halt needs 3·S ≥ 1,000: 4 (400); majority 2·S > 1,000: 6 (600);
    # control 3·S > 2,000: 7 (700).
    assert _nakamoto(samples, "tao-sn2") == {"halt": 4, "majority": 6, "control": 7}
    # Subnet 3: 300, 300 active; 200, 200 inactive, out of T = 600. halt 3·300 ≥ 600: 1;
    # majority 2·300 = 600 is not > 600, 2·600 is: 2; control 3·600 > 1,200: 2.
    assert _nakamoto(samples, "tao-sn3") == {"halt": 1, "majority": 2, "control": 2}
    inactive = metric(samples, "quorumwatch_validators", chain="tao-sn3", status="inactive")
    assert inactive == 2
    for chain in ("tao-sn1", "tao-sn2", "tao-sn3"):
        assert metric(samples, "quorumwatch_consensus_threshold_ratio", chain=chain) == KAPPA
        assert metric(samples, "quorumwatch_block_authorities", chain=chain) == 4
    # Subnet 1's largest coldkey is named by its identity, validator-1000: 0.6 > kappa.
    majority = "quorumwatch_entity_has_majority"
    assert metric(samples, majority, chain="tao-sn1", entity="validator-1000") == 1
    assert metric(samples, majority, chain="tao-sn2", entity="validator-2000") == 0
