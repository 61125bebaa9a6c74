"""Soak: three chains polled back to back with injected faults; watch memory, fds and tasks.

    python benchmarks/soak.py --cycles 10000            # the endurance figure (a few minutes)
    python benchmarks/soak.py --cycles 2000 --every 100 # quicker

One cycle polls hyperliquid, solana and cosmos once each, concurrently, through `ChainMonitor`
with a real `AsyncStore` (jail history) and `ChainAlerts` (alert state and outbox) in a temporary
directory, against the in-process simulators. Time is compressed: there is no sleep between
cycles, and a fake wall clock advances one poll interval (300 s) per cycle, so the sliding
windows (availability 24 h, jails 7 d) wrap within the run and jail and alert events age as they
would in production. Faults, each on one chain: hyperliquid answers 5xx and malformed JSON
once per 14 polls and jails then unjails a validator; solana answers 503 or a truncated body
every 7th poll; cosmos fails one LCD page every 7th poll.

Every `--every` cycles (after `gc.collect()`) it samples RSS (VmRSS), open fds, asyncio tasks
and tracemalloc's current traced size, prints a table, then the growth from the mean of the
first quarter of the samples to the mean of the last quarter. A leak shows as steady growth;
steady state is flat (the first samples include warm-up: caches, the 24 h window filling).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from quorumwatch.alerting.evaluator import ChainAlerts
from quorumwatch.config import ChainSettings, CosmosSettings, EndpointSettings, StorageSettings
from quorumwatch.jails.tracker import JailTracker
from quorumwatch.logs import configure_logging
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ReportBoard
from quorumwatch.simulator import load_scenario, parse_scenario, start_simulator
from quorumwatch.simulator.cosmos import start_cosmos_simulator
from quorumwatch.simulator.solana import start_solana_simulator
from quorumwatch.store import AsyncStore

POLL_INTERVAL_SECONDS = 300.0  # the fake clock's step per cycle
START = 1_750_000_000.0
JAILED = "0x00000000000000000000000000000000000000a1"
HYPERLIQUID_PERIOD = 14  # polls per pass through the hyperliquid scenario below
FAULT_EVERY = 7
LCD_VALIDATORS = "/cosmos/staking/v1beta1/validators"


class FakeClock:
    """A wall clock that only moves when told: one poll interval per cycle."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True)
class Sample:
    cycle: int
    rss_kib: int
    fds: int
    tasks: int
    traced_bytes: int
    seconds: float


def hyperliquid_scenario() -> dict[str, Any]:
    """14 polls: 6 healthy, a 500, 6 with a validator jailed, malformed JSON; then rewound."""
    steps = load_scenario("foundation-2025").steps[0].validators
    validators = [
        {"validator": v.validator, "name": v.name, "stake": v.stake, "active": v.active}
        for v in steps
    ]
    return {
        "name": "soak",
        "steps": [
            {"repeat": 6, "validators": validators},
            {"fault": {"kind": "http_status", "status": 500}},
            {"repeat": 6, "changes": {JAILED: {"jailed": True}}},
            {"fault": {"kind": "malformed_json"}},
        ],
    }


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def take_sample(cycle: int, started: float) -> Sample:
    gc.collect()
    return Sample(
        cycle=cycle,
        rss_kib=rss_kib(),
        fds=open_fds(),
        tasks=len(asyncio.all_tasks()),
        traced_bytes=tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0,
        seconds=time.monotonic() - started,
    )


