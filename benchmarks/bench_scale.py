"""Benchmark: the scale targets, each figure beside its target with PASS or MISS.

    python benchmarks/bench_scale.py                        # 1,100,000 validators: ~4 min
    python benchmarks/bench_scale.py --validators 20000 --holders 20000   # small sets

Figures (targets on a 2-core machine, simulators on loopback):

- one Ethereum poll at `--validators` N: `ChainMonitor.poll_once()` end to end, without a store
  (fetch, decode, analysis: what `run --once` does), over SSZ (<= 5 s) and JSON (<= 15 s);
  broken down into the transfer alone (a plain GET of the body), the source's fetch (transfer,
  decode, the set's columns, attribution) with the longest event-loop stall during it (a
  1 ms ticker), and the analysis (`analyse`, `ValidatorTable.totals`, `.largest`);
- the daemon's peak RSS (VmHWM) over SSZ (<= 1 GiB) and JSON (<= 2 GiB): `quorumwatch run`
  as a subprocess with a store, polling back to back, read once /metrics shows a second
  successful poll (which ran while the first's report and jail state were held), then
  stopped with SIGTERM; beside it the peak after the first poll, the time from its start to
  the first report, its own poll durations (jail tracking and SQLite included) and the
  longest of the scrapes made every 0.2 s meanwhile;
- `run --once --format json` as a subprocess against the Ethereum simulator (<= 8 s) and
  against the Hyperliquid simulator playing the demo scenario (<= 0.35 s, median of 5);
- one scrape of /metrics of a daemon polling the Hyperliquid, Cosmos and Solana simulators
  every 5 s, as a client sees it: median and p99 of `--scrapes` scrapes (<= 50 ms);
- the analysis core (`analyse_columns`) of `--holders` holders, with and without an entity
  map, as a ratio to one `sorted()` of the same stakes (<= 1x, judged from 1M holders up),
  per stake profile of bench_analysis.py; `analyse()` of the set as a source builds it (its
  entity columns made from the map first) is shown too;
- decoding Hyperliquid-shaped holders against `json.loads` (<= 2x): bench_decode.py's figure,
  run as it is when that module exists.

Every simulator runs in a child process, so the timed poll, the daemon's RSS and the scrapes
measure quorumwatch alone. Before the timed Ethereum poll the simulator has rendered its SSZ
and JSON answers once (a beacon node has its state at hand). Each figure is one run (the
heavy ones) or the best or median of a few; on a shared machine, note the load printed first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp

from quorumwatch.analysis import analyse
from quorumwatch.chains import make_source
from quorumwatch.chains.ethereum.source import IN_SET_STATUSES, SSZ
from quorumwatch.chains.kinds import KINDS
from quorumwatch.cli.app import DEMO_SCENARIO
from quorumwatch.columns import ValidatorTable
from quorumwatch.config import ChainSettings
from quorumwatch.endpoints import EndpointPool, http_session
from quorumwatch.logs import configure_logging
from quorumwatch.models import ValidatorSet
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ReportBoard
from quorumwatch.simulator import load_scenario
from quorumwatch.simulator.ethereum_set import write_label_files

if not __package__:  # run as a script: the benchmarks package is imported from the root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_analysis import (
    PROFILES,
    Prebuilt,
    analyse_prebuilt,
    seconds,
    validators,
)

ROOT = Path(__file__).resolve().parent.parent
_MIB = 1024 * 1024
_GIB = 1024 * _MIB
DAEMON_TIMEOUT_SECONDS = 600.0  # for a daemon's report
CHAIN_UP = "quorumwatch_chain_up"
LAST_SUCCESS = "quorumwatch_last_success_timestamp_seconds"
POLL_DURATION = "quorumwatch_poll_duration_seconds"
TARGET_HOLDERS = 1_000_000  # the analysis target's size
ENDPOINT_TIMEOUT_SECONDS = 300  # the most a config allows: a slow run gives a figure, not a failure


# -- printing --------------------------------------------------------------------------------


def target(label: str, shown: str, limit: str, passed: bool) -> None:
    print(f"  {label:<44} {shown:>24}  target {limit:<9} {'PASS' if passed else 'MISS'}")


def note(label: str, shown: str) -> None:
    print(f"  {label:<44} {shown:>24}")


def within(label: str, elapsed: float, limit: float) -> None:
    target(label, f"{elapsed:.3f} s", f"<= {limit:g} s", elapsed <= limit)


def heading(text: str) -> None:
    print(f"\n{text}", flush=True)


# -- simulators, each kind in a child process ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulatorSpec:
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    scenario: str | None = None


def _serve(specs: list[SimulatorSpec], urls: Connection, niceness: int) -> None:
    """The child process: serve every simulator, send their base URLs, serve until killed."""
    os.nice(niceness)

    # A daemon stopped mid-poll resets its connection: no error of the benchmark's.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    async def serve() -> None:
        running = []
        for spec in specs:
            start = KINDS[spec.kind].simulator_starter()
            scenarios = () if spec.scenario is None else (load_scenario(spec.scenario),)
            running.append(await start(*scenarios, **spec.options))
        urls.send([simulator.base_url for simulator in running])
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextmanager
def simulators(*specs: SimulatorSpec, niceness: int = 0) -> Iterator[list[str]]:
    """The base URLs of `specs`, served by one child process for the block's duration, at
    `niceness` (above 0: it takes a CPU only when the daemon leaves one, as a node on another
    host would)."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_serve, args=(list(specs), sending, niceness), daemon=True)
    child.start()
    try:
        while not receiving.poll(0.2):
            if not child.is_alive():
                raise RuntimeError(f"the simulators exited with {child.exitcode}")
        urls: list[str] = receiving.recv()
        yield urls
    finally:
        child.terminate()
        child.join()


