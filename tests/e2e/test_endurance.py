"""Endurance: no growth in fds, tasks or memory over a faulted soak; SIGTERM shuts down cleanly.

The full soak with figures is `python benchmarks/soak.py --cycles 10000`; this is its bounded
version. Time is compressed: cycles run back to back and a fake wall clock advances one poll
interval per cycle, so sliding windows (availability 24 h) fill during warm-up and then wrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sqlite3
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quorumwatch.alert_events import AlertStatus
from quorumwatch.alerting import ChainAlerts
from quorumwatch.config import ChainSettings, CosmosSettings, EndpointSettings
from quorumwatch.jails import EventKind
from quorumwatch.logs import configure_logging
from quorumwatch.monitor import ChainMonitor, ReportBoard
from quorumwatch.simulator import load_scenario, parse_scenario, start_simulator
from quorumwatch.simulator.cosmos import start_cosmos_simulator
from quorumwatch.simulator.solana import start_solana_simulator
from quorumwatch.store import AsyncStore, StoreError

STEP_SECONDS = 300.0  # fake wall-clock seconds per cycle: the 24 h window fills in 289 cycles
UNTRACED_CYCLES = 600  # warm-up (300), then fds and tasks sampled; tracemalloc is 4x slower
TRACED_CYCLES = 300  # tracemalloc runs over these only: it counts what they leave alive
SAMPLE_EVERY = 75
JAILED = "0x00000000000000000000000000000000000000a1"
MIB = 1024 * 1024
# What the traced cycles may leave alive without a leak: the latest report, alert state and
# availability buckets per chain are replaced, not accumulated, and stay far below this; a
# leak of 8 KiB per cycle (under one response body per poll) would exceed it.
MEMORY_BOUND_BYTES = 2 * MIB


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def hyperliquid_scenario() -> dict[str, Any]:
    """14 polls: 6 healthy, a 500, 6 with a validator jailed, malformed JSON (then rewound)."""
    validators = [
        {"validator": v.validator, "name": v.name, "stake": v.stake, "active": v.active}
        for v in load_scenario("foundation-2025").steps[0].validators
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


async def test_soak_with_faults_grows_no_fds_tasks_or_memory(tmp_path: Path) -> None:
    """Over 900 faulted cycles of three chains, fds and asyncio tasks after warm-up equal
    their first value, and traced memory over the last 300 grows by at most 2 MiB."""
    configure_logging("error")  # a line per poll would grow the captured output
    clock = FakeClock()
    fds: list[int] = []
    tasks: list[int] = []
    traced: list[int] = []
    up = {"hyperliquid": 0, "solana": 0, "cosmoshub": 0}
    async with (
        await start_simulator(parse_scenario(hyperliquid_scenario()), clock=clock) as hyper,
        await start_solana_simulator(count=20, delinquent=2) as solana,
        await start_cosmos_simulator(
            validators=6, jailed=1, unbonded=1, page_limit=3, clock=clock
        ) as cosmos,
        await AsyncStore.open(tmp_path / "soak.db") as store,
        aiohttp.ClientSession() as session,
    ):

        def chain(name: str, kind: str, endpoint: EndpointSettings, **extra: Any) -> ChainMonitor:
            settings = ChainSettings(
                name=name,
                kind=kind,
                poll_interval_seconds=STEP_SECONDS,
                endpoints=[endpoint],
                **extra,
            )
            alerts = ChainAlerts(settings, store, clock=clock)
            return ChainMonitor(
                settings,
                session,
                ReportBoard(),
                clock=clock,
                store=store,
                on_report=alerts.evaluate,
            )

        monitors = [
            chain("hyperliquid", "hyperliquid", EndpointSettings(name="sim", url=hyper.base_url)),
            chain("solana", "solana", EndpointSettings(name="sim", url=solana.base_url)),
            chain(
                "cosmoshub",
                "cosmos",
                EndpointSettings(name="sim", lcd=cosmos.base_url, rpc=cosmos.base_url),
                cosmos=CosmosSettings(chain_id="cosmoshub-4"),
            ),
        ]
        try:
            for cycle in range(1, UNTRACED_CYCLES + TRACED_CYCLES + 1):
                if cycle % 14 == 1 and cycle > 1:
                    async with session.post(f"{hyper.base_url}/_sim/goto?step=0") as response:
                        assert response.status == 200
                if cycle % 7 == 3:  # alternately a 503 and a truncated JSON-RPC body
                    body = None if cycle % 2 else b'{"jsonrpc": "2.0", "result": {"cur'
                    solana.set_fault("getVoteAccounts", status=200 if body else 503, body=body)
                if cycle % 7 == 5:
                    cosmos.faults.fail_page = ("/cosmos/staking/v1beta1/validators", 1)
                for report in await asyncio.gather(*(m.poll_once() for m in monitors)):
                    up[report.chain] += report.up
                solana.clear_faults()
                cosmos.faults.fail_page = None
                cosmos.requests.clear()  # the simulator's own request log, kept by design
                clock.now += STEP_SECONDS
                if cycle == UNTRACED_CYCLES:
                    gc.collect()
                    tracemalloc.start()
                if cycle % SAMPLE_EVERY == 0 and cycle >= 300:
                    gc.collect()
                    fds.append(open_fds())
                    tasks.append(len(asyncio.all_tasks()))
                    if tracemalloc.is_tracing():
                        traced.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
    assert fds == [fds[0]] * len(fds), fds
    assert tasks == [tasks[0]] * len(tasks), tasks
    assert traced[-1] <= traced[0] + MEMORY_BOUND_BYTES, traced
    cycles = UNTRACED_CYCLES + TRACED_CYCLES
    assert min(up.values()) >= cycles // 2, up  # faults hit polls; most still succeed


@pytest.fixture
async def foundation() -> Any:
    async with await start_simulator(load_scenario("foundation-2025")) as simulator:
        yield simulator


def _config(path: Path, api_url: str, store: Path) -> Path:
    path.write_text(
        f"""\
