"""Bittensor end to end: the daemon over the simulated subtensor node's four subnets, each its
own chain, every coefficient worked out by hand below; and subnets of "all" registered and
deregistered while it runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

from quorumwatch.simulator.bittensor import SUBNETS, start_bittensor_simulator
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


def _chains(samples: Samples) -> set[str]:
    """Every chain some series is labelled with."""
    return {value for (_, labels) in samples for key, value in labels if key == "chain"}


async def test_subnets_come_and_go_while_the_daemon_runs(tmp_path: Path) -> None:
    """With netuids "all" re-listed every 0.1 s: subnet 3, registered while the daemon runs, is
    polled as tao-sn3; subnet 1, deregistered, leaves /metrics and /api/v1/state, its firing
    EntityHasMajority resolved; a re-list that fails is counted, and the subnets listed before
    are still polled."""
    async with await start_bittensor_simulator(subnets={1: SUBNETS[1], 2: SUBNETS[2]}) as sim:
        settings = daemon_settings(
            tmp_path / "store.db",
            chains=[
                {
                    "name": "tao",
                    "kind": "bittensor",
                    "poll_interval_seconds": 0.1,
                    "bittensor": {"subnet_refresh_seconds": 0.1},
                    "endpoints": [{"name": "sim", "url": sim.base_url, "timeout_seconds": 5}],
                }
            ],
        )
        async with running_daemon(settings) as url, aiohttp.ClientSession() as session:
            seen: list[Samples] = []

            async def scraped(check: Callable[[Samples], bool]) -> bool:
                seen.append(await scrape(session, url))
                return check(seen[-1])

            def up(*chains: str) -> Callable[[Samples], bool]:
                return lambda samples: all(
                    metric(samples, "quorumwatch_chain_up", chain=c) == 1 for c in chains
                )

            majority = {"alert": "EntityHasMajority"}
            await eventually(
                lambda: scraped(
                    lambda s: (
                        up("tao-sn1", "tao-sn2")(s)
                        and metric(s, "quorumwatch_events_total", **majority, status="firing") == 1
                    )
                ),
                "subnets 1 and 2 polled, subnet 1's EntityHasMajority firing",
            )
            assert _chains(seen[-1]) == {"tao", "tao-sn1", "tao-sn2"}
            sim.subnets[3] = SUBNETS[3]
            await eventually(lambda: scraped(up("tao-sn3")), "subnet 3 polled once registered")
            del sim.subnets[1]
            await eventually(
                lambda: scraped(lambda s: "tao-sn1" not in _chains(s)),
                "subnet 1's series gone once deregistered",
            )
            assert metric(seen[-1], "quorumwatch_events_total", **majority, status="resolved") == 1
            async with session.get(url.replace("/metrics", "/api/v1/state")) as response:
                state = await response.json()
            assert [c["chain"] for c in state["chains"]] == ["tao-sn2", "tao-sn3"]
            sim.set_fault("state_getKeysPaged", "error")
            failed = "quorumwatch_subnet_list_failures_total"
            listed = "quorumwatch_subnet_list_last_success_timestamp_seconds"
            await eventually(
                lambda: scraped(lambda s: (metric(s, failed, chain="tao") or 0) >= 1),
                "a failed re-list counted",
            )
            # Every re-list from now on fails: none was under way before this one failed.
            failures = metric(seen[-1], failed, chain="tao")
            last_listed = metric(seen[-1], listed, chain="tao")
            assert failures is not None
            assert last_listed is not None
            polled = {
                c: metric(seen[-1], "quorumwatch_last_success_timestamp_seconds", chain=c) or 0
                for c in ("tao-sn2", "tao-sn3")
            }

            def still_polled(samples: Samples) -> bool:
                return (metric(samples, failed, chain="tao") or 0) > failures and all(
                    (metric(samples, "quorumwatch_last_success_timestamp_seconds", chain=c) or 0)
                    > last
                    for c, last in polled.items()
                )

            await eventually(
                lambda: scraped(still_polled),
                "subnets 2 and 3 still polled after another failed re-list",
            )
            assert _chains(seen[-1]) == {"tao", "tao-sn2", "tao-sn3"}
            assert metric(seen[-1], listed, chain="tao") == last_listed
