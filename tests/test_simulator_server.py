from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from quorumwatch.simulator.scenario import load_scenario, parse_scenario
from quorumwatch.simulator.server import DESERIALIZE_ERROR, start_simulator
from tests.services import eventually

if TYPE_CHECKING:
    from collections.abc import Mapping

    from quorumwatch.simulator.scenario import JsonObject, Scenario
    from quorumwatch.simulator.server import RunningSimulator

ALICE = "0x00000000000000000000000000000000000000a1"
BOB = "0x00000000000000000000000000000000000000b2"
# Above 2**53, like real set totals, to prove stake survives as an exact JSON integer.
BIG_STAKE = 40_450_000_000_000_001
SUMMARIES = {"type": "validatorSummaries"}
STATUS = {"type": "exchangeStatus"}


def _scenario(*later_steps: JsonObject, repeat: int = 1) -> Scenario:
    first: JsonObject = {
        "repeat": repeat,
        "validators": [
            {"validator": ALICE, "name": "Alice", "stake": BIG_STAKE, "commission": "0.04"},
            {"validator": BOB, "name": "Bob", "stake_hype": "1.5", "jailed": True},
        ],
    }
    return parse_scenario({"name": "unit", "steps": [first, *later_steps]})


def _fault_step(**fault: Any) -> JsonObject:
    return {"fault": fault}


async def _post(
    session: aiohttp.ClientSession,
    sim: RunningSimulator,
    body: object,
    give_up_after: float | None = None,
) -> tuple[int, str, Mapping[str, str]]:
    async with session.post(
        f"{sim.base_url}/info", json=body, timeout=aiohttp.ClientTimeout(total=give_up_after)
    ) as response:
        return response.status, await response.text(), response.headers


async def _summaries(session: aiohttp.ClientSession, sim: RunningSimulator) -> Any:
    async with session.post(f"{sim.base_url}/info", json=SUMMARIES) as response:
        assert response.status == 200
        return await response.json()


async def _admin(
    session: aiohttp.ClientSession, sim: RunningSimulator, method: str, path: str
) -> Any:
    async with session.request(method, f"{sim.base_url}/_sim/{path}") as response:
        assert response.status == 200
        return await response.json()


async def test_serves_rows_in_the_exact_api_shape_on_a_free_loopback_port(
    session: aiohttp.ClientSession,
) -> None:
    """Port 0 binds a real loopback port and rows match the validatorSummaries schema."""
    async with await start_simulator(_scenario()) as sim:
        assert sim.host == "127.0.0.1"
        assert sim.port > 0
        assert sim.base_url == f"http://127.0.0.1:{sim.port}"
        alice, bob = await _summaries(session, sim)
    assert alice == {
        "validator": ALICE,
        "signer": ALICE,
        "name": "Alice",
        "description": "",
        "nRecentBlocks": 1,
        "stake": BIG_STAKE,
        "isJailed": False,
        "unjailableAfter": None,
        "isActive": True,
        "commission": "0.04",
        "stats": [
            ["day", {"uptimeFraction": "1.0", "predictedApr": "0.0215", "nSamples": 1440}],
            ["week", {"uptimeFraction": "1.0", "predictedApr": "0.0215", "nSamples": 10080}],
            ["month", {"uptimeFraction": "1.0", "predictedApr": "0.0215", "nSamples": 43200}],
        ],
    }
    assert list(alice) == list(bob)
    assert type(bob["stake"]) is int
    assert bob["stake"] == 150_000_000
    assert bob["isJailed"] is True
    assert type(bob["unjailableAfter"]) is int


async def test_step_advances_after_repeat_requests_and_the_last_step_sticks(
    session: aiohttp.ClientSession,
) -> None:
    """Each step serves `repeat` summaries requests; exchangeStatus never advances it."""
    scenario = _scenario({"remove": [BOB]}, repeat=2)
    async with await start_simulator(scenario) as sim:
        sizes = []
        for _ in range(4):
            await _post(session, sim, STATUS)
            sizes.append(len(await _summaries(session, sim)))
        assert sizes == [2, 2, 1, 1]
        assert sim.step_index == 1