log_level = "warning"
[metrics]
listen = "127.0.0.1:0"
[storage]
path = "{store}"
[mqtt]
enabled = false
[[chains]]
name = "hyperliquid"
kind = "hyperliquid"
poll_interval_seconds = 0.05
[[chains.endpoints]]
name = "sim"
url = "{api_url}"
timeout_seconds = 2
"""
    )
    return path


async def _store_has_history(store: Path) -> bool:
    """Whether the daemon has recorded a jail event and a firing alert yet."""
    try:
        async with await AsyncStore.open(store, read_only=True) as reader:
            jailed = await reader.count_events("hyperliquid", EventKind.JAILED, 0.0)
            return jailed >= 1 and bool(await reader.firing("hyperliquid"))
    except StoreError:  # not created yet, or created but not yet migrated
        return False


async def test_sigterm_exits_0_within_5s_leaving_a_sound_store(
    tmp_path: Path, foundation: Any
) -> None:
    """After SIGTERM the daemon subprocess exits 0 within 5 s; its store then opens read-only,
    passes integrity_check, and holds the jail events, firing alerts and undelivered outbox."""
    store = tmp_path / "qw.db"
    config = _config(tmp_path / "qw.toml", foundation.base_url, store)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "quorumwatch",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not await _store_has_history(store):
            assert process.returncode is None, "the daemon exited early"
            assert time.monotonic() < deadline, "no jail event and firing alert within 30 s"
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        output, _ = await asyncio.wait_for(process.communicate(), 10)
        elapsed = time.monotonic() - sent
        code = process.returncode
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, output.decode(errors="replace")
    assert elapsed < 5.0, f"exit took {elapsed:.2f} s"
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    async with await AsyncStore.open(store, read_only=True) as reader:
        assert await reader.count_events("hyperliquid", EventKind.JAILED, 0.0) >= 1
        assert await reader.load_state("hyperliquid") is not None
        firing = await reader.firing("hyperliquid")
        generated = await reader.events_generated()
        pending = await reader.outbox_peek(1000)
    assert firing
    # MQTT is off, so nothing drains the outbox: every generated event is still pending.
    fired = sum(n for (_, status), n in generated.items() if status is AlertStatus.FIRING)
    assert fired >= len(firing)
    assert len(pending) == sum(generated.values())
