"""The /metrics server: text format or OpenMetrics, landing page, optional basic auth and TLS."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.chains.kinds import KINDS
from quorumwatch.daemon import build_registry
from quorumwatch.exporter.server import start_metrics_server
from tests.builders import chain_settings, every_kind_board
from tests.tools import self_signed_certificate, server_tls

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
    return build_registry(board, [chain_settings(name=chain) for chain in board.reports])


async def test_serves_text_format_and_landing_page() -> None:
    """/metrics answers in the text format 0.0.4 to a client that does not ask for OpenMetrics;
    / links to it."""
    runner, port = await start_metrics_server(every_kind_registry(), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            for accept in ({}, {"Accept": "text/plain;version=0.0.4"}):
                async with session.get(
                    f"http://127.0.0.1:{port}/metrics", headers=accept
                ) as response:
                    assert response.status == 200
                    content_type = response.headers["Content-Type"]
                    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
                    families = text_string_to_metric_families(await response.text())
                    assert "quorumwatch_jail_events" in {family.name for family in families}
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert 'href="/metrics"' in await response.text()
    finally:
        await runner.cleanup()


async def test_serves_openmetrics_when_asked() -> None:
    """Asked as Prometheus asks, /metrics answers in OpenMetrics 1.0.0, which prometheus_client's
    OpenMetrics parser reads whole: every kind's chain, jail counter and window gauge included."""
    runner, port = await start_metrics_server(every_kind_registry(), "127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}/metrics", headers={"Accept": PROMETHEUS_ACCEPT}
            ) as response,
        ):
            assert response.status == 200
            content_type = response.headers["Content-Type"]
            assert content_type.startswith("application/openmetrics-text; version=1.0.0;")
            text = await response.text()
    finally:
        await runner.cleanup()
    families = {family.name: family for family in openmetrics_families(text)}
    assert families["quorumwatch_jail_events"].type == "counter"
    assert families["quorumwatch_jail_events_in_window"].type == "gauge"
    chains = {sample.labels["chain"] for sample in families["quorumwatch_chain_up"].samples}
    assert chains == {*KINDS, "down"}


async def test_basic_auth_refuses_missing_and_wrong_credentials() -> None:
    """With credentials set, /metrics is 401 without or with wrong ones and 200 with right ones."""
    runner, port = await start_metrics_server(
        CollectorRegistry(), "127.0.0.1", 0, credentials=("prom", "s3cret:with:colons")
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, auth("prom", "nope"), {"Authorization": "Basic !!!"}):
                async with session.get(url, headers=headers) as response:
                    assert response.status == 401
                    assert response.headers["WWW-Authenticate"].startswith("Basic")
            async with session.get(url, headers=auth("prom", "s3cret:with:colons")) as response:
                assert response.status == 200
    finally:
        await runner.cleanup()


async def test_tls_serves_metrics_over_https(tmp_path: Path) -> None:
    """With a certificate, /metrics is served over TLS and verifies against that certificate."""
    cert, key = await asyncio.to_thread(self_signed_certificate, tmp_path)
    runner, port = await start_metrics_server(
        CollectorRegistry(), "127.0.0.1", 0, ssl_context=server_tls(cert, key)
    )
    try:
        client_context = ssl.create_default_context(cafile=str(cert))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"https://127.0.0.1:{port}/metrics", ssl=client_context) as response,
        ):
            assert response.status == 200
    finally:
        await runner.cleanup()
