"""Hyperliquid source over the simulator: freshness probe, ordered failover, Retry-After."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from quorumwatch.chains.hyperliquid.source import HyperliquidSource
from quorumwatch.config import ChainSettings, EndpointSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import Outcome
from quorumwatch.simulator import parse_scenario, start_simulator
from tests.builders import FakeClock
from tests.tools import refused_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from quorumwatch.report import EndpointView
    from quorumwatch.simulator import RunningSimulator

WALL = 1_750_000_000.0
ALICE = "0x00000000000000000000000000000000000000a1"
BOB = "0x00000000000000000000000000000000000000b2"
BIG_STAKE = 2**53 + 12_345  # above 2**53: must survive the HTTP round trip exactly
VALIDATORS = [
    {"validator": ALICE, "name": "Alice", "stake": BIG_STAKE},
    {"validator": BOB, "name": "Bob", "stake": 10**16, "jailed": True},
]


def _steps(first: dict[str, Any] | None = None, *later: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"validators": VALIDATORS, **(first or {})}, *later]


@pytest.fixture
async def start_sim() -> AsyncIterator[Callable[..., Awaitable[RunningSimulator]]]:
    """Start simulators sharing the injected wall clock; all are closed at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(*steps: dict[str, Any]) -> RunningSimulator:
            scenario = parse_scenario({"name": "unit", "steps": list(steps or _steps())})
            sim = await start_simulator(scenario, clock=FakeClock(WALL))
            stack.push_async_callback(sim.close)
            return sim

        yield start


def _source(
    session: aiohttp.ClientSession,
    *urls: str,
    monotonic: FakeClock | None = None,
    max_skew: float = 60.0,
) -> tuple[HyperliquidSource, EndpointPool]:
    names = "abcdefgh"
    settings = ChainSettings(
        name="hl",
        kind="hyperliquid",
        max_clock_skew_seconds=max_skew,
        endpoints=[
            EndpointSettings(name=names[i], url=url, timeout_seconds=2.0)
            for i, url in enumerate(urls)
        ],
    )
    pool = EndpointPool(
        settings.endpoints,
        session,
        max_response_bytes=1024 * 1024,
        clock=FakeClock(WALL),
        monotonic=monotonic or FakeClock(1000.0),
    )
    return HyperliquidSource(pool, settings, clock=FakeClock(WALL)), pool


def _views(pool: EndpointPool) -> dict[str, EndpointView]:
    return {view.name: view for view in pool.views()}


async def _summaries_served(session: aiohttp.ClientSession, sim: RunningSimulator) -> int:
    async with session.get(f"{sim.base_url}/_sim/state") as response:
        state = await response.json()
    requests: int = state["requests"]
    return requests


async def test_first_healthy_endpoint_supplies_the_set(
    start_sim: Callable[..., Awaitable[RunningSimulator]], session: aiohttp.ClientSession
) -> None:
    """With both endpoints healthy the set comes from the first; the second serves no set."""
    a, b = await start_sim(), await start_sim()
    source, pool = _source(session, a.base_url, b.base_url)
    result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "a"
    assert result.validator_set.fetched_at == WALL
    table = result.validator_set.table
    assert [(v.address, v.stake, v.jailed) for v in table.rows(range(len(table)))] == [
        (ALICE, BIG_STAKE, False),
        (BOB, 10**16, True),
    ]
    assert result.failures == ()
    assert await _summaries_served(session, b) == 0
    assert pool.healthy_count() == 2  # b answered its status probe


async def test_failover_after_5xx(
    start_sim: Callable[..., Awaitable[RunningSimulator]], session: aiohttp.ClientSession
) -> None:
    """A 503 on the first endpoint's set gives the set from the second; failures name the first."""
    failing = _steps({"fault": {"kind": "http_status", "status": 503, "body": "Unavailable"}})
    a, b = await start_sim(*failing), await start_sim()
    source, pool = _source(session, a.base_url, b.base_url)
    result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "b"
    assert len(result.failures) == 1
    assert result.failures[0].startswith("a: http_5xx")
    assert result.rejection_reasons == ()
    views = _views(pool)
    assert views["a"].up is False
    assert views["a"].requests[Outcome.HTTP_5XX] == 1
    assert views["b"].up is True


@pytest.mark.parametrize("offset", [3600.0, -3600.0, 61.0])
async def test_stale_endpoint_is_skipped_and_marked_down(
    start_sim: Callable[..., Awaitable[RunningSimulator]],
    session: aiohttp.ClientSession,
    offset: float,
) -> None:
    """An endpoint whose exchangeStatus clock is off by more than 60 s serves no set and is down."""
    a = await start_sim(*_steps({"clock_offset_seconds": offset}))
    b = await start_sim()
    source, pool = _source(session, a.base_url, b.base_url, max_skew=60.0)
    result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "b"
    assert len(result.failures) == 1
    assert result.failures[0].startswith("a: stale")
    assert await _summaries_served(session, a) == 0
    views = _views(pool)
    assert views["a"].up is False
    assert views["a"].clock_skew_seconds == pytest.approx(offset)
    assert pool.healthy_count() == 1


