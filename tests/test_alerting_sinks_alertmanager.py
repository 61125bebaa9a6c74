"""Alertmanager push: payload mapping, re-sending, failures, and a real Alertmanager."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from quorumwatch.alerting.model import AlertEvent, AlertState, AlertStatus, Severity, fingerprint
from quorumwatch.alerting.sinks.alertmanager import (
    RESOLVED_RESEND_SECONDS,
    AlertmanagerPusher,
    alert_payload,
)
from quorumwatch.config import AlertmanagerSettings
from quorumwatch.endpoints import http_session
from tests.builders import FakeClock
from tests.tools import free_port, require_binary, self_signed_certificate, server_tls

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _state(
    alert: str = "ChainHalted",
    *,
    chain: str = "hyperliquid",
    labels: Mapping[str, str] | None = None,
    starts_at: float | None = T0,
    value: float | None = 0.0,
    threshold: float | None = 0.05,
) -> AlertState:
    labels = {"chain": chain} if labels is None else labels
    return AlertState(
        fingerprint=fingerprint(
            alert, {k: v.encode(errors="replace").decode() for k, v in labels.items()}
        ),
        alert=alert,
        severity=Severity.CRITICAL,
        chain=chain,
        labels=labels,
        pending_since=T0 - 60,
        starts_at=starts_at,
        summary=f"{alert} on {chain}.",
        description=f"{alert} holds on {chain}.",
        value=value,
        threshold=threshold,
    )


def _resolved(state: AlertState, at: float) -> AlertEvent:
    assert state.starts_at is not None
    return AlertEvent(
        event_id="e1",
        fingerprint=state.fingerprint,
        alert=state.alert,
        status=AlertStatus.RESOLVED,
        severity=state.severity,
        chain=state.chain,
        labels=state.labels,
        summary=state.summary,
        description=state.description,
        value=state.value,
        threshold=state.threshold,
        starts_at=state.starts_at,
        ends_at=at,
        observed_at=at,
    )


@dataclass
class Recorder:
    """A stand-in Alertmanager: records each POSTed array and answers `statuses` in turn."""

    url: str
    bodies: list[list[dict[str, Any]]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    async with _recording() as running:
        yield running


@contextlib.asynccontextmanager
async def _recording(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Recorder]:
    """A Recorder on a free loopback port, over TLS when given a server context."""
    box: list[Recorder] = []

    async def handle(request: web.Request) -> web.Response:
        rec = box[0]
        rec.bodies.append(await request.json())
        rec.auth.append(request.headers.get("Authorization"))
        rec.received.set()
        status = rec.statuses.pop(0) if rec.statuses else 200
        return web.Response(status=status, text="" if status == 200 else "bad things")

    app = web.Application()
    app.router.add_post("/api/v2/alerts", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    scheme = "http" if ssl_context is None else "https"
    box.append(Recorder(f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"))
    try:
        yield box[0]
    finally:
        await runner.cleanup()


def _pusher(
    url: str,
    session: aiohttp.ClientSession,
    clock: Callable[[], float] | None = None,
    resend: float = 60.0,
) -> AlertmanagerPusher:
    settings = AlertmanagerSettings.model_validate(
        {"url": url, "resend_interval_seconds": resend, "timeout_seconds": 2.0}
    )
    assert settings.url is not None
    return AlertmanagerPusher(settings.url, settings, session, clock=clock or FakeClock(T0))


def _names(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["labels"]["alertname"], a["endsAt"]) for a in alerts]


# --- payload mapping ---------------------------------------------------------------------


def test_firing_payload_maps_labels_annotations_and_times() -> None:
    """A firing state maps to alertname/severity/chain + its labels, string value/threshold
    annotations, RFC 3339 startsAt, and endsAt = now + 3 × resend interval."""
    state = _state(
        "EntityCanHalt",
        labels={"chain": "hyperliquid", "entity": "Big Co", "validator": "0xab"},
        value=0.4,
        threshold=1 / 3,
    )
    payload = alert_payload(state, now=T0 + 100, resend_interval_seconds=60)
    assert payload == {
        "labels": {
            "alertname": "EntityCanHalt",
            "severity": "critical",
            "chain": "hyperliquid",
            "entity": "Big Co",
            "validator": "0xab",
        },
        "annotations": {
            "summary": "EntityCanHalt on hyperliquid.",
            "description": "EntityCanHalt holds on hyperliquid.",
            "value": "0.4",
            "threshold": "0.3333333333333333",
        },
        "startsAt": "2023-11-14T22:13:20.000Z",
        "endsAt": "2023-11-14T22:18:00.000Z",  # T0 + 100 + 180
    }
    assert "generatorURL" not in payload


def test_resolved_payload_ends_at_the_resolution_time() -> None:
    """A resolved event's endsAt is its ends_at (not now + lifetime); startsAt is kept."""
    event = _resolved(_state(), at=T0 + 30.25)
    payload = alert_payload(event, now=T0 + 200, resend_interval_seconds=60)
    assert payload["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert payload["endsAt"] == "2023-11-14T22:13:50.250Z"


def test_payload_drops_empty_labels_and_absent_numbers() -> None:
    """Empty label values are dropped, integral numbers read "3", None value/threshold omitted,
    and the fixed labels (alertname, severity, chain) cannot be overridden."""
    labels = {"chain": "other", "entity": "", "endpoint": "a", "severity": "x"}
    state = _state(labels=labels, value=3.0, threshold=None)
    payload = alert_payload(state, now=T0, resend_interval_seconds=60)
    assert payload["labels"] == {
        "alertname": "ChainHalted",
        "severity": "critical",
        "chain": "hyperliquid",
        "endpoint": "a",
    }
    assert payload["annotations"]["value"] == "3"
    assert "threshold" not in payload["annotations"]
    assert (
        "value"
        not in alert_payload(_state(value=None), now=T0, resend_interval_seconds=60)["annotations"]
    )


def test_payload_label_values_are_valid_utf8() -> None:
    """Non-ASCII label values are kept as given; a lone surrogate becomes U+FFFD."""
    state = _state(labels={"chain": "hyperliquid", "entity": "Ünïcode ✓", "validator": "a\udc80"})
    labels = alert_payload(state, now=T0, resend_interval_seconds=60)["labels"]
    assert labels["entity"] == "Ünïcode ✓"
    assert labels["validator"] == "a\N{REPLACEMENT CHARACTER}"
    for value in labels.values():
        value.encode("utf-8")  # raises on invalid text


def test_pending_state_is_rejected() -> None:
    """A pending state (starts_at None) raises ValueError rather than reaching Alertmanager."""
    with pytest.raises(ValueError, match="pending"):
        alert_payload(_state(starts_at=None), now=T0, resend_interval_seconds=60)


# --- pusher ------------------------------------------------------------------------------


async def test_push_sends_firing_set_per_chain_and_skips_pending(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    """One POST carries every chain's firing alerts; pending ones and replaced sets are not
    sent; URL credentials go as HTTP basic auth; success sets last_success_at."""
    clock = FakeClock(T0)
    pusher = _pusher(recorder.url.replace("://", "://user:pw@"), session, clock)
    pusher.update("a", [_state(chain="a"), _state("DataStale", chain="a", starts_at=None)], [])
    pusher.update("b", [_state("LivenessMarginLow", chain="b")], [])
    pusher.update("b", [_state("EndpointDown", chain="b")], [])  # replaces b's set
    assert await pusher.push_once()
    assert sorted(a["labels"]["alertname"] for a in recorder.bodies[0]) == [
        "ChainHalted",
        "EndpointDown",
    ]
    assert recorder.auth == ["Basic dXNlcjpwdw=="]  # user:pw
    assert pusher.last_success_at == T0
    assert pusher.failures == 0


async def test_resolved_alert_is_resent_for_five_minutes_then_dropped(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    """A resolved event is re-sent with its endsAt on every push until 5 min after update,
    then no longer; the firing alert it replaced is not sent alongside it."""
    clock = FakeClock(T0)
    pusher = _pusher(recorder.url, session, clock)
    state = _state()
    pusher.update("hyperliquid", [state], [])
    clock.now = T0 + 10
    pusher.update("hyperliquid", [], [_resolved(state, at=T0 + 10)])
    ended = [("ChainHalted", "2023-11-14T22:13:30.000Z")]
    for offset in (10, 70, 10 + RESOLVED_RESEND_SECONDS - 1):
        clock.now = T0 + offset
        assert await pusher.push_once()
        assert _names(recorder.bodies[-1]) == ended
    clock.now = T0 + 10 + RESOLVED_RESEND_SECONDS
    assert await pusher.push_once()
    assert recorder.bodies[-1] == []


async def test_refiring_alert_replaces_its_resolution(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    """An alert that fires again is sent only as firing, not also as its stale resolution."""
    clock = FakeClock(T0)
    pusher = _pusher(recorder.url, session, clock)
    first = _state()
    pusher.update("hyperliquid", [], [_resolved(first, at=T0 + 5)])
    again = _state(starts_at=T0 + 20)
    clock.now = T0 + 20
    pusher.update("hyperliquid", [again], [])
    assert await pusher.push_once()
    assert _names(recorder.bodies[-1]) == [("ChainHalted", "2023-11-14T22:16:40.000Z")]


async def test_failure_keeps_state_and_the_next_push_resends(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    """An HTTP 500 returns False, counts a failure, logs one line; the next push re-sends
    the same firing and resolved alerts and succeeds."""
    recorder.statuses = [500]
    clock = FakeClock(T0)
    pusher = _pusher(recorder.url, session, clock)
    firing, gone = _state("ChainHalted"), _state("EndpointDown")
    pusher.update("hyperliquid", [firing], [_resolved(gone, at=T0)])
    with structlog.testing.capture_logs() as logs:
        assert not await pusher.push_once()
    assert pusher.failures == 1
    assert pusher.last_success_at is None
    assert [entry["event"] for entry in logs] == ["alertmanager push failed"]
    assert "HTTP 500" in logs[0]["error"]
    clock.now = T0 + 60
    assert await pusher.push_once()
    assert [a["labels"]["alertname"] for a in recorder.bodies[1]] == [
        "ChainHalted",
        "EndpointDown",
    ]
    assert pusher.last_success_at == T0 + 60
    assert pusher.failures == 1


async def test_unreachable_alertmanager_logs_without_credentials(
    session: aiohttp.ClientSession,
) -> None:
    """A refused connection returns False and logs one line with neither user nor password."""
    pusher = _pusher(f"http://quorum:s3cr3t-pw@127.0.0.1:{free_port()}", session)
    pusher.update("hyperliquid", [_state()], [])
    with structlog.testing.capture_logs() as logs:
        assert not await pusher.push_once()
    assert len(logs) == 1
    assert pusher.failures == 1
    assert "s3cr3t-pw" not in repr(logs)
    assert "quorum:" not in repr(logs)


async def test_untrusted_certificate_fails_and_sends_nothing(tmp_path: Path) -> None:
    """Through the daemon's session, an https Alertmanager whose certificate is not trusted
    counts a failure, logs the certificate error, and never receives a push."""
    cert, key = self_signed_certificate(tmp_path)
    async with _recording(server_tls(cert, key)) as tls, http_session() as session:
        pusher = _pusher(tls.url, session)
        pusher.update("hyperliquid", [_state()], [])
        with structlog.testing.capture_logs() as logs:
            assert not await pusher.push_once()
    assert pusher.failures == 1
    assert pusher.last_success_at is None
    assert "ClientConnectorCertificateError" in logs[0]["error"]
    assert tls.bodies == []


async def test_run_pushes_promptly_after_a_change(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    """run() pushes at start and again within a second of an update that changes the firing
    set, long before the 60 s re-send interval."""
    pusher = _pusher(recorder.url, session)
    task = asyncio.create_task(pusher.run())
    try:
        await asyncio.wait_for(recorder.received.wait(), timeout=5)
        assert recorder.bodies == [[]]
        recorder.received.clear()
        pusher.update("hyperliquid", [_state()], [])
        await asyncio.wait_for(recorder.received.wait(), timeout=1)
        assert _names(recorder.bodies[-1])[0][0] == "ChainHalted"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_amtool_accepts_the_test_config(am_config: Path) -> None:
    """`amtool check-config` passes on the Alertmanager config the tests run with."""
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(am_config)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


async def _alerts(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(url) as response:
        assert response.status == 200
        alerts: list[dict[str, Any]] = await response.json()
        return alerts


async def test_real_alertmanager_receives_firing_and_resolved_alerts(
    alertmanager: str, session: aiohttp.ClientSession
) -> None:
    """A real Alertmanager lists the pushed alert as active with our labels and annotations,
    and after the resolved push (endsAt now) no longer lists it as active."""
    pusher = _pusher(alertmanager, session, time.time)
    state = _state(
        "EntityCanHalt",
        labels={"chain": "hyperliquid", "entity": "Big Co"},
        starts_at=time.time() - 5,
        value=0.4,
        threshold=1 / 3,
    )
    pusher.update("hyperliquid", [state], [])
    assert await pusher.push_once()

    mine = [
        a
        for a in await _alerts(session, f"{alertmanager}/api/v2/alerts")
        if a["labels"].get("alertname") == "EntityCanHalt"
    ]
    assert len(mine) == 1
    assert mine[0]["labels"] == {
        "alertname": "EntityCanHalt",
        "severity": "critical",
        "chain": "hyperliquid",
        "entity": "Big Co",
    }
    assert mine[0]["annotations"] == {
        "summary": "EntityCanHalt on hyperliquid.",
        "description": "EntityCanHalt holds on hyperliquid.",
        "value": "0.4",
        "threshold": "0.3333333333333333",
    }
    assert mine[0]["status"]["state"] == "active"

    pusher.update("hyperliquid", [], [_resolved(state, at=time.time())])
    assert await pusher.push_once()
    active = await _alerts(session, f"{alertmanager}/api/v2/alerts?active=true")
    assert not [a for a in active if a["labels"].get("alertname") == "EntityCanHalt"]
    assert pusher.last_success_at is not None
    assert pusher.failures == 0


async def test_flush_pushes_an_unpushed_resolution_once_and_nothing_when_up_to_date(
    recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    """flush() after the push loop stopped sends one push carrying a resolution no push
    delivered yet; a second flush sends nothing; both report success."""
    clock = FakeClock(T0)
    pusher = _pusher(recorder.url, session, clock)
    state = _state()
    pusher.update("hyperliquid", [state], [])
    assert await pusher.push_once()
    pusher.update("hyperliquid", [], [_resolved(state, at=clock.now)])
    assert await pusher.flush(2.0)
    assert len(recorder.bodies) == 2
    assert [a["labels"]["alertname"] for a in recorder.bodies[1]] == [state.alert]
    assert await pusher.flush(2.0)
    assert len(recorder.bodies) == 2


async def test_flush_gives_up_within_the_budget(session: aiohttp.ClientSession) -> None:
    """With Alertmanager unreachable, flush() tries once and reports failure."""
    pusher = _pusher(f"http://127.0.0.1:{free_port()}", session)
    pusher.update("hyperliquid", [_state()], [])
    assert not await pusher.flush(1.0)
    assert pusher.failures == 1


async def test_an_endless_success_body_is_not_read_to_its_end(
    session: aiohttp.ClientSession,
) -> None:
    """A 200 whose body never ends counts as a success at once: the pusher reads only a line."""

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(b"x" * 65536)
        return response

    app = web.Application()
    app.router.add_post("/api/v2/alerts", endless)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        pusher = _pusher(f"http://127.0.0.1:{runner.addresses[0][1]}", session)
        pusher.update("hyperliquid", [_state()], [])
        assert await pusher.push_once()  # within the 2 s timeout, not cut off by it
        assert pusher.failures == 0
    finally:
        await runner.cleanup()