# -- settings and configs ----------------------------------------------------------------------


def ethereum_chain(url: str, encoding: str, labels: tuple[Path, Path]) -> dict[str, Any]:
    return {
        "name": "ethereum",
        "kind": "ethereum",
        "poll_interval_seconds": 3600,
        "endpoints": [
            {
                "name": "sim",
                "url": url,
                "timeout_seconds": ENDPOINT_TIMEOUT_SECONDS,
                "read_timeout_seconds": ENDPOINT_TIMEOUT_SECONDS,
            }
        ],
        "ethereum": {
            "encoding": encoding,
            "labels_file": str(labels[0]),
            "operators_file": str(labels[1]),
        },
    }


def small_chains(hyperliquid: str, cosmos: str, solana: str) -> list[dict[str, Any]]:
    """The three small chains, each polled every 5 s."""
    chains: list[dict[str, Any]] = [
        {"name": "hyperliquid", "kind": "hyperliquid", "endpoints": [{"url": hyperliquid}]},
        {
            "name": "cosmoshub",
            "kind": "cosmos",
            "endpoints": [{"lcd": cosmos, "rpc": cosmos}],
            "cosmos": {"chain_id": "cosmoshub-4"},
        },
        {"name": "solana", "kind": "solana", "endpoints": [{"url": solana}]},
    ]
    for chain in chains:
        chain["endpoints"][0]["name"] = "sim"
    return [{**chain, "poll_interval_seconds": 5} for chain in chains]


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers and booleans are written alike


def write_config(directory: Path, chains: list[dict[str, Any]], metrics_port: int = 0) -> Path:
    """A daemon config: these chains, a store in `directory`, /metrics on `metrics_port`."""
    lines = [
        'log_level = "warning"',
        f"metrics = {toml_value({'listen': f'127.0.0.1:{metrics_port}'})}",
        f"storage = {toml_value({'path': str(directory / 'quorumwatch.db')})}",
    ]
    for chain in chains:
        lines += ["[[chains]]", *(f"{key} = {toml_value(value)}" for key, value in chain.items())]
    path = directory / "quorumwatch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the daemon and the CLI as subprocesses ----------------------------------------------------


