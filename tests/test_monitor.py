"""ChainMonitor over the simulator: publish, reject without stale values, recover, keep running."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import structlog

from quorumwatch import monitor
from quorumwatch.analysis import Grouping, Threshold
from quorumwatch.chains.base import FetchResult, Source
from quorumwatch.config import ChainSettings, EndpointSettings, EntitySettings
from quorumwatch.logs import configure_logging
from quorumwatch.monitor import ChainMonitor
from quorumwatch.report import ChainReport, ReportBoard
from quorumwatch.simulator import parse_scenario, start_simulator
from tests.builders import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from quorumwatch.simulator import RunningSimulator

WALL = 1_750_000_000.0
ALICE = "0x00000000000000000000000000000000000000a1"
BOB = "0x00000000000000000000000000000000000000b2"
CAROL = "0x00000000000000000000000000000000000000c3"
ALICE_STAKE = 2**53 + 1
BOB_STAKE = 10**16
CAROL_STAKE = 5 * 10**15
VALIDATORS = [
    {"validator": ALICE, "name": "Alice", "stake": ALICE_STAKE},
    {"validator": BOB, "name": "Bob", "stake": BOB_STAKE},
    {"validator": CAROL, "name": "Carol", "stake": CAROL_STAKE, "jailed": True},
]


class RecordingBoard(ReportBoard):
    """A ReportBoard that also keeps every published report, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[ChainReport] = []
        self.changed = asyncio.Event()

    def publish(self, report: ChainReport) -> None:
        super().publish(report)
        self.published.append(report)
        self.changed.set()


def _raw_row(address: str, stake: Any) -> dict[str, Any]:
    return {
        "validator": address,
        "signer": address,
        "name": "raw",
        "description": "",
        "nRecentBlocks": 1,
        "stake": stake,
        "isJailed": False,
        "unjailableAfter": None,
        "isActive": True,
        "commission": "0.05",
        "stats": [],
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WALL)


@contextlib.asynccontextmanager
async def _simulator(
    steps: list[dict[str, Any]], clock: FakeClock
) -> AsyncIterator[RunningSimulator]:
    sim = await start_simulator(parse_scenario({"name": "unit", "steps": steps}), clock=clock)
    async with sim:
        yield sim


