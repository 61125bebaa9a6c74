"""The /metrics HTTP endpoint, with a landing page at /."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

_LANDING = (
    "<html><head><title>quorumwatch</title></head><body><h1>quorumwatch</h1>"
    '<p><a href="/metrics">Metrics</a></p></body></html>'
)


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        # Always the text format 0.0.4, never OpenMetrics: there a counter's family drops
        # `_total`, and quorumwatch_jail_events_total would collide with the contract gauge
        # quorumwatch_jail_events, failing the whole scrape.
        # Rendering thousands of series takes milliseconds: keep it off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

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
