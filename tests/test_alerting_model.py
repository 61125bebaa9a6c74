"""Alert event documents and fingerprints: the versioned contract that sinks carry."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace

import pytest

from quorumwatch.alerting.model import (
    ALERT_NAMES,
    ALWAYS_JUDGED,
    NEEDS_SNAPSHOT,
    SCHEMA,
    AlertEvent,
    AlertState,
    AlertStatus,
    Severity,
    fingerprint,
    rfc3339,
)

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FIELDS = {
    "schema",
    "event_id",
    "fingerprint",
    "alert",
    "status",
    "severity",
    "chain",
    "labels",
    "summary",
    "description",
    "value",
    "threshold",
    "starts_at",
    "ends_at",
    "observed_at",
}
LABELS = {"chain": "hyperliquid", "entity": "whale"}
FIRING = AlertEvent(
    event_id="event-1",
    fingerprint=fingerprint("EntityCanHalt", LABELS),
    alert="EntityCanHalt",
    status=AlertStatus.FIRING,
    severity=Severity.WARNING,
    chain="hyperliquid",
    labels=LABELS,
    summary="One entity can halt hyperliquid.",
    description="Entity whale holds 40.00% of consensus stake on hyperliquid, at least 1/3.",
    value=0.4,
    threshold=1 / 3,
    starts_at=T0 + 0.25,
    ends_at=None,
    observed_at=T0 + 0.25,
)
RESOLVED = replace(
    FIRING,
    event_id="event-2",
    status=AlertStatus.RESOLVED,
    ends_at=T0 + 90.5,
    observed_at=T0 + 90.5,
)


def test_alert_names_are_the_catalogue() -> None:
    """ALERT_NAMES is exactly the 14 catalogue names, split disjointly by NEEDS_SNAPSHOT."""
    assert {
        "EntityCanControl",
        "EntityCanHalt",
        "EntityHasMajority",
        "BlockAuthoritiesLow",
        "ChainHalted",
        "FinalityLagging",
        "LivenessMarginLow",
        "NakamotoCoefficientDropped",
        "ValidatorJailed",
        "JailStorm",
        "EndpointDown",
        "AllEndpointsDown",
        "SingleEndpoint",
        "DataStale",
    } == ALERT_NAMES
    assert len(ALERT_NAMES) == 14
    assert NEEDS_SNAPSHOT | ALWAYS_JUDGED == ALERT_NAMES
    assert not NEEDS_SNAPSHOT & ALWAYS_JUDGED


def test_fingerprint_ignores_label_order() -> None:
    """The same labels in a different insertion order give the same fingerprint."""
    assert fingerprint("EndpointDown", {"chain": "a", "endpoint": "ep0"}) == fingerprint(
        "EndpointDown", {"endpoint": "ep0", "chain": "a"}
    )


def test_fingerprint_is_pinned() -> None:
    """The fingerprint is sha256 of alert and sorted labels, first 16 hex digits, pinned."""
    key = '["EntityCanHalt",[["chain","hyperliquid"],["entity","whale"]]]'
    expected = hashlib.sha256(key.encode()).hexdigest()[:16]
    assert fingerprint("EntityCanHalt", {"entity": "whale", "chain": "hyperliquid"}) == expected
    assert expected == "23d83432f55a6e11"


@pytest.mark.parametrize(
    ("alert", "labels"),
    [
        ("EntityCanHalt", {"chain": "other", "entity": "whale"}),
        ("EntityCanControl", {"chain": "hyperliquid", "entity": "whale"}),
        ("EntityCanHalt", {"chain": "hyperliquid", "entity": "whale2"}),
        ("EntityCanHalt", {"chain": "hyperliquid", "validator": "whale"}),
    ],
    ids=["chain", "alert", "value", "label-name"],
)
def test_fingerprint_distinct(alert: str, labels: dict[str, str]) -> None:
    """Changing the chain, the alert, a label value or a label name changes the fingerprint."""
    assert fingerprint(alert, labels) != fingerprint("EntityCanHalt", LABELS)


def test_firing_event_document() -> None:
    """Firing JSON: exactly the documented fields, schema v1, .mmmZ UTC times, ends_at null."""
    document = json.loads(FIRING.to_json())
    assert set(document) == FIELDS
    assert document["schema"] == SCHEMA == "quorumwatch.alert/v1"
    assert document == {
        "schema": "quorumwatch.alert/v1",
        "event_id": "event-1",
        "fingerprint": "23d83432f55a6e11",
        "alert": "EntityCanHalt",
        "status": "firing",
        "severity": "warning",
        "chain": "hyperliquid",
        "labels": {"chain": "hyperliquid", "entity": "whale"},
        "summary": "One entity can halt hyperliquid.",
        "description": FIRING.description,
        "value": 0.4,
        "threshold": 1 / 3,
        "starts_at": "2026-01-01T00:00:00.250Z",
        "ends_at": None,
        "observed_at": "2026-01-01T00:00:00.250Z",
    }


def test_resolved_event_document() -> None:
    """Resolved JSON: status resolved, firing's starts_at, ends_at = observed_at in .mmmZ UTC."""
    document = json.loads(RESOLVED.to_json())
    assert set(document) == FIELDS
    assert document["status"] == "resolved"
    assert document["starts_at"] == "2026-01-01T00:00:00.250Z"
    assert document["ends_at"] == document["observed_at"] == "2026-01-01T00:01:30.500Z"
    for key in ("starts_at", "ends_at", "observed_at"):
        assert RFC3339_MS_UTC.match(document[key])


