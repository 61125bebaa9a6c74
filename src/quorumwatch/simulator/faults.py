"""A fault-injecting reverse proxy: any simulator behind it, any API fault in front.

Transport faults (a hang, a reset mid-body, an HTTP status, a truncated body, an HTML page)
are the same for every chain; data faults (schema drift, duplicates, absurd stake, a stale
clock) are `Rewrite`s of the upstream's JSON answer. So one proxy plays every fault for
every source, against simulators that only ever answer correctly.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from quorumwatch.simulator.serving import REQUEST_LOG_LENGTH, LoopbackServer

_FORWARDED_HEADERS = ("Content-Type", "Accept")


@dataclass(frozen=True, slots=True)
class Rule:
    """Which requests a fault applies to: a path prefix and a substring of the body."""

    path: str = ""
    body: bytes = b""  # e.g. b'"getVoteAccounts"' or b'"validatorSummaries"'

    def matches(self, path: str, body: bytes) -> bool:
        return path.startswith(self.path) and self.body in body


@dataclass(frozen=True, slots=True)
class Hang:
    """Accept the request and answer nothing for `seconds`."""

    seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class Reset:
    """Send the headers and half of the promised body, then close the connection."""


@dataclass(frozen=True, slots=True)
class Status:
    """Answer `status` with `body`, and a Retry-After header when one is given."""

    status: int
    body: str = ""
    content_type: str = "text/plain"
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class Truncate:
    """The upstream answer, cut in half: never valid JSON."""


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The upstream JSON answer, passed through `change` (which may edit it in place)."""

    change: Callable[[Any], Any]


Fault = Hang | Reset | Status | Truncate | Rewrite


@dataclass(frozen=True, slots=True)
class SeenRequest:
    method: str
    path: str
    body: bytes


class FaultProxy(LoopbackServer):
    """Forwards every request to `upstream`, unless an injected fault's rule matches it."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.requests: deque[SeenRequest] = deque(maxlen=REQUEST_LOG_LENGTH)
        self._faults: list[tuple[Rule, Fault]] = []
        self._session: aiohttp.ClientSession | None = None

    def inject(self, rule: Rule, fault: Fault) -> None:
        """Apply `fault` to requests matching `rule`; earlier injections take precedence."""
        self._faults.append((rule, fault))

    def clear(self) -> None:
        self._faults.clear()

    def count(self, rule: Rule) -> int:
        """How many logged requests `rule` matches, whether or not a fault applied."""
        return sum(rule.matches(seen.path, seen.body) for seen in self.requests)

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start(self, host: str, port: int) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        try:
            await self.serve(self.build(), host, port)
        except OSError:
            await self._session.close()
            raise

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(SeenRequest(request.method, request.path, body))
        fault = next((f for rule, f in self._faults if rule.matches(request.path, body)), None)
        match fault:
            case Hang(seconds=seconds):
                await self.pause(seconds)
                return web.Response(status=504, text="Gateway Timeout")
            case Status():
                headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
                return web.Response(
                    status=fault.status,
                    headers=headers,
                    text=fault.body,
                    content_type=fault.content_type,
                )
            case Reset():
                return await _reset_mid_body(request, await self._forward(request, body))
        answer = await self._forward(request, body)
        match fault:
            case Truncate():
                return _json_bytes(answer.body[: len(answer.body) // 2], answer.status)
            case Rewrite(change=change):
                rewritten = json.dumps(change(json.loads(answer.body))).encode()
                return _json_bytes(rewritten, answer.status)
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )

    async def _forward(self, request: web.Request, body: bytes) -> _Answer:
        assert self._session is not None, "start() first"
        headers = {
            name: request.headers[name] for name in _FORWARDED_HEADERS if name in request.headers
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as response:
            return _Answer(response.status, await response.read(), response.content_type)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str


def _json_bytes(body: bytes, status: int) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


async def _reset_mid_body(request: web.Request, answer: _Answer) -> web.StreamResponse:
    response = web.StreamResponse(
        status=answer.status, headers={"Content-Length": str(len(answer.body))}
    )
    response.content_type = "application/json"
    await response.prepare(request)
    await response.write(answer.body[: len(answer.body) // 2])
    assert request.transport is not None
    request.transport.close()
    return response


async def start_fault_proxy(upstream: str, host: str = "127.0.0.1", port: int = 0) -> FaultProxy:
    """A proxy to `upstream` on host:port (0 picks a free port), forwarding until faults are
    injected; close it, or use it as an async context manager."""
    proxy = FaultProxy(upstream)
    await proxy.start(host, port)
    return proxy
