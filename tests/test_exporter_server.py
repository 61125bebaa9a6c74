"""The HTTP server: /metrics in the text format or OpenMetrics, the status page and
/api/v1/state, and the optional basic auth and TLS over all three."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from quorumwatch.chains.kinds import KINDS
from quorumwatch.daemon import build_registry
from quorumwatch.exporter.server import Renderings, accepts_gzip, start_metrics_server
from tests.builders import FakeClock, chain_settings, every_kind_board, watched_chains
from tests.services import eventually
from tests.tools import self_signed_certificate, server_tls

PATHS = ("/metrics", "/", "/api/v1/state")
STATE = {"schema": "test", "chains": [{"name": "<script>alert(1)</script>"}]}

# prometheus_client's OpenMetrics parser, which has no annotations, as it is typed.
openmetrics_families: Callable[[str], Iterator[Metric]] = (
    openmetrics_parser.text_string_to_metric_families
)

# What Prometheus 2.42 sends by default.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def every_kind_registry() -> CollectorRegistry:
    """The daemon's registry over a board with one chain of every kind and a down one."""
    board = every_kind_board(1_750_000_000.0)
    chains = [chain_settings(name=chain) for chain in board.reports]
    return build_registry(board, watched_chains(chains))


@asynccontextmanager
async def serving(
    registry: CollectorRegistry | None = None,
    state: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[int]:
    """The server on a free loopback port, serving `registry` (an empty one by default) and
    `state` (STATE by default) as the state document, with `options` (credentials,
    ssl_context); yields the port."""
    document = STATE if state is None else state
    runner, port = await start_metrics_server(
        registry or CollectorRegistry(), "127.0.0.1", 0, state=lambda: document, **options
    )
    try:
        yield port
    finally:
        await runner.cleanup()


class InlineCode(HTMLParser):
    """The text of every <script> and <style> element of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.code: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.code:
            self._open = tag
            self.code[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.code[self._open][-1] += data


def sha256_source(code: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"


async def test_serves_text_format_unless_openmetrics_is_asked_for() -> None:
    """/metrics answers in the text format 0.0.4 to a client that does not ask for OpenMetrics."""
    async with serving(every_kind_registry()) as port, aiohttp.ClientSession() as session:
        for accept in ({}, {"Accept": "text/plain;version=0.0.4"}):
            async with session.get(f"http://127.0.0.1:{port}/metrics", headers=accept) as response:
                assert response.status == 200
                content_type = response.headers["Content-Type"]
                assert content_type == "text/plain; version=0.0.4; charset=utf-8"
                families = text_string_to_metric_families(await response.text())
                assert "quorumwatch_jail_events" in {family.name for family in families}


async def test_serves_openmetrics_when_asked() -> None:
    """Asked as Prometheus asks, /metrics answers in OpenMetrics 1.0.0, which prometheus_client's
    OpenMetrics parser reads whole: every kind's chain, jail counter and window gauge included."""
    async with (
        serving(every_kind_registry()) as port,
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT}
        ) as response,
    ):
        assert response.status == 200
        content_type = response.headers["Content-Type"]
        assert content_type.startswith("application/openmetrics-text; version=1.0.0;")
        text = await response.text()
    families = {family.name: family for family in openmetrics_families(text)}
    assert families["quorumwatch_jail_events"].type == "counter"
    assert families["quorumwatch_jail_events_in_window"].type == "gauge"
    chains = {sample.labels["chain"] for sample in families["quorumwatch_chain_up"].samples}
    assert chains == {*KINDS, "down"}


async def test_metrics_are_gzipped_for_a_client_that_accepts_gzip() -> None:
    """A scraper that accepts gzip (as Prometheus does) gets /metrics gzip-encoded, the same
    metrics as a scraper that does not, which gets them plain; both are told it varies."""
    async with (
        serving(every_kind_registry()) as port,
        aiohttp.ClientSession(auto_decompress=False) as session,
    ):
        url = f"http://127.0.0.1:{port}/metrics"
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert response.headers["Vary"] == "Accept-Encoding"
            zipped = gzip.decompress(await response.read())
        async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
            assert "Content-Encoding" not in response.headers
            assert response.headers["Vary"] == "Accept-Encoding"
            plain = await response.read()
    assert _chain_lines(zipped) == _chain_lines(plain)
    assert _chain_lines(plain)


def _chain_lines(body: bytes) -> list[bytes]:
    """The lines of the board's series (the process' own change from one rendering to the next)."""
    return [line for line in body.splitlines() if line.startswith(b"quorumwatch_chain")]


