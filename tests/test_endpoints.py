"""Endpoint pool: request classification, Retry-After, per-endpoint accounting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses
from structlog.testing import capture_logs

from quorumwatch.config import EndpointSettings
from quorumwatch.endpoints import (
    LATENCY_BUCKETS,
    MAX_RETRY_AFTER_SECONDS,
    EndpointPool,
    http_session,
    parse_retry_after,
)
from quorumwatch.models import DataError, Outcome
from tests.builders import FakeClock, chain_settings
from tests.services import raw_server, silent, slowloris
from tests.tools import refused_url, self_signed_certificate, server_tls, unanswered_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

WALL = 1_750_000_000.0  # injected wall clock: the HTTP-date Retry-After is relative to it
BIG_BODY = b"x" * 1000
SMALL_LIMIT = 100


@dataclass
class Server:
    base_url: str
    hits: Counter[str]


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise DataError("malformed_json") from None


def _advancing(clock: FakeClock, seconds: float) -> Callable[[bytes], Any]:
    """A decoder that makes the request take `seconds` on the injected monotonic clock."""

    def decode(body: bytes) -> Any:
        clock.now += seconds
        return _decode(body)

    return decode


def _app(hits: Counter[str], release: asyncio.Event) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        hits[path] += 1
        match path:
            case "/ok":
                return web.json_response({"ok": True})
            case "/slow":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), 5)
                return web.json_response({"ok": True})
            case "/429":
                return web.Response(status=429, headers={"Retry-After": "30"})
            case "/429-none":
                return web.Response(status=429)
            case "/429-date":
                date = formatdate(WALL + 120, usegmt=True)
                return web.Response(status=429, headers={"Retry-After": date})
            case "/429-big":
                return web.Response(status=429, headers={"Retry-After": "30"}, body=BIG_BODY)
            case "/404":
                return web.Response(status=404, text="not found")
            case "/422":
                return web.Response(status=422, text="Failed to deserialize the JSON body")
            case "/500":
                return web.Response(status=500, text="null")
            case "/503-big":
                return web.Response(status=503, body=BIG_BODY)
            case "/garbage":
                return web.Response(text="<html>not json</html>", content_type="text/html")
            case "/big":
                return web.Response(body=BIG_BODY, content_type="application/json")
            case "/big-chunked":
                stream = web.StreamResponse()
                stream.enable_chunked_encoding()
                await stream.prepare(request)
                for _ in range(10):
                    await stream.write(b"y" * 50)
                await stream.write_eof()
                return stream
            case "/sized" | "/sized-chunked":
                return await _sized(request, int(request.query["bytes"]))
            case "/large-ok":
                return web.json_response(["v" * 100] * 20_000)  # about 2 MB
            case "/redirect":
                raise web.HTTPFound("/ok")
        return web.Response(status=599)

    async def negotiated(request: web.Request) -> web.Response:
        """Binary only: what a beacon node does for `Accept: application/octet-stream`."""
        hits[request.path] += 1
        if request.headers.get("Accept") != "application/octet-stream":
            return web.Response(status=406)
        headers = {"Eth-Consensus-Version": "fulu"}
        return web.Response(body=b"\x00\x01\x02", headers=headers)

    app = web.Application()
    app.router.add_get("/negotiated", negotiated)
    app.router.add_post("/{tail:.*}", handle)
    return app


async def _sized(request: web.Request, size: int) -> web.StreamResponse:
    """`size` bytes, with a Content-Length (/sized) or chunked without one (/sized-chunked)."""
    if request.path == "/sized":
        return web.Response(body=b"z" * size, content_type="application/json")
    stream = web.StreamResponse()
    stream.enable_chunked_encoding()
    await stream.prepare(request)
    for start in range(0, size, 64 * 1024):
        await stream.write(b"z" * min(64 * 1024, size - start))
    await stream.write_eof()
    return stream


@contextlib.asynccontextmanager
async def _serving(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """The test app on a free loopback port, over TLS when given a server context."""
    hits: Counter[str] = Counter()
    release = asyncio.Event()
    runner = web.AppRunner(_app(hits, release), access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "http" if ssl_context is None else "https"
    try:
        yield Server(f"{scheme}://127.0.0.1:{port}", hits)
    finally:
        release.set()
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with _serving() as running:
        yield running


def _pool(
    session: aiohttp.ClientSession,
    *urls: str,
    timeout: float = 5.0,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    max_response_bytes: int = 16 * 1024 * 1024,
    clock: Callable[[], float] | None = None,
    monotonic: Callable[[], float] | None = None,
) -> EndpointPool:
    endpoints = [
        EndpointSettings(
            name=f"e{index}",
            url=url,
            timeout_seconds=timeout,
            connect_timeout_seconds=connect_timeout,
            read_timeout_seconds=read_timeout,
        )
        for index, url in enumerate(urls)
    ]
    return EndpointPool(
        endpoints,
        session,
        max_response_bytes=max_response_bytes,
        clock=clock or FakeClock(WALL),
        monotonic=monotonic or FakeClock(1000.0),
    )


# --- classification ----------------------------------------------------------------------------


async def test_ok_returns_decoded_value(server: Server, session: aiohttp.ClientSession) -> None:
    """A 200 with a decodable body is ok, carries the value, and counts one ok request."""
    pool = _pool(session, server.base_url)
    answer = await pool.post_json(pool.endpoints[0], "/ok", {"type": "x"}, _decode)
    assert answer.outcome is Outcome.OK
    assert answer.value == {"ok": True}
    assert answer.endpoint == "e0"
    assert pool.views()[0].requests[Outcome.OK] == 1


async def test_get_sends_accept_and_decodes_body_with_headers(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """`get` asks for the given media type, and the decoder sees the body and the answer's
    headers (the format a binary answer names); the answer keeps its HTTP status."""
    pool = _pool(session, server.base_url)
    answer = await pool.get(
        pool.endpoints[0],
        "/negotiated",
        lambda payload: (bytes(payload.body), payload.headers["Eth-Consensus-Version"]),
        accept="application/octet-stream",
    )
    assert answer.outcome is Outcome.OK
    assert answer.value == (b"\x00\x01\x02", "fulu")
    assert answer.status == 200


async def test_refused_media_type_keeps_the_status(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A 406 for an unsupported media type is http_4xx with status 406, so a source can tell
    "not in this format" from other refusals and fall back."""
    pool = _pool(session, server.base_url)
    answer = await pool.get(pool.endpoints[0], "/negotiated", lambda p: p, accept="text/plain")
    assert (answer.outcome, answer.status, answer.value) == (Outcome.HTTP_4XX, 406, None)


