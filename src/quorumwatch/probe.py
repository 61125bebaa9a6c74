"""`run --once`: judge each chain's report by policy and render it for Nagios or as JSON."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from quorumwatch.analysis import Threshold
from quorumwatch.chains.kinds import KINDS
from quorumwatch.labels import safe_text
from quorumwatch.models import ValidatorStatus
from quorumwatch.report import holds_majority

if TYPE_CHECKING:
    from collections.abc import Sequence

    from quorumwatch.analysis import EntityShare
    from quorumwatch.config import ChainSettings, PolicySettings
    from quorumwatch.report import ChainReport

_ONE_THIRD = Fraction(1, 3)
_TWO_THIRDS = Fraction(2, 3)


class Status(enum.IntEnum):
    """Nagios plugin states; the value is the exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True, slots=True)
class Verdict:
    report: ChainReport
    policy: PolicySettings
    status: Status
    reasons: tuple[str, ...]
    # The shares of consensus stake from which one entity makes this chain WARNING and
    # CRITICAL (None: none does), for the perfdata's thresholds.
    entity_warning_line: Fraction | None
    entity_critical_line: Fraction | None


def judge(report: ChainReport, chain: ChainSettings) -> Verdict:
    """Apply the chain's policy, in its kind's terms: CRITICAL and WARNING reasons, most
    severe first."""
    policy = chain.policy
    bft = KINDS[chain.kind].validators_author_blocks
    critical: list[str] = []
    warning: list[str] = []
    analysis = report.analysis
    if analysis is None:
        failures = "; ".join(report.failures) or "no endpoint answered"
        critical.append(f"no endpoint returned a valid validator set ({failures})")
    else:
        total, online = analysis.total_stake, analysis.online_stake
        for entity in analysis.entities:
            majority = holds_majority(entity.stake, total, report.majority_line)
            if not (entity.can_halt or majority):
                continue  # only the few at a line are worth a reason: format no other
            judged = _entity_reason(report, entity, policy, majority=majority, bft=bft)
            if judged is not None:
                status, reason = judged
                (critical if status is Status.CRITICAL else warning).append(reason)
        # Where who is voting is unknown (Ethereum over JSON), neither halted nor live.
        if report.liveness_known:
            online_ratio = f"online stake is {online / total:.2%} of consensus stake"
            if 3 * online <= 2 * total:
                if policy.critical_when_halted:
                    critical.append(f"{online_ratio}, at most 2/3: the chain cannot commit")
            elif analysis.liveness_margin < policy.liveness_margin_warning:
                warning.append(
                    f"{online_ratio}: liveness margin {analysis.liveness_margin:.4f} "
                    f"below {policy.liveness_margin_warning}"
                )
    if report.healthy_endpoints == 1 and policy.warning_when_single_endpoint:
        warning.append("only 1 endpoint healthy: a single point of failure")
    status = Status.CRITICAL if critical else Status.WARNING if warning else Status.OK
    warning_line, critical_line = _entity_lines(report, policy, bft=bft)
    return Verdict(report, policy, status, tuple(critical + warning), warning_line, critical_line)


def _entity_reason(
    report: ChainReport, entity: EntityShare, policy: PolicySettings, *, majority: bool, bft: bool
) -> tuple[Status, str] | None:
    """The strongest line the entity crossed that the policy reports, and its status, as the
    alerts judge it. On a BFT chain: control (more than 2/3), then the majority, then halting
    (1/3). Where the validators author no blocks (a Bittensor subnet) the majority comes first
    and is critical, and the BFT lines are shares that neither halt nor take over the chain."""
    share = f"entity {safe_text(entity.name)} holds {entity.ratio:.2%} of consensus stake"
    control = entity.can_control and policy.critical_when_entity_can_control
    if majority and not (bft and control):
        threshold = report.consensus_threshold
        line = (
            "more than 1/2"
            if threshold is None
            # Enough digits to tell kappa (32767/65535) from the 50.00% a share may round to.
            else f"more than the chain's consensus threshold ({100 * float(threshold):.5g}%)"
        )
        if not bft:
            return Status.CRITICAL, f"{share}, {line}: it sets the subnet's incentives alone"
        halts = " and can halt the chain" if entity.can_halt else ""
        return Status.WARNING, f"{share}, {line}: it holds the majority{halts}"
    no_blocks = "a subnet's validators author no blocks, so it cannot"
    if control:
        meaning = "it can control the chain" if bft else f"{no_blocks} take over the chain"
        return Status.CRITICAL, f"{share}, more than 2/3: {meaning}"
    if entity.can_halt and policy.warning_when_entity_can_halt:
        meaning = "it can halt the chain" if bft else f"{no_blocks} halt the chain"
        return Status.WARNING, f"{share}, at least 1/3: {meaning}"
    return None


