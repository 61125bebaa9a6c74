"""Generic source over tiny aiohttp servers: GET and POST, ordered failover, Retry-After."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from quorumwatch.chains import make_source
from quorumwatch.chains.generic.source import GenericSource
from quorumwatch.config import ChainSettings, EndpointSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import Outcome
from tests.builders import FakeClock
from tests.tools import refused_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

WALL = 1_750_000_000.0
BIG = 2**64 + 7  # far above 2**53: must survive the HTTP round trip exactly
DOCUMENT = {
    "data": {
        "set": [
            {"op": "v1", "moniker": "A", "power": str(BIG), "jailed": False},
            {"op": "v2", "moniker": "B", "power": "40", "jailed": True},
        ]
    }
}
GENERIC = {
    "path": "/validators",
    "list_path": "data.set",
    "id_field": "op",
    "name_field": "moniker",
    "stake_field": "power",
    "jailed_field": "jailed",
    "token_decimals": 6,
}


@dataclass
class Chain:
    """One fake chain API: answers every request with `status`/`body`, recording each request."""

    base_url: str = ""
    status: int = 200
    body: bytes = json.dumps(DOCUMENT).encode()
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs, await request.read()))
        return web.Response(
            status=self.status,
            body=self.body,
            headers=self.headers,
            content_type="application/json",
        )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[], Awaitable[Chain]]]:
    """Start fake chain servers on loopback; all are stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start() -> Chain:
            chain = Chain()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", chain.handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            chain.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            return chain

        yield start


def _source(
    session: aiohttp.ClientSession, *urls: str, **generic: Any
) -> tuple[GenericSource, EndpointPool]:
    settings = ChainSettings(
        name="made-up",
        kind="generic",
        endpoints=[
            EndpointSettings(name="abcdefgh"[i], url=url, timeout_seconds=2.0)
            for i, url in enumerate(urls)
        ],
        generic={**GENERIC, **generic},
    )
    pool = EndpointPool(
        settings.endpoints,
        session,
        max_response_bytes=1024 * 1024,
        clock=FakeClock(WALL),
        monotonic=FakeClock(1000.0),
    )
    source = make_source(settings, pool, FakeClock(WALL))
    assert isinstance(source, GenericSource)
    return source, pool


async def test_get_from_first_endpoint(
    serve: Callable[[], Awaitable[Chain]], session: aiohttp.ClientSession
) -> None:
    """A GET of the configured path on the first endpoint gives the exact set; b is not asked."""
    a, b = await serve(), await serve()
    source, pool = _source(session, a.base_url, b.base_url)
    result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "a"
    assert result.validator_set.token_decimals == 6
    assert result.validator_set.fetched_at == WALL
    table = result.validator_set.table
    assert [(v.address, v.name, v.stake, v.jailed) for v in table.rows(range(len(table)))] == [
        ("v1", "A", BIG, False),
        ("v2", "B", 40, True),
    ]
    assert (result.failures, result.rejection_reasons) == ((), ())
    assert a.requests == [("GET", "/validators", b"")]
    assert b.requests == []
    assert pool.healthy_count() == 1


async def test_post_sends_the_configured_body(
    serve: Callable[[], Awaitable[Chain]], session: aiohttp.ClientSession
) -> None:
    """method POST sends the configured JSON body to the configured path."""
    a = await serve()
    body = {"jsonrpc": "2.0", "id": 1, "method": "getValidators", "params": [{"n": 1}]}
    source, _ = _source(session, a.base_url, method="POST", path="/rpc", body=body)
    result = await source.fetch()
    assert result.validator_set is not None
    ((method, path, sent),) = a.requests
    assert (method, path, json.loads(sent)) == ("POST", "/rpc", body)


