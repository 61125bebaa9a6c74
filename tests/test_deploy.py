"""Deployment files: what ships in deploy/ is accepted by the tools that consume it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import require_binary

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_prometheus_config_passes_promtool() -> None:
    """promtool check config accepts deploy/prometheus.yml."""
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_unit_runs_unprivileged_and_stops_on_config_errors() -> None:
    """The unit uses a dynamic user, sandboxing, and does not restart on exit code 3."""
    unit = (DEPLOY / "quorumwatch.service").read_text()
    for directive in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestartPreventExitStatus=3",
        "CapabilityBoundingSet=\n",
    ):
        assert directive in unit
