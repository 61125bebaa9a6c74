"""Fault matrix: every API fault, for every source, through the simulators over loopback.

Each Hyperliquid fault runs twice: a faulty endpoint before a healthy one (the monitor stays
alive, counts the right outcome class, fails over, raises no false concentration or jail
alert), and the faulty endpoint alone (the chain is down, with no analysis, and DataStale
holds once the limit has passed). Solana and Cosmos cover the faults their simulators can
inject. `docs/fault-matrix.md` lists each row with its test id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from quorumwatch.alerts import RuleMemory, conditions
from quorumwatch.config import ChainSettings, CosmosSettings, EndpointSettings
from quorumwatch.monitor import ChainMonitor, ChainReport, ReportBoard
from quorumwatch.simulator import parse_scenario, start_simulator
from quorumwatch.simulator.cosmos import start_cosmos_simulator
from quorumwatch.simulator.solana import VoteAccountSpec, base58, start_solana_simulator

WALL = 1_750_000_000.0
POLL_INTERVAL = 30.0
STALE_LIMIT = 3 * POLL_INTERVAL  # the default data_stale_seconds
DAY = 86_400.0
FALSE_ALERTS = frozenset({"EntityCanControl", "EntityCanHalt", "ValidatorJailed", "ChainHalted"})

# A decentralised set: 12 validators, none above 1/12 + a hair, none jailed.
HEALTHY = [
    {"validator": f"0x{0xF000 + i:040x}", "name": f"v{i}", "stake": 10**15 + i} for i in range(12)
]


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _row(address: str, **overrides: Any) -> dict[str, Any]:
    """A well-formed validatorSummaries row, with fields replaced or (value None) removed."""
    row: dict[str, Any] = {
        "validator": address,
        "signer": address,
        "name": "raw",
        "description": "",
        "nRecentBlocks": 1,
        "stake": 10**15,
        "isJailed": False,
        "unjailableAfter": None,
        "isActive": True,
        "commission": "0.05",
        "stats": [],
    }
    for key, value in overrides.items():
        if value is None:
            row.pop(key)
        else:
            row[key] = value
    return row


A = "0x00000000000000000000000000000000000000a1"
B = "0x00000000000000000000000000000000000000b2"


def _renamed_stake(address: str) -> dict[str, Any]:
    row = _row(address, stake=None)
    row["stakeAmount"] = 10**15
    return row


@dataclass(frozen=True)
class HlFault:
    """One Hyperliquid fault: how it is injected and what the pool must count."""

    id: str
    outcome: str
    rejection: str | None = None
    step: dict[str, Any] = field(default_factory=dict)  # merged into the simulator's step
    transport: str = "simulator"  # or "refused", "reset"
    skipped_after: bool = False  # Retry-After: not asked again on the next poll
    stale: bool = False  # clock skew: endpoint down, its set never requested


def _fault(kind: str, **spec: Any) -> dict[str, Any]:
    return {"fault": {"kind": kind, **spec}}


def _raw(*rows: dict[str, Any]) -> dict[str, Any]:
    return _fault("raw", body=list(rows))


HL_FAULTS = [
    HlFault("timeout", "timeout", step=_fault("timeout", seconds=10)),
    HlFault("refused", "connect_error", transport="refused"),
    HlFault("reset_mid_body", "connect_error", transport="reset"),
    HlFault("http_429", "http_429", step=_fault("http_status", status=429)),
    HlFault(
        "http_429_retry_after",
        "http_429",
        step=_fault("http_status", status=429, retry_after=60),
        skipped_after=True,
    ),
    HlFault("http_5xx", "http_5xx", step=_fault("http_status", status=503)),
    HlFault("truncated_json", "invalid_payload", "malformed_json", _fault("malformed_json")),
    HlFault(
        "html_error_page_200",
        "invalid_payload",
        "malformed_json",
        _fault("http_status", status=200, body="<html><body><h1>Error</h1></body></html>"),
    ),
    HlFault("schema_renamed_field", "invalid_payload", "missing_field", _raw(_renamed_stake(A))),
    HlFault(
        "schema_missing_field", "invalid_payload", "missing_field", _raw(_row(A, isJailed=None))
    ),
    HlFault("schema_string_for_int", "invalid_payload", "wrong_type", _raw(_row(A, stake="1000"))),
    HlFault("empty_set", "invalid_payload", "empty_set", _fault("empty_set")),
    HlFault("duplicates", "invalid_payload", "duplicate_validator", _raw(_row(A), _row(A))),
    HlFault(
        "zero_stake", "invalid_payload", "zero_stake", _raw(_row(A, stake=0), _row(B, stake=0))
    ),
    HlFault("absurd_stake", "invalid_payload", "absurd_stake", _raw(_row(A, stake=2**128))),
    HlFault("stale_clock_past", "ok", step={"clock_offset_seconds": -DAY}, stale=True),
    HlFault("stale_clock_future", "ok", step={"clock_offset_seconds": DAY}, stale=True),
]


# --- transports that the simulator cannot play -----------------------------------------------


def _closed_port() -> int:
    """A loopback port with nothing listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def _resetting_server(clock: FakeClock) -> AsyncIterator[str]:
    """A raw HTTP server: exchangeStatus is answered correctly; validatorSummaries gets its
    headers and half of the promised body, then the connection is closed."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if b"exchangeStatus" in body:
                    payload = json.dumps({"time": round(clock() * 1000), "specialStatuses": None})
                    data = payload.encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(data)}\r\n\r\n".encode()
                        + data
                    )
                    await writer.drain()
                    continue
                data = json.dumps([_row(A)]).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data[: len(data) // 2]
                )
                await writer.drain()
                break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def _faulty_url(fault: HlFault, clock: FakeClock) -> AsyncIterator[str]:
    if fault.transport == "refused":
        yield f"http://127.0.0.1:{_closed_port()}"
    elif fault.transport == "reset":
        async with _resetting_server(clock) as url:
            yield url
    else:
        scenario = parse_scenario(
            {"name": fault.id, "steps": [{"validators": HEALTHY, **fault.step}]}
        )
        async with await start_simulator(scenario, clock=clock) as sim:
            yield sim.base_url


# --- helpers ---------------------------------------------------------------------------------


def _monitor(
    session: aiohttp.ClientSession, clock: FakeClock, kind: str, *endpoints: EndpointSettings
) -> ChainMonitor:
    settings = ChainSettings(
        name=kind,
        kind=kind,
        poll_interval_seconds=POLL_INTERVAL,
        endpoints=list(endpoints),
        cosmos=CosmosSettings(chain_id="cosmoshub-4") if kind == "cosmos" else None,
    )
    return ChainMonitor(settings, session, ReportBoard(), clock=clock)


def _alerts(report: ChainReport, now: float) -> set[str]:
    holding, _, _ = conditions(report, report.settings.alerts, {}, RuleMemory(), now)
    return {c.alert for c in holding}


def _requests(report: ChainReport, endpoint: str) -> dict[str, int]:
    view = next(e for e in report.endpoints if e.name == endpoint)
    return {str(outcome): count for outcome, count in view.requests.items() if count}


def _assert_failed_over(report: ChainReport, now: float) -> None:
    assert report.up, report.failures
    assert report.analysis is not None
    assert report.validator_set is not None
    assert report.validator_set.endpoint == "healthy"
    assert not _alerts(report, now) & FALSE_ALERTS


async def _assert_stale_when_alone(monitor: ChainMonitor, clock: FakeClock) -> None:
    """Alone, the faulty endpoint leaves the chain down; past the limit DataStale holds."""
    first = await monitor.poll_once()
    assert first.up is False
    assert first.analysis is None
    assert first.validator_set is None
    assert "DataStale" not in _alerts(first, clock.now)  # a fresh start does not page at once
    clock.now += STALE_LIMIT + 1
    later = await monitor.poll_once()
    assert later.up is False
    assert later.analysis is None
    alerts = _alerts(later, clock.now)
    assert "DataStale" in alerts
    assert not alerts & FALSE_ALERTS


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WALL)


# --- Hyperliquid -----------------------------------------------------------------------------


async def _state_requests(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/_sim/state") as response:
        state = await response.json()
    count: int = state["requests"]
    return count


@pytest.mark.parametrize("fault", HL_FAULTS, ids=[f.id for f in HL_FAULTS])
async def test_hyperliquid_fault_fails_over(
    session: aiohttp.ClientSession, clock: FakeClock, fault: HlFault
) -> None:
    """Faulty endpoint first, healthy second: alive, outcome counted, failover, no false alert."""
    healthy_scenario = parse_scenario({"name": "healthy", "steps": [{"validators": HEALTHY}]})
    async with (
        _faulty_url(fault, clock) as faulty_url,
        await start_simulator(healthy_scenario, clock=clock) as healthy,
    ):
        monitor = _monitor(
            session,
            clock,
            "hyperliquid",
            EndpointSettings(name="faulty", url=faulty_url, timeout_seconds=0.3),
            EndpointSettings(name="healthy", url=healthy.base_url, timeout_seconds=5),
        )
        first = await monitor.poll_once()
        _assert_failed_over(first, clock.now)
        counted = _requests(first, "faulty")
        if fault.transport == "refused":
            assert counted == {"connect_error": 1}  # the status probe; nothing else is tried
        elif fault.stale:
            assert counted == {"ok": 1}  # only the status probe: its set is never asked for
        else:  # the status probe succeeds; the validatorSummaries request fails
            assert counted == {"ok": 1, fault.outcome: 1}
        faulty_view = next(e for e in first.endpoints if e.name == "faulty")
        assert faulty_view.up is False
        if fault.rejection is not None:
            assert dict(first.rejections) == {fault.rejection: 1}
        else:
            assert dict(first.rejections) == {}
        if fault.stale:
            assert await _state_requests(session, faulty_url) == 0
            assert faulty_view.clock_skew_seconds is not None
            assert abs(faulty_view.clock_skew_seconds) >= DAY - 1

        clock.now += POLL_INTERVAL
        second = await monitor.poll_once()
        _assert_failed_over(second, clock.now)
        if fault.skipped_after:
            assert _requests(second, "faulty") == counted  # in cooldown: not asked at all
        else:
            assert sum(_requests(second, "faulty").values()) > sum(counted.values())


@pytest.mark.parametrize("fault", HL_FAULTS, ids=[f.id for f in HL_FAULTS])
async def test_hyperliquid_fault_alone_is_down_and_stale(
    session: aiohttp.ClientSession, clock: FakeClock, fault: HlFault
) -> None:
    """Only the faulty endpoint: the chain is down without analysis, and DataStale holds."""
    async with _faulty_url(fault, clock) as faulty_url:
        monitor = _monitor(
            session,
            clock,
            "hyperliquid",
            EndpointSettings(name="faulty", url=faulty_url, timeout_seconds=0.3),
        )
        await _assert_stale_when_alone(monitor, clock)


# --- Solana ----------------------------------------------------------------------------------


SOLANA_ACCOUNTS = [
    VoteAccountSpec(
        base58((i + 1).to_bytes(32, "big")), base58((i + 101).to_bytes(32, "big")), 10**18 + i
    )
    for i in range(12)
]
SOLANA_FAULTS = {
    "http_5xx": (500, None, "http_5xx", None),
    "truncated_json": (
        200,
        b'{"jsonrpc": "2.0", "result": {"current": [',
        "invalid_payload",
        "malformed_json",
    ),
    "empty_set": (
        200,
        json.dumps(
            {"jsonrpc": "2.0", "result": {"current": [], "delinquent": []}, "id": 1}
        ).encode(),
        "invalid_payload",
        "empty_set",
    ),
}


@pytest.mark.parametrize("name", list(SOLANA_FAULTS))
async def test_solana_fault_fails_over(
    session: aiohttp.ClientSession, clock: FakeClock, name: str
) -> None:
    """getVoteAccounts faulted on the first node: counted, healthy twin serves the set."""
    status, body, outcome, rejection = SOLANA_FAULTS[name]
    async with (
        await start_solana_simulator(SOLANA_ACCOUNTS) as faulty,
        await start_solana_simulator(SOLANA_ACCOUNTS) as healthy,
    ):
        faulty.set_fault("getVoteAccounts", status=status, body=body)
        monitor = _monitor(
            session,
            clock,
            "solana",
            EndpointSettings(name="faulty", url=faulty.base_url, timeout_seconds=5),
            EndpointSettings(name="healthy", url=healthy.base_url, timeout_seconds=5),
        )
        for _ in range(2):
            report = await monitor.poll_once()
            _assert_failed_over(report, clock.now)
            assert _requests(report, "faulty").get(outcome, 0) >= 1
            clock.now += POLL_INTERVAL
        if rejection is not None:
            assert dict(report.rejections) == {rejection: 2}

        alone = _monitor(
            session,
            clock,
            "solana",
            EndpointSettings(name="faulty", url=faulty.base_url, timeout_seconds=5),
        )
        await _assert_stale_when_alone(alone, clock)


# --- Cosmos ----------------------------------------------------------------------------------


async def test_cosmos_5xx_fails_over(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    """An LCD page answering 500 on the first node: http_5xx counted, the twin serves the set.

    The Cosmos simulator has no hook for malformed JSON or an empty set (see the table)."""
    async with (
        await start_cosmos_simulator(validators=30, jailed=0, unbonded=2, clock=clock) as faulty,
        await start_cosmos_simulator(validators=30, jailed=0, unbonded=2, clock=clock) as healthy,
    ):
        faulty.faults.fail_page = ("/cosmos/staking/v1beta1/validators", 0)

        def endpoint(name: str, url: str) -> EndpointSettings:
            return EndpointSettings(name=name, lcd=url, rpc=url, timeout_seconds=5)

        monitor = _monitor(
            session,
            clock,
            "cosmos",
            endpoint("faulty", faulty.base_url),
            endpoint("healthy", healthy.base_url),
        )
        for _ in range(2):
            report = await monitor.poll_once()
            _assert_failed_over(report, clock.now)
            assert _requests(report, "faulty").get("http_5xx", 0) >= 1
            clock.now += POLL_INTERVAL

        alone = _monitor(session, clock, "cosmos", endpoint("faulty", faulty.base_url))
        await _assert_stale_when_alone(alone, clock)