@pytest.mark.parametrize(
    ("path", "outcome"),
    [
        ("/404", Outcome.HTTP_4XX),
        ("/422", Outcome.HTTP_4XX),
        ("/500", Outcome.HTTP_5XX),
        ("/503-big", Outcome.HTTP_5XX),
        ("/429-none", Outcome.HTTP_429),
        ("/redirect", Outcome.INVALID_PAYLOAD),
    ],
)
async def test_status_classes(
    server: Server, session: aiohttp.ClientSession, path: str, outcome: Outcome
) -> None:
    """4xx, 5xx (even with a body over the size limit), 429 and 3xx classify by status."""
    pool = _pool(session, server.base_url, max_response_bytes=SMALL_LIMIT)
    answer = await pool.post_json(pool.endpoints[0], path, {}, _decode)
    assert answer.outcome is outcome
    assert answer.value is None
    assert answer.data_error is None
    view = pool.views()[0]
    assert view.requests[outcome] == 1
    assert sum(view.requests.values()) == 1


async def test_redirect_is_not_followed(server: Server, session: aiohttp.ClientSession) -> None:
    """A 302 is invalid_payload and its Location is never requested."""
    pool = _pool(session, server.base_url)
    answer = await pool.post_json(pool.endpoints[0], "/redirect", {}, _decode)
    assert answer.outcome is Outcome.INVALID_PAYLOAD
    assert "302" in answer.error
    assert server.hits["/ok"] == 0


async def test_timeout(server: Server, session: aiohttp.ClientSession) -> None:
    """No answer within the endpoint's timeout_seconds is classified timeout."""
    pool = _pool(session, server.base_url, timeout=0.05)
    answer = await pool.post_json(pool.endpoints[0], "/slow", {}, _decode)
    assert answer.outcome is Outcome.TIMEOUT
    assert pool.views()[0].requests[Outcome.TIMEOUT] == 1


async def test_closed_port_is_connect_error(session: aiohttp.ClientSession) -> None:
    """A refused connection is connect_error."""
    pool = _pool(session, refused_url())
    answer = await pool.post_json(pool.endpoints[0], "/ok", {}, _decode)
    assert answer.outcome is Outcome.CONNECT_ERROR
    assert pool.endpoints[0].up is False


