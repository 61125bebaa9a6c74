"""Serving a simulator's aiohttp app on loopback: start, address, close."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from aiohttp import web

# Pauses end as soon as close() starts, so this only bounds a handler stuck elsewhere.
_SHUTDOWN_TIMEOUT_SECONDS = 1.0
# How many requests a simulator remembers for tests to inspect: a long-running `simulate`
# must not grow without bound.
REQUEST_LOG_LENGTH = 10_000


class LoopbackServer:
    """An app listening on `base_url`; close it, or use it as an async context manager.

    Handlers that hang on purpose wait through `pause`, which ends as soon as closing
    starts: a hanging request never holds up or outlives shutdown.
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self, app: web.Application, host: str, port: int) -> None:
        """Listen on host:port (0 picks a free port)."""
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = runner.addresses[0][1]

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def close(self) -> None:
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
