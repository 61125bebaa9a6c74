"""Benchmark: the Ethereum simulator at mainnet size: build, SSZ state, JSON validators.

    python benchmarks/bench_ethereum_sim.py                      # 1,100,000 validators
    python benchmarks/bench_ethereum_sim.py --validators 200000  # quicker

Prints the time to build the set (target: well under 3 s at 1,100,000), to encode the SSZ
state the first time and from cache, and to fetch the SSZ state and the active validators'
JSON over loopback HTTP (the first JSON request renders and caches the rows; the second
reuses them), with the body sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from quorumwatch.simulator.ethereum import RunningEthereumSimulator, start_ethereum_simulator
from quorumwatch.simulator.ethereum_set import build_set
from quorumwatch.simulator.ethereum_state import encode_beacon_state, encode_registry

_MIB = 1024 * 1024


def report(label: str, seconds: float, size: int | None = None) -> None:
    shown = "" if size is None else f"  {size / _MIB:9.1f} MiB"
    print(f"{label:<46} {seconds:7.2f} s{shown}", flush=True)


async def fetch(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, int]:
    """Seconds and bytes to read the whole answer, a MiB at a time."""
    started = time.perf_counter()
    size = 0
    async with session.get(url, headers=headers) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(_MIB):
            size += len(chunk)
    return time.perf_counter() - started, size


async def over_http(simulator: RunningEthereumSimulator) -> None:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        state = f"{simulator.base_url}/eth/v2/debug/beacon/states/head"
        ssz = {"Accept": "application/octet-stream"}
        for attempt in ("first", "cached"):
            seconds, size = await fetch(session, state, ssz)
            report(f"GET SSZ state ({attempt})", seconds, size)
        active = f"{simulator.base_url}/eth/v1/beacon/states/head/validators?status=active"
        for attempt in ("first: renders", "cached rows"):
            seconds, size = await fetch(session, active, {})
            report(f"GET validators?status=active ({attempt})", seconds, size)


async def run(validators: int, http: bool) -> None:
    for attempt in ("first", "again"):
        started = time.perf_counter()
        built = build_set(validators)
        report(f"build {validators:,} validators ({attempt})", time.perf_counter() - started)
    started = time.perf_counter()
    parts = encode_registry(built.registry, built.base_epoch)
    report("encode the registry lists", time.perf_counter() - started)
    if not http:
        return
    async with await start_ethereum_simulator(validators=validators) as simulator:
        chain = simulator.chain(simulator.resolve("head"))
        started = time.perf_counter()
        body = encode_beacon_state(chain, parts)
        report("encode the state around them", time.perf_counter() - started, sum(map(len, body)))
        await over_http(simulator)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--validators", type=int, default=1_100_000)
    parser.add_argument("--no-http", action="store_true", help="time the build and encoding only")
    args = parser.parse_args()
    asyncio.run(run(args.validators, http=not args.no_http))


if __name__ == "__main__":
    main()
