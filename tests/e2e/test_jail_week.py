"""A scripted week of jailing through the simulator, a restart and a kill -9 mid-write.

Time is injected: 336 polls 30 minutes apart run in seconds. The expected figures below are
worked out from the script by hand, not by the code under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quorumwatch.config import ChainSettings, StorageSettings
from quorumwatch.jails.events import EventKind
from quorumwatch.jails.tracker import JailTracker
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ChainReport, ReportBoard
from quorumwatch.simulator import RunningSimulator, parse_scenario, start_simulator
from quorumwatch.store import AsyncStore
from quorumwatch.store import jails as jail_store
from tests.builders import FakeClock, exposition
from tests.services import parse_samples

POLL = 1800.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
POLLS = 336  # one week
OUTAGE = range(150, 156)
RESTART_AFTER = 200
KILLED_DURING = 250
# Twenty equal validators: one jail is 5% of stake, below the 10% storm threshold.
V = [f"0x{i + 1:040x}" for i in range(20)]


def at(poll: int) -> float:
    return T0 + poll * POLL


def jail(poll: int, unjailable_in: float) -> dict[str, Any]:
    return {"jailed": True, "unjailable_after_ms": int((at(poll) + unjailable_in) * 1000)}


UNJAIL: dict[str, Any] = {"jailed": False, "unjailable_after_ms": None}

# poll -> {validator: change}
SCRIPT: dict[int, dict[str, dict[str, Any]]] = {
    10: {V[1]: jail(10, 600)},
    14: {V[1]: UNJAIL},  # jailed 2h, unjailed 6600 s after unjailableAfter
    60: {V[2]: jail(60, 3600)},
    62: {V[2]: UNJAIL},  # jailed 1h, unjailed right at unjailableAfter
    # Jailed and unjailed between polls 79 and 80: only unjailableAfter moved.
    80: {V[3]: {"unjailable_after_ms": int((at(80) - 900) * 1000)}},
    120: {v: jail(120, 1800) for v in V[4:7]},  # a storm: three within the hour
    124: dict.fromkeys(V[4:7], UNJAIL),
    152: {V[7]: jail(152, 600)},  # during the outage, seen when the API returns at 156
    160: {V[7]: UNJAIL},
    199: {V[8]: jail(199, 600)},  # still jailed across the restart after poll 200
    205: {V[8]: UNJAIL},
    250: {V[9]: jail(250, 600)},  # the poll whose write is killed
    254: {V[9]: UNJAIL},
    300: {V[1]: jail(300, 3600)},  # the second jail of V1
    302: {V[1]: UNJAIL},
    330: {V[0]: jail(330, 600)},  # still jailed at the end of the week
}

JAILS_PER_VALIDATOR = {V[1]: 2} | dict.fromkeys([V[0], *V[2:10]], 1)
JAIL_SECONDS = {  # observed jail lengths, per validator, in order
    V[1]: [4 * POLL, 2 * POLL],
    V[2]: [2 * POLL],
    V[4]: [4 * POLL],
    V[5]: [4 * POLL],
    V[6]: [4 * POLL],
    V[7]: [4 * POLL],  # observed from poll 156, when the API came back
    V[8]: [6 * POLL],  # across the restart: the jail start was persisted
    V[9]: [3 * POLL],  # observed from poll 251: the killed poll 250 never committed
}
UNJAIL_DELAYS = [
    4 * POLL - 600,  # V1
    2 * POLL - 3600,  # V2
    *[4 * POLL - 1800] * 3,  # V4..V6
    8 * POLL - 600,  # V7: from unjailableAfter (set at 152) to poll 160
    6 * POLL - 600,  # V8
    4 * POLL - 600,  # V9: unjailableAfter set at 250, unjailed at 254
    2 * POLL - 3600,  # V1 again
]


def scenario() -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {
            "validators": [
                {"validator": v, "name": f"validator {i}", "stake_hype": "1000"}
                for i, v in enumerate(V)
            ]
        }
    ]
    for poll in range(1, POLLS):
        step: dict[str, Any] = {}
        if poll in SCRIPT:
            step["changes"] = SCRIPT[poll]
        if poll in OUTAGE:
            step["fault"] = {"kind": "http_status", "status": 503, "applies_to": "all"}
        steps.append(step)
    return {"name": "jail-week", "steps": steps}


def chain_settings(simulator: RunningSimulator) -> ChainSettings:
    return ChainSettings.model_validate(
        {
            "name": "hl",
            "kind": "hyperliquid",
            "poll_interval_seconds": POLL,
            "endpoints": [{"name": "sim", "url": simulator.base_url, "timeout_seconds": 5}],
        }
    )


KILLED_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    import aiohttp
    from quorumwatch.config import ChainSettings, StorageSettings
    from quorumwatch.jails.tracker import JailTracker
    from quorumwatch.logs import configure_logging
    from quorumwatch.monitor import ChainMonitor
    from quorumwatch.report import ReportBoard
    from quorumwatch.store import AsyncStore, Store

    class PausingStore(Store):
        # Pauses inside the write transaction, after state rows, before the events.
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            def trace(statement):
                if statement.startswith("INSERT OR IGNORE INTO events"):
                    print("writing", flush=True)
                    time.sleep(60)
            self.connection.set_trace_callback(trace)

    class PausingAsyncStore(AsyncStore):
        store_class = PausingStore

    async def main():
        configure_logging("error")  # stdout carries only the markers
        settings = ChainSettings.model_validate_json(sys.argv[1])
        now = float(sys.argv[3])
        store = await PausingAsyncStore.open(Path(sys.argv[2]))
        async with aiohttp.ClientSession() as session:
            jails = JailTracker(settings, store, StorageSettings().retention_days)
            monitor = ChainMonitor(settings, session, ReportBoard(), clock=lambda: now, jails=jails)
            await monitor.poll_once()
        print("finished", flush=True)

    asyncio.run(main())
    """
)