async def test_faulted_requests_also_count_towards_repeat(
    session: aiohttp.ClientSession,
) -> None:
    """A request answered with a fault still moves the step pointer on."""
    scenario = _scenario(_fault_step(kind="http_status", status=503), {})
    async with await start_simulator(scenario) as sim:
        statuses = [(await _post(session, sim, SUMMARIES))[0] for _ in range(3)]
    assert statuses == [200, 503, 200]


async def test_latency_fault_answers_correctly_after_the_delay(
    session: aiohttp.ClientSession,
) -> None:
    """latency delays the response by `seconds` but still returns the rows."""
    async with await start_simulator(_scenario(_fault_step(kind="latency", seconds=0.1))) as sim:
        await _summaries(session, sim)
        started = time.monotonic()
        rows = await _summaries(session, sim)
        assert time.monotonic() - started >= 0.1
    assert len(rows) == 2


async def test_http_status_fault_sends_status_retry_after_and_body(
    session: aiohttp.ClientSession,
) -> None:
    """http_status sends its status, Retry-After only when given, and the configured body."""
    scenario = _scenario(
        _fault_step(kind="http_status", status=429, retry_after=1),
        _fault_step(kind="http_status", status=429),
        _fault_step(kind="http_status", status=500, body=None),
    )
    async with await start_simulator(scenario) as sim:
        await _summaries(session, sim)
        limited_status, _, limited_headers = await _post(session, sim, SUMMARIES)
        bare_status, _, bare_headers = await _post(session, sim, SUMMARIES)
        error_status, error_body, error_headers = await _post(session, sim, SUMMARIES)
    assert (limited_status, limited_headers["Retry-After"]) == (429, "1")
    assert bare_status == 429
    assert "Retry-After" not in bare_headers
    assert (error_status, error_body) == (500, "null")
    assert error_headers["Content-Type"].startswith("application/json")


async def test_timeout_fault_hangs_until_the_client_gives_up(
    session: aiohttp.ClientSession,
) -> None:
    """timeout never answers in time, so a client with a 0.2 s timeout times out."""
    async with await start_simulator(_scenario(_fault_step(kind="timeout"))) as sim:
        await _summaries(session, sim)
        with pytest.raises(TimeoutError):
            await _post(session, sim, SUMMARIES, give_up_after=0.2)


async def test_timeout_fault_gives_up_with_504_after_its_seconds(
    session: aiohttp.ClientSession,
) -> None:
    """A short timeout fault ends with a CDN-style 504 rather than an answer."""
    async with await start_simulator(_scenario(_fault_step(kind="timeout", seconds=0.05))) as sim:
        await _summaries(session, sim)
        status, _, _ = await _post(session, sim, SUMMARIES)
    assert status == 504


async def test_malformed_json_fault_sends_truncated_json(
    session: aiohttp.ClientSession,
) -> None:
    """malformed_json is HTTP 200 application/json whose body does not parse."""
    async with await start_simulator(_scenario(_fault_step(kind="malformed_json"))) as sim:
        await _summaries(session, sim)
        status, body, headers = await _post(session, sim, SUMMARIES)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body.startswith('[{"validator"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_empty_set_and_raw_faults_send_their_bodies(
    session: aiohttp.ClientSession,
) -> None:
    """empty_set answers [] and raw answers exactly its configured JSON body."""
    drifted = [{"validator": ALICE, "stake": "12.5"}]
    scenario = _scenario(_fault_step(kind="empty_set"), _fault_step(kind="raw", body=drifted))
    async with await start_simulator(scenario) as sim:
        await _summaries(session, sim)
        assert await _summaries(session, sim) == []
        assert await _summaries(session, sim) == drifted


async def test_faults_apply_only_to_their_request_types(
    session: aiohttp.ClientSession,
) -> None:
    """applies_to picks which request types a fault hits."""
    scenario = _scenario(
        _fault_step(kind="http_status", status=502, applies_to="exchangeStatus"),
        _fault_step(kind="http_status", status=503, applies_to="all"),
    )
    async with await start_simulator(scenario) as sim:
        await _summaries(session, sim)
        status_only = [(await _post(session, sim, body))[0] for body in (STATUS, SUMMARIES)]
        both = [(await _post(session, sim, body))[0] for body in (STATUS, SUMMARIES)]
    assert status_only == [502, 200]
    assert both == [503, 503]


