"""Benchmark: load held (issue #13), each figure beside its target with PASS or MISS.

    python benchmarks/bench_load.py                                  # 1,100,000 validators, 5 min
    python benchmarks/bench_load.py --validators 20000 --seconds 30  # a quick check
    python benchmarks/bench_load.py --interval 15   # each scraper once every 15 s, as Prometheus

The daemon (`run_daemon`, with a real store in a temporary directory) runs in this process,
polling the Ethereum simulator's set of `--validators` over SSZ back to back
(`poll_interval_seconds = 1`, shorter than a large poll, so a poll is nearly always running),
while `--scrapers` clients (20) in another process scrape it for `--seconds` (300): each GETs
/metrics (asking as Prometheus does: OpenMetrics, gzip, which it reads without decompressing),
then / when / answers 200 (the paths scraped are printed), in turn, on its own keep-alive
connection, with a 10 s timeout (Prometheus' default); back to back by default, so that 20
requests are always in flight, or every `--interval` seconds, the clients' phases spread over
it. The window starts once the first poll has succeeded. The simulator and the scrapers run
at nice 10 (`--scraper-niceness`): in production the beacon node and Prometheus are other
hosts, so they take a CPU only when the daemon leaves one. They and the label files' builder
run in child processes, so that only the daemon and this benchmark's probes (a ticker, an RSS
sampler) run in the daemon's process. Figures:

- the longest event-loop stall (<= 50 ms): a ticker on the daemon's loop sleeps 5 ms at a time
  and records how late each wake-up is; every stall over 50 ms is counted (and every wake-up
  25 ms or more late: far more frequent, they compare two runs' tails), and the longest are
  listed with their time in the window, the poll they began in, and where the time went: the
  loop thread on a CPU (the daemon's own work on the loop), runnable but waiting for a CPU
  (other processes: the machine is busy), or neither (blocked: the GIL held by one of the
  daemon's threads, or a blocking call), from /proc/thread-self/schedstat, how much of it
  the garbage collector ran (in any thread: a collection stops them all; `gc.callbacks`), and
  how much CPU time the hypervisor took from the machine meanwhile ("steal" in /proc/stat, in
  10 ms ticks, all CPUs together): on a virtual machine the host may stop a vCPU, and the
  thread on it, the loop's or the GIL holder's, stops with it (schedstat may count that
  neither as on a CPU nor as waiting for one, so it can show as blocked); the steal over the
  whole window is printed too;
- per path, the scrape latency as the clients see it: p99 (<= 100 ms), p50, max, count, and
  failures (0): an error, a timeout or a status other than 200;
- RSS (VmRSS) after warm-up (the first sample after the second successful poll), at the end,
  and its growth from the mean of the first third of the samples after warm-up to the mean of
  the last third: flat is growth under 5%, judged on RSS as each poll ends (the resident floor,
  poll after poll); the same growth of the samples taken every 2 s, wherever a poll is, is
  shown too (each holds some of a poll's transient memory, swinging by hundreds of MiB).

Linux only (/proc). Run it on an idle machine: on a shared one, the load average printed at
the start and the end, and the "waiting for a CPU" share of the stalls, say how much of a
figure is the machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import types
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
from prometheus_client.registry import Collector

from quorumwatch.config import load_settings
from quorumwatch.daemon import run_daemon
from quorumwatch.exporter.exposition import Encoder
from quorumwatch.exporter.server import Renderings
from quorumwatch.logs import configure_logging
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ChainReport
from quorumwatch.simulator.ethereum_set import write_label_files

if not __package__:  # run as a script: the benchmarks package is imported from the root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_scale import (
    SimulatorSpec,
    ethereum_chain,
    heading,
    load,
    note,
    simulators,
    target,
    within,
    write_config,
)

_MIB = 1024 * 1024
TICK_SECONDS = 0.005
STALL_LIMIT_SECONDS = 0.05
SCRAPE_P99_LIMIT_SECONDS = 0.1
SCRAPE_TIMEOUT_SECONDS = 10.0
RSS_EVERY_SECONDS = 2.0
RSS_GROWTH_LIMIT = 0.05
POLL_INTERVAL_SECONDS = 1  # the least a large poll takes: polls run back to back
STARTUP_TIMEOUT_SECONDS = 900.0  # for the first successful poll of a large set
STALLS_LISTED = 10
# The beacon node is another host in production: here it yields the CPUs to the daemon.
SIMULATOR_NICENESS = 10
# So are the scrapers (Prometheus servers); `--scraper-niceness 0` has them compete.
SCRAPER_NICENESS = 10
# What Prometheus asks for (its default scrape_protocols): OpenMetrics first.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


# -- the daemon's event loop: stalls -------------------------------------------------------------


def _schedstat(descriptor: int) -> tuple[float, float]:
    """Seconds this thread has spent on a CPU, and runnable waiting for one."""
    on_cpu, waiting, _ = os.pread(descriptor, 128, 0).split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stolen(descriptor: int) -> float:
    """CPU seconds the hypervisor has taken from this machine's CPUs, all of them together
    (/proc/stat's "steal", in its ticks of 10 ms): time a vCPU was running a thread, as far as
    the machine knows, while the host ran something else."""
    first_line = os.pread(descriptor, 256, 0).split(b"\n", 1)[0]
    return int(first_line.split()[8]) / _TICKS_PER_SECOND


@dataclass(frozen=True, slots=True)
class Stall:
    began_at: float  # time.monotonic() of the wake-up before it
    late: float  # seconds past the wake-up asked for
    on_cpu: float  # of the gap between the two wake-ups: the loop thread on a CPU
    waiting_for_cpu: float  # runnable, but other threads or processes held the CPUs
    stolen: float  # CPU time the host took from the machine meanwhile, all CPUs together
    threads: str  # where the daemon's other threads were when the loop got the GIL back

    @property
    def ended_at(self) -> float:
        return self.began_at + self.late + TICK_SECONDS

    @property
    def blocked(self) -> float:
        """The rest of the gap, the ticker's own sleep included."""
        return max(0.0, self.late + TICK_SECONDS - self.on_cpu - self.waiting_for_cpu)


def _threads() -> str:
    """Where each of the other threads is, as its innermost line of the daemon's or a
    library's code: a thread that held the GIL through a long call has just let it go, so
    its line is (or follows) that call."""
    loop_thread = threading.get_ident()
    places = []
    for ident, frame in sys._current_frames().items():
        if ident == loop_thread:
            continue
        innermost: types.FrameType | None = frame
        while innermost is not None and not _is_ours(innermost.f_code.co_filename):
            innermost = innermost.f_back
        if innermost is not None:
            code = innermost.f_code
            name = code.co_filename.rpartition("site-packages/")[2].rpartition("src/")[2]
            places.append(f"{name}:{innermost.f_lineno} {code.co_name}")
    return "; ".join(sorted(places)) or "no other thread in the daemon's code"


def _is_ours(filename: str) -> bool:
    return "quorumwatch" in filename or "site-packages" in filename


@dataclass(slots=True)
class LoopTicker:
    """How late each 5 ms wake-up on the event loop is; the stalls over the limit in full."""

    lateness_ms: Counter[int] = field(default_factory=Counter)  # bounded, unlike a list
    longest: float = 0.0
    stalls: list[Stall] = field(default_factory=list)
    stolen: float = 0.0  # by the host over the run, CPU seconds of all CPUs together

    async def run(self, until: float) -> None:
        descriptor = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        machine = os.open("/proc/stat", os.O_RDONLY)
        try:
            last, (cpu, waiting) = time.monotonic(), _schedstat(descriptor)
            stolen = stolen_at_start = _stolen(machine)
            while last < until:
                await asyncio.sleep(TICK_SECONDS)
                now, (cpu_now, waiting_now) = time.monotonic(), _schedstat(descriptor)
                stolen_now = _stolen(machine)
                late = max(0.0, now - last - TICK_SECONDS)
                self.lateness_ms[int(late * 1000)] += 1
                self.longest = max(self.longest, late)
                if late > STALL_LIMIT_SECONDS:
                    stall = Stall(
                        last,
                        late,
                        cpu_now - cpu,
                        waiting_now - waiting,
                        stolen_now - stolen,
                        _threads(),
                    )
                    self.stalls.append(stall)
                last, cpu, waiting, stolen = now, cpu_now, waiting_now, stolen_now
            self.stolen = stolen - stolen_at_start
        finally:
            os.close(machine)
            os.close(descriptor)

    @property
    def ticks(self) -> int:
        return sum(self.lateness_ms.values())

    def quantile_ms(self, fraction: float) -> int:
        """The lateness (whole ms, rounded down) below which `fraction` of the wake-ups fall."""
        wanted, seen = fraction * self.ticks, 0
        for late in sorted(self.lateness_ms):
            seen += self.lateness_ms[late]
            if seen >= wanted:
                return late
        return 0


@dataclass(slots=True)
class Collections:
    """The garbage collector's collections, in whichever of the daemon's threads they ran:
    each stops every thread, the event loop's too."""

    spans: list[tuple[int, float, float]] = field(default_factory=list)  # generation, start, end
    _started: float = 0.0

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic()
        else:
            self.spans.append((info["generation"], self._started, time.monotonic()))

    def seconds_within(self, start: float, end: float) -> float:
        return sum(max(0.0, min(e, end) - max(s, start)) for _, s, e in self.spans)

    def full(self) -> list[float]:
        """The duration of each full (generation 2) collection."""
        return [end - start for generation, start, end in self.spans if generation == 2]


@contextmanager
def observing(collections: Collections) -> Iterator[None]:
    gc.callbacks.append(collections.observe)
    try:
        yield
    finally:
        gc.callbacks.remove(collections.observe)


# -- the daemon's polls -------------------------------------------------------------------------


@dataclass(slots=True)
class Poll:
    started: float  # time.monotonic()
    ended: float = float("inf")  # until it ends
    up: bool = False
    rss_after: int = 0  # VmRSS as it ended


@dataclass(slots=True)
class Polls:
    """Every poll of the daemon, and the moments the first two succeeded."""

    polls: list[Poll] = field(default_factory=list)
    first_up: asyncio.Event = field(default_factory=asyncio.Event)
    second_up: asyncio.Event = field(default_factory=asyncio.Event)

    def ended(self, poll: Poll, report: ChainReport) -> None:
        poll.ended, poll.up = time.monotonic(), report.up
        successes = sum(p.up for p in self.polls)
        if successes >= 1:
            self.first_up.set()
        if successes >= 2:
            self.second_up.set()

    def second_success_at(self) -> float | None:
        ends = [p.ended for p in self.polls if p.up]
        return ends[1] if len(ends) > 1 else None

    def poll_at(self, moment: float) -> tuple[int, float] | None:
        """The number (from 1) of the poll running at `moment`, and how far into it."""
        for number, poll in enumerate(self.polls, 1):
            if poll.started <= moment <= poll.ended:
                return number, moment - poll.started
        return None

    def where(self, moment: float) -> str:
        found = self.poll_at(moment)
        return "between polls" if found is None else f"poll {found[0]}, {found[1]:.2f} s in"


@contextmanager
def recording(polls: Polls) -> Iterator[None]:
    """Every `ChainMonitor.poll_once` of the daemon, recorded in `polls`."""
    original = ChainMonitor.poll_once

    async def poll_once(monitor: ChainMonitor) -> ChainReport:
        poll = Poll(time.monotonic())
        polls.polls.append(poll)
        report = await original(monitor)
        polls.ended(poll, report)
        poll.rss_after = _status_bytes("VmRSS")
        return report

    with mock.patch.object(ChainMonitor, "poll_once", poll_once):
        yield


@dataclass(frozen=True, slots=True)
class Render:
    seconds: float  # in the worker thread, from start to end
    cpu_seconds: float  # of which that thread was on a CPU
    size: int  # bytes


@contextmanager
def rendering(renders: list[Render]) -> Iterator[None]:
    """Every rendering of /metrics by the daemon (one per format at a time), recorded."""
    original = Renderings._render

    async def render(
        self: Renderings, content_type: str, encode: Encoder, version: tuple[object, ...]
    ) -> bytes:
        def timed(registry: Collector) -> bytes:
            started, cpu = time.perf_counter(), time.thread_time()
            body = encode(registry)
            seconds = time.perf_counter() - started
            renders.append(Render(seconds, time.thread_time() - cpu, len(body)))
            return body

        return await original(self, content_type, timed, version)

    with mock.patch.object(Renderings, "_render", render):
        yield


# -- the daemon's memory ------------------------------------------------------------------------


def _status_bytes(field_name: str) -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no {field_name} in /proc/self/status")
    return int(found.group(1)) * 1024


async def sample_rss(samples: list[tuple[float, int]]) -> None:
    """Append (time.monotonic(), VmRSS) every few seconds until cancelled."""
    while True:
        samples.append((time.monotonic(), _status_bytes("VmRSS")))
        await asyncio.sleep(RSS_EVERY_SECONDS)


# -- the scrapers, in another process -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scraping:
    """How the daemon is scraped: by how many clients, for how long, how often."""

    base_url: str
    paths: list[str]  # each client GETs each in turn: a round
    clients: int
    seconds: float
    interval: float  # between the starts of a client's rounds; 0: back to back
    niceness: int  # of the scrapers' process

    def describe(self) -> str:
        pace = f"every {self.interval:g} s" if self.interval else "back to back"
        return (
            f"{self.clients} scrapers of {' then '.join(self.paths)}, {pace},"
            f" at nice {self.niceness}"
        )


@dataclass(frozen=True, slots=True)
class Scrapes:
    """What the scrapers saw of one path: each scrape's latency, and each failure's reason."""

    latencies: list[float]
    failures: list[str]


async def _scraper(scraping: Scraping, deadline: float, seen: dict[str, Scrapes]) -> None:
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS)
    # Spread over the interval, as Prometheus spreads its targets' scrapes.
    round_at = time.monotonic() + random.uniform(0, scraping.interval)
    headers = {"Accept": PROMETHEUS_ACCEPT}
    # Asked gzipped, as Prometheus asks, and read as it comes: decompressing is the scraper's
    # own work, which Prometheus does on its host, not this one's two cores.
    async with aiohttp.ClientSession(
        timeout=timeout, headers=headers, auto_decompress=False
    ) as session:
        while round_at < deadline:
            await asyncio.sleep(round_at - time.monotonic())
            for path in scraping.paths:
                started = time.perf_counter()
                try:
                    async with session.get(scraping.base_url + path) as response:
                        await response.read()
                        failure = None if response.status == 200 else f"HTTP {response.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    failure = type(exc).__name__
                seen[path].latencies.append(time.perf_counter() - started)
                if failure is not None:
                    seen[path].failures.append(failure)
            # A round slower than the interval delays the next; none is made up for.
            round_at = max(round_at + scraping.interval, time.monotonic())