def _monitor(
    sim: RunningSimulator,
    session: aiohttp.ClientSession,
    board: ReportBoard,
    clock: FakeClock,
    *,
    poll_interval: float = 30.0,
    entities: list[EntitySettings] | None = None,
    on_report: Callable[[ChainReport], Awaitable[object]] | None = None,
) -> ChainMonitor:
    settings = ChainSettings(
        name="hl",
        kind="hyperliquid",
        poll_interval_seconds=poll_interval,
        endpoints=[EndpointSettings(name="sim", url=sim.base_url, timeout_seconds=5)],
        entities=entities or [],
    )
    return ChainMonitor(settings, session, board, clock=clock, on_report=on_report)


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each function run through asyncio.to_thread, in order."""
    names: list[str] = []
    original = asyncio.to_thread

    async def spy(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__name__", repr(func)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    return names


def _assert_up(report: ChainReport, polled_at: float) -> None:
    assert report.up is True
    assert report.polled_at == polled_at
    assert report.last_success_at == polled_at
    assert report.analysis is not None
    assert report.validator_set is not None
    assert report.validator_set.endpoint == "sim"
    assert report.analysis.total_stake == ALICE_STAKE + BOB_STAKE + CAROL_STAKE
    assert report.analysis.online_stake == ALICE_STAKE + BOB_STAKE
    assert report.healthy_endpoints == 1


@pytest.mark.parametrize(
    ("bad_step", "reason"),
    [
        ({"fault": {"kind": "empty_set"}}, "empty_set"),
        ({"fault": {"kind": "malformed_json"}}, "malformed_json"),
        (
            {"fault": {"kind": "raw", "body": [_raw_row(ALICE, 1), _raw_row(ALICE, 2)]}},
            "duplicate_validator",
        ),
        ({"fault": {"kind": "raw", "body": [_raw_row(ALICE, -1)]}}, "negative_stake"),
        ({"fault": {"kind": "raw", "body": [_raw_row(ALICE, "1")]}}, "wrong_type"),
        ({"changes": {ALICE: {"stake": 0}, BOB: {"stake": 0}, CAROL: {"stake": 0}}}, "zero_stake"),
    ],
)
async def test_invalid_snapshot_withdraws_values_until_recovery(
    session: aiohttp.ClientSession,
    clock: FakeClock,
    bad_step: dict[str, Any],
    reason: str,
) -> None:
    """Valid, invalid, valid: the invalid poll is down, without set or analysis; reason counted."""
    steps = [{"validators": VALIDATORS}, bad_step, {"validators": VALIDATORS}]
    board = ReportBoard()
    async with _simulator(steps, clock) as sim:
        monitor = _monitor(sim, session, board, clock)

        first = await monitor.poll_once()
        _assert_up(first, WALL)
        assert first.rejections == {}
        assert board.reports["hl"] is first

        clock.now += 30
        second = await monitor.poll_once()
        assert second.up is False
        assert second.analysis is None
        assert second.validator_set is None
        assert second.last_success_at == WALL
        assert second.polled_at == WALL + 30
        assert dict(second.rejections) == {reason: 1}
        assert any(f.startswith("sim: invalid_payload") for f in second.failures)
        assert board.reports["hl"] is second
        assert second.healthy_endpoints == 0

        clock.now += 30
        third = await monitor.poll_once()
        _assert_up(third, WALL + 60)
        assert dict(third.rejections) == {reason: 1}  # a counter: kept after recovery
        assert board.reports["hl"] is third


async def test_rejections_accumulate_per_reason(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Two empty sets and one malformed answer count empty_set=2 and malformed_json=1."""
    steps: list[dict[str, Any]] = [
        {"validators": VALIDATORS, "fault": {"kind": "empty_set"}, "repeat": 2},
        {"fault": {"kind": "malformed_json"}},
    ]
    board = ReportBoard()
    async with _simulator(steps, clock) as sim:
        monitor = _monitor(sim, session, board, clock)
        reports = [await monitor.poll_once() for _ in range(3)]
    assert [r.up for r in reports] == [False, False, False]
    assert [r.last_success_at for r in reports] == [None, None, None]
    assert dict(reports[-1].rejections) == {"empty_set": 2, "malformed_json": 1}
    assert dict(reports[0].rejections) == {"empty_set": 1}  # earlier reports stay as published


async def test_large_set_is_analysed_in_a_worker_thread(
    session: aiohttp.ClientSession, clock: FakeClock, threaded: list[str]
) -> None:
    """A 2,000-validator set is analysed via asyncio.to_thread, with exact totals and Nakamoto."""
    validators: list[dict[str, Any]] = [
        {
            "validator": f"0x{index + 1:040x}",
            "name": f"v{index}",
            "stake": 10**13 + index * 987_654_321,
            "active": index % 10 != 0,
            "jailed": index % 7 == 0,
        }
        for index in range(2000)
    ]
    consensus = [v for v in validators if v["active"]]
    total = sum(int(v["stake"]) for v in consensus)
    online = sum(int(v["stake"]) for v in consensus if not v["jailed"])
    running, halt_nakamoto = 0, 0
    for stake in sorted((int(v["stake"]) for v in consensus), reverse=True):
        running += stake
        halt_nakamoto += 1
        if 3 * running >= total:
            break

    board = ReportBoard()
    async with _simulator([{"validators": validators}], clock) as sim:
        report = await _monitor(sim, session, board, clock).poll_once()

    assert "_digest" in threaded  # analysis, status totals and series ranking
    assert report.up is True
    assert report.validator_set is not None
    assert len(report.validator_set.table) == 2000
    assert report.analysis is not None
    assert report.analysis.total_stake == total
    assert report.analysis.online_stake == online
    validator_view = report.analysis.groupings[Grouping.VALIDATOR]
    assert validator_view.holders == len(consensus)
    assert validator_view.nakamoto[Threshold.HALT] == halt_nakamoto


