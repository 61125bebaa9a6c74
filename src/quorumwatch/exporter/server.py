"""The /metrics HTTP endpoint, with a landing page at /."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

_LANDING = (
    "<html><head><title>quorumwatch</title></head><body><h1>quorumwatch</h1>"
    '<p><a href="/metrics">Metrics</a></p></body></html>'
)


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        # Rendering thousands of series takes milliseconds: keep it off the event loop.
        body = await asyncio.to_thread(encoder, registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def landing(_: web.Request) -> web.Response:
        return web.Response(text=_LANDING, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", landing)
    return app


async def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Serve metrics on host:port (port 0 picks a free one); returns the runner and port."""
    runner = web.AppRunner(metrics_app(registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port: int = runner.addresses[0][1]
    return runner, bound_port
