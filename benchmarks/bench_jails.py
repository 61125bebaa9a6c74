"""Benchmark: jail tracking of a large set on a real store, time and memory per poll.

    python benchmarks/bench_jails.py                        # 1,100,000 validators
    python benchmarks/bench_jails.py --validators 20000     # quicker

Polls, each `JailTracker.observe` of one `ValidatorTable` (built before the clock starts, as a
source hands it over) on a store in a temporary directory:

1. the first poll: no state yet, so the whole set is the baseline, written in full;
2. a second poll with 100 changes (jails, unjails, moved `unjailableAfter`, stakes, names,
   10 joined at the end): the rows in the same order, the previous state a prefix of them;
3. a third with 10 validators gone from the middle, so the rows are aligned by address;
4. a restart: a new tracker on the reopened store loads the persisted state, then polls the
   third set again (nothing changed), the loaded rows in address order and the set's not.

Memory is the peak RSS during the poll above the RSS before it (VmHWM, reset through
/proc/self/clear_refs before each poll) and the RSS it leaves held (the tracked state).
Addresses are in a random order, as a source gives them; 1% of the set is jailed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import structlog

from quorumwatch.columns import (
    CONSENSUS_CODES_BELOW,
    STATUS_INACTIVE,
    STATUS_JAILED,
    STATUS_ONLINE,
    ValidatorTable,
    column_sum,
)
from quorumwatch.config import ChainSettings
from quorumwatch.jails.tracker import JailTracker
from quorumwatch.report import JailReport
from quorumwatch.store import AsyncStore

T0 = 1_767_225_600.0
POLL = 30.0
CHANGES = 100


def memory_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


class Chain:
    """A mainnet-sized set as columns, changed in place between polls."""

    def __init__(self, count: int, seed: int = 12) -> None:
        rng = np.random.default_rng(seed)
        self.rng = random.Random(seed)
        order = rng.permutation(count).tolist()
        self.joined = 0
        self.addresses = [f"0x{i:040x}" for i in order]
        self.names = [f"validator {i}" for i in order]
        self.stakes = rng.integers(10**10, 10**15, size=count, dtype=np.uint64)
        draw = rng.random(count)
        self.status = np.where(draw < 0.1, STATUS_INACTIVE, STATUS_ONLINE).astype(np.uint8)
        self.status[draw > 0.99] = STATUS_JAILED
        self.unjailable = np.where(
            self.status == STATUS_JAILED, int(T0 * 1000) + 600_000, -1
        ).astype(np.int64)

    def table(self) -> ValidatorTable:
        return ValidatorTable(
            addresses=list(self.addresses),
            names=list(self.names),
            stakes=self.stakes.copy(),
            status=self.status.copy(),
            unjailable_after_ms=self.unjailable.copy(),
        )

    def change(self, count: int) -> None:
        """`count` changes: a fifth each jails, unjails, moves `unjailableAfter` of a free
        validator (a cycle between polls), changes a stake, renames; then 10 join."""
        rows = self.rng.sample(range(len(self.addresses)), count - 10)
        for n, row in enumerate(rows):
            kind = n % 5
            if kind == 0:
                self.status[row] = STATUS_JAILED
            elif kind == 1:
                self.status[row] = STATUS_ONLINE
            elif kind == 2:
                self.status[row] = STATUS_ONLINE
                self.unjailable[row] = int(T0 * 1000) + 1_200_000 + n
            elif kind == 3:
                self.stakes[row] += np.uint64(1)
            else:
                self.names[row] += " (renamed)"
        joined = range(self.joined, self.joined + 10)
        self.joined += 10
        self.addresses += [f"0x{i:040x}ff" for i in joined]
        self.names += [f"joined {i}" for i in joined]
        self.stakes = np.concatenate([self.stakes, np.full(10, 10**12, dtype=np.uint64)])
        self.status = np.concatenate([self.status, np.zeros(10, dtype=np.uint8)])
        self.unjailable = np.concatenate([self.unjailable, np.full(10, -1, dtype=np.int64)])

    def remove(self, count: int) -> None:
        """`count` validators leave from the middle of the set."""
        keep = np.ones(len(self.addresses), dtype=np.bool_)
        keep[len(self.addresses) // 2 : len(self.addresses) // 2 + count] = False
        rows = np.flatnonzero(keep).tolist()
        self.addresses = [self.addresses[i] for i in rows]
        self.names = [self.names[i] for i in rows]
        self.stakes, self.status = self.stakes[keep], self.status[keep]
        self.unjailable = self.unjailable[keep]


async def measured(label: str, poll: Callable[[], Awaitable[JailReport]]) -> None:
    gc.collect()
    before = memory_kib("VmRSS")
    reset_peak()
    started = time.perf_counter()
    report = await poll()
    elapsed = time.perf_counter() - started
    peak, held = memory_kib("VmHWM"), memory_kib("VmRSS")
    print(
        f"{label:<34} {elapsed:8.2f} s   peak +{(peak - before) / 1024:7.1f} MiB"
        f"   held +{(held - before) / 1024:7.1f} MiB   jails {report.counters.jails}"
    )


async def run(count: int) -> None:
    chain = Chain(count)
    config = ChainSettings.model_validate(
        {
            "name": "bench",
            "kind": "hyperliquid",
            "poll_interval_seconds": POLL,
            "endpoints": [{"name": "sim", "url": "http://127.0.0.1:1"}],
        }
    )

    async def observe(tracker: JailTracker, table: ValidatorTable, at: float) -> JailReport:
        total = column_sum(table.stakes[table.status < CONSENSUS_CODES_BELOW])
        return await tracker.observe(table, total, at)

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "quorumwatch.db"
        async with await AsyncStore.open(path) as store:
            tracker = JailTracker(config, store, retention_days=30)
            table = chain.table()
            await measured("first poll (baseline write)", lambda: observe(tracker, table, T0))
            chain.change(CHANGES)
            table = chain.table()
            await measured(
                f"second poll ({CHANGES} changes)", lambda: observe(tracker, table, T0 + POLL)
            )
            chain.remove(10)
            table = chain.table()
            await measured(
                "third poll (10 left, by address)",
                lambda: observe(tracker, table, T0 + 2 * POLL),
            )
        async with await AsyncStore.open(path) as store:
            restarted = JailTracker(config, store, retention_days=30)
            await measured(
                "restart: load, then a poll",
                lambda: observe(restarted, table, T0 + 3 * POLL),
            )
        print(f"store file: {path.stat().st_size / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--validators", type=int, default=1_100_000)
    args = parser.parse_args()
    # The events of a poll are logged one by one: not what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"{args.validators:,} validators")
    asyncio.run(run(args.validators))


if __name__ == "__main__":
    main()