def quorumwatch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "quorumwatch", *args]


def environment() -> dict[str, str]:
    """This process's environment, with src/ importable however the benchmark was started."""
    paths = [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def peak_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no VmHWM for process {pid}")
    return int(found.group(1)) * 1024


def samples(exposition: str, name: str) -> list[float]:
    """The values of metric `name` (one per label set) in a /metrics text."""
    return [float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", exposition, re.M)]


@dataclass(slots=True)
class Daemon:
    process: asyncio.subprocess.Process
    metrics_url: str
    session: aiohttp.ClientSession
    longest_scrape: float = 0.0  # of those made while waiting

    async def scrape(self) -> str:
        async with self.session.get(self.metrics_url) as response:
            response.raise_for_status()
            return await response.text()

    async def wait_for(self, ready: Callable[[str], bool]) -> str:
        """The first /metrics text that is `ready`, scraping every 0.2 s meanwhile."""
        deadline = time.monotonic() + DAEMON_TIMEOUT_SECONDS
        while True:
            started = time.perf_counter()
            try:
                text = await self.scrape()
            except aiohttp.ClientError:
                text = ""  # not listening yet
            else:
                self.longest_scrape = max(self.longest_scrape, time.perf_counter() - started)
            if ready(text):
                return text
            if self.process.returncode is not None:
                raise RuntimeError(f"the daemon exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon published no successful report in time")
            await asyncio.sleep(0.2)

    async def wait_up(self, chains: int) -> str:
        """/metrics once every chain has published a successful report."""
        return await self.wait_for(lambda text: samples(text, CHAIN_UP).count(1.0) == chains)


@asynccontextmanager
async def daemon(chains: list[dict[str, Any]]) -> AsyncIterator[Daemon]:
    """`quorumwatch run` on these chains in a temporary directory, stopped with SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory:
        port = free_port()
        config = write_config(Path(directory), chains, port)
        process = await asyncio.create_subprocess_exec(
            *quorumwatch_command("run", "--config", str(config)), env=environment()
        )
        try:
            async with aiohttp.ClientSession() as session:
                yield Daemon(process, f"http://127.0.0.1:{port}/metrics", session)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await process.wait()


async def daemon_figures(chain: dict[str, Any], limit_gib: int) -> None:
    """The daemon's peak RSS after its first and its second poll (the second runs while the
    first's report and jail state are still held), with its own poll times."""
    encoding = chain["ethereum"]["encoding"].upper()
    started = time.perf_counter()
    async with daemon([{**chain, "poll_interval_seconds": 1}]) as running:
        first = await running.wait_up(1)
        up_after = time.perf_counter() - started
        first_peak = peak_rss_bytes(running.process.pid)
        (success,) = samples(first, LAST_SUCCESS)
        second = await running.wait_for(
            lambda text: max(samples(text, LAST_SUCCESS), default=0) > success
        )
        peak = peak_rss_bytes(running.process.pid)
    shown = f"{peak / _MIB:,.0f} MiB"
    target(
        f"daemon peak RSS over {encoding}, 2 polls",
        shown,
        f"<= {limit_gib} GiB",
        peak <= limit_gib * _GIB,
    )
    note("  peak after its first poll", f"{first_peak / _MIB:,.0f} MiB")
    note("  start to first report", f"{up_after:.3f} s")
    for name, text in (("first", first), ("second", second)):
        (duration,) = samples(text, POLL_DURATION)
        note(f"  its {name} poll (with the store)", f"{duration:.3f} s")
    note("  longest scrape while it polled", f"{running.longest_scrape:.3f} s")


def run_once(chains: list[dict[str, Any]]) -> float:
    """Wall seconds of `run --once --format json`, from spawn to exit."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory:
        config = write_config(Path(directory), chains)
        command = quorumwatch_command("run", "--once", "--config", str(config), "--format", "json")
        started = time.perf_counter()
        done = subprocess.run(command, env=environment(), capture_output=True, check=False)
        elapsed = time.perf_counter() - started
    document = json.loads(done.stdout)
    if done.returncode not in (0, 1, 2) or any(c.get("up") is False for c in document["chains"]):
        raise RuntimeError(f"run --once failed ({done.returncode}): {done.stdout!r}")
    return elapsed


# -- the Ethereum poll in this process ---------------------------------------------------------


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await action()
    return time.perf_counter() - started, result


async def longest_stall(action: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """The longest the event loop went without running a 1 ms ticker during `action`."""
    longest = 0.0
    task = asyncio.ensure_future(action())
    last = time.perf_counter()
    while not task.done():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    return longest, task.result()


async def transfer(session: aiohttp.ClientSession, url: str, encoding: str) -> int:
    """Read the registry's whole answer as the source asks for it; its size in bytes."""
    if encoding == "ssz":
        path, headers, params = "/eth/v2/debug/beacon/states/head", {"Accept": SSZ}, {}
    else:
        path, headers = "/eth/v1/beacon/states/head/validators", {"Accept": "application/json"}
        params = {"status": IN_SET_STATUSES}
    size = 0
    async with session.get(url + path, headers=headers, params=params) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(_MIB):
            size += len(chunk)
    return size


async def poll_seconds(settings: ChainSettings, session: aiohttp.ClientSession) -> float:
    """One poll of a fresh monitor without a store, end to end; nothing of it is kept."""
    elapsed, report = await timed(ChainMonitor(settings, session, ReportBoard()).poll_once)
    if not report.up:
        raise RuntimeError(f"the poll failed: {report.failures}")
    return float(elapsed)


async def poll_stages(settings: ChainSettings, session: aiohttp.ClientSession) -> None:
    """The poll's stages one by one: the source's fetch, then each part of the analysis."""
    pool = EndpointPool(settings.endpoints, session, max_response_bytes=settings.max_response_bytes)
    fetch = make_source(settings, pool, time.time).fetch
    stall, (elapsed, result) = await longest_stall(lambda: timed(fetch))
    note("  fetch: transfer, decode, columns, labels", f"{elapsed:.3f} s")
    note("    longest event-loop stall in it", f"{stall:.3f} s")
    validator_set, cap = result.validator_set, settings.max_validator_series
    assert validator_set is not None
    assert validator_set.attribution is not None
    table = validator_set.table
    stages: dict[str, Callable[[], object]] = {
        "analyse": lambda: analyse(validator_set, {}, top=cap),
        "totals": table.totals,
        "largest": lambda: table.largest(cap),
    }
    for name, stage in stages.items():
        started = time.perf_counter()  # with the garbage collector on, as in a poll
        stage()
        note(f"  analysis: {name}", f"{time.perf_counter() - started:.3f} s")


async def ethereum_poll(url: str, encoding: str, labels: tuple[Path, Path]) -> None:
    settings = ChainSettings.model_validate(ethereum_chain(url, encoding, labels))
    async with http_session() as session:
        await transfer(session, url, encoding)  # the simulator renders and caches its answer
        elapsed = await poll_seconds(settings, session)
        within(f"one poll over {encoding.upper()}", elapsed, 5 if encoding == "ssz" else 15)
        elapsed, size = await timed(lambda: transfer(session, url, encoding))
        note(f"  transfer only ({size / _MIB:,.0f} MiB)", f"{elapsed:.3f} s")
        await poll_stages(settings, session)


# -- the figures -------------------------------------------------------------------------------


async def ethereum_figures(count: int) -> None:
    heading(f"Ethereum, {count:,} validators")
    with tempfile.TemporaryDirectory(prefix="bench-scale-labels-") as directory:
        labels = write_label_files(Path(directory), validators=count)
        with simulators(SimulatorSpec("ethereum", {"validators": count})) as (url,):
            for encoding in ("ssz", "json"):
                await ethereum_poll(url, encoding, labels)
            for encoding, limit in (("ssz", 1), ("json", 2)):
                await daemon_figures(ethereum_chain(url, encoding, labels), limit)
            within("run --once (auto: SSZ)", run_once([ethereum_chain(url, "auto", labels)]), 8)


async def small_set_figures(scrapes: int) -> None:
    heading("Small sets")
    hyperliquid = SimulatorSpec("hyperliquid", scenario=DEMO_SCENARIO)
    specs = (hyperliquid, SimulatorSpec("cosmos"), SimulatorSpec("solana"))
    with simulators(*specs) as urls:
        chains = small_chains(*urls)
        once = [run_once(chains[:1]) for _ in range(5)]
        within("run --once, Hyperliquid demo (median of 5)", statistics.median(once), 0.35)
        note("  fastest of 5", f"{min(once):.3f} s")
        async with daemon(chains) as running:
            await running.wait_up(len(chains))
            times = []
            for _ in range(scrapes):
                elapsed, body = await timed(running.scrape)
                times.append(elapsed)
    p99 = statistics.quantiles(times, n=100, method="inclusive")[98]
    median = statistics.median(times)
    label = f"scrape, 3 chains ({len(body) / 1e3:,.0f} kB)"
    within(f"{label}: median of {scrapes}", median, 0.05)
    within(f"{label}: p99 of {scrapes}", p99, 0.05)


def analysis_figures(holders: int, profile: str) -> None:
    heading(f"Analysis, {holders:,} holders, profile {profile} (see bench_analysis.py)")
    validator_set = validators(holders, PROFILES[profile])
    stakes = [v.stake for v in validator_set]
    entity_of = MappingProxyType(
        {v.address: f"entity {i % 10_000}" for i, v in enumerate(validator_set)}
    )
    baseline = seconds(lambda: sorted(stakes), 3)
    note("sorted(stakes), the baseline", f"{baseline:.4f} s")
    table = ValidatorTable.of(validator_set)
    as_polled = ValidatorSet(table, 0, "bench", 0.0)
    for mapped, entities in (("no entity map", {}), ("entity map", entity_of)):
        elapsed = seconds(analyse_prebuilt(Prebuilt.of(table, entities)), 3)
        label, ratio = f"analyse_columns, {mapped}", elapsed / baseline
        if holders >= TARGET_HOLDERS:
            target(label, f"{elapsed:.4f} s = {ratio:.2f}x", "<= 1x", ratio <= 1)
        else:  # sorted() of a small list takes microseconds: the ratio says little
            note(label, f"{elapsed:.4f} s = {ratio:.2f}x")
        whole = seconds(partial(analyse, as_polled, entities), 3)
        note(f"  analyse(set), {mapped}", f"{whole:.4f} s = {whole / baseline:.2f}x")


def decode_figures() -> None:
    heading("Decoding Hyperliquid-shaped holders against json.loads (target <= 2x)")
    script = ROOT / "benchmarks" / "bench_decode.py"
    if not script.exists():
        print("  see bench_decode.py (not in this tree yet)")
        return
    done = subprocess.run([sys.executable, str(script)], env=environment(), check=False)
    if done.returncode != 0:
        print(f"  bench_decode.py exited with {done.returncode}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--validators", type=int, default=1_100_000, help="Ethereum set size")
    parser.add_argument("--holders", type=int, default=1_000_000, help="holders analysed")
    parser.add_argument("--scrapes", type=int, default=50, help="scrapes of /metrics")
    args = parser.parse_args()
    configure_logging("warning")
    print(f"bench_scale: {load()}", flush=True)
    asyncio.run(ethereum_figures(args.validators))
    asyncio.run(small_set_figures(args.scrapes))
    for profile in PROFILES:
        analysis_figures(args.holders, profile)
    decode_figures()
    print(f"\nbench_scale done: {load()}")


if __name__ == "__main__":
    main()
