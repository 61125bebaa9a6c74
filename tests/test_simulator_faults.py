"""The fault-injecting proxy: forwarding, matching, and each fault as a client sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from quorumwatch.simulator.faults import (
    FaultProxy,
    Hang,
    Reset,
    Rewrite,
    Rule,
    Status,
    Truncate,
    start_fault_proxy,
)
from quorumwatch.simulator.generic import RunningGenericSimulator, start_generic_simulator
from tests.services import eventually

DOCUMENT = {"time": 1, "rows": [{"id": "a", "stake": 1}, {"id": "b", "stake": 2}]}
SET = Rule(path="/api/validators")
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=5)  # a request the proxy mishandles fails the test


@pytest.fixture
async def upstream() -> AsyncIterator[RunningGenericSimulator]:
    async with await start_generic_simulator(DOCUMENT) as sim:
        yield sim


@pytest.fixture
async def proxy(upstream: RunningGenericSimulator) -> AsyncIterator[FaultProxy]:
    async with await start_fault_proxy(upstream.base_url) as running:
        yield running


async def _get(
    session: aiohttp.ClientSession, proxy: FaultProxy, path: str = "/api/validators"
) -> tuple[int, dict[str, str], bytes]:
    async with session.get(proxy.base_url + path, timeout=CLIENT_TIMEOUT) as response:
        return response.status, dict(response.headers), await response.read()


async def test_without_faults_the_upstream_answer_passes_unchanged(
    session: aiohttp.ClientSession, proxy: FaultProxy, upstream: RunningGenericSimulator
) -> None:
    """With no fault injected, the client gets the upstream's status and JSON as they are."""
    status, headers, body = await _get(session, proxy)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body == b'{"time": 1, "rows": [{"id": "a", "stake": 1}, {"id": "b", "stake": 2}]}'
    assert upstream.requests == 1


async def test_rule_matches_path_prefix_and_body_substring() -> None:
    """A rule matches when the path starts with its prefix and the body holds its bytes."""
    rule = Rule(path="/info", body=b'"validatorSummaries"')
    assert rule.matches("/info", b'{"type": "validatorSummaries"}')
    assert not rule.matches("/info", b'{"type": "exchangeStatus"}')
    assert not rule.matches("/other", b'{"type": "validatorSummaries"}')
    assert Rule().matches("/anything", b"")


async def test_fault_applies_only_to_matching_requests(
    session: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    """A fault on one path leaves other paths forwarded (here the upstream's 404)."""
    proxy.inject(Rule(path="/api/other"), Status(503))
    assert (await _get(session, proxy))[0] == 200
    assert (await _get(session, proxy, "/api/other"))[0] == 503
    assert proxy.count(SET) == 1
    assert proxy.count(Rule(path="/api/other")) == 1


async def test_earlier_injection_takes_precedence_and_clear_removes_all(
    session: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    """Of two matching faults the first injected applies; after clear() requests pass again."""
    proxy.inject(SET, Status(429))
    proxy.inject(SET, Status(503))
    assert (await _get(session, proxy))[0] == 429
    proxy.clear()
    assert (await _get(session, proxy))[0] == 200


async def test_status_fault_sends_retry_after_and_body(
    session: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    """A status fault answers its status, Retry-After header, content type and body."""
    proxy.inject(SET, Status(429, "<html>slow down</html>", "text/html", retry_after="60"))
    status, headers, body = await _get(session, proxy)
    assert (status, headers["Retry-After"], body) == (429, "60", b"<html>slow down</html>")
    assert headers["Content-Type"].startswith("text/html")


async def test_truncate_cuts_the_upstream_answer_in_half(
    session: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    """Truncate answers 200 with the first half of the upstream JSON: invalid JSON."""
    _, _, whole = await _get(session, proxy)
    proxy.inject(SET, Truncate())
    status, _, body = await _get(session, proxy)
    assert status == 200
    assert body == whole[: len(whole) // 2]


async def test_rewrite_changes_the_upstream_json(
    session: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    """A rewrite's change function is applied to the upstream's decoded JSON."""

    def drop_rows(document: Any) -> Any:
        document["rows"] = []
        return document

    proxy.inject(SET, Rewrite(drop_rows))
    status, _, body = await _get(session, proxy)
    assert (status, body) == (200, b'{"time": 1, "rows": []}')


async def test_reset_sends_half_the_promised_body_then_closes(
    session: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    """Reset promises the whole length, sends half, and closes: the client's read fails."""
    proxy.inject(SET, Reset())
    with pytest.raises(aiohttp.ClientPayloadError):
        await _get(session, proxy)


async def test_hang_answers_nothing_until_the_client_gives_up(
    session: aiohttp.ClientSession, proxy: FaultProxy
) -> None:
    """Hang holds the request open: a client with a 0.3 s deadline times out."""
    proxy.inject(SET, Hang(30))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await _get(session, proxy)
    assert time.monotonic() - started < 2


async def test_close_ends_a_hanging_request_at_once(upstream: RunningGenericSimulator) -> None:
    """Closing the proxy ends a request held by Hang instead of waiting the hang out."""
    proxy = await start_fault_proxy(upstream.base_url)
    proxy.inject(SET, Hang(3600))
    async with aiohttp.ClientSession() as client:
        pending = asyncio.create_task(client.get(proxy.base_url + "/api/validators"))
        await eventually(lambda: proxy.count(SET) == 1, "the proxy to receive the request")
        # A later request through the proxy is answered (the upstream's 404); the held one
        # still is not.
        async with client.get(proxy.base_url + "/api/other") as later:
            assert later.status == 404
        assert not pending.done()
        started = time.monotonic()
        await proxy.close()
        assert time.monotonic() - started < 2
        with pytest.raises(aiohttp.ClientError):
            (await pending).raise_for_status()