async def test_dropped_connection_is_connect_error(session: aiohttp.ClientSession) -> None:
    """A server that disconnects mid-request (via aioresponses) is connect_error."""
    pool = _pool(session, "http://api.invalid")
    with aioresponses() as mocked:
        mocked.post("http://api.invalid/info", exception=aiohttp.ServerDisconnectedError())
        answer = await pool.post_json(pool.endpoints[0], "/info", {}, _decode)
    assert answer.outcome is Outcome.CONNECT_ERROR


async def test_userinfo_beside_an_authorization_header_is_unexpected(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """aiohttp's ValueError for credentials given twice (issue #13) is counted unexpected on
    the endpoint, which goes down; the log names the type, never the URL or its password."""
    url = server.base_url.replace("http://", "http://user:s3cret@")
    pool = _pool(session, url)
    # The config refuses this pair; an endpoint built around the check still must not crash.
    pool.endpoints[0].headers = {"Authorization": "Bearer t0ken"}
    pool.endpoints[0].up = True
    with capture_logs() as logs:
        answer = await pool.post_json(pool.endpoints[0], "/ok", {}, _decode)
    assert (answer.outcome, answer.error, answer.value) == (Outcome.UNEXPECTED, "ValueError", None)
    assert pool.views()[0].requests[Outcome.UNEXPECTED] == 1
    assert pool.endpoints[0].up is False
    assert server.hits["/ok"] == 0
    [entry] = logs
    assert (entry["outcome"], entry["error"]) == ("unexpected", "ValueError")
    assert "s3cret" not in repr(logs)
    assert "127.0.0.1" not in repr(logs)
    assert "t0ken" not in repr(logs)


async def test_decoder_raising_what_it_should_not_is_unexpected(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A decoder raising anything but DataError (a parser's bug) makes the request unexpected,
    keeping the HTTP status, and the log holds the exception's type, not its message."""

    def buggy(body: bytes) -> Any:
        raise KeyError(f"http://user:s3cret@host/{body!r}")

    pool = _pool(session, server.base_url)
    with capture_logs() as logs:
        answer = await pool.post_json(pool.endpoints[0], "/ok", {}, buggy)
    assert (answer.outcome, answer.error, answer.status) == (Outcome.UNEXPECTED, "KeyError", 200)
    assert pool.views()[0].requests[Outcome.UNEXPECTED] == 1
    assert "s3cret" not in repr(logs)


@pytest.mark.parametrize(
    "exit_",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1)],
    ids=lambda exit_: type(exit_).__name__,
)
async def test_cancellation_and_exits_are_not_classified(
    session: aiohttp.ClientSession, exit_: BaseException
) -> None:
    """CancelledError, KeyboardInterrupt and SystemExit raised in a request go through the
    pool as they are, with nothing counted."""
    pool = _pool(session, "http://api.invalid")
    with aioresponses() as mocked:
        mocked.post("http://api.invalid/info", exception=exit_)
        with pytest.raises(type(exit_)):
            await pool.post_json(pool.endpoints[0], "/info", {}, _decode)
    assert sum(pool.views()[0].requests.values()) == 0


async def test_undecodable_body_is_invalid_payload(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A 200 whose decoder raises DataError is invalid_payload carrying that DataError."""
    pool = _pool(session, server.base_url)
    answer = await pool.post_json(pool.endpoints[0], "/garbage", {}, _decode)
    assert answer.outcome is Outcome.INVALID_PAYLOAD
    assert answer.data_error is not None
    assert answer.data_error.reason == "malformed_json"
    assert answer.value is None


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_body_over_limit_is_too_large(
    server: Server, session: aiohttp.ClientSession, path: str
) -> None:
    """A 200 body over max_response_bytes (with or without Content-Length) is too_large."""
    decoded: list[bytes] = []
    pool = _pool(session, server.base_url, max_response_bytes=SMALL_LIMIT)
    answer = await pool.post_json(pool.endpoints[0], path, {}, decoded.append)
    assert answer.outcome is Outcome.INVALID_PAYLOAD
    assert answer.data_error is not None
    assert answer.data_error.reason == "too_large"
    assert decoded == []


async def test_body_at_limit_is_read(server: Server, session: aiohttp.ClientSession) -> None:
    """A chunked body of exactly max_response_bytes is accepted whole."""
    pool = _pool(session, server.base_url, max_response_bytes=500)
    answer = await pool.post_json(pool.endpoints[0], "/big-chunked", {}, bytes)
    assert answer.outcome is Outcome.OK
    assert answer.value == b"y" * 500


async def test_multi_megabyte_body_is_read_whole(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A 2 MB answer reaches the decoder complete, not cut at the first buffered chunk."""
    pool = _pool(session, server.base_url)
    answer = await pool.post_json(pool.endpoints[0], "/large-ok", {}, _decode)
    assert answer.outcome is Outcome.OK
    assert answer.value == ["v" * 100] * 20_000


# --- requests over a connection the caller holds (WebSocket) ----------------------------------


async def test_exchange_classifies_like_a_request(session: aiohttp.ClientSession) -> None:
    """`exchange` decodes an answer (ok), refuses one over max_response_bytes (invalid_payload,
    too_large), and classifies a lost connection (connect_error) and a missed deadline
    (timeout), each one request on the endpoint."""
    pool = _pool(session, "ws://127.0.0.1:1", timeout=0.05, max_response_bytes=4)
    endpoint = pool.endpoints[0]

    async def answer(body: bytes) -> bytes:
        return body

    async def lost() -> bytes:
        raise ConnectionResetError

    async def silent_node() -> bytes:
        await asyncio.Event().wait()
        return b""

    ok = await pool.exchange(endpoint, lambda: answer(b"1234"), bytes.decode)
    large = await pool.exchange(endpoint, lambda: answer(b"12345"), bytes.decode)
    closed = await pool.exchange(endpoint, lost, bytes.decode)
    late = await pool.exchange(endpoint, silent_node, bytes.decode)
    assert (ok.outcome, ok.value) == (Outcome.OK, "1234")
    assert large.data_error is not None
    assert (large.outcome, large.data_error.reason) == (Outcome.INVALID_PAYLOAD, "too_large")
    assert (closed.outcome, late.outcome) == (Outcome.CONNECT_ERROR, Outcome.TIMEOUT)
    assert sum(endpoint.requests.values()) == 4


async def test_websocket_to_a_closed_port_is_connect_error(session: aiohttp.ClientSession) -> None:
    """Opening a WebSocket where nothing listens is one connect_error request."""
    pool = _pool(session, "ws" + refused_url().removeprefix("http"))
    opened = await pool.open_websocket(pool.endpoints[0])
    assert opened.outcome is Outcome.CONNECT_ERROR
    assert pool.endpoints[0].requests[Outcome.CONNECT_ERROR] == 1


async def test_websocket_connect_deadline_is_timeout(session: aiohttp.ClientSession) -> None:
    """A WebSocket whose connection is not made within connect_timeout_seconds is a timeout,
    described as no connection."""
    with unanswered_port() as port:
        pool = _pool(session, f"ws://127.0.0.1:{port}", connect_timeout=0.05)
        opened = await pool.open_websocket(pool.endpoints[0])
    assert (opened.outcome, opened.error) == (Outcome.TIMEOUT, "no connection in 0.05s")


# --- Retry-After -------------------------------------------------------------------------------


async def test_429_retry_after_seconds_cools_endpoint_down(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """After a 429 with Retry-After: 30, available() omits the endpoint for exactly 30 s."""
    monotonic = FakeClock(1000.0)
    pool = _pool(session, server.base_url, server.base_url, monotonic=monotonic)
    limited, other = pool.endpoints
    answer = await pool.post_json(limited, "/429", {}, _decode)
    assert answer.outcome is Outcome.HTTP_429
    assert pool.available() == [other]
    monotonic.now += 29.9
    assert pool.available() == [other]
    monotonic.now += 0.1
    assert pool.available() == [limited, other]


async def test_429_with_large_body_still_honours_retry_after(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A 429 whose body exceeds the size limit is still http_429 and still cools down."""
    pool = _pool(session, server.base_url, max_response_bytes=SMALL_LIMIT)
    answer = await pool.post_json(pool.endpoints[0], "/429-big", {}, _decode)
    assert answer.outcome is Outcome.HTTP_429
    assert pool.available() == []


async def test_429_without_retry_after_has_no_cooldown(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A 429 without Retry-After is counted but leaves the endpoint available."""
    pool = _pool(session, server.base_url)
    answer = await pool.post_json(pool.endpoints[0], "/429-none", {}, _decode)
    assert answer.outcome is Outcome.HTTP_429
    assert pool.available() == pool.endpoints


async def test_429_http_date_retry_after(server: Server, session: aiohttp.ClientSession) -> None:
    """An HTTP-date Retry-After 120 s past the injected wall clock cools down for 120 s."""
    monotonic = FakeClock(1000.0)
    pool = _pool(session, server.base_url, clock=FakeClock(WALL), monotonic=monotonic)
    await pool.post_json(pool.endpoints[0], "/429-date", {}, _decode)
    assert pool.endpoints[0].cooldown_until == pytest.approx(1120.0)
    monotonic.now = 1119.0
    assert pool.available() == []
    monotonic.now = 1120.0
    assert pool.available() == pool.endpoints


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("0", 0.0),
        ("3600", 3600.0),
        ("3601", MAX_RETRY_AFTER_SECONDS),
        ("9" * 500, MAX_RETRY_AFTER_SECONDS),
        (formatdate(WALL + 90, usegmt=True), 90.0),
        (formatdate(WALL + 86_400, usegmt=True), MAX_RETRY_AFTER_SECONDS),
        (formatdate(WALL - 60, usegmt=True), 0.0),
        (formatdate(WALL + 30).replace("+0000", "-0000"), 30.0),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("²", None),
        ("١٢", None),
        ("Sun, 06 Nov 99999 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ("Sun, 06 Nov 1994 08:49:37 +9999", None),
    ],
)
def test_parse_retry_after(header: str, expected: float | None) -> None:
    """Delta-seconds and HTTP-dates give a delay capped at 3600 s; garbage gives None."""
    assert parse_retry_after(header, WALL) == expected


# --- accounting --------------------------------------------------------------------------------


async def test_latency_histogram_is_cumulative(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Latencies 0.03, 0.3 and 40 s give cumulative buckets; count equals requests, sum adds up."""
    monotonic = FakeClock(1000.0)
    pool = _pool(session, server.base_url, monotonic=monotonic)
    for seconds in (0.03, 0.3, 40.0):
        await pool.post_json(pool.endpoints[0], "/ok", {}, _advancing(monotonic, seconds))
    view = pool.views()[0]
    assert dict(zip(LATENCY_BUCKETS, view.latency_bucket_counts, strict=True)) == {
        0.05: 1,
        0.1: 1,
        0.25: 1,
        0.5: 2,
        1.0: 2,
        2.5: 2,
        5.0: 2,
        10.0: 2,
        30.0: 2,
    }
    assert view.latency_count == 3 == sum(view.requests.values())
    assert view.latency_sum == pytest.approx(40.33)
    assert view.last_latency_seconds == pytest.approx(40.0)


async def test_failures_are_in_the_histogram(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Every request, failed or not, is counted once in the latency histogram."""
    pool = _pool(session, server.base_url)
    for path in ("/ok", "/500", "/404", "/garbage"):
        await pool.post_json(pool.endpoints[0], path, {}, _decode)
    view = pool.views()[0]
    assert view.latency_count == 4 == sum(view.requests.values())
    assert view.latency_bucket_counts[-1] == 4


async def test_up_follows_last_outcome(server: Server, session: aiohttp.ClientSession) -> None:
    """`up` starts False and then is True exactly when the latest request was ok."""
    pool = _pool(session, server.base_url)
    endpoint = pool.endpoints[0]
    assert pool.views()[0].up is False
    seen = []
    for path in ("/ok", "/500", "/ok", "/429-none", "/garbage", "/ok"):
        await pool.post_json(endpoint, path, {}, _decode)
        seen.append(pool.views()[0].up)
    assert seen == [True, False, True, False, False, True]


async def test_reject_marks_an_answering_endpoint_down_until_its_next_request(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A rejected endpoint is down though its request was ok; its next ok request is up."""
    pool = _pool(session, server.base_url, server.base_url)
    first = pool.endpoints[0]
    for endpoint in pool.endpoints:
        await pool.post_json(endpoint, "/ok", {}, _decode)
    pool.reject(first)
    assert [view.up for view in pool.views()] == [False, True]
    assert pool.healthy_count() == 1
    await pool.post_json(first, "/ok", {}, _decode)
    assert pool.views()[0].up is True


def test_record_clock_skew_is_exported_and_can_be_cleared(
    session: aiohttp.ClientSession,
) -> None:
    """The recorded skew is in the endpoint's view, until a None says it is unknown."""
    pool = _pool(session, "http://127.0.0.1:9")
    endpoint = pool.endpoints[0]
    assert pool.views()[0].clock_skew_seconds is None
    pool.record_clock_skew(endpoint, -2.5)
    assert pool.views()[0].clock_skew_seconds == -2.5
    pool.record_clock_skew(endpoint, None)
    assert pool.views()[0].clock_skew_seconds is None


async def test_healthy_count(server: Server, session: aiohttp.ClientSession) -> None:
    """healthy_count counts endpoints whose last request was ok, never-requested ones excluded."""
    pool = _pool(session, server.base_url, server.base_url, server.base_url)
    first, second, _ = pool.endpoints
    assert pool.healthy_count() == 0
    await pool.post_json(first, "/ok", {}, _decode)
    await pool.post_json(second, "/500", {}, _decode)
    assert pool.healthy_count() == 1
    await pool.post_json(second, "/ok", {}, _decode)
    assert pool.healthy_count() == 2


async def test_availability_windows(server: Server, session: aiohttp.ClientSession) -> None:
    """One ok and one failed request give 0.5 in every window; after 10 min, 5m has no ratio."""
    clock = FakeClock(WALL)
    pool = _pool(session, server.base_url, clock=clock)
    await pool.post_json(pool.endpoints[0], "/ok", {}, _decode)
    await pool.post_json(pool.endpoints[0], "/500", {}, _decode)
    assert dict(pool.views()[0].availability) == {"5m": 0.5, "1h": 0.5, "24h": 0.5}
    clock.now += 600
    assert dict(pool.views()[0].availability) == {"5m": None, "1h": 0.5, "24h": 0.5}


async def test_view_is_an_immutable_snapshot(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A view is unchanged by later requests and its mappings cannot be written."""
    pool = _pool(session, server.base_url)
    await pool.post_json(pool.endpoints[0], "/ok", {}, _decode)
    (old,) = pool.views()
    await pool.post_json(pool.endpoints[0], "/500", {}, _decode)
    (new,) = pool.views()
    assert old.up is True
    assert old.requests[Outcome.OK] == 1
    assert old.requests[Outcome.HTTP_5XX] == 0
    assert old.latency_count == 1
    assert new.requests[Outcome.HTTP_5XX] == 1
    assert new.up is False
    with pytest.raises(TypeError):
        old.requests[Outcome.OK] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        old.availability["5m"] = 1.0  # type: ignore[index]


# --- limits: endpoints that misbehave below HTTP ----------------------------------------------


async def test_no_connection_is_a_connect_timeout(session: aiohttp.ClientSession) -> None:
    """A connect that never completes is timeout, says so, and ends at connect_timeout_seconds
    well before the total deadline."""
    with unanswered_port() as port:
        url = f"http://127.0.0.1:{port}"
        pool = _pool(session, url, timeout=5.0, connect_timeout=0.3, monotonic=time.monotonic)
        answer = await pool.post_json(pool.endpoints[0], "/ok", {}, _decode)
    assert answer.outcome is Outcome.TIMEOUT
    assert answer.error == "no connection in 0.3s"
    assert 0.25 <= answer.latency_seconds < 2.0
    assert pool.views()[0].requests[Outcome.TIMEOUT] == 1


async def test_no_headers_is_a_read_timeout(session: aiohttp.ClientSession) -> None:
    """A server that accepts but never answers is timeout after read_timeout_seconds, well
    before the total deadline, with a message naming the read limit."""
    async with raw_server(silent) as server:
        pool = _pool(
            session, server.base_url, timeout=5.0, read_timeout=0.3, monotonic=time.monotonic
        )
        answer = await pool.post_json(pool.endpoints[0], "/info", {}, _decode)
    assert answer.outcome is Outcome.TIMEOUT
    assert answer.error == "no bytes for 0.3s"
    assert 0.25 <= answer.latency_seconds < 2.0


async def test_slowloris_ends_at_the_total_deadline(session: aiohttp.ClientSession) -> None:
    """A body dripping a byte every 0.2 s (never idle for read_timeout_seconds) is timeout at
    the total deadline, and the client closes the connection then."""
    async with raw_server(slowloris) as server:
        pool = _pool(session, server.base_url, timeout=1.0, monotonic=time.monotonic)
        answer = await pool.post_json(pool.endpoints[0], "/info", {}, _decode)
        await asyncio.wait_for(server.idle.wait(), 5)
    assert answer.outcome is Outcome.TIMEOUT
    assert answer.error == "no answer in 1.0s"
    assert 0.95 <= answer.latency_seconds < 1.5
    assert len(server.lifetimes) == 1
    assert server.lifetimes[0] < 1.5


async def test_slowloris_over_the_size_limit_stops_reading(
    session: aiohttp.ClientSession,
) -> None:
    """A dripping body is cut off as too_large as soon as it passes max_response_bytes (3),
    long before the total deadline, and its connection is closed."""
    decoded: list[bytes] = []
    async with raw_server(slowloris) as server:
        pool = _pool(
            session,
            server.base_url,
            timeout=10.0,
            max_response_bytes=3,
            monotonic=time.monotonic,
        )
        answer = await pool.post_json(pool.endpoints[0], "/info", {}, decoded.append)
        await asyncio.wait_for(server.idle.wait(), 5)
    assert answer.outcome is Outcome.INVALID_PAYLOAD
    assert answer.data_error is not None
    assert answer.data_error.reason == "too_large"
    assert answer.latency_seconds < 3.0  # four bytes at 0.2 s each, not the 10 s deadline
    assert decoded == []
    assert server.peak_connections == 1


@pytest.mark.parametrize("path", ["/sized", "/sized-chunked"])
@pytest.mark.parametrize(
    ("extra_bytes", "outcome"), [(0, Outcome.OK), (1, Outcome.INVALID_PAYLOAD)]
)
async def test_hyperliquid_default_limit_is_4_mib(
    server: Server,
    session: aiohttp.ClientSession,
    path: str,
    extra_bytes: int,
    outcome: Outcome,
) -> None:
    """With max_response_bytes unset, a Hyperliquid chain reads a 4 MiB answer and rejects one
    byte more as too_large, with or without Content-Length."""
    limit = chain_settings(endpoints=1).max_response_bytes
    pool = _pool(session, server.base_url, max_response_bytes=limit)
    size = 4 * 1024 * 1024 + extra_bytes
    answer = await pool.post_json(pool.endpoints[0], f"{path}?bytes={size}", {}, bytes)
    assert answer.outcome is outcome
    if outcome is Outcome.OK:
        assert answer.value is not None
        assert len(answer.value) == size
    else:
        assert answer.data_error is not None
        assert answer.data_error.reason == "too_large"


# --- TLS -----------------------------------------------------------------------------------------


async def test_untrusted_certificate_is_connect_error(tmp_path: Path) -> None:
    """Through the daemon's session, an https endpoint whose certificate is not trusted is
    connect_error: no request reaches it and nothing is decoded."""
    cert, key = self_signed_certificate(tmp_path)
    decoded: list[bytes] = []
    async with _serving(server_tls(cert, key)) as tls, http_session() as session:
        pool = _pool(session, tls.base_url)
        answer = await pool.post_json(pool.endpoints[0], "/ok", {}, decoded.append)
    assert answer.outcome is Outcome.CONNECT_ERROR
    assert answer.error == "ClientConnectorCertificateError"
    assert decoded == []
    assert tls.hits["/ok"] == 0


TRUSTING_CLIENT = """
import asyncio, sys
from quorumwatch.config import EndpointSettings
from quorumwatch.endpoints import http_session
from quorumwatch.endpoints import EndpointPool

async def main() -> None:
    async with http_session() as session:
        endpoint = EndpointSettings(name="e0", url=sys.argv[1])
        pool = EndpointPool([endpoint], session, max_response_bytes=1024)
        answer = await pool.post_json(pool.endpoints[0], "/ok", {}, bytes)
        print(answer.outcome, answer.error)

asyncio.run(main())
"""


async def test_ssl_cert_file_trusts_a_private_ca(tmp_path: Path) -> None:
    """With SSL_CERT_FILE naming the certificate, the daemon's session reads the same https
    endpoint ok (in a child process, so the variable stays out of this one)."""
    cert, key = self_signed_certificate(tmp_path)
    async with _serving(server_tls(cert, key)) as tls:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            TRUSTING_CLIENT,
            tls.base_url,
            env={**os.environ, "SSL_CERT_FILE": str(cert)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "ok"
    assert tls.hits["/ok"] == 1
