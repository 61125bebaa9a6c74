"""Benchmark: parse + analysis + one scrape per set size, and event-loop lag during a poll.

    python benchmarks/bench_pipeline.py                 # 30, 2,000 and 1,000,000 holders
    python benchmarks/bench_pipeline.py --sizes 30,2000 # quicker

Analysis time is printed as a ratio to one `sorted()` of the same stakes (target at
1,000,000 holders: <= 3x). The lag check polls a 2,000-validator simulated API while a
ticker measures the longest the event loop went without running it (target: < 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

from quorumwatch.analysis import analyse
from quorumwatch.chains.hyperliquid.parse import parse_validator_summaries
from quorumwatch.config import ChainSettings
from quorumwatch.daemon import freeze_startup_heap
from quorumwatch.exporter.collector import QuorumwatchCollector
from quorumwatch.logs import configure_logging
from quorumwatch.models import ValidatorSet
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ChainReport, ReportBoard

T = TypeVar("T")
ENTITIES = {30: 3, 2_000: 200, 1_000_000: 10_000}


def rows(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` API rows: stakes spread over five orders of magnitude, 1% jailed, 10% inactive."""
    rng = random.Random(seed)
    return [
        {
            "validator": f"0x{i:040x}",
            "signer": f"0x{i:040x}",
            "name": f"validator {i}",
            "stake": rng.randint(10**10, 10**15),
            "isJailed": rng.random() < 0.01,
            "unjailableAfter": None,
            "isActive": rng.random() >= 0.1,
        }
        for i in range(count)
    ]


def best_of(repeats: int, action: Callable[[], T]) -> tuple[float, T]:
    """Fastest wall time of `repeats` runs, with the last result."""
    times = []
    result: T | None = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    assert result is not None
    return min(times), result


def settings(count: int, url: str = "http://127.0.0.1:1") -> ChainSettings:
    return ChainSettings.model_validate(
        {
            "name": "bench",
            "kind": "hyperliquid",
            "poll_interval_seconds": 1,
            "max_response_bytes": 1 << 30,
            "endpoints": [{"name": "sim", "url": url}],
            "max_validator_series": min(count, 1000),
        }
    )


def measure(count: int) -> dict[str, float]:
    body = json.dumps(rows(count)).encode()
    repeats = 3 if count >= 100_000 else 20
    parse_seconds, table = best_of(repeats, lambda: parse_validator_summaries(body))
    validator_set = ValidatorSet(table, 8, "sim", 0.0)
    entity_count = ENTITIES.get(count, max(1, count // 100))
    entity_of = MappingProxyType(
        {address: f"entity {i % entity_count}" for i, address in enumerate(table.addresses)}
    )
    stakes = table.stakes.tolist()
    sort_seconds, _ = best_of(repeats, lambda: sorted(stakes))
    analysis_seconds, analysis = best_of(repeats, lambda: analyse(validator_set, entity_of))
    chain = settings(count)
    board = ReportBoard()
    board.publish(
        ChainReport(
            chain="bench",
            polled_at=0.0,
            up=True,
            validator_set=validator_set,
            analysis=analysis,
            entity_of=entity_of,
            failures=(),
            last_success_at=0.0,
            endpoints=(),
            rejections=MappingProxyType({}),
            poll_duration_seconds=0.0,
            totals=table.totals(),
            exported_validators=table.rows(table.largest(chain.max_validator_series).tolist()),
        )
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QuorumwatchCollector(board, {"bench": chain.max_validator_series}))
    scrape_seconds, exposition = best_of(repeats, lambda: generate_latest(registry))
    return {
        "holders": count,
        "entities": entity_count,
        "body_mb": len(body) / 1e6,
        "parse_s": parse_seconds,
        "sort_s": sort_seconds,
        "analysis_s": analysis_seconds,
        "ratio": analysis_seconds / sort_seconds,
        "scrape_s": scrape_seconds,
        "scrape_kb": len(exposition) / 1e3,
    }


async def loop_lag_during_polls(count: int, polls: int) -> list[float]:
    """Longest event-loop stall seen during each of `polls` polls of a `count`-validator API.

    The simulator runs in its own process, so only the daemon's own work is measured.
    """
    compact = [
        {
            "validator": r["validator"],
            "name": r["name"],
            "stake": r["stake"],
            "jailed": r["isJailed"],
            "active": r["isActive"],
        }
        for r in rows(count)
    ]
    stalls: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        scenario = Path(directory) / "bench.json"
        scenario.write_text(json.dumps({"name": "bench", "steps": [{"validators": compact}]}))
        simulator = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "quorumwatch",
            "simulate",
            "--scenario",
            str(scenario),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert simulator.stdout is not None
            announcement = (await simulator.stdout.readline()).decode()
            base_url = announcement.split("POST ", 1)[1].removesuffix("/info\n")
            async with aiohttp.ClientSession() as session:
                monitor = ChainMonitor(settings(count, base_url), session, ReportBoard())
                await monitor.poll_once()  # warm-up: imports, connection
                freeze_startup_heap()  # as run_daemon does once it is serving
                for _ in range(polls):
                    stalls.append(await _worst_stall_during(monitor))
        finally:
            simulator.terminate()
            await simulator.wait()
    return stalls


async def _worst_stall_during(monitor: ChainMonitor) -> float:
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    task = asyncio.create_task(ticker())
    report = await monitor.poll_once()
    done = True
    await task
    assert report.up, report.failures
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="30,2000,1000000", help="comma-separated set sizes")
    parser.add_argument("--polls", type=int, default=20, help="polls for the loop-lag check")
    args = parser.parse_args()
    configure_logging("warning")
    columns = [
        ("holders", "{:>9,}"),
        ("entities", "{:>8,}"),
        ("body_mb", "{:>8.1f}"),
        ("parse_s", "{:>8.4f}"),
        ("sort_s", "{:>7.4f}"),
        ("analysis_s", "{:>10.4f}"),
        ("ratio", "{:>6.2f}"),
        ("scrape_s", "{:>8.4f}"),
        ("scrape_kb", "{:>9.1f}"),
    ]
    print(" ".join(f"{name:>{len(fmt.format(0))}}" for name, fmt in columns))
    for size in (int(s) for s in args.sizes.split(",")):
        gc.collect()
        result = measure(size)
        print(" ".join(fmt.format(result[name]) for name, fmt in columns))
    stalls = [s * 1000 for s in asyncio.run(loop_lag_during_polls(2_000, args.polls))]
    print(
        f"event loop during {args.polls} polls of 2,000 validators: longest stall "
        f"{max(stalls):.1f} ms, median per-poll worst {statistics.median(stalls):.1f} ms"
    )


if __name__ == "__main__":
    main()
