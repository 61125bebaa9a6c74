"""The /metrics server: text format, landing page, optional basic auth and TLS."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from quorumwatch.exporter.server import start_metrics_server
from tests.tools import self_signed_certificate, server_tls


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_serves_text_format_and_landing_page() -> None:
    """/metrics answers in the text format even when OpenMetrics is asked for; / links to it."""
    runner, port = await start_metrics_server(CollectorRegistry(), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"http://127.0.0.1:{port}/metrics",
                headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            ) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain;")
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert 'href="/metrics"' in await response.text()
    finally:
        await runner.cleanup()


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
