"""A loopback JSON API for `kind = "generic"`: one document at one path, swappable by tests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from quorumwatch.simulator.serving import LoopbackServer


class RunningGenericSimulator(LoopbackServer):
    """Answers GET or POST on `path` with `document`; counts the requests in `requests`."""

    def __init__(self, document: Any, path: str) -> None:
        super().__init__()
        self.document = document
        self.path = path
        self.requests = 0

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", self.path, self._answer)
        app.router.add_route("POST", self.path, self._answer)
        return app

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response(self.document)


async def start_generic_simulator(
    document: Any, *, path: str = "/api/validators", host: str = "127.0.0.1", port: int = 0
) -> RunningGenericSimulator:
    """Serve `document` at `path` on host:port (0 picks a free port) until closed."""
    simulator = RunningGenericSimulator(document, path)
    await simulator.serve(simulator.build(), host, port)
    return simulator