def _scrape(scraping: Scraping, results: Connection) -> None:
    """The child process: send the deadline, scrape until it, send the Scrapes of each path."""

    os.nice(scraping.niceness)

    async def scrape() -> dict[str, Scrapes]:
        # CLOCK_MONOTONIC: the same clock in both processes.
        deadline = time.monotonic() + scraping.seconds
        results.send(deadline)
        seen = {path: Scrapes([], []) for path in scraping.paths}
        await asyncio.gather(*(_scraper(scraping, deadline, seen) for _ in range(scraping.clients)))
        return seen

    results.send(asyncio.run(scrape()))


async def received(connection: Connection) -> Any:
    """The next object on `connection`, waited for without a thread of the daemon's executor."""
    loop, readable = asyncio.get_running_loop(), asyncio.Event()
    loop.add_reader(connection.fileno(), readable.set)
    try:
        await readable.wait()
    finally:
        loop.remove_reader(connection.fileno())
    return connection.recv()


async def scraped(
    scraping: Scraping, ticker: LoopTicker
) -> tuple[float, float, dict[str, Scrapes]]:
    """Scrape from a child process while `ticker` watches this event loop; the window
    (time.monotonic()) and what each path's scrapes saw."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_scrape, args=(scraping, sending), daemon=True)
    child.start()
    sending.close()  # the child's end only: its exit is then an EOF here
    try:
        deadline: float = await received(receiving)
        started = time.monotonic()
        await ticker.run(until=deadline)
        seen: dict[str, Scrapes] = await received(receiving)
    finally:
        child.join(SCRAPE_TIMEOUT_SECONDS)
        child.terminate()
    return started, deadline, seen


# -- the run ------------------------------------------------------------------------------------


async def before_exit(awaited: Awaitable[object], daemon: asyncio.Task[None]) -> None:
    """Wait for `awaited`, failing if the daemon ends first."""
    waiting = asyncio.ensure_future(awaited)
    try:
        await asyncio.wait({waiting, daemon}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()  # unless done: the daemon ended, or the caller timed out
    if not waiting.done() or waiting.cancelled():
        daemon.result()  # its exception, if it has one
        raise RuntimeError("the daemon stopped")


async def answers_200(url: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status == 200


@asynccontextmanager
async def polling_daemon(
    validators: int, polls: Polls, rss: list[tuple[float, int]]
) -> AsyncIterator[str]:
    """`run_daemon` in this process, polling the simulated set back to back, with its polls
    and RSS recorded; its base URL, once a poll has succeeded."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as name:
        directory = Path(name)
        # Built in a child process, so that the daemon's RSS is the daemon's alone.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as child:
            labels = child.submit(write_label_files, directory, validators=validators).result()
        simulator = SimulatorSpec("ethereum", {"validators": validators})
        with simulators(simulator, niceness=SIMULATOR_NICENESS) as (url,):
            chain = ethereum_chain(url, "ssz", labels)
            chain["poll_interval_seconds"] = POLL_INTERVAL_SECONDS
            settings = load_settings(write_config(directory, [chain]))  # /metrics on port 0
            configure_logging(settings.log_level)
            stop, listening = asyncio.Event(), asyncio.get_running_loop().create_future()
            with recording(polls):
                daemon = asyncio.create_task(
                    run_daemon(settings, stop, on_listening=listening.set_result)
                )
                sampler = asyncio.create_task(sample_rss(rss))
                try:
                    async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
                        await before_exit(listening, daemon)
                        await before_exit(polls.first_up.wait(), daemon)
                    yield f"http://127.0.0.1:{listening.result()}"
                finally:
                    sampler.cancel()
                    stop.set()
                    await daemon


