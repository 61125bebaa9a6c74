"""The status page's data, served at /api/v1/state: the report board as one JSON-ready document,
built by a pure function (the HTTP is in server.py). Its fields are a contract, documented in
the README's "Status page" section."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quorumwatch import __version__
from quorumwatch.alerting.model import Severity, alert_document, rfc3339
from quorumwatch.analysis import MIN_TOP_ENTITIES, Threshold, reaches
from quorumwatch.labels import safe_text
from quorumwatch.models import ValidatorStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from quorumwatch.alerting.model import AlertState
    from quorumwatch.analysis import ChainAnalysis
    from quorumwatch.config import ChainSettings
    from quorumwatch.report import ChainReport, ReportBoard

SCHEMA = "quorumwatch.state/v1"
ENTITY_ROWS = 100
"""The most entities a chain's table lists, largest first: enough to show every coalition that
can halt on the chains watched today, small enough to fetch every few seconds."""
NAME_LENGTH = 256  # as `run --once --format json`: long enough to recognise, never 10 kB
FAILURE_LENGTH = 1024  # as a log value
MIN_REFRESH_SECONDS = 0.5
MAX_REFRESH_SECONDS = 5.0
_SEVERITY_ORDER = {severity: rank for rank, severity in enumerate(Severity)}


def state_document(
    board: ReportBoard, chains: Sequence[ChainSettings], now: float
) -> dict[str, Any]:
    """The document /api/v1/state serves as of `now`: every chain in `chains` (those watched,
    in configuration order), polled or not yet."""
    reports, firing = board.reports, board.firing  # each read once: a consistent view
    return {
        "schema": SCHEMA,
        "version": __version__,
        "generated_at": rfc3339(now),
        "refresh_seconds": refresh_seconds(chains),
        "chains": [
            _chain(settings, reports.get(settings.name), firing.get(settings.name, ()), now)
            for settings in chains
        ],
    }


def refresh_seconds(chains: Iterable[ChainSettings]) -> float:
    """How often the page fetches the document: at the fastest chain's poll interval, so that
    it shows every poll, but at most every MIN_REFRESH_SECONDS and at least every
    MAX_REFRESH_SECONDS, so that the ages it shows stay current between slow polls."""
    fastest = min((c.poll_interval_seconds for c in chains), default=MAX_REFRESH_SECONDS)
    return min(max(fastest, MIN_REFRESH_SECONDS), MAX_REFRESH_SECONDS)


def _chain(
    settings: ChainSettings,
    report: ChainReport | None,
    firing: Iterable[AlertState],
    now: float,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "chain": settings.name,
        "kind": str(settings.kind),
        "up": report is not None and report.up,
        "poll_interval_seconds": settings.poll_interval_seconds,
        "polled_at": None,
        "last_success_at": None,
        "last_success_age_seconds": None,
        "failures": [],
        "nakamoto": None,
        "holders": None,
        "entities": None,
        "liveness_margin_ratio": None,
        "validators": None,
        "jailed": None,
        "jail_events": None,
        "jail_storm": None,
        "endpoints": [],
        "alerts": [
            alert_document(alert)
            for alert in sorted(firing, key=lambda a: (_SEVERITY_ORDER[a.severity], a.starts_at))
        ],
    }
    if report is None:
        return document
    document["polled_at"] = rfc3339(report.polled_at)
    if report.last_success_at is not None:
        document["last_success_at"] = rfc3339(report.last_success_at)
        document["last_success_age_seconds"] = max(0.0, now - report.last_success_at)
    document["failures"] = [safe_text(f, max_length=FAILURE_LENGTH) for f in report.failures]
    document["endpoints"] = [
        {
            "name": e.name,
            "up": e.up,
            "latency_seconds": e.last_latency_seconds,
            "availability": dict(e.availability),
        }
        for e in report.endpoints
    ]
    analysis = report.analysis
    if analysis is not None:
        document["nakamoto"] = {
            grouping.value: {t.value: c.nakamoto[t] for t in Threshold}
            for grouping, c in analysis.groupings.items()
        }
        document["holders"] = {g.value: c.holders for g, c in analysis.groupings.items()}
        names = {v.address: v.name for v in report.exported_validators}
        document["entities"] = entity_rows(analysis, settings.max_validator_series, names)
        # Where who is voting is unknown (Ethereum over JSON), so is the margin.
        if report.liveness_known:
            document["liveness_margin_ratio"] = analysis.liveness_margin
    if report.totals is not None:
        counts = report.totals.validators
        document["validators"] = {s.value: counts.get(s, 0) for s in ValidatorStatus}
    jails = report.jails
    if jails is not None:
        document["jail_events"] = dict(jails.windows)
        document["jail_storm"] = jails.storm
        # As on /metrics: who is jailed now is known only from a valid set.
        if report.up:
            document["jailed"] = [
                {
                    "validator": address,
                    "name": _name(jails.names.get(address)),
                    "entity": _name(report.entity_of.get(address)),
                    "jailed_since": rfc3339(since),
                    "jailed_seconds": max(0.0, now - since),
                }
                for address, since in sorted(
                    jails.jailed_since.items(), key=lambda item: (-item[1], item[0])
                )
            ]
    return document


def entity_rows(
    analysis: ChainAnalysis, max_validator_series: int, validator_names: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The largest entities, largest first, each with the share held by it and every larger
    one, and the coalition it completes: "halt" while the larger ones hold less than 1/3 (so
    the "halt" rows are the fewest entities that can halt the chain, as many as its entity
    Nakamoto coefficient), "control" while they hold at most 2/3, else None. An entity that
    is one validator alone is named by its address; `validator_names` (address → name) adds
    the name it chose.

    Only the analysis's first `max_validator_series` entities (at least MIN_TOP_ENTITIES)
    are surely the largest of all, with none left out between them: the rows stop there, so
    that every cumulative share is exact."""
    total = analysis.total_stake
    contiguous = max(max_validator_series, MIN_TOP_ENTITIES)
    rows = []
    larger = 0
    for entity in analysis.entities[: min(ENTITY_ROWS, contiguous)]:
        coalition = None
        if not reaches(Threshold.HALT, larger, total):
            coalition = Threshold.HALT.value
        elif not reaches(Threshold.CONTROL, larger, total):
            coalition = Threshold.CONTROL.value
        larger += entity.stake
        rows.append(
            {
                "name": safe_text(entity.name, max_length=NAME_LENGTH),
                "validator_name": _name(validator_names.get(entity.name)),
                "stake_ratio": entity.ratio,
                "cumulative_stake_ratio": larger / total,
                "coalition": coalition,
            }
        )
    return rows


def _name(name: str | None) -> str | None:
    return None if name is None else safe_text(name, max_length=NAME_LENGTH)
