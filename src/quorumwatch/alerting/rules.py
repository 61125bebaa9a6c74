"""Alert rules, pure: (previous alert state, a chain report) → new state and firing/resolved events.

Each rule yields the conditions that hold now. A condition becomes pending, then fires once it
has held for the rule's `for` duration; it resolves when it no longer holds. A firing share or
margin alert holds until its value is `hysteresis_ratio` back across the line, so a value
flapping at a threshold pages once. Rules that need a valid snapshot are not evaluated while
the chain is down: their state carries over unchanged, neither resolved nor re-fired.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

from quorumwatch.alerting.model import (
    ALWAYS_JUDGED,
    NEEDS_SNAPSHOT,
    AlertEvent,
    AlertState,
    AlertStatus,
    Severity,
    fingerprint,
)
from quorumwatch.analysis import Grouping, Threshold
from quorumwatch.chains.kinds import KINDS
from quorumwatch.columns import JAILED_CODES
from quorumwatch.entities import validator_key
from quorumwatch.labels import safe_text
from quorumwatch.report import holds_majority

if TYPE_CHECKING:
    from quorumwatch.config import AlertSettings, ChainSettings, JailStormSettings
    from quorumwatch.report import ChainReport

DEFAULT_FOR_SECONDS: Mapping[str, float] = MappingProxyType(
    {
        "EntityCanControl": 0.0,
        "EntityCanHalt": 0.0,
        "ChainHalted": 0.0,
        "LivenessMarginLow": 300.0,
        "NakamotoCoefficientDropped": 0.0,
        "ValidatorJailed": 0.0,
        "JailStorm": 0.0,
        "FinalityLagging": 0.0,
        "EntityHasMajority": 0.0,
        "BlockAuthoritiesLow": 0.0,
        "EndpointDown": 300.0,
        "AllEndpointsDown": 60.0,
        "SingleEndpoint": 600.0,
        "DataStale": 0.0,
    }
)
_ONE_THIRD = Fraction(1, 3)
_TWO_THIRDS = Fraction(2, 3)
# Why a BFT line is only a share on a Bittensor subnet, for the alerts drawn at 1/3 and 2/3.
_SUBNET_NOTE = (
    "A subnet's validators author no blocks (the chain's Aura authorities do), so this neither"
    " halts nor takes over the chain: on a subnet, EntityHasMajority (over Yuma's kappa) is the"
    " alert that matters."
)


@dataclass(frozen=True, slots=True)
class Condition:
    """An alert instance whose condition holds now."""

    alert: str
    severity: Severity
    labels: Mapping[str, str]
    summary: str
    description: str
    value: float | None = None
    threshold: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.alert, self.labels)


@dataclass(frozen=True, slots=True)
class RuleMemory:
    """What the rules remember between polls beyond alert state."""

    last_halt_coefficient: int | None = None


def conditions(
    report: ChainReport,
    chain: ChainSettings,
    previous: Mapping[str, AlertState],
    memory: RuleMemory,
    now: float,
) -> tuple[list[Condition], frozenset[str], RuleMemory]:
    """The conditions that hold, the rules judged, and the updated memory.

    `previous` is the alert state by fingerprint: a firing alert holds with hysteresis.
    """
    settings = chain.alerts
    firing = {key: state for key, state in previous.items() if state.firing}
    found: list[Condition] = []
    judged = set(ALWAYS_JUDGED)
    found += _endpoint_conditions(report)
    found += _staleness(report, settings, chain.poll_interval_seconds, now)
    if report.analysis is not None:
        judged |= NEEDS_SNAPSHOT
        if report.jails is None:
            # No jail history this poll (store failure): a storm is unknown, not over.
            judged.discard("JailStorm")
        bft = KINDS[chain.kind].validators_author_blocks
        found += _concentration(report, settings, firing, bft=bft)
        found += _majority(report, settings, firing, bft=bft)
        found += _authorities(report, settings)
        if report.liveness_known:
            found += _liveness(report, settings, firing)
        else:  # who is voting is unknown: neither halted nor live
            judged -= {"ChainHalted", "LivenessMarginLow"}
        dropped, memory = _nakamoto_dropped(report, settings, previous, memory, bft=bft)
        found += dropped
        found += _jails(report, settings, chain.jail_storm)
        found += _finality(report, settings)
    return found, frozenset(judged), memory


def _labels(report: ChainReport, **extra: str) -> Mapping[str, str]:
    return MappingProxyType({"chain": report.chain, **{k: safe_text(v) for k, v in extra.items()}})


def _held(firing: Mapping[str, AlertState], alert: str, labels: Mapping[str, str]) -> bool:
    return fingerprint(alert, labels) in firing


def _concentration(
    report: ChainReport, settings: AlertSettings, firing: Mapping[str, AlertState], *, bft: bool
) -> list[Condition]:
    """Entities at the BFT lines: at least 1/3 halts the chain, more than 2/3 controls it. Where
    the validators author no blocks (`bft` false: a Bittensor subnet) they are only shares, and
    the texts say so."""
    assert report.analysis is not None
    found = []
    relief = Fraction(settings.hysteresis_ratio).limit_denominator(10**9)
    total = report.analysis.total_stake
    # Below the halting line less the hysteresis an entity can neither reach nor hold either
    # alert: skip it before formatting anything (1.1M Ethereum validators make 134,000
    # entities, whose labels took seconds on the event loop every poll).
    floor = _ONE_THIRD - relief
    for entity in report.analysis.entities:
        if entity.stake * floor.denominator < floor.numerator * total:
            continue
        share = Fraction(entity.stake, total)
        name = safe_text(entity.name)
        for alert, severity, line, verb, bound, reached in (
            (
                "EntityCanControl",
                Severity.CRITICAL,
                _TWO_THIRDS,
                "control",
                "more than 2/3",
                entity.can_control,
            ),
            (
                "EntityCanHalt",
                Severity.WARNING,
                _ONE_THIRD,
                "halt",
                "at least 1/3",
                entity.can_halt,
            ),
        ):
            labels = _labels(report, entity=entity.name)
            # Resolves only once strictly below the line less the hysteresis.
            if reached or (_held(firing, alert, labels) and share >= line - relief):
                held = f"holds {float(share):.2%} of consensus stake on"
                if bft:
                    summary = f"One entity can {verb} {report.chain}."
                    description = f"Entity {name} {held} {report.chain}, {bound}."
                else:
                    summary = (
                        f"One entity holds {bound} of subnet {report.chain}'s validator stake."
                    )
                    description = (
                        f"Entity {name} {held} subnet {report.chain}, {bound}. {_SUBNET_NOTE}"
                    )
                found.append(
                    Condition(
                        alert,
                        severity,
                        labels,
                        summary=summary,
                        description=description,
                        value=float(share),
                        threshold=float(line),
                    )
                )
    return found


def _majority(
    report: ChainReport, settings: AlertSettings, firing: Mapping[str, AlertState], *, bft: bool
) -> list[Condition]:
    """One entity above the chain's consensus threshold (strictly). Critical where the
    validators author no blocks (a Bittensor subnet: the stake over Yuma's kappa sets its
    incentives alone), a warning on a BFT chain, where 2/3 commits and 1/3 halts."""
    assert report.analysis is not None
    line = report.majority_line
    relief = Fraction(settings.hysteresis_ratio).limit_denominator(10**9)
    total = report.analysis.total_stake
    severity = Severity.WARNING if bft else Severity.CRITICAL
    stated = "the chain's consensus threshold" if report.consensus_threshold else "one half"
    # On a subnet, Yuma takes the stake-weighted median of the validators' weights.
    outcome = "" if bft else ": it sets the subnet's incentives alone"
    found = []
    floor = line - relief  # below it an entity can neither reach nor hold the alert
    for entity in report.analysis.entities:
        if entity.stake * floor.denominator < floor.numerator * total:
            continue
        labels = _labels(report, entity=entity.name)
        share = Fraction(entity.stake, total)
        held = _held(firing, "EntityHasMajority", labels) and share >= floor
        if holds_majority(entity.stake, total, line) or held:
            found.append(
                Condition(
                    "EntityHasMajority",
                    severity,
                    labels,
                    summary=f"One entity holds the majority on {report.chain}.",
                    description=(
                        f"Entity {safe_text(entity.name)} holds {float(share):.2%} of consensus"
                        f" stake on {report.chain}, more than {stated} ({100 * float(line):.5g}%)"
                        f"{outcome}."
                    ),
                    value=float(share),
                    threshold=float(line),
                )
            )
    return found


def _authorities(report: ChainReport, settings: AlertSettings) -> list[Condition]:
    count = report.block_authorities
    minimum = settings.block_authorities_min
    if count is None or count >= minimum:
        return []
    return [
        Condition(
            "BlockAuthoritiesLow",
            Severity.CRITICAL,
            _labels(report),
            summary=f"Few block authorities on {report.chain}.",
            description=(
                f"{count} authorities author blocks on {report.chain}, fewer than {minimum}:"
                " block production rests on fewer keys than expected."
            ),
            value=float(count),
            threshold=float(minimum),
        )
    ]


def _liveness(
    report: ChainReport, settings: AlertSettings, firing: Mapping[str, AlertState]
) -> list[Condition]:
    assert report.analysis is not None
    analysis = report.analysis
    margin = analysis.liveness_margin
    online = analysis.online_stake / analysis.total_stake
    labels = _labels(report)
    found = []
    halted = 3 * analysis.online_stake <= 2 * analysis.total_stake
    if halted or (_held(firing, "ChainHalted", labels) and margin <= settings.hysteresis_ratio):
        found.append(
            Condition(
                "ChainHalted",
                Severity.CRITICAL,
                labels,
                summary=f"{report.chain} cannot commit: online stake is at most 2/3.",
                description=f"Online stake is {online:.2%} of consensus stake on {report.chain}.",
                value=online,
                threshold=2 / 3,
            )
        )
    low = settings.liveness_margin_min
    held = _held(firing, "LivenessMarginLow", labels)
    if margin < low or (held and margin < low + settings.hysteresis_ratio):
        found.append(
            Condition(
                "LivenessMarginLow",
                Severity.WARNING,
                labels,
                summary=f"{report.chain} is close to halting.",
                description=(
                    f"Online stake is {online:.2%} of consensus stake on {report.chain}: "
                    f"{margin:.4f} above the 2/3 quorum, below {low}."
                ),
                value=margin,
                threshold=low,
            )
        )
    return found


def _nakamoto_dropped(
    report: ChainReport,
    settings: AlertSettings,
    previous: Mapping[str, AlertState],
    memory: RuleMemory,
    *,
    bft: bool,
) -> tuple[list[Condition], RuleMemory]:
    """Fires when the entity halt coefficient falls (or is below the configured minimum),
    and holds until it is back at the level it fell from.

    The level is kept in the alert state, pending or firing: a fall that must wait out a
    `for` duration is still a fall at the next poll, and a restart (fresh memory) keeps it.
    """
    assert report.analysis is not None
    current = report.analysis.groupings[Grouping.ENTITY].nakamoto[Threshold.HALT]
    labels = _labels(report)
    known = previous.get(fingerprint("NakamotoCoefficientDropped", labels))
    last = memory.last_halt_coefficient
    levels = []
    if known is not None and known.threshold is not None and current < known.threshold:
        levels.append(int(known.threshold))
    if last is not None and current < last:
        levels.append(last)
    if current < settings.nakamoto_halt_min:
        levels.append(settings.nakamoto_halt_min)
    found = []
    if levels:
        level = max(levels)
        held = f"{current} entities together hold 1/3 of consensus stake on"
        if bft:
            summary = f"Fewer entities can now halt {report.chain}."
            description = f"{held} {report.chain}, below {level}."
        else:
            summary = f"Fewer entities now hold 1/3 of subnet {report.chain}'s validator stake."
            description = f"{held} subnet {report.chain}, below {level}. {_SUBNET_NOTE}"
        found.append(
            Condition(
                "NakamotoCoefficientDropped",
                Severity.WARNING,
                labels,
                summary=summary,
                description=description,
                value=float(current),
                threshold=float(level),
            )
        )
    return found, RuleMemory(last_halt_coefficient=current)


def _jails(
    report: ChainReport, settings: AlertSettings, storm: JailStormSettings
) -> list[Condition]:
    found = []
    watched = {validator_key(address) for address in settings.watched_validators}
    if report.validator_set is not None:
        table = report.validator_set.table
        for v in table.rows(table.rows_with_status(*JAILED_CODES).tolist()):
            entity = report.entity_of.get(v.address, v.address)
            found.append(
                Condition(
                    "ValidatorJailed",
                    Severity.WARNING if validator_key(v.address) in watched else Severity.INFO,
                    _labels(report, validator=v.address, entity=entity),
                    summary=f"A validator is jailed on {report.chain}.",
                    description=f"Validator {safe_text(v.name)} ({v.address}) is jailed.",
                )
            )
    if report.jails is not None and report.jails.storm:
        found.append(
            Condition(
                "JailStorm",
                Severity.WARNING,
                _labels(report),
                summary=f"Many validators were jailed at once on {report.chain}.",
                description=(
                    f"At least {storm.min_validators} validators or {storm.min_stake_ratio:.0%} "
                    f"of consensus stake jailed within {storm.window_seconds:.0f}s on "
                    f"{report.chain} ({report.jails.windows.get('1h', 0)} jail events in the "
                    "last hour): more likely the network than one operator."
                ),
            )
        )
    return found


def _finality(report: ChainReport, settings: AlertSettings) -> list[Condition]:
    lag = report.finality_lag_epochs
    limit = settings.finality_lag_max_epochs
    if lag is None or lag <= limit:
        return []
    return [
        Condition(
            "FinalityLagging",
            Severity.CRITICAL,
            _labels(report),
            summary=f"{report.chain} is not finalizing.",
            description=(
                f"The last finalized checkpoint on {report.chain} is {lag} epochs behind the "
                f"head, more than {limit}: finality has stopped (at least 1/3 of the stake is "
                "not attesting) and the inactivity leak is draining the offline validators."
            ),
            value=float(lag),
            threshold=float(limit),
        )
    ]


def _endpoint_conditions(report: ChainReport) -> list[Condition]:
    found = []
    for e in report.endpoints:
        if not e.up:
            found.append(
                Condition(
                    "EndpointDown",
                    Severity.WARNING,
                    _labels(report, endpoint=e.name),
                    summary=f"An API endpoint of {report.chain} is down.",
                    description=f"Endpoint {e.name} of {report.chain} is not answering usefully.",
                )
            )
    healthy = report.healthy_endpoints
    if healthy == 0:
        found.append(
            Condition(
                "AllEndpointsDown",
                Severity.CRITICAL,
                _labels(report),
                summary=f"No API endpoint of {report.chain} is up.",
                description=f"All {len(report.endpoints)} endpoints of {report.chain} are down.",
                value=0.0,
            )
        )
    elif healthy == 1:
        found.append(
            Condition(
                "SingleEndpoint",
                Severity.WARNING,
                _labels(report),
                summary=f"{report.chain} depends on a single API endpoint.",
                description=f"Only 1 of {len(report.endpoints)} endpoints of {report.chain} is up.",
                value=1.0,
                threshold=2.0,
            )
        )
    return found


def _staleness(
    report: ChainReport, settings: AlertSettings, poll_interval_seconds: float, now: float
) -> list[Condition]:
    limit = settings.data_stale_seconds or 3 * poll_interval_seconds
    last = report.last_success_at
    if last is not None and now - last <= limit:
        return []
    # Without any valid set yet (a fresh start), the data is stale only once the monitor
    # has tried for longer than the limit: a restart must not page at once.
    since = report.monitoring_since
    if last is None and since is not None and now - since <= limit:
        return []
    age = None if last is None else now - last
    return [
        Condition(
            "DataStale",
            Severity.WARNING,
            _labels(report),
            summary=f"No valid validator set from {report.chain} recently.",
            description=(
                f"The last valid validator set of {report.chain} is "
                + ("missing." if age is None else f"{age:.0f}s old, more than {limit:.0f}s.")
            ),
            value=age,
            threshold=limit,
        )
    ]


def advance(
    chain: str,
    previous: Iterable[AlertState],
    holding: Iterable[Condition],
    judged: frozenset[str],
    now: float,
    *,
    for_seconds: Mapping[str, float],
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> tuple[list[AlertState], list[AlertEvent]]:
    """Move every alert instance through pending → firing → resolved; return state and events."""
    before = {s.fingerprint: s for s in previous}
    states: list[AlertState] = []
    events: list[AlertEvent] = []
    seen: set[str] = set()
    for condition in holding:
        key = condition.fingerprint
        if key in seen:
            continue
        seen.add(key)
        old = before.get(key)
        state = AlertState(
            fingerprint=key,
            alert=condition.alert,
            severity=condition.severity,
            chain=chain,
            labels=condition.labels,
            pending_since=old.pending_since if old is not None else now,
            starts_at=old.starts_at if old is not None else None,
            summary=condition.summary,
            description=condition.description,
            value=condition.value,
            threshold=condition.threshold,
        )
        wait = for_seconds.get(condition.alert, DEFAULT_FOR_SECONDS.get(condition.alert, 0.0))
        if not state.firing and now - state.pending_since >= wait:
            state = replace(state, starts_at=now)
            events.append(_event(state, AlertStatus.FIRING, now, new_id()))
        states.append(state)
    for key, old in before.items():
        if key in seen:
            continue
        if old.alert not in judged:
            states.append(old)  # not judged this poll (no valid snapshot): unchanged
        elif old.firing:
            events.append(_event(old, AlertStatus.RESOLVED, now, new_id()))
    return states, events


def _event(state: AlertState, status: AlertStatus, now: float, event_id: str) -> AlertEvent:
    assert state.starts_at is not None
    return AlertEvent(
        event_id=event_id,
        fingerprint=state.fingerprint,
        alert=state.alert,
        status=status,
        severity=state.severity,
        chain=state.chain,
        labels=state.labels,
        summary=state.summary,
        description=state.description,
        value=state.value,
        threshold=state.threshold,
        starts_at=state.starts_at,
        ends_at=now if status is AlertStatus.RESOLVED else None,
        observed_at=now,
    )
