"""Solana end to end: simulator → SolanaSource → ChainMonitor → analysis, checked by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp

from quorumwatch.analysis import Grouping, Threshold
from quorumwatch.config import ChainSettings, EndpointSettings
from quorumwatch.models import ValidatorStatus
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ChainReport, ReportBoard
from quorumwatch.simulator.solana import VoteAccountSpec, base58, start_solana_simulator

if TYPE_CHECKING:
    from quorumwatch.simulator.solana import RunningSolanaSimulator

WALL = 1_750_000_000.0
E18 = 10**18


def _key(n: int) -> str:
    return base58(n.to_bytes(32, "big"))


# Seven vote accounts (lamports): two delinquent, one unstaked; V1's odd lamport keeps the
# arithmetic off round numbers, and every stake is far above 2**53.
SEVEN = [
    VoteAccountSpec(_key(1), _key(101), 7 * E18 + 1),
    VoteAccountSpec(_key(2), _key(102), 4 * E18),
    VoteAccountSpec(_key(3), _key(103), 3 * E18, delinquent=True),
    VoteAccountSpec(_key(4), _key(104), 3 * E18),
    VoteAccountSpec(_key(5), _key(105), 2 * E18, delinquent=True),
    VoteAccountSpec(_key(6), _key(106), 1 * E18),
    VoteAccountSpec(_key(7), _key(107), 0),
]


async def _poll(sim: RunningSolanaSimulator) -> ChainReport:
    settings = ChainSettings(
        name="solana",
        kind="solana",
        endpoints=[EndpointSettings(name="sim", url=sim.base_url, timeout_seconds=10)],
    )
    async with aiohttp.ClientSession() as session:
        monitor = ChainMonitor(settings, session, ReportBoard(), clock=lambda: WALL)
        return await monitor.poll_once()


async def test_seven_accounts_match_hand_computation() -> None:
    """On 7 accounts (2 delinquent, 1 unstaked): per-validator Nakamoto halt 1, majority 2,
    control 3; 4 online / 2 delinquent / 1 inactive; margin (3·online − 2·T)/(3·T); halt
    distance 1 — all worked out by hand with integers below."""
    async with await start_solana_simulator(SEVEN, clock=lambda: WALL) as sim:
        report = await _poll(sim)
    assert report.up is True
    analysis = report.analysis
    assert analysis is not None
    assert report.totals is not None

    total = 7 * E18 + 1 + 4 * E18 + 3 * E18 + 3 * E18 + 2 * E18 + 1 * E18  # 20e18 + 1
    offline = 3 * E18 + 2 * E18  # delinquent stake stays in T and counts as offline
    online = total - offline  # 15e18 + 1
    assert analysis.total_stake == total == 20 * E18 + 1
    assert analysis.online_stake == online == 15 * E18 + 1

    # Descending stakes 7e18+1, 4e18, 3e18, 3e18, 2e18, 1e18; top-k sums:
    top1, top2, top3 = 7 * E18 + 1, 11 * E18 + 1, 14 * E18 + 1
    # halt (3·S ≥ T): k=1, since 3·(7e18+1) = 21e18+3 ≥ 20e18+1.
    halt_met = [3 * s >= total for s in (top1,)]
    # majority (2·S > T): 2·top1 = 14e18+2 is not > 20e18+1; 2·top2 = 22e18+2 is.
    majority_met = [2 * s > total for s in (top1, top2)]
    # control (3·S > 2·T = 40e18+2): 3·top2 = 33e18+3 no; 3·top3 = 42e18+3 yes.
    control_met = [3 * s > 2 * total for s in (top1, top2, top3)]
    assert halt_met == [True]
    assert majority_met == [False, True]
    assert control_met == [False, False, True]
    by_validator = analysis.groupings[Grouping.VALIDATOR]
    assert dict(by_validator.nakamoto) == {
        Threshold.HALT: 1,
        Threshold.MAJORITY: 2,
        Threshold.CONTROL: 3,
    }
    assert by_validator.holders == 6  # the unstaked account holds no share

    # Statuses: online V1, V2, V4, V6; delinquent V3, V5; inactive V7 (zero stake).
    counts = report.totals.validators
    assert counts[ValidatorStatus.ONLINE] == 4
    assert counts[ValidatorStatus.DELINQUENT] == 2
    assert counts[ValidatorStatus.INACTIVE] == 1
    assert counts[ValidatorStatus.JAILED] == 0
    assert report.totals.stake[ValidatorStatus.DELINQUENT] == offline

    # Margin online/T − 2/3 = (45e18+3 − 40e18−2) / (60e18+3) = (5e18+1) / (60e18+3).
    assert analysis.liveness_margin == (5 * E18 + 1) / (60 * E18 + 3)
    assert analysis.liveness_margin == (3 * online - 2 * total) / (3 * total)
    # Halt distance: ceil(T/3) − offline = 6_666_666_666_666_666_667 − 5e18 more offline
    # stake is needed; V1 alone (7e18+1) supplies it.
    assert (total + 2) // 3 - offline == 1_666_666_666_666_666_667
    assert by_validator.halt_distance == 1


def _naive_nakamoto(stakes: list[int], total: int) -> dict[Threshold, int]:
    """The smallest k with the top-k stake meeting each threshold, by a plain sorted loop."""
    found: dict[Threshold, int] = {}
    running = 0
    for k, stake in enumerate(sorted(stakes, reverse=True), 1):
        running += stake
        if Threshold.HALT not in found and 3 * running >= total:
            found[Threshold.HALT] = k
        if Threshold.MAJORITY not in found and 2 * running > total:
            found[Threshold.MAJORITY] = k
        if Threshold.CONTROL not in found and 3 * running > 2 * total:
            found[Threshold.CONTROL] = k
    return found


async def test_synthetic_mainnet_size_set_matches_naive_computation() -> None:
    """On the 1,500-account synthetic set, Nakamoto per validator, totals, delinquent counts and
    the margin equal a naive sorted-loop computation over the served accounts."""
    async with await start_solana_simulator(clock=lambda: WALL) as sim:
        served = [a for a in sim.accounts if a.activated_stake or not a.delinquent]
        report = await _poll(sim)
    assert len(sim.accounts) == 1500
    assert report.up is True
    assert report.analysis is not None
    assert report.totals is not None
    assert report.validator_set is not None
    assert len(report.validator_set.table) == len(served)

    stakes = [a.activated_stake for a in served]
    total = sum(stakes)
    offline = sum(a.activated_stake for a in served if a.delinquent)
    assert report.analysis.total_stake == total
    assert report.analysis.online_stake == total - offline
    expected = _naive_nakamoto(stakes, total)
    assert dict(report.analysis.groupings[Grouping.VALIDATOR].nakamoto) == expected
    assert expected[Threshold.HALT] > 10  # heavy-tailed but not a toy set
    assert report.analysis.liveness_margin == (3 * (total - offline) - 2 * total) / (3 * total)
    delinquent = sum(1 for a in served if a.delinquent and a.activated_stake)
    inactive = sum(1 for a in served if not a.activated_stake)
    counts = report.totals.validators
    assert counts[ValidatorStatus.DELINQUENT] == delinquent > 0
    assert counts[ValidatorStatus.INACTIVE] == inactive > 0
    assert counts[ValidatorStatus.ONLINE] == len(served) - delinquent - inactive
