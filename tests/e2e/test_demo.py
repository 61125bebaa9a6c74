"""`quorumwatch demo`: the README's offline command serves metrics with no network."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

from tests.tools import free_port


def test_demo_serves_foundation_metrics_offline() -> None:
    """The demo prints its /metrics URL and serves the Foundation's control of the chain."""
    port = free_port()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quorumwatch",
            "demo",
            "--duration",
            "20",
            "--poll-interval",
            "0.5",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            second = process.stdout.readline()
            assert "foundation-2025" in first
            assert f"metrics at http://127.0.0.1:{port}/metrics" in second
            body = ""
            deadline = time.monotonic() + 15
            while "quorumwatch_entity_can_control" not in body and time.monotonic() < deadline:
                time.sleep(0.2)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body = r.read().decode()
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert re.search(
        r'quorumwatch_entity_can_control\{chain="hyperliquid",entity="Hyper Foundation"\} 1\.0',
        body,
    )
    assert process.returncode == 0
