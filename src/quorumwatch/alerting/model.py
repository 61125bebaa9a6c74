"""Alert events and alert state: the documented, versioned shapes that sinks carry, and the
one rendering of an alert they all build on."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCHEMA = "quorumwatch.alert/v1"

# Rules that need a valid snapshot; the others are judged from endpoint health and time.
NEEDS_SNAPSHOT = frozenset(
    {
        "EntityCanControl",
        "EntityCanHalt",
        "ChainHalted",
        "LivenessMarginLow",
        "NakamotoCoefficientDropped",
        "ValidatorJailed",
        "JailStorm",
        "FinalityLagging",
        "EntityHasMajority",
        "BlockAuthoritiesLow",
    }
)
ALWAYS_JUDGED = frozenset({"EndpointDown", "AllEndpointsDown", "SingleEndpoint", "DataStale"})
ALERT_NAMES = NEEDS_SNAPSHOT | ALWAYS_JUDGED


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(alert: str, labels: Mapping[str, str]) -> str:
    """Stable identity of one alert instance: the alert name and its identifying labels."""
    key = json.dumps([alert, sorted(labels.items())], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert instance that is pending (`starts_at` None) or firing; persisted."""

    fingerprint: str
    alert: str
    severity: Severity
    chain: str
    labels: Mapping[str, str]
    pending_since: float
    starts_at: float | None
    summary: str
    description: str
    value: float | None
    threshold: float | None

    @property
    def firing(self) -> bool:
        return self.starts_at is not None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A firing or resolved transition, as published over MQTT (see `to_json`)."""

    event_id: str
    fingerprint: str
    alert: str
    status: AlertStatus
    severity: Severity
    chain: str
    labels: Mapping[str, str]
    summary: str
    description: str
    value: float | None
    threshold: float | None
    starts_at: float
    ends_at: float | None
    observed_at: float

    def to_json(self) -> str:
        return compact_json(self.to_document())

    def to_document(self) -> dict[str, Any]:
        """The versioned event document; times are RFC 3339 in UTC."""
        shared = alert_document(self)
        return {
            "schema": SCHEMA,
            "event_id": self.event_id,
            "fingerprint": shared.pop("fingerprint"),
            "alert": shared.pop("alert"),
            "status": str(self.status),
            **shared,
            "ends_at": rfc3339(self.ends_at) if self.ends_at is not None else None,
            "observed_at": rfc3339(self.observed_at),
        }


@dataclass(frozen=True, slots=True)
class AlertCommit:
    """What one evaluation of one chain left in the store, as the evaluator tells the sinks:
    the chain's alert state, the events appended to the outbox and how many of the oldest
    pending events the full outbox then dropped (none of either when nothing changed)."""

    chain: str
    states: Sequence[AlertState]  # pending and firing, exactly as committed
    events: Sequence[AlertEvent] = ()
    dropped: int = 0

    @property
    def firing(self) -> list[AlertState]:
        return [s for s in self.states if s.firing]

    @property
    def resolved(self) -> list[AlertEvent]:
        return [e for e in self.events if e.status is AlertStatus.RESOLVED]


def alert_document(alert: AlertState | AlertEvent) -> dict[str, Any]:
    """The one rendering of an alert's shared fields, in their published order: the firing
    set lists exactly these, the event document adds its own around them, and the
    Alertmanager payload is built from them. `starts_at` is None while pending."""
    return {
        "fingerprint": alert.fingerprint,
        "alert": alert.alert,
        "severity": str(alert.severity),
        "chain": alert.chain,
        "labels": dict(alert.labels),
        "summary": alert.summary,
        "description": alert.description,
        "value": alert.value,
        "threshold": alert.threshold,
        "starts_at": None if alert.starts_at is None else rfc3339(alert.starts_at),
    }


def compact_json(document: object) -> str:
    """One line of JSON, non-ASCII kept as is: how every alert document is published."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def rfc3339(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