async def test_skew_within_tolerance_is_used(
    start_sim: Callable[..., Awaitable[RunningSimulator]], session: aiohttp.ClientSession
) -> None:
    """An endpoint 59 s off (tolerance 60 s) still supplies the set and records its skew."""
    a = await start_sim(*_steps({"clock_offset_seconds": -59.0}))
    source, pool = _source(session, a.base_url, max_skew=60.0)
    result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "a"
    assert _views(pool)["a"].clock_skew_seconds == pytest.approx(-59.0)


async def test_all_endpoints_failing_gives_no_set(
    start_sim: Callable[..., Awaitable[RunningSimulator]], session: aiohttp.ClientSession
) -> None:
    """Refused, 503-everywhere and stale endpoints give no set; failures name each endpoint."""
    down = {"fault": {"kind": "http_status", "status": 503, "applies_to": "all"}}
    b = await start_sim(*_steps(down))
    c = await start_sim(*_steps({"clock_offset_seconds": 600}))
    source, pool = _source(session, refused_url(), b.base_url, c.base_url)
    result = await source.fetch()
    assert result.validator_set is None
    assert [failure.split(":")[0] for failure in result.failures] == ["a", "b", "c"]
    assert "connect_error" in result.failures[0]
    assert "http_5xx" in result.failures[1]
    assert "stale" in result.failures[2]
    assert pool.healthy_count() == 0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "empty_set"}, "empty_set"),
        ({"kind": "malformed_json"}, "malformed_json"),
        ({"kind": "raw", "body": {"validators": []}}, "not_a_list"),
        ({"kind": "raw", "body": [{"validator": ALICE}]}, "missing_field"),
    ],
)
async def test_invalid_payload_records_reason_and_fails_over(
    start_sim: Callable[..., Awaitable[RunningSimulator]],
    session: aiohttp.ClientSession,
    fault: dict[str, Any],
    reason: str,
) -> None:
    """An invalid set from the first endpoint is rejected by reason; the second one supplies it."""
    a, b = await start_sim(*_steps({"fault": fault})), await start_sim()
    source, pool = _source(session, a.base_url, b.base_url)
    result = await source.fetch()
    assert result.rejection_reasons == (reason,)
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "b"
    assert result.failures[0].startswith("a: invalid_payload")
    assert _views(pool)["a"].requests[Outcome.INVALID_PAYLOAD] == 1


async def test_retry_after_cooldown_skips_endpoint_on_next_fetch(
    start_sim: Callable[..., Awaitable[RunningSimulator]], session: aiohttp.ClientSession
) -> None:
    """After a 429 with Retry-After: 30, the endpoint gets no request for 30 s, then is used."""
    limited = _steps({"fault": {"kind": "http_status", "status": 429, "retry_after": 30}}, {})
    a, b = await start_sim(*limited), await start_sim()
    monotonic = FakeClock(1000.0)
    source, pool = _source(session, a.base_url, b.base_url, monotonic=monotonic)

    first = await source.fetch()
    assert first.validator_set is not None
    assert first.validator_set.endpoint == "b"
    assert first.failures[0].startswith("a: http_429")
    requests_to_a = sum(_views(pool)["a"].requests.values())

    monotonic.now += 29.0
    second = await source.fetch()
    assert second.validator_set is not None
    assert second.validator_set.endpoint == "b"
    assert second.failures == ("a: waiting out Retry-After",)
    assert sum(_views(pool)["a"].requests.values()) == requests_to_a

    monotonic.now += 1.0
    third = await source.fetch()
    assert third.validator_set is not None
    assert third.validator_set.endpoint == "a"
    assert third.failures == ()


async def test_every_endpoint_cooling_down_gives_no_set(
    start_sim: Callable[..., Awaitable[RunningSimulator]], session: aiohttp.ClientSession
) -> None:
    """With every endpoint waiting out Retry-After, the fetch sends nothing and names each one."""
    limited = _steps({"fault": {"kind": "http_status", "status": 429, "retry_after": 60}})
    a = await start_sim(*limited)
    source, pool = _source(session, a.base_url)
    assert (await source.fetch()).validator_set is None
    before = sum(_views(pool)["a"].requests.values())
    result = await source.fetch()
    assert result.validator_set is None
    assert result.failures == ("a: waiting out Retry-After",)
    assert sum(_views(pool)["a"].requests.values()) == before
