"""The /metrics HTTP endpoint (text format or OpenMetrics), with a landing page at /."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

SHUTDOWN_TIMEOUT_SECONDS = 1.0
_LANDING = (
    "<html><head><title>quorumwatch</title></head><body><h1>quorumwatch</h1>"
    '<p><a href="/metrics">Metrics</a></p></body></html>'
)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def basic_auth(username: str, password: str) -> Middleware:
    """Middleware requiring HTTP basic auth; credentials compared in constant time."""
    expected = f"{username}:{password}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            given = base64.b64decode(encoded, validate=True) if scheme.lower() == "basic" else b""
        except (binascii.Error, ValueError):
            given = b""
        if not hmac.compare_digest(given, expected):
            return web.Response(
                status=401, headers={"WWW-Authenticate": 'Basic realm="quorumwatch"'}
            )
        return await handler(request)

    return check


def metrics_app(
    registry: CollectorRegistry, *, credentials: tuple[str, str] | None = None
) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        # OpenMetrics when the Accept header asks for it (Prometheus does by default), else
        # the text format 0.0.4.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Rendering thousands of series takes milliseconds: keep it off the event loop.
        body = await asyncio.to_thread(encode, registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def landing(_: web.Request) -> web.Response:
        return web.Response(text=_LANDING, content_type="text/html")

    app = web.Application(middlewares=[basic_auth(*credentials)] if credentials else [])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", landing)
    return app


async def start_metrics_server(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve metrics on host:port (port 0 picks a free one); returns the runner and port."""
    # A scrape in flight at SIGTERM gets a second, not aiohttp's default minute: the
    # daemon exits within 5 s.
    runner = web.AppRunner(
        metrics_app(registry, credentials=credentials),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound_port: int = runner.addresses[0][1]
    return runner, bound_port
