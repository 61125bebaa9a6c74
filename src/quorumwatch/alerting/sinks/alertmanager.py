"""Push alerts straight to Alertmanager's `POST /api/v2/alerts` (optional).

Alertmanager expects a direct client to behave like Prometheus: re-send every firing alert
every 30 s to 3 min, each with an `endsAt` a few re-send intervals ahead (so the alerts of a
daemon that died resolve by themselves), and keep re-sending a resolved alert, with its
`endsAt`, for about 5 minutes so a lost request cannot leave it firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import structlog
from pydantic import AnyHttpUrl
from yarl import URL

from quorumwatch.alerting.model import (
    AlertCommit,
    AlertEvent,
    AlertState,
    AlertStatus,
    alert_document,
    rfc3339,
)
from quorumwatch.config import AlertmanagerSettings

ALERTS_PATH = "/api/v2/alerts"
# How long a resolved alert is re-sent after the daemon saw it resolve.
RESOLVED_RESEND_SECONDS = 300.0
# A firing alert's endsAt lies this many re-send intervals ahead (Prometheus uses 3 too).
FIRING_LIFETIME_RESENDS = 3
MAX_ERROR_BODY = 200
# The alert's numbers, as annotations when present.
NUMBERS = ("value", "threshold")

log = structlog.get_logger(__name__)

_USERINFO = re.compile(r"(://)[^/@\s]*@")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8(value: str) -> str:
    """The string as valid UTF-8 text: lone surrogates (from hostile bytes) become U+FFFD."""
    return _SURROGATE.sub("\N{REPLACEMENT CHARACTER}", value)


def _number(value: float) -> str:
    """3.0 as "3", 0.1 as "0.1": the shortest text that reads back as the same float."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def alert_payload(
    alert: AlertState | AlertEvent, *, now: float, resend_interval_seconds: float
) -> dict[str, Any]:
    """Alertmanager's alert object for a firing state, or a firing or resolved event.

    Labels are `alertname`, `severity`, `chain` and the alert's own labels (empty values
    dropped; the three fixed names win). A resolved event ends at its `ends_at`; a firing
    alert ends `FIRING_LIFETIME_RESENDS` re-send intervals after `now` unless re-sent.
    A pending state (not yet firing) is a ValueError: Alertmanager must not see it.
    """
    document = alert_document(alert)
    if document["starts_at"] is None:
        raise ValueError(f"alert {alert.alert} ({alert.fingerprint}) is pending, not firing")
    labels = {_utf8(k): _utf8(v) for k, v in document["labels"].items() if k and v}
    fixed = {
        "alertname": document["alert"],
        "severity": document["severity"],
        "chain": document["chain"],
    }
    labels.update({k: _utf8(v) for k, v in fixed.items() if v})
    annotations = {k: _utf8(document[k]) for k in ("summary", "description")}
    annotations.update({k: _number(document[k]) for k in NUMBERS if document[k] is not None})
    if isinstance(alert, AlertEvent) and alert.status is AlertStatus.RESOLVED:
        ends_at = alert.ends_at if alert.ends_at is not None else alert.observed_at
    else:
        ends_at = now + FIRING_LIFETIME_RESENDS * resend_interval_seconds
    return {
        "labels": labels,
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": document["starts_at"],
        "endsAt": rfc3339(ends_at),
    }


