"""The /metrics server: text format, landing page, optional basic auth and TLS."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry

from quorumwatch.exporter.server import start_metrics_server
from tests.tools import require_binary


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
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(
        subprocess.run,
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    runner, port = await start_metrics_server(
        CollectorRegistry(), "127.0.0.1", 0, ssl_context=server_context
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