async def test_failover_through_5xx_invalid_data_and_refused_connection(
    serve: Callable[[], Awaitable[Chain]], session: aiohttp.ClientSession
) -> None:
    """A 503, a duplicate-id answer and a closed port are skipped in order; the 4th supplies
    the set, failures name each, and the one rejection reason is duplicate_validator."""
    a, b, d = await serve(), await serve(), await serve()
    a.status = 503
    row = {"op": "v1", "moniker": "A", "power": "1", "jailed": False}
    b.body = json.dumps({"data": {"set": [row, row]}}).encode()
    source, pool = _source(session, a.base_url, b.base_url, refused_url(), d.base_url)
    result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "d"
    assert [f.split(" ")[0] for f in result.failures] == [
        "a:",
        "b:",
        "c:",
    ]
    assert result.failures[0].startswith("a: http_5xx")
    assert result.failures[1].startswith("b: invalid_payload (duplicate_validator")
    assert result.failures[2].startswith("c: connect_error")
    assert result.rejection_reasons == ("duplicate_validator",)
    views = {v.name: v for v in pool.views()}
    assert views["b"].requests[Outcome.INVALID_PAYLOAD] == 1
    assert [views[n].up for n in "abcd"] == [False, False, False, True]


async def test_every_endpoint_failing_gives_no_set(
    serve: Callable[[], Awaitable[Chain]], session: aiohttp.ClientSession
) -> None:
    """When all endpoints fail there is no set, one failure per endpoint and every reason."""
    a, b = await serve(), await serve()
    a.body = b'{"data": {"set": []}}'
    b.body = b'{"data": {"set": [{"op": "v1", "moniker": "A", "power": 1.5, "jailed": false}]}}'
    source, _ = _source(session, a.base_url, b.base_url)
    result = await source.fetch()
    assert result.validator_set is None
    assert len(result.failures) == 2
    assert result.rejection_reasons == ("empty_set", "wrong_type")


async def test_endpoint_waiting_out_retry_after_is_skipped(
    serve: Callable[[], Awaitable[Chain]], session: aiohttp.ClientSession
) -> None:
    """A 429 with Retry-After fails over, and the next fetch skips that endpoint without a
    request, naming it in the failures."""
    a, b = await serve(), await serve()
    a.status, a.headers = 429, {"Retry-After": "60"}
    source, _ = _source(session, a.base_url, b.base_url)
    first = await source.fetch()
    assert first.validator_set is not None
    assert first.validator_set.endpoint == "b"
    assert first.failures[0].startswith("a: http_429")
    second = await source.fetch()
    assert second.validator_set is not None
    assert second.failures == ("a: waiting out Retry-After",)
    assert len(a.requests) == 1
    assert len(b.requests) == 2


async def test_disconnect_fails_over_via_aioresponses(
    serve: Callable[[], Awaitable[Chain]], session: aiohttp.ClientSession
) -> None:
    """A server disconnect on the first endpoint (mocked) is connect_error; the second serves."""
    b = await serve()
    source, _ = _source(session, "http://a.invalid", b.base_url)
    with aioresponses(passthrough=[b.base_url]) as mocked:
        mocked.get("http://a.invalid/validators", exception=aiohttp.ServerDisconnectedError())
        result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "b"
    assert result.failures[0].startswith("a: connect_error")


def test_source_requires_generic_section(session: aiohttp.ClientSession) -> None:
    """Built for a chain without a [chains.generic] section, the source refuses to start."""
    settings = ChainSettings(
        name="hl", kind="hyperliquid", endpoints=[EndpointSettings(name="a", url="http://x")]
    )
    pool = EndpointPool(settings.endpoints, session, max_response_bytes=1024)
    with pytest.raises(ValueError, match="generic"):
        GenericSource(pool, settings)


@pytest.mark.parametrize(
    ("offset", "reason"), [(-3600, "stale_data"), (3600, "future_data")], ids=["past", "future"]
)
async def test_answer_dated_far_from_the_clock_fails_over(
    serve: Callable[[], Awaitable[Chain]],
    session: aiohttp.ClientSession,
    offset: float,
    reason: str,
) -> None:
    """With `time_field`, an answer dated an hour off (either way) is rejected and b serves."""
    a, b = await serve(), await serve()
    a.body = json.dumps({**DOCUMENT, "time": WALL + offset}).encode()
    b.body = json.dumps({**DOCUMENT, "time": WALL - 5}).encode()
    source, pool = _source(session, a.base_url, b.base_url, time_field="time")
    result = await source.fetch()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "b"
    assert result.rejection_reasons == (reason,)
    views = {view.name: view for view in pool.views()}
    assert views["a"].up is False
    assert views["a"].clock_skew_seconds == offset
    assert views["b"].clock_skew_seconds == -5