async def soak(
    cycles: int,
    every: int,
    directory: Path,
    *,
    trace_from: int | None = None,
    poll_interval_seconds: float = POLL_INTERVAL_SECONDS,
) -> list[Sample]:
    """Run `cycles` cycles over three chains with faults; a sample every `every` cycles.

    With `trace_from`, tracemalloc runs from that cycle on (0: from the start) and samples
    carry `traced_bytes`; it counts only what the traced cycles leave alive. The chains poll
    every `poll_interval_seconds`, and the fake clock advances that much per cycle: a longer
    interval fills the sliding windows in fewer cycles. `tests/e2e/test_endurance.py` runs a
    bounded soak through this same function.
    """
    clock = FakeClock()
    samples: list[Sample] = []
    async with (
        await start_simulator(parse_scenario(hyperliquid_scenario()), clock=clock) as hyper,
        await start_solana_simulator(count=30, delinquent=2, clock=clock) as solana,
        await start_cosmos_simulator(
            validators=9, jailed=1, unbonded=1, page_limit=4, clock=clock
        ) as cosmos,
        await AsyncStore.open(directory / "soak.db") as store,
        aiohttp.ClientSession() as session,
    ):
        chains = [
            ChainSettings(
                name="hyperliquid",
                kind="hyperliquid",
                poll_interval_seconds=poll_interval_seconds,
                endpoints=[EndpointSettings(name="sim", url=hyper.base_url, timeout_seconds=5)],
            ),
            ChainSettings(
                name="solana",
                kind="solana",
                poll_interval_seconds=poll_interval_seconds,
                endpoints=[EndpointSettings(name="sim", url=solana.base_url, timeout_seconds=5)],
            ),
            ChainSettings(
                name="cosmoshub",
                kind="cosmos",
                poll_interval_seconds=poll_interval_seconds,
                endpoints=[
                    EndpointSettings(
                        name="sim", lcd=cosmos.base_url, rpc=cosmos.base_url, timeout_seconds=5
                    )
                ],
                cosmos=CosmosSettings(chain_id="cosmoshub-4"),
            ),
        ]
        board = ReportBoard()
        monitors = [
            ChainMonitor(
                chain,
                session,
                board,
                clock=clock,
                jails=JailTracker(chain, store, StorageSettings().retention_days),
                on_report=ChainAlerts(chain, store, clock=clock).evaluate,
            )
            for chain in chains
        ]
        ups = dict.fromkeys((chain.name for chain in chains), 0)
        rewind = f"{hyper.base_url}/_sim/goto?step=0"
        started = time.monotonic()
        if trace_from == 0:
            tracemalloc.start()
        for cycle in range(1, cycles + 1):
            if cycle % HYPERLIQUID_PERIOD == 1 and cycle > 1:
                async with session.post(rewind) as response:
                    response.raise_for_status()
            if cycle % FAULT_EVERY == 3:
                body = None if cycle % 2 else b'{"jsonrpc": "2.0", "result": {"curr'
                solana.set_fault("getVoteAccounts", status=503 if body is None else 200, body=body)
            if cycle % FAULT_EVERY == 5:
                cosmos.faults.fail_page = (LCD_VALIDATORS, 1)
            reports = await asyncio.gather(*(monitor.poll_once() for monitor in monitors))
            for report in reports:
                ups[report.chain] += report.up
            solana.clear_faults()
            cosmos.faults.fail_page = None
            # The simulator's own log of requests (bounded, but at 10 000 only after about a
            # thousand cycles) would grow for most of a run and look like a leak.
            cosmos.requests.clear()
            clock.advance(poll_interval_seconds)
            if cycle == trace_from:
                gc.collect()
                tracemalloc.start()
            if cycle % every == 0:
                samples.append(take_sample(cycle, started))
        if min(ups.values()) < cycles // 2:  # the faults must not hide a chain that never works
            raise RuntimeError(f"polls up per chain: {ups}")
    tracemalloc.stop()
    return samples


def quarter_growth(samples: list[Sample]) -> dict[str, float]:
    """Mean of the last quarter of the samples minus the mean of the first quarter."""
    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]

    def mean(rows: list[Sample], field: str) -> float:
        return sum(float(getattr(row, field)) for row in rows) / len(rows)

    return {
        field: mean(last, field) - mean(first, field)
        for field in ("rss_kib", "fds", "tasks", "traced_bytes")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=10_000, help="poll cycles (three chains)")
    parser.add_argument("--every", type=int, help="sample every N cycles (default: cycles/40)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="faster, no traced size")
    args = parser.parse_args()
    every = args.every or max(1, args.cycles // 40)
    configure_logging("error")
    trace_from = None if args.no_tracemalloc else 0
    with tempfile.TemporaryDirectory(prefix="quorumwatch-soak-") as directory:
        samples = asyncio.run(soak(args.cycles, every, Path(directory), trace_from=trace_from))
    print(f"{'cycle':>7} {'seconds':>8} {'rss KiB':>9} {'fds':>4} {'tasks':>5} {'traced KiB':>10}")
    for s in samples:
        print(
            f"{s.cycle:>7} {s.seconds:>8.1f} {s.rss_kib:>9} {s.fds:>4} {s.tasks:>5} "
            f"{s.traced_bytes / 1024:>10.1f}"
        )
    growth = quarter_growth(samples)
    print(
        f"growth, last quarter vs first quarter of samples: rss {growth['rss_kib']:+.0f} KiB, "
        f"fds {growth['fds']:+.1f}, tasks {growth['tasks']:+.1f}, "
        f"traced {growth['traced_bytes'] / 1024:+.1f} KiB"
    )
    total = samples[-1].seconds if samples else 0.0
    print(
        f"{args.cycles} cycles in {total:.1f} s ({3 * args.cycles / max(total, 1e-9):.0f} polls/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