def test_event_json_is_one_line_and_keeps_unicode() -> None:
    """to_json is compact single-line JSON that keeps non-ASCII label values verbatim."""
    event = replace(FIRING, labels={"chain": "hyperliquid", "entity": "Zürich ✓"})
    text = event.to_json()
    assert "\n" not in text
    assert "Zürich ✓" in text
    assert json.loads(text)["labels"]["entity"] == "Zürich ✓"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (T0, "2026-01-01T00:00:00.000Z"),
        (T0 + 0.001, "2026-01-01T00:00:00.001Z"),
        (T0 + 86399.999, "2026-01-01T23:59:59.999Z"),
    ],
)
def test_rfc3339(timestamp: float, expected: str) -> None:
    """rfc3339 renders a Unix time in UTC with exactly three fractional digits and Z."""
    assert rfc3339(timestamp) == expected


def test_state_firing_iff_started() -> None:
    """An AlertState is firing exactly when starts_at is set; pending otherwise."""
    pending = AlertState(
        fingerprint=FIRING.fingerprint,
        alert=FIRING.alert,
        severity=FIRING.severity,
        chain=FIRING.chain,
        labels=LABELS,
        pending_since=T0,
        starts_at=None,
        summary="",
        description="",
        value=None,
        threshold=None,
    )
    assert not pending.firing
    assert replace(pending, starts_at=T0 + 60).firing


# --- the three renderings of one alert, pinned byte for byte -----------------------------------

PINNED_STATE = AlertState(
    fingerprint=FIRING.fingerprint,
    alert=FIRING.alert,
    severity=FIRING.severity,
    chain=FIRING.chain,
    labels={"chain": "hyperliquid", "validator": "Zürich ✓", "entity": ""},  # not by name
    pending_since=T0 - 30,
    starts_at=FIRING.starts_at,
    summary=FIRING.summary,
    description=FIRING.description,
    value=0.4,
    threshold=1 / 3,
)
PINNED_EVENT = replace(FIRING, labels=PINNED_STATE.labels)
PINNED_SHARED = (
    '"fingerprint":"23d83432f55a6e11","alert":"EntityCanHalt",{status}"severity":"warning",'
    '"chain":"hyperliquid","labels":{labels},"summary":"One entity can halt hyperliquid.",'
    '"description":"Entity whale holds 40.00% of consensus stake on hyperliquid, at least 1/3.",'
    '"value":0.4,"threshold":0.3333333333333333,"starts_at":"2026-01-01T00:00:00.250Z"'
)


def test_event_document_bytes_are_pinned() -> None:
    """The MQTT event payload of one alert, byte for byte: schema and event_id, the shared
    fields with status after the alert name and the labels as made, then ends_at and
    observed_at."""
    shared = PINNED_SHARED.format(
        status='"status":"firing",',
        labels='{"chain":"hyperliquid","validator":"Zürich ✓","entity":""}',
    )
    assert PINNED_EVENT.to_json() == (
        '{"schema":"quorumwatch.alert/v1","event_id":"event-1",'
        + shared
        + ',"ends_at":null,"observed_at":"2026-01-01T00:00:00.250Z"}'
    )


def test_firing_set_bytes_are_pinned() -> None:
    """The retained firing set of the same alert, byte for byte: exactly the shared fields,
    the labels by name (as read back from the store)."""
    from quorumwatch.alerting.sinks.mqtt import firing_payload

    shared = PINNED_SHARED.format(
        status="", labels='{"chain":"hyperliquid","entity":"","validator":"Zürich ✓"}'
    )
    assert firing_payload([PINNED_STATE]) == "[{" + shared + "}]"


def test_alertmanager_payload_bytes_are_pinned() -> None:
    """The Alertmanager alert object of the same alert (state and firing event alike), as
    aiohttp serialises it, byte for byte: empty labels dropped, the fixed names last."""
    from quorumwatch.alerting.sinks.alertmanager import alert_payload

    expected = (
        '{"labels": {"chain": "hyperliquid", "validator": "Z\\u00fcrich \\u2713",'
        ' "alertname": "EntityCanHalt", "severity": "warning"},'
        ' "annotations": {"summary": "One entity can halt hyperliquid.",'
        ' "description": "Entity whale holds 40.00% of consensus stake on hyperliquid,'
        ' at least 1/3.", "value": "0.4", "threshold": "0.3333333333333333"},'
        ' "startsAt": "2026-01-01T00:00:00.250Z", "endsAt": "2026-01-01T00:03:00.000Z"}'
    )
    for alert in (PINNED_STATE, PINNED_EVENT):
        payload = alert_payload(alert, now=T0, resend_interval_seconds=60)
        assert json.dumps(payload) == expected
