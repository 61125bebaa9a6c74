"""JSON-RPC 2.0 over one WebSocket to a subtensor node, each call a request the endpoint pool
classifies and accounts (deadline, size limit, outcome, latency, availability)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from quorumwatch.chains.base import value_of
from quorumwatch.models import DataError

if TYPE_CHECKING:
    from quorumwatch.endpoints import Endpoint, EndpointPool

T = TypeVar("T")


class SocketClosedError(ConnectionError):
    """The node closed the WebSocket (or it failed) before answering: a connect_error."""


class RpcSocket:
    """An open WebSocket to one endpoint; `call` sends one request and awaits its answer."""

    def __init__(
        self, pool: EndpointPool, endpoint: Endpoint, socket: aiohttp.ClientWebSocketResponse
    ) -> None:
        self._pool = pool
        self._endpoint = endpoint
        self._socket = socket
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, pool: EndpointPool, endpoint: Endpoint) -> RpcSocket:
        """A socket to `endpoint`, or EndpointRejectedError saying why none could be opened."""
        socket = value_of(await pool.open_websocket(endpoint), "WebSocket")
        return cls(pool, endpoint, socket)

    async def close(self) -> None:
        await self._socket.close()

    async def call(self, method: str, params: list[Any], decode: Callable[[bytes], T]) -> T:
        """The decoded answer to `method(params)`, or EndpointRejectedError saying why not."""
        request_id = next(self._ids)
        message = json.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        )

        async def send() -> bytes:
            await self._socket.send_str(message)
            return await self._answer(request_id)

        return value_of(await self._pool.exchange(self._endpoint, send, decode), method)

    async def _answer(self, request_id: int) -> bytes:
        """The next message answering `request_id`; others (a late answer to a call that timed
        out) are skipped, the endpoint's deadline bounding the wait."""
        read_timeout = self._endpoint.settings.read_timeout_seconds
        while True:
            received = await self._socket.receive(timeout=read_timeout)
            if received.type is aiohttp.WSMsgType.ERROR:
                if isinstance(received.data, aiohttp.WebSocketError) and (
                    received.data.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
                ):
                    raise DataError("too_large", "a WebSocket message exceeds the size limit")
                raise SocketClosedError("the WebSocket failed")
            if received.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                raise SocketClosedError("the node closed the WebSocket")
            if received.type is aiohttp.WSMsgType.TEXT:
                body = received.data.encode()
            elif received.type is aiohttp.WSMsgType.BINARY:
                body = received.data
            else:
                continue
            if _answers(body, request_id):
                return bytes(body)


def _answers(body: bytes, request_id: int) -> bool:
    """Whether a message is the answer to `request_id` (an unparseable one is taken as the
    answer, so that its fault is reported, not waited out)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return True
    return not isinstance(document, dict) or document.get("id", request_id) == request_id