async def test_exchange_status_time_uses_injected_clock_plus_offset(
    session: aiohttp.ClientSession,
) -> None:
    """exchangeStatus reports clock() + the step's clock_offset_seconds in milliseconds."""
    scenario = _scenario({"clock_offset_seconds": -120})
    async with await start_simulator(scenario, clock=lambda: 1_700_000_000.25) as sim:
        fresh = json.loads((await _post(session, sim, STATUS))[1])
        await _summaries(session, sim)
        stale = json.loads((await _post(session, sim, STATUS))[1])
    assert fresh == {"time": 1_700_000_000_250, "specialStatuses": None}
    assert stale["time"] == 1_699_999_880_250


@pytest.mark.parametrize(
    "body", [{"type": "meta"}, {"kind": "validatorSummaries"}, ["validatorSummaries"], "x"]
)
async def test_unknown_request_gets_the_real_422(
    session: aiohttp.ClientSession, body: object
) -> None:
    """Any body that is not a known info type gets 422 text/plain, without advancing."""
    async with await start_simulator(_scenario({})) as sim:
        status, text, headers = await _post(session, sim, body)
        assert sim.step_index == 0
    assert (status, text) == (422, DESERIALIZE_ERROR)
    assert headers["Content-Type"].startswith("text/plain")


async def test_admin_endpoints_report_and_move_the_step(
    session: aiohttp.ClientSession,
) -> None:
    """/_sim/state reports progress; /_sim/step and /_sim/goto move the pointer."""
    async with await start_simulator(_scenario({}, {}, repeat=5)) as sim:
        await _summaries(session, sim)
        assert await _admin(session, sim, "GET", "state") == {
            "scenario": "unit",
            "step": 0,
            "steps": 3,
            "requests": 1,
        }
        assert (await _admin(session, sim, "POST", "step"))["step"] == 1
        assert (await _admin(session, sim, "POST", "goto?step=2"))["step"] == 2
        assert (await _admin(session, sim, "POST", "step"))["step"] == 2
        assert (await _admin(session, sim, "POST", "goto?step=0"))["step"] == 0
        async with session.post(f"{sim.base_url}/_sim/goto?step=3") as response:
            assert response.status == 400
        assert sim.step_index == 0


async def _outcome(session: aiohttp.ClientSession, sim: RunningSimulator) -> str:
    try:
        status, body, _ = await _post(session, sim, SUMMARIES, give_up_after=0.5)
    except TimeoutError:
        return "timeout"
    if status != 200:
        return str(status)
    try:
        return "rows" if json.loads(body) else "empty"
    except json.JSONDecodeError:
        return "malformed"


async def test_bundled_flaky_api_walks_through_its_faults(
    session: aiohttp.ClientSession,
) -> None:
    """The flaky-api scenario yields each failure in order, then stays healthy."""
    async with await start_simulator(load_scenario("flaky-api")) as sim:
        outcomes = [await _outcome(session, sim) for _ in range(10)]
    assert outcomes == [
        "rows",
        "rows",  # after 0.2 s of latency
        "429",
        "429",
        "503",
        "timeout",
        "malformed",
        "empty",
        "rows",
        "rows",
    ]


async def test_close_cancels_hanging_requests_and_leaves_no_tasks() -> None:
    """close() returns promptly while a timeout fault hangs and leaves no pending tasks."""
    sim = await start_simulator(_scenario(_fault_step(kind="timeout", seconds=120), repeat=1))
    async with aiohttp.ClientSession() as client:
        await _summaries(client, sim)
        hanging = asyncio.create_task(client.post(f"{sim.base_url}/info", json=SUMMARIES))
        await eventually(lambda: sim.timeline.requests == 2, "the request the fault holds")
        started = time.monotonic()
        await sim.close()
        assert time.monotonic() - started < 1
        (await hanging).release()
    await sim.close()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