@dataclass(frozen=True, slots=True)
class Run:
    scraping: Scraping
    started: float  # the scraping window, time.monotonic()
    ended: float
    scrapes: dict[str, Scrapes]
    polls: Polls
    ticker: LoopTicker
    collections: Collections
    rss: list[tuple[float, int]]  # (time.monotonic(), VmRSS)
    peak_rss: int
    renders: list[Render]


async def run(validators: int, clients: int, seconds: float, interval: float, niceness: int) -> Run:
    """The daemon polling `validators` while `clients` at `niceness` scrape it for `seconds`."""
    polls, ticker, collections = Polls(), LoopTicker(), Collections()
    rss = list[tuple[float, int]]()
    async with polling_daemon(validators, polls, rss) as base_url:
        paths = ["/metrics"]
        if await answers_200(base_url + "/"):
            paths.append("/")
        scraping = Scraping(base_url, paths, clients, seconds, interval, niceness)
        renders: list[Render] = []
        with observing(collections), rendering(renders):
            started, ended, scrapes = await scraped(scraping, ticker)
        peak_rss = _status_bytes("VmHWM")
    return Run(
        scraping, started, ended, scrapes, polls, ticker, collections, rss, peak_rss, renders
    )


# -- the figures --------------------------------------------------------------------------------


