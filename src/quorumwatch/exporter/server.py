"""The HTTP server: /metrics (text format or OpenMetrics), the status page at / and its data at
/api/v1/state, all behind the same optional TLS and basic auth."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import gzip
import hashlib
import hmac
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from quorumwatch.exporter.exposition import Encoder, choose_fast_encoder

SHUTDOWN_TIMEOUT_SECONDS = 1.0
STATE_PATH = "/api/v1/state"
# Only clock-driven values (ages, process metrics) can grow this old: a poll or an alert is
# seen at once. Re-rendering every second for them cost a rendering's CPU (50 ms for
# 6,000 series) each second, which the polls of a large set compete with for the GIL.
RENDERING_MAX_AGE_SECONDS = 5.0
# How often new data is looked for, to render it before a scrape asks (`render_ahead`), and
# how long after its last scrape a format is still rendered ahead.
RENDER_AHEAD_EVERY_SECONDS = 0.1
RENDER_AHEAD_FOR_SECONDS = 300.0
GZIP_LEVEL = 1  # 680 kB of metrics become 147 kB in 6 ms; level 6 gains 8% in twice the time


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StateView = Callable[[], dict[str, Any]]  # the /api/v1/state document as of the request

# NaN is not JSON: a document holding one is a bug, answered 500 rather than unparseable.
_dumps = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False)


def status_page() -> str:
    """The status page: one HTML file with its style and script inline, shipped as package
    data."""
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def content_security_policy(page: str) -> str:
    """The page's policy: its own inline script and style run, allowed by their hashes, and
    it fetches only from its own origin. Nothing else runs, even if a name ever reached the
    page as markup."""

    def inline(tag: str) -> str:
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        return f"'sha256-{digest}'"

    return (
        f"default-src 'none'; script-src {inline('script')}; style-src {inline('style')}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


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


class Renderings:
    """The registry rendered at most once at a time per format, and a rendering reused for
    `max_age` seconds while the data behind it is the same: however many scrapers ask at once,
    the daemon renders for one of them (a large exposition takes tens of milliseconds of CPU,
    which would otherwise multiply by the scrapers and starve the polls).

    `version()` gives the objects the rendering depends on (the board's reports, sinks and
    alerts, each replaced whole on a change): a rendering is reused only while each is the very
    same object, so a scrape after a poll always sees that poll. One older than `max_age` (its
    clock-driven values, such as ages, are behind) is still served while its successor renders:
    only a change of data makes a scrape wait for a rendering, and `render_ahead` shortens
    that wait.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: Callable[[], tuple[object, ...]] = tuple,
        max_age: float = RENDERING_MAX_AGE_SECONDS,
        ahead_for: float = RENDER_AHEAD_FOR_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._version = version
        self._max_age = max_age
        self._clock = clock
        # Per format: when, of which version (held, so no id is reused), and the body.
        self._latest: dict[str, tuple[float, tuple[object, ...], bytes]] = {}
        self._pending: dict[str, tuple[tuple[object, ...], asyncio.Future[bytes]]] = {}
        self._ahead_for = ahead_for
        # Per format scraped: its encoder, and when a scrape last asked for it.
        self._asked: dict[str, tuple[Encoder, float]] = {}
        # Per format: the data last rendered ahead, so that a rendering that failed is not
        # begun again ten times a second (a scrape still tries it, and gets the error).
        self._ahead: dict[str, tuple[object, ...]] = {}

    async def body(self, content_type: str, encode: Encoder) -> bytes:
        now = self._clock()
        self._asked[content_type] = (encode, now)
        latest = self._latest.get(content_type)
        if latest is not None and self._same_version(latest[1]):
            if now - latest[0] >= self._max_age:
                self._rendering(content_type, encode)
            return latest[2]
        # A scraper that goes away must not cancel the rendering the others wait for.
        return await asyncio.shield(self._rendering(content_type, encode))

    def render_ahead(self) -> None:
        """Begin rendering new data (a poll, a change of alerts) in each format scraped in the
        last `ahead_for` seconds, without waiting for a scrape to ask: a scraper that comes
        after a poll, as Prometheus' do every 15 s or so, then finds the rendering done or under
        way, instead of waiting for all of it (tens of milliseconds for a large set)."""
        now = self._clock()
        for content_type, (encode, asked_at) in list(self._asked.items()):
            if now - asked_at > self._ahead_for:
                del self._asked[content_type]
                continue
            ahead = self._ahead.get(content_type)
            if ahead is not None and self._same_version(ahead):
                continue
            latest = self._latest.get(content_type)
            if latest is None or not self._same_version(latest[1]):
                self._ahead[content_type] = self._version()
                self._rendering(content_type, encode)

    def _rendering(self, content_type: str, encode: Encoder) -> asyncio.Future[bytes]:
        """A rendering of the current data for `content_type`: the one under way if it began
        after the last change, else a new one."""
        pending = self._pending.get(content_type)
        if pending is not None and self._same_version(pending[0]):
            return pending[1]
        version = self._version()
        rendering = asyncio.ensure_future(self._render(content_type, encode, version))
        # Nobody may wait for one begun only because the last grew old: its failure is
        # retrieved here (a scrape that does wait still gets it).
        rendering.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._pending[content_type] = (version, rendering)
        return rendering

    def _same_version(self, version: tuple[object, ...]) -> bool:
        current = self._version()
        return len(current) == len(version) and all(
            now is then for now, then in zip(current, version, strict=True)
        )

    async def _render(
        self, content_type: str, encode: Encoder, version: tuple[object, ...]
    ) -> bytes:
        started = self._clock()
        try:
            # Rendering thousands of series takes milliseconds: keep it off the event loop.
            body = await asyncio.to_thread(encode, self._registry)
        finally:
            current = self._pending.get(content_type)
            if current is not None and current[0] is version:
                del self._pending[content_type]
        latest = self._latest.get(content_type)
        if latest is None or latest[0] <= started:  # a later rendering may have ended first
            self._latest[content_type] = (started, version, body)
        return body


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (by name, not refused with q=0)."""
    for coding in accept_encoding.split(","):
        name, _, parameters = coding.partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            quality = parameters.strip().lower().removeprefix("q=").strip()
            return not (quality and quality.rstrip("0").rstrip(".") in ("0", ""))
    return False


def _gzip(encode: Encoder, registry: Collector) -> bytes:
    return gzip.compress(encode(registry), compresslevel=GZIP_LEVEL, mtime=0)


def metrics_app(
    registry: CollectorRegistry,
    *,
    state: StateView,
    version: Callable[[], tuple[object, ...]] = tuple,
    credentials: tuple[str, str] | None = None,
) -> web.Application:
    page = status_page()
    page_body = page.encode()  # once, not at each request
    renderings = Renderings(registry, version=version)
    page_headers = {
        "Content-Security-Policy": content_security_policy(page),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    async def metrics(request: web.Request) -> web.Response:
        # OpenMetrics when the Accept header asks for it (Prometheus does by default), else
        # the text format 0.0.4.
        encode, content_type = choose_fast_encoder(request.headers.get("Accept", ""))
        headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
        if not accepts_gzip(request.headers.get("Accept-Encoding", "")):
            return web.Response(body=await renderings.body(content_type, encode), headers=headers)
        # Compressed once per rendering, in its thread: a fifth of the bytes for the event
        # loop to write to each scraper (Prometheus asks for gzip).
        gzipped = await renderings.body(f"{content_type}; gzip", functools.partial(_gzip, encode))
        return web.Response(body=gzipped, headers={**headers, "Content-Encoding": "gzip"})

    async def status(_: web.Request) -> web.Response:
        return web.Response(
            body=page_body, content_type="text/html", charset="utf-8", headers=page_headers
        )

    async def state_json(_: web.Request) -> web.Response:
        return web.json_response(
            state(),
            dumps=_dumps,
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def rendering_ahead(_: web.Application) -> AsyncIterator[None]:
        # Looked for on a timer: the data changes in many places (polls, alerts, sinks, subnet
        # lists), and comparing it by identity ten times a second costs next to nothing.
        async def look() -> None:
            while True:
                await asyncio.sleep(RENDER_AHEAD_EVERY_SECONDS)
                renderings.render_ahead()

        looking = asyncio.create_task(look())
        yield
        looking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await looking

    app = web.Application(middlewares=[basic_auth(*credentials)] if credentials else [])
    app.cleanup_ctx.append(rendering_ahead)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", status)
    app.router.add_get(STATE_PATH, state_json)
    return app


async def start_metrics_server(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    state: StateView,
    version: Callable[[], tuple[object, ...]] = tuple,
    ssl_context: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve metrics, the status page and `state` on host:port (port 0 picks a free one);
    returns the runner and port. `version` gives what the metrics are rendered from (see
    `Renderings`)."""
    # A scrape in flight at SIGTERM gets a second, not aiohttp's default minute: the
    # daemon exits within 5 s.
    runner = web.AppRunner(
        metrics_app(registry, state=state, version=version, credentials=credentials),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound_port: int = runner.addresses[0][1]
    return runner, bound_port