async def kill_during_write(settings: ChainSettings, database: Path, now: float) -> None:
    """Poll once in a child process and SIGKILL it inside the store's write transaction."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_CHILD,
        settings.model_dump_json(),
        str(database),
        repr(now),
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    assert line == b"writing\n"
    os.kill(child.pid, signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL


async def run_week(tmp_path: Path) -> tuple[dict[int, ChainReport], Path, FakeClock]:
    database = tmp_path / "quorumwatch.db"
    clock = FakeClock(T0)
    reports: dict[int, ChainReport] = {}
    async with (
        await start_simulator(parse_scenario(scenario()), clock=clock) as simulator,
        aiohttp.ClientSession() as session,
    ):
        settings = chain_settings(simulator)

        async def new_monitor() -> tuple[ChainMonitor, AsyncStore]:
            store = await AsyncStore.open(database)
            jails = JailTracker(settings, store, StorageSettings().retention_days)
            return ChainMonitor(settings, session, ReportBoard(), clock=clock, jails=jails), store

        monitor, store = await new_monitor()
        for poll in range(POLLS):
            clock.now = at(poll)
            async with session.post(f"{simulator.base_url}/_sim/goto?step={poll}") as r:
                assert r.status == 200
            if poll == KILLED_DURING:
                await store.close()
                await kill_during_write(settings, database, clock.now)
                monitor, store = await new_monitor()
                continue
            reports[poll] = await monitor.poll_once()
            if poll == RESTART_AFTER:
                await store.close()
                monitor, store = await new_monitor()
        await store.close()
    return reports, database, clock


@pytest.mark.slow
async def test_scripted_week(tmp_path: Path) -> None:
    """Counters, windows, storm, histogram, history and the jails report match the script,
    through an outage, a restart and a kill -9 during a write."""
    reports, database, clock = await run_week(tmp_path)
    last = reports[POLLS - 1]
    assert last.jails is not None

    # Counters: every jail once, none lost to the kill, none doubled by the restart.
    assert last.jails.counters.jails == sum(JAILS_PER_VALIDATOR.values()) == 11
    assert dict(last.jails.counters.validator_jails) == JAILS_PER_VALIDATOR

    # Windows at the end of the week: 1h none, 24h the jails at 300 and 330, 7d all.
    assert dict(last.jails.windows) == {"1h": 0, "24h": 2, "7d": 11}

    # The storm is on from poll 120 while the three jails stay inside the hour.
    storm = {poll: r.jails.storm for poll, r in reports.items() if r.jails is not None}
    assert [poll for poll, on in storm.items() if on] == [120, 121, 122]
    assert reports[120].jails is not None
    assert reports[120].jails.windows["1h"] == 3

    # The outage: the chain is down, nothing is derived, and V7's jail is seen after the gap.
    assert all(not reports[poll].up for poll in OUTAGE)

    async with await AsyncStore.open(database, read_only=True) as store:
        events = await store.call(jail_store.events, "hl")
    jailed = [e for e in events if e.kind is EventKind.JAILED]
    assert {e.address: e.after_gap for e in jailed if e.after_gap} == {V[7]: True}
    assert [e.observed_at for e in jailed if e.address == V[7]] == [at(156)]
    assert [e.observed_at for e in jailed if e.address == V[9]] == [at(KILLED_DURING + 1)]
    inferred = [(e.address, e.kind) for e in events if e.inferred]
    assert inferred == [(V[3], EventKind.JAILED), (V[3], EventKind.UNJAILED)]
    assert not [e for e in events if e.kind in (EventKind.JOINED, EventKind.LEFT)]
    lengths: dict[str, list[float]] = {}
    for e in events:
        if e.kind is EventKind.UNJAILED and e.jail_seconds is not None:
            lengths.setdefault(e.address, []).append(e.jail_seconds)
    assert lengths == JAIL_SECONDS

    # Metrics as scraped at the end of the week.
    samples = parse_samples(exposition(last, now=clock.now))
    chain = {"chain": "hl"}
    assert samples[("quorumwatch_jail_events_total", frozenset(chain.items()))] == 11
    v1 = {"chain": "hl", "validator": V[1], "name": "validator 1", "entity": V[1]}
    assert samples[("quorumwatch_validator_jail_events_total", frozenset(v1.items()))] == 2
    v0 = {"chain": "hl", "validator": V[0], "name": "validator 0", "entity": V[0]}
    assert samples[("quorumwatch_validator_jailed_seconds", frozenset(v0.items()))] == 5 * POLL
    assert samples[("quorumwatch_unjail_delay_seconds_count", frozenset(chain.items()))] == len(
        UNJAIL_DELAYS
    )
    assert samples[("quorumwatch_unjail_delay_seconds_sum", frozenset(chain.items()))] == sum(
        UNJAIL_DELAYS
    )
    assert samples[("quorumwatch_jailed_stake_ratio", frozenset(chain.items()))] == 0.05
    assert samples[("quorumwatch_jail_storm", frozenset(chain.items()))] == 0

    # The jails report, read from the store as the daemon left it.
    config = tmp_path / "quorumwatch.toml"
    config.write_text(
        f'[storage]\npath = "{database}"\n[[chains]]\nname = "hl"\nkind = "hyperliquid"\n'
        '[[chains.endpoints]]\nname = "sim"\nurl = "http://127.0.0.1:9"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quorumwatch", "jails", "--config", str(config),
        "--since", "all", "--format", "json",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    rows = {row["validator"]: row for row in json.loads(stdout)}
    assert {a: r["jails"] for a, r in rows.items()} == JAILS_PER_VALIDATOR
    assert rows[V[3]]["inferred_jails"] == 1
    assert rows[V[1]]["mean_seconds_between_jails"] == at(300) - at(10)
    assert rows[V[1]]["median_seconds_to_unjail"] == 3 * POLL
    assert rows[V[8]]["median_seconds_to_unjail"] == 6 * POLL
    assert rows[V[0]]["median_seconds_to_unjail"] is None