def poll_figures(result: Run) -> None:
    window = result.ended - result.started
    inside = [
        p for p in result.polls.polls if p.ended > result.started and p.started < result.ended
    ]
    polling = sum(min(p.ended, result.ended) - max(p.started, result.started) for p in inside)
    durations = [p.ended - p.started for p in inside if p.ended < result.ended]
    failed = sum(not p.up for p in inside if p.ended < result.ended)
    note("polls running in the window", f"{len(inside)} ({failed} failed)")
    if durations:
        shown = f"{statistics.median(durations):.2f} / {max(durations):.2f} s"
        note("  duration of those ended: median / max", shown)
    note("  share of the window spent polling", f"{polling / window:.0%}")


def stall_figures(result: Run) -> None:
    ticker, polls, collections = result.ticker, result.polls, result.collections
    window = result.ended - result.started
    within("longest event-loop stall", ticker.longest, STALL_LIMIT_SECONDS)
    over = ticker.stalls
    note(
        f"  stalls over {STALL_LIMIT_SECONDS * 1000:.0f} ms, of all wake-ups",
        f"{len(over)} of {ticker.ticks:,}",
    )
    shown = " / ".join(f"{ticker.quantile_ms(q)}" for q in (0.5, 0.99, 0.999))
    note("  wake-up lateness p50 / p99 / p99.9", f"{shown} ms")
    # Far more frequent than the stalls over the limit, so it compares two runs' tails.
    half = int(STALL_LIMIT_SECONDS * 1000) // 2
    over_half = sum(n for late, n in ticker.lateness_ms.items() if late >= half)
    note(f"  wake-ups {half} ms or more late", f"{over_half}")
    full = collections.full()
    shown = f"{len(full)}, {max(full, default=0):.3f} / {sum(full):.1f} s"
    note("  full GC collections, longest / all", shown)
    cpus = os.cpu_count() or 1
    shown = f"{ticker.stolen:.1f} s, {ticker.stolen / (cpus * window):.2%} of the CPUs' time"
    note("  taken by the host (steal), all CPUs", shown)
    if not over:
        return
    in_polls = sum(polls.poll_at(stall.began_at) is not None for stall in over)
    note("  of the stalls, begun during a poll", f"{in_polls} of {len(over)}")
    in_gc = [collections.seconds_within(stall.began_at, stall.ended_at) for stall in over]
    total = sum(stall.ended_at - stall.began_at for stall in over)
    for label, part in (
        ("the loop on a CPU", sum(s.on_cpu for s in over)),
        ("waiting for a CPU (machine)", sum(s.waiting_for_cpu for s in over)),
        ("blocked (GIL, blocking call)", sum(s.blocked for s in over)),
        ("in GC, any thread (overlaps)", sum(in_gc)),
    ):
        note(f"  their time: {label}", f"{part / total:.0%}")
    listed = min(STALLS_LISTED, len(over))
    print(
        f"  the longest {listed}: when in the window, where;"
        " on a CPU / waiting / blocked; GC; taken by the host"
    )
    ranked = sorted(zip(over, in_gc, strict=True), key=lambda pair: pair[0].late, reverse=True)
    for stall, gc_seconds in ranked[:STALLS_LISTED]:
        print(
            f"    {stall.late * 1000:6.0f} ms at {stall.began_at - result.started:6.1f} s,"
            f" {polls.where(stall.began_at)}:"
            f" {stall.on_cpu * 1000:.0f} / {stall.waiting_for_cpu * 1000:.0f}"
            f" / {stall.blocked * 1000:.0f} ms; GC {gc_seconds * 1000:.0f} ms;"
            f" host {stall.stolen * 1000:.0f} ms of CPU time"
        )
        print(f"      other threads: {stall.threads}")


