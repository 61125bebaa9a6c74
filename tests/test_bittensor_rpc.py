"""JSON-RPC over one WebSocket: answers matched by id, and each failure classified on the
endpoint (too large, closed, silent)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from quorumwatch.chains.base import EndpointRejectedError
from quorumwatch.chains.bittensor.rpc import RpcSocket
from quorumwatch.config import EndpointSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import Outcome
from quorumwatch.simulator.serving import LoopbackServer

Reply = Callable[[web.WebSocketResponse, dict[str, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def _node(reply: Reply) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await reply(socket, json.loads(message.data))
        return socket

    app = web.Application()
    app.router.add_get("/", handle)
    async with LoopbackServer() as server:
        await server.serve(app, "127.0.0.1", 0)
        yield "ws" + server.base_url.removeprefix("http")


async def _call(
    session: aiohttp.ClientSession, url: str, *, limit: int = 1 << 20, read: float = 5
) -> tuple[Any, EndpointPool]:
    settings = EndpointSettings(name="n", url=url, timeout_seconds=5, read_timeout_seconds=read)
    pool = EndpointPool([settings], session, max_response_bytes=limit)
    socket = await RpcSocket.open(pool, pool.endpoints[0])
    try:
        return await socket.call("m", [], lambda body: json.loads(body)["result"]), pool
    finally:
        await socket.close()


async def test_answer_is_matched_by_its_id(session: aiohttp.ClientSession) -> None:
    """A message for another id is skipped; the call's own answer is returned, and the
    endpoint counts the socket's opening and the call as two ok requests."""

    async def reply(socket: web.WebSocketResponse, call: dict[str, Any]) -> None:
        await socket.send_str(json.dumps({"jsonrpc": "2.0", "id": 999, "result": "late"}))
        await socket.send_str(json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "ok"}))

    async with _node(reply) as url:
        result, pool = await _call(session, url)
    assert result == "ok"
    assert pool.endpoints[0].requests[Outcome.OK] == 2


async def test_oversized_answer_is_too_large(session: aiohttp.ClientSession) -> None:
    """A message beyond max_response_bytes is invalid_payload, reason too_large."""

    async def reply(socket: web.WebSocketResponse, call: dict[str, Any]) -> None:
        await socket.send_str(json.dumps({"id": call["id"], "result": "x" * 5000}))

    async with _node(reply) as url:
        with pytest.raises(EndpointRejectedError) as caught:
            await _call(session, url, limit=1000)
    assert caught.value.reason == "too_large"


async def test_silent_node_times_out(session: aiohttp.ClientSession) -> None:
    """No answer within read_timeout_seconds is a timeout."""

    async def reply(socket: web.WebSocketResponse, call: dict[str, Any]) -> None:
        return None

    async with _node(reply) as url:
        with pytest.raises(EndpointRejectedError) as caught:
            await _call(session, url, read=0.05)
    assert caught.value.description.startswith("m: timeout")


async def test_closed_socket_is_connect_error(session: aiohttp.ClientSession) -> None:
    """A node that closes the socket instead of answering is a connect_error."""

    async def reply(socket: web.WebSocketResponse, call: dict[str, Any]) -> None:
        await socket.close()

    async with _node(reply) as url:
        with pytest.raises(EndpointRejectedError) as caught:
            await _call(session, url)
    assert caught.value.description.startswith("m: connect_error")