class AlertmanagerPusher:
    """Keeps the firing alerts per chain and the recently resolved ones, and pushes them to
    the Alertmanager at `url` (one pusher per node of a cluster, so a dead node never delays
    another).

    `update` (sync; through `committed`, the evaluator's listener) is called after each
    evaluation; `run` pushes every `resend_interval_seconds` and promptly after an `update`
    that changed something. `last_success_at` and `failures` are for metrics; `on_failure`
    is called after each failure. Its log lines name the node by `node`, its place among the
    configured targets (0 for `url`), never by its address.
    """

    def __init__(
        self,
        url: AnyHttpUrl,
        settings: AlertmanagerSettings,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[], None] | None = None,
        node: int = 0,
    ) -> None:
        self._node = node
        base = URL(str(url))
        path = base.path.rstrip("/")
        if not path.endswith(ALERTS_PATH):
            path += ALERTS_PATH
        self._url = base.with_path(path)
        self._session = session
        self._clock = clock
        self._on_failure = on_failure
        self._interval = settings.resend_interval_seconds
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self._firing: dict[str, dict[str, AlertState]] = {}
        # (chain, fingerprint) → the resolved event and when it was recorded.
        self._resolved: dict[tuple[str, str], tuple[AlertEvent, float]] = {}
        self._changed = asyncio.Event()
        # Changes counted by `update`; `_pushed_changes` is the count a successful push had
        # seen when it started: less than `_changes` means something is not delivered yet.
        self._changes = 0
        self._pushed_changes = 0
        self.last_success_at: float | None = None
        self.failures = 0
        self._failing = True  # until the first success, so that one is logged

    def update(
        self, chain: str, firing: Sequence[AlertState], resolved: Sequence[AlertEvent]
    ) -> None:
        """Replace `chain`'s firing set (pending states ignored) and record resolved events."""
        now = self._clock()
        self._prune(now)
        current = {s.fingerprint: s for s in firing if s.firing}
        before = self._firing.get(chain, {})
        changed = _identity(current) != _identity(before)
        self._firing[chain] = current
        for event in resolved:
            if event.status is not AlertStatus.RESOLVED or event.fingerprint in current:
                continue
            self._resolved[(chain, event.fingerprint)] = (event, now)
            changed = True
        for fingerprint in current:  # firing again: the resolution is stale
            if self._resolved.pop((chain, fingerprint), None) is not None:
                changed = True
        if changed:
            self._changes += 1
            self._changed.set()

    def committed(self, commit: AlertCommit) -> None:
        """The evaluator's listener: `update` with the chain's firing and resolved alerts."""
        self.update(commit.chain, commit.firing, commit.resolved)

    def alerts(self) -> list[dict[str, Any]]:
        """The array the next push sends: all firing alerts, then those recently resolved."""
        now = self._clock()
        self._prune(now)
        items: list[AlertState | AlertEvent] = [
            state for states in self._firing.values() for state in states.values()
        ]
        items += [event for event, _ in self._resolved.values()]
        return [
            alert_payload(item, now=now, resend_interval_seconds=self._interval) for item in items
        ]

    async def push_once(self) -> bool:
        """POST the current array (also when empty: that checks the path); True on success.

        A failure logs one line and keeps all state, so the next push re-sends everything.
        """
        alerts = self.alerts()
        changes = self._changes
        try:
            async with self._session.post(
                self._url, json=alerts, timeout=self._timeout, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    # Only drained enough to reuse the connection: an answer is never
                    # buffered whole, however much a misbehaving server sends.
                    await response.content.read(MAX_ERROR_BODY)
                    problem = ""
                else:  # Alertmanager says why in a short body; read no more than a line
                    body = (await response.content.read(MAX_ERROR_BODY)).decode(errors="replace")
                    problem = " ".join(f"HTTP {response.status}: {body}".split())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problem = self._redact(f"{type(exc).__name__}: {exc}".strip(" :"))
        if problem:
            self._failed()
            log.warning(
                "alertmanager push failed",
                node=self._node,
                alerts=len(alerts),
                error=problem,
                failures=self.failures,
            )
            return False
        if self._failing:  # the first success, and each recovery, is worth one line
            log.info("alertmanager push ok", node=self._node, alerts=len(alerts))
            self._failing = False
        self.last_success_at = self._clock()
        self._pushed_changes = max(self._pushed_changes, changes)
        return True

    async def flush(self, budget: float) -> bool:
        """At shutdown, after `run()` was cancelled: one last push, within `budget` seconds,
        if a change (a resolution, say) was not pushed yet. True when nothing is left
        undelivered. Firing alerts need no more: Alertmanager keeps them until their endsAt."""
        if self._pushed_changes >= self._changes:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.push_once(), budget)
        delivered = self._pushed_changes >= self._changes
        if not delivered:
            log.warning("alertmanager: last changes not pushed at shutdown", node=self._node)
        return delivered

    async def run(self) -> None:
        """Push forever: every `resend_interval_seconds`, and promptly after a change."""
        while True:
            self._changed.clear()
            try:
                await self.push_once()
            except Exception:  # a bug must not end paging for good: log, count, go on
                self._failed()
                log.exception("alertmanager push crashed", node=self._node)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self._interval)

    def _failed(self) -> None:
        self.failures += 1
        self._failing = True
        if self._on_failure is not None:
            self._on_failure()

    def _prune(self, now: float) -> None:
        """Forget resolved alerts once they have been re-sent for RESOLVED_RESEND_SECONDS."""
        self._resolved = {
            key: (event, seen)
            for key, (event, seen) in self._resolved.items()
            if now - seen < RESOLVED_RESEND_SECONDS
        }

    def _redact(self, text: str) -> str:
        text = _USERINFO.sub(r"\1", text)
        password = self._url.password
        return text.replace(password, "***") if password else text


def _identity(states: Mapping[str, AlertState]) -> set[tuple[str, str, float | None]]:
    """What Alertmanager must hear about promptly: which alerts fire, since when, how bad."""
    return {(key, state.severity, state.starts_at) for key, state in states.items()}