def render_figures(renders: list[Render]) -> None:
    if not renders:
        return
    seconds = sorted(r.seconds for r in renders)
    cpu = sorted(r.cpu_seconds for r in renders)
    note("/metrics renderings in the window", f"{len(renders)}, {renders[-1].size:,} bytes")
    note(
        "  each: median / max, in its thread",
        f"{statistics.median(seconds) * 1000:.0f} / {seconds[-1] * 1000:.0f} ms",
    )
    note(
        "  of which on a CPU: median / max",
        f"{statistics.median(cpu) * 1000:.0f} / {cpu[-1] * 1000:.0f} ms",
    )


def scrape_figures(scrapes: dict[str, Scrapes], window: float) -> None:
    for path, seen in scrapes.items():
        latencies = seen.latencies
        count = len(latencies)
        if count < 2:
            target(f"scrape {path}: p99", f"{count} scrapes", "2 or more", False)
            continue
        p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
        within(f"scrape {path}: p99 of {count:,}", p99, SCRAPE_P99_LIMIT_SECONDS)
        note("  p50 / max", f"{statistics.median(latencies):.3f} / {max(latencies):.3f} s")
        note("  rate", f"{count / window:,.1f} per second")
        failures = len(seen.failures)
        reasons = ", ".join(f"{n} {reason}" for reason, n in Counter(seen.failures).most_common())
        target(
            f"scrape {path}: failures",
            f"{failures}" + (f" ({reasons})" if reasons else ""),
            "0",
            failures == 0,
        )


