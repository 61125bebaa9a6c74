"""`quorumwatch demo`: the README's offline command serves metrics with no network."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

from tests.services import eventually_sync
from tests.tools import free_port

FOUNDATION_SERIES = 'quorumwatch_entity_can_control{chain="hyperliquid",entity="Hyper Foundation"}'


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
            bodies = [""]

            def scraped() -> bool:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    bodies.append(r.read().decode())
                return FOUNDATION_SERIES in bodies[-1]  # a sample: the HELP line comes earlier

            eventually_sync(scraped, "the Foundation's series", 15, every=0.1)
            body = bodies[-1]
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert re.search(rf"^{re.escape(FOUNDATION_SERIES)} 1\.0$", body, re.MULTILINE)
    assert process.returncode == 0
