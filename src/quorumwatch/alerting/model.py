"""Alert events and alert state: the documented, versioned shapes that sinks carry."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
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
        return json.dumps(self.to_document(), ensure_ascii=False, separators=(",", ":"))

    def to_document(self) -> dict[str, Any]:
        """The versioned event document; times are RFC 3339 in UTC."""
        return {
            "schema": SCHEMA,
            "event_id": self.event_id,
            "fingerprint": self.fingerprint,
            "alert": self.alert,
            "status": str(self.status),
            "severity": str(self.severity),
            "chain": self.chain,
            "labels": dict(self.labels),
            "summary": self.summary,
            "description": self.description,
            "value": self.value,
            "threshold": self.threshold,
            "starts_at": rfc3339(self.starts_at),
            "ends_at": rfc3339(self.ends_at) if self.ends_at is not None else None,
            "observed_at": rfc3339(self.observed_at),
        }


def rfc3339(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