@pytest.mark.parametrize(
    ("accept_encoding", "accepted"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("gzip;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("identity", False),
        ("", False),
        ("br, deflate", False),
    ],
)
def test_gzip_is_accepted_by_name_unless_refused(accept_encoding: str, accepted: bool) -> None:
    """An Accept-Encoding header accepts gzip when it names it (x-gzip too) with no q of 0."""
    assert accepts_gzip(accept_encoding) is accepted


async def test_status_page_is_one_self_contained_file_allowed_only_its_own_code() -> None:
    """/ is one HTML page, in UTF-8, that loads nothing from elsewhere and links /metrics and
    the state; its policy allows exactly its one inline script and style, by hash, and fetches
    only from its origin."""
    async with (
        serving() as port,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        page = await response.text()
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    parser = InlineCode()
    parser.feed(page)
    (script,), (style,) = parser.code["script"], parser.code["style"]
    assert "'unsafe-inline'" not in policy
    assert f"script-src {sha256_source(script)};" in policy
    assert f"style-src {sha256_source(style)};" in policy
    assert "default-src 'none';" in policy
    assert "connect-src 'self';" in policy
    assert "src=" not in page  # no external script, image or frame
    assert "@import" not in style
    assert 'href="metrics"' in page
    assert 'href="api/v1/state"' in page


async def test_state_serves_the_document_as_json_fresh_on_every_request() -> None:
    """/api/v1/state is the state callable's document, asked for anew on each request, as
    UTF-8 JSON that no cache keeps."""
    calls: list[int] = []

    def state() -> dict[str, Any]:
        calls.append(1)
        return {**STATE, "call": len(calls)}

    runner, port = await start_metrics_server(CollectorRegistry(), "127.0.0.1", 0, state=state)
    try:
        async with aiohttp.ClientSession() as session:
            for call in (1, 2):
                async with session.get(f"http://127.0.0.1:{port}/api/v1/state") as response:
                    assert response.status == 200
                    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
                    assert response.headers["Cache-Control"] == "no-store"
                    assert await response.json() == {**STATE, "call": call}
    finally:
        await runner.cleanup()


async def test_a_document_holding_nan_is_a_server_error_not_invalid_json() -> None:
    """A NaN in the document (never valid JSON) answers 500 instead of a body that no
    browser can parse."""
    async with (
        serving(state={"ratio": float("nan")}) as port,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/api/v1/state") as response,
    ):
        assert response.status == 500


async def test_basic_auth_refuses_missing_and_wrong_credentials_on_every_path() -> None:
    """With credentials set, /metrics, / and /api/v1/state are 401 without or with wrong
    credentials and 200 with the right ones."""
    async with (
        serving(credentials=("prom", "s3cret:with:colons")) as port,
        aiohttp.ClientSession() as session,
    ):
        for path in PATHS:
            url = f"http://127.0.0.1:{port}{path}"
            for headers in ({}, auth("prom", "nope"), {"Authorization": "Basic !!!"}):
                async with session.get(url, headers=headers) as response:
                    assert response.status == 401, path
                    assert response.headers["WWW-Authenticate"].startswith("Basic")
            async with session.get(url, headers=auth("prom", "s3cret:with:colons")) as response:
                assert response.status == 200, path


async def test_tls_serves_every_path_over_https(tmp_path: Path) -> None:
    """With a certificate, /metrics, / and /api/v1/state are served over TLS and verify
    against that certificate."""
    cert, key = await asyncio.to_thread(self_signed_certificate, tmp_path)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with serving(ssl_context=server_tls(cert, key)) as port, aiohttp.ClientSession() as s:
        for path in PATHS:
            async with s.get(f"https://127.0.0.1:{port}{path}", ssl=client_context) as response:
                assert response.status == 200, path


class _CountingCollector:
    """A collector that counts its renderings and holds each one until `release` is set."""

    def __init__(self) -> None:
        self.collected = 0
        self.release = threading.Event()

    def collect(self) -> Iterator[Metric]:
        self.collected += 1
        self.release.wait(5)
        yield GaugeMetricFamily(
            "renderings", "How often the registry was rendered.", self.collected
        )


def _counted(*, released: bool) -> tuple[_CountingCollector, CollectorRegistry]:
    """A registry of one counting collector, its renderings held until released or not."""
    counting = _CountingCollector()
    if released:
        counting.release.set()
    return counting, _registry_of(counting)


def _registry_of(collector: Collector) -> CollectorRegistry:
    """A registry of `collector` alone, which it renders only when asked."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


async def test_concurrent_scrapes_share_one_rendering() -> None:
    """Ten scrapes at once are all answered by one rendering of the registry."""
    counting, registry = _counted(released=False)
    renderings = Renderings(registry)
    scrapes = [asyncio.ensure_future(renderings.body("text", generate_latest)) for _ in range(10)]
    await asyncio.sleep(0)  # every scrape is waiting on the one rendering
    counting.release.set()
    bodies = await asyncio.gather(*scrapes)
    assert counting.collected == 1
    assert len(set(bodies)) == 1


async def test_a_rendering_older_than_a_second_is_served_while_its_successor_renders() -> None:
    """A scrape within `max_age` of a rendering gets it again; a later one gets it too, without
    waiting, while a new one renders; the next after that one gets the new one."""
    counting, registry = _counted(released=True)
    clock = FakeClock(100.0)
    renderings = Renderings(registry, max_age=1.0, clock=clock)
    first = await renderings.body("text", generate_latest)
    clock.now = 100.9
    assert await renderings.body("text", generate_latest) == first
    counting.release.clear()  # the next rendering is held until released
    clock.now = 101.0
    assert await renderings.body("text", generate_latest) == first
    assert await renderings.body("text", generate_latest) == first  # still under way
    counting.release.set()
    assert await _settled(renderings) != first
    assert counting.collected == 2


async def _settled(renderings: Renderings) -> bytes:
    """What a scrape gets once the renderings under way are done."""
    for _, rendering in list(renderings._pending.values()):
        await rendering
    return await renderings.body("text", generate_latest)


async def test_a_scrape_after_a_change_waits_for_a_rendering_begun_after_it() -> None:
    """A rendering under way when the data changed is not what a scrape after the change gets:
    it gets a rendering of the new data."""
    counting, registry = _counted(released=True)
    board: list[object] = [object()]
    clock = FakeClock(100.0)
    renderings = Renderings(registry, version=lambda: (board[0],), max_age=1.0, clock=clock)
    first = await renderings.body("text", generate_latest)
    counting.release.clear()
    clock.now = 101.5
    assert await renderings.body("text", generate_latest) == first  # an old one re-renders
    board[0] = object()  # a poll published a report meanwhile
    after_change = asyncio.ensure_future(renderings.body("text", generate_latest))
    counting.release.set()
    assert await after_change != first
    assert counting.collected == 3


async def test_new_data_is_rendered_ahead_in_a_format_scraped_lately() -> None:
    """After a change, `render_ahead` renders the new data in the format scraped before it,
    and the next scrape gets that rendering without another."""
    counting, registry = _counted(released=True)
    board: list[object] = [object()]
    renderings = Renderings(registry, version=lambda: (board[0],), clock=FakeClock(100.0))
    first = await renderings.body("text", generate_latest)
    board[0] = object()  # a poll published a report
    renderings.render_ahead()
    _, ahead = renderings._pending["text"]
    await ahead
    assert counting.collected == 2
    assert await renderings.body("text", generate_latest) == await ahead != first
    assert counting.collected == 2


async def test_a_format_not_scraped_for_ahead_for_seconds_is_not_rendered_ahead() -> None:
    """`render_ahead` leaves alone a format last scraped more than `ahead_for` seconds ago, and
    one never scraped."""
    counting, registry = _counted(released=True)
    board: list[object] = [object()]
    clock = FakeClock(100.0)
    renderings = Renderings(registry, version=lambda: (board[0],), ahead_for=300.0, clock=clock)
    await renderings.body("text", generate_latest)
    board[0] = object()
    clock.now = 400.5
    renderings.render_ahead()
    assert not renderings._pending
    assert counting.collected == 1


class _FailingCollector:
    """A collector whose every rendering fails, counted."""

    def __init__(self) -> None:
        self.collected = 0

    def collect(self) -> Iterator[Metric]:
        self.collected += 1
        raise RuntimeError("a collector bug")


async def test_a_rendering_ahead_that_failed_is_not_begun_again_for_the_same_data() -> None:
    """Data whose rendering ahead failed is not rendered ahead again; new data is."""
    failing = _FailingCollector()
    registry = _registry_of(failing)
    board: list[object] = [object()]
    renderings = Renderings(registry, version=lambda: (board[0],), clock=FakeClock(100.0))
    with pytest.raises(RuntimeError):
        await renderings.body("text", generate_latest)
    board[0] = object()
    for _ in range(3):
        renderings.render_ahead()
        for _, rendering in list(renderings._pending.values()):
            with pytest.raises(RuntimeError):
                await rendering
    assert failing.collected == 2
    board[0] = object()
    renderings.render_ahead()
    assert "text" in renderings._pending


async def test_the_server_renders_new_data_before_the_next_scrape() -> None:
    """Once /metrics was scraped, the server renders new data on its own, without a scrape."""
    counting, registry = _counted(released=True)
    board: list[object] = [object()]
    async with serving(registry, version=lambda: (board[0],)) as port:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
        board[0] = object()
        await eventually(lambda: counting.collected == 2, "a rendering ahead of any scrape")


async def test_a_rendering_is_never_reused_once_its_data_changed() -> None:
    """Within `max_age`, a scrape after the board changed gets a new rendering."""
    counting, registry = _counted(released=True)
    board: list[object] = [object()]
    clock = FakeClock(100.0)
    renderings = Renderings(registry, version=lambda: (board[0],), max_age=1.0, clock=clock)
    first = await renderings.body("text", generate_latest)
    assert await renderings.body("text", generate_latest) == first
    board[0] = object()  # a poll published a report
    assert await renderings.body("text", generate_latest) != first
    assert counting.collected == 2