async def test_a_poll_hands_back_what_it_freed_after_its_report_is_handled(
    session: aiohttp.ClientSession,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    threaded: list[str],
) -> None:
    """Each poll releases free memory in a worker thread, after the report handler has run."""
    order: list[str] = []

    async def handled(report: ChainReport) -> None:
        order.append("report handled")

    def released() -> None:
        order.append("memory released")

    monkeypatch.setattr(monitor, "release_free_memory", released)
    async with _simulator([{"validators": VALIDATORS}], clock) as sim:
        chain = _monitor(sim, session, ReportBoard(), clock, on_report=handled)
        await chain.poll_once()
        await chain.poll_once()
    assert order == ["report handled", "memory released"] * 2
    assert threaded.count("released") == 2


async def test_run_keeps_polling_after_a_crashed_poll(
    session: aiohttp.ClientSession, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run() survives a poll that raises, publishes it as down (no stale values), then recovers."""
    board = RecordingBoard()
    async with _simulator([{"validators": VALIDATORS}], clock) as sim:
        monitor = _monitor(sim, session, board, clock, poll_interval=0.01)
        source: Source = monitor._source
        real_fetch = source.fetch
        calls = 0

        async def flaky_fetch() -> FetchResult:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise RuntimeError("bug in one poll")
            return await real_fetch()

        monkeypatch.setattr(source, "fetch", flaky_fetch)
        task = asyncio.create_task(monitor.run())
        try:
            async with asyncio.timeout(5):
                while len(board.published) < 3:
                    board.changed.clear()
                    await board.changed.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    first, crashed, recovered = board.published[:3]
    assert first.up is True
    assert first.analysis is not None
    assert crashed.up is False
    assert crashed.analysis is None
    assert crashed.validator_set is None
    assert crashed.failures == ("poll crashed: RuntimeError",)
    assert crashed.last_success_at == first.last_success_at
    assert recovered.up is True
    assert recovered.analysis is not None
    assert calls >= 3


async def test_log_lines_of_a_poll_name_chain_and_endpoint(
    session: aiohttp.ClientSession, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every JSON log line of a failing poll carries the chain, and the pool's the endpoint."""
    configure_logging("info", json_lines=True)
    steps = [{"validators": VALIDATORS, "fault": {"kind": "empty_set"}}]
    async with _simulator(steps, clock) as sim:
        await _monitor(sim, session, ReportBoard(), clock).poll_once()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines
    assert all(line["chain"] == "hl" for line in lines)
    assert any(line.get("endpoint") == "sim" and "outcome" in line for line in lines)
    assert structlog.contextvars.get_contextvars() == {}


async def test_an_absent_entity_member_is_counted_and_logged_once(
    session: aiohttp.ClientSession, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A configured member missing from the set is counted per entity on every poll and
    logged once, when it goes missing, and again only after it came back and left anew."""
    configure_logging("info", json_lines=True)
    departed = "0x00000000000000000000000000000000000000d4"
    entities = [EntitySettings(name="Foundation", validators=[ALICE, BOB, departed])]
    without_bob = [VALIDATORS[0], VALIDATORS[2]]
    steps = [{"validators": VALIDATORS}, {"validators": VALIDATORS}, {"validators": without_bob}]
    async with _simulator(steps, clock) as sim:
        monitor = _monitor(sim, session, ReportBoard(), clock, entities=entities)
        counts = []
        for _ in steps:
            # Each poll is served the scenario's next step.
            counts.append((await monitor.poll_once()).absent_members["Foundation"])
    assert counts == [1, 1, 2]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    logged = [
        line["member"]
        for line in lines
        if line["event"].startswith("entity member") and line["entity"] == "Foundation"
    ]
    assert logged == [departed, BOB]