def rss_figures(result: Run) -> None:
    warm = result.polls.second_success_at()
    if warm is None:
        target("RSS growth after warm-up", "no 2nd good poll", "2 polls", False)
        return
    # Sampled as each poll ends, RSS is the resident floor, comparable from poll to poll; at
    # any other moment it holds part of a poll's transient hundreds of MiB (the answer, its
    # columns), so those samples show the swing, not a trend.
    ended = [p.rss_after for p in result.polls.polls if p.ended > warm and p.rss_after]
    sampled = [rss for at, rss in result.rss if at >= warm]
    if min(len(ended), len(sampled)) < 3:
        target("RSS growth after warm-up", f"{len(ended)} polls", "3 or more", False)
        return
    note("RSS after warm-up (after the 2nd good poll)", f"{sampled[0] / _MIB:,.0f} MiB")
    note("  at the end", f"{sampled[-1] / _MIB:,.0f} MiB")
    note("  peak (VmHWM)", f"{result.peak_rss / _MIB:,.0f} MiB")
    first, last = _thirds(sampled)
    note(
        f"  every {RSS_EVERY_SECONDS:g} s, mid-poll or not: first to last third",
        f"{first / _MIB:,.0f} -> {last / _MIB:,.0f} MiB {last / first - 1:+.1%}",
    )
    tenths = " ".join(f"{statistics.mean(part) / _MIB:,.0f}" for part in _tenths(ended))
    note("  as each poll ends, by tenths of the window", f"{tenths} MiB")
    first, last = _thirds(ended)
    growth = last / first - 1
    target(
        f"RSS as each poll ends, first to last third ({len(ended)} polls)",
        f"{first / _MIB:,.0f} -> {last / _MIB:,.0f} MiB {growth:+.1%}",
        f"< {RSS_GROWTH_LIMIT:.0%}",
        growth < RSS_GROWTH_LIMIT,
    )