def _entity_lines(
    report: ChainReport, policy: PolicySettings, *, bft: bool
) -> tuple[Fraction | None, Fraction | None]:
    """The lowest shares at which `_entity_reason` makes one entity WARNING and CRITICAL (None:
    no share does). On a BFT chain: 1/3 (else the majority) and 2/3. Where the validators author
    no blocks: 1/3, and the majority line (kappa), or 2/3 if that is lower."""
    majority = report.majority_line
    control = _TWO_THIRDS if policy.critical_when_entity_can_control else None
    halt = _ONE_THIRD if policy.warning_when_entity_can_halt else None
    if bft:
        return majority if halt is None else halt, control
    return halt, majority if control is None else min(majority, control)


def overall(verdicts: Sequence[Verdict]) -> Status:
    return max((v.status for v in verdicts), default=Status.UNKNOWN)


def render_text(verdicts: Sequence[Verdict]) -> str:
    """One Nagios line per chain: `QUORUMWATCH STATUS - chain: reasons | perfdata`."""
    lines = []
    for verdict in verdicts:
        summary = "; ".join(verdict.reasons) or "no coalition threat, quorum live"
        lines.append(
            f"QUORUMWATCH {verdict.status.name} - {verdict.report.chain}: {summary}"
            f" | {_perfdata(verdict)}"
        )
    return "\n".join(lines)


def _perfdata(verdict: Verdict) -> str:
    report, policy = verdict.report, verdict.policy
    items: list[str] = []
    analysis = report.analysis
    if analysis is not None:
        for grouping, c in analysis.groupings.items():
            for threshold in Threshold:
                items.append(f"nakamoto_{threshold}_{grouping}={c.nakamoto[threshold]};;;1")
        largest = analysis.entities[0].ratio
        warn, crit = (
            "" if line is None else f"{float(line):.6f}"
            for line in (verdict.entity_warning_line, verdict.entity_critical_line)
        )
        items.append(f"largest_entity_ratio={largest:.6f};{warn};{crit};0;1")
        if report.liveness_known:
            margin = analysis.liveness_margin
            items.append(f"liveness_margin={margin:.6f};{policy.liveness_margin_warning}:;0:")
        if report.totals is not None:
            counts = _status_counts(report)
            items.extend(f"validators_{status}={counts[status]};;;0" for status in counts)
    items.append(f"endpoints_healthy={report.healthy_endpoints};2:;1:;0;{len(report.endpoints)}")
    for e in report.endpoints:
        if e.last_latency_seconds is not None:
            items.append(f"'latency_{e.name}'={e.last_latency_seconds:.3f}s;;;0")
    items.append(f"poll_duration={report.poll_duration_seconds:.3f}s;;;0")
    return " ".join(items)


def _status_counts(report: ChainReport) -> dict[str, int]:
    totals = report.totals.validators if report.totals else {}
    return {status.value: totals.get(status, 0) for status in ValidatorStatus}


def render_json(verdicts: Sequence[Verdict]) -> str:
    """The documented `--once --format json` document."""
    return json.dumps(
        {"status": overall(verdicts).name, "chains": [_chain_json(v) for v in verdicts]},
        ensure_ascii=False,
    )


def _chain_json(verdict: Verdict) -> dict[str, Any]:
    report, analysis = verdict.report, verdict.report.analysis
    document: dict[str, Any] = {
        "chain": report.chain,
        "status": verdict.status.name,
        "reasons": list(verdict.reasons),
        "nakamoto": None,
        "largest_entity": None,
        "validators": None,
        "liveness_margin_ratio": None,
        "endpoints": [
            {"name": e.name, "up": e.up, "latency_seconds": e.last_latency_seconds}
            for e in report.endpoints
        ],
    }
    if analysis is not None:
        document["nakamoto"] = {
            grouping.value: {t.value: concentration.nakamoto[t] for t in Threshold}
            for grouping, concentration in analysis.groupings.items()
        }
        largest = analysis.entities[0]
        document["largest_entity"] = {
            "name": safe_text(largest.name, max_length=256),
            "stake_ratio": largest.ratio,
        }
        document["validators"] = _status_counts(report)
        if report.liveness_known:
            document["liveness_margin_ratio"] = analysis.liveness_margin
    return document


def unknown(message: str, output_format: str) -> str:
    """The probe's own failure (bad config, internal error), in the requested format."""
    message = safe_text(message, max_length=1024)
    if output_format == "json":
        return json.dumps({"status": "UNKNOWN", "error": message, "chains": []})
    return f"QUORUMWATCH UNKNOWN - {message}"
