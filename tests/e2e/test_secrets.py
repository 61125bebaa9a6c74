"""Secrets never leave: endpoint credentials and the MQTT password stay out of every output,
and no log line names a host and port the daemon talks to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from quorumwatch.alerting.model import ALERT_NAMES
from quorumwatch.alerting.rules import RuleMemory, advance, conditions
from quorumwatch.config import ChainSettings, load_settings
from quorumwatch.exporter.collector import QuorumwatchCollector
from quorumwatch.exporter.state import state_document
from quorumwatch.logs import configure_logging
from quorumwatch.monitor import ChainMonitor
from quorumwatch.probe import judge, render_json, render_text
from quorumwatch.report import ReportBoard
from quorumwatch.simulator import load_scenario, render_validator_summaries
from tests.builders import daemon_settings
from tests.services import eventually, running_daemon
from tests.tools import free_port

SECRETS = ("userinfo-Pw-1", "query-Key-2", "header-Token-3", "mqtt-Pw-4")


async def test_endpoint_credentials_are_sent_but_never_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Userinfo, query and header credentials reach the API, yet no log line, metric, status
    page document, probe output, alert event or config dump contains any of them, failing or
    not."""
    seen: list[dict[str, Any]] = []
    rows = render_validator_summaries(load_scenario("healthy").steps[0])

    async def info(request: web.Request) -> web.Response:
        seen.append({"query": dict(request.query), "headers": dict(request.headers)})
        if (await request.json())["type"] == "exchangeStatus":
            return web.json_response({"time": 0, "specialStatuses": None})
        return web.json_response(rows)

    app = web.Application()
    app.router.add_post("/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    configure_logging("debug", json_lines=True)
    try:
        settings = ChainSettings.model_validate(
            {
                "name": "hl",
                "kind": "hyperliquid",
                "max_clock_skew_seconds": 10**10,
                "endpoints": [
                    {
                        "name": "keyed",
                        "url": f"http://user:{SECRETS[0]}@127.0.0.1:{port}/?api_key={SECRETS[1]}",
                        "headers": {"X-Api-Token": SECRETS[2]},
                    },
                    {
                        "name": "dead",
                        "url": f"http://user:{SECRETS[0]}@127.0.0.1:9/?k={SECRETS[1]}",
                    },
                ],
            }
        )
        board = ReportBoard()
        async with aiohttp.ClientSession() as session:
            report = await ChainMonitor(settings, session, board).poll_once()
    finally:
        await runner.cleanup()

    assert report.up, report.failures
    assert seen[0]["query"] == {"api_key": SECRETS[1]}
    assert seen[0]["headers"]["X-Api-Token"] == SECRETS[2]
    assert seen[0]["headers"]["Authorization"].startswith("Basic ")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(QuorumwatchCollector(board, {settings.name: settings.max_validator_series}))
    holding, judged, _ = conditions(report, settings, {}, RuleMemory(), report.polled_at)
    fire_now = dict.fromkeys(ALERT_NAMES, 0.0)
    _, events = advance("hl", [], holding, judged, report.polled_at, for_seconds=fire_now)
    config_path = tmp_path / "c.toml"
    config_path.write_text(
        f'[mqtt]\nenabled = true\nusername = "qw"\npassword = "{SECRETS[3]}"\n'
        '[[chains]]\nname = "hl"\nkind = "hyperliquid"\n'
        '[[chains.endpoints]]\nname = "e"\nurl = "http://127.0.0.1:9"\n'
    )
    outputs = [
        capsys.readouterr().err,
        generate_latest(registry).decode(),
        json.dumps(state_document(board, [settings], report.polled_at)),
        render_text([judge(report, settings)]),
        render_json([judge(report, settings)]),
        json.dumps([e.to_document() for e in events]),
        repr(load_settings(config_path)),
        repr(settings),
        " ".join(report.failures),
    ]
    assert events
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output


async def test_no_log_line_carries_a_host_and_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With its API endpoint, two Alertmanager nodes and the MQTT broker all refusing
    connections, the daemon logs each failure (each node's by its place in `urls`), yet no log
    line names 127.0.0.1 or any of their ports (the Alertmanager push error once logged
    `Cannot connect to host 127.0.0.1:<port>`)."""
    api, broker = free_port(), free_port()
    alertmanagers = [free_port(), free_port()]
    settings = daemon_settings(
        tmp_path / "quorumwatch.db",
        chains=[
            {
                "name": "hl",
                "kind": "hyperliquid",
                "poll_interval_seconds": 0.2,
                "endpoints": [{"name": "public", "url": f"http://127.0.0.1:{api}"}],
            }
        ],
        alertmanager={"urls": [f"http://127.0.0.1:{port}" for port in alertmanagers]},
        mqtt={"enabled": True, "host": "127.0.0.1", "port": broker, "reconnect_max_seconds": 0.5},
    )
    configure_logging("info", json_lines=True)
    log: list[str] = []

    def logged(*events: str) -> bool:
        log.extend(capsys.readouterr().err.splitlines())
        return all(any(f'"event": "{event}"' in line for line in log) for event in events)

    failures = ("request failed", "alertmanager push failed", "mqtt publishing failed")
    async with running_daemon(settings):
        await eventually(lambda: logged(*failures), lambda: "\n".join(log[-10:]))
    logged()
    text = "\n".join(log)
    assert "127.0.0.1" not in text
    for port in (api, broker, *alertmanagers):
        assert f":{port}" not in text
        assert f", {port}" not in text  # a socket address tuple
    assert "<address>" in text  # the messages that named one still say what failed
    pushes = [json.loads(line) for line in log if '"alertmanager push failed"' in line]
    assert {push["node"] for push in pushes} == {0, 1}