def _tenths(samples: list[int]) -> list[list[int]]:
    """`samples` in ten consecutive parts (fewer when there are fewer samples): whether RSS
    levels off or keeps growing."""
    parts = min(10, len(samples))
    return [
        samples[len(samples) * i // parts : len(samples) * (i + 1) // parts] for i in range(parts)
    ]


def _thirds(samples: list[int]) -> tuple[float, float]:
    """The mean of the first third of `samples`, and of the last."""
    third = len(samples) // 3
    return statistics.mean(samples[:third]), statistics.mean(samples[-third:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--validators", type=int, default=1_100_000, help="Ethereum set size")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to scrape")
    parser.add_argument("--scrapers", type=int, default=20, help="concurrent scraping clients")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between the starts of a scraper's rounds (default 0: back to back)",
    )
    parser.add_argument(
        "--scraper-niceness",
        type=int,
        default=SCRAPER_NICENESS,
        help="niceness of the scrapers' process (default 10: it yields the CPUs to the daemon,"
        " as scrapers on other hosts do; 0: it competes for them)",
    )
    args = parser.parse_args()
    print(f"bench_load: {load()}", flush=True)
    result = asyncio.run(
        run(args.validators, args.scrapers, args.seconds, args.interval, args.scraper_niceness)
    )
    window = result.ended - result.started
    heading(
        f"Ethereum, {args.validators:,} validators over SSZ, polled back to back; "
        f"{result.scraping.describe()}, for {window:.0f} s"
    )
    poll_figures(result)
    stall_figures(result)
    render_figures(result.renders)
    scrape_figures(result.scrapes, window)
    rss_figures(result)
    print(f"\nbench_load done: {load()}")


if __name__ == "__main__":
    main()
