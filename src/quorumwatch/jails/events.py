"""Validator events, pure: what changed between consecutive valid snapshots of a chain.

Events are derived only by comparing a valid snapshot with the last valid state (never from
an invalid answer). A transition seen across a gap (failed polls or a daemon down longer than
two poll intervals in between) is real but its time is uncertain: it is recorded with
`after_gap`, and no jail→unjail cycle is inferred across a gap.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quorumwatch.models import Validator


class EventKind(enum.StrEnum):
    JAILED = "jailed"
    UNJAILED = "unjailed"
    JOINED = "joined"
    LEFT = "left"
    ACTIVATED = "activated"
    DEACTIVATED = "deactivated"


@dataclass(frozen=True, slots=True)
class TrackedValidator:
    """What is remembered of a validator between polls (and across restarts)."""

    address: str
    name: str
    stake: int
    active: bool
    jailed: bool
    unjailable_after_ms: int | None
    jailed_since: float | None  # observation time of the jail; None when not jailed


@dataclass(frozen=True, slots=True)
class ChainState:
    observed_at: float
    validators: Mapping[str, TrackedValidator]


@dataclass(frozen=True, slots=True)
class ValidatorEvent:
    """One change in a validator's state, observed at `observed_at`.

    It happened after `previous_observed_at` (the last valid snapshot before it). `inferred`
    marks a jail→unjail cycle that fell between two polls; `after_gap` a change seen across
    a gap, whose timing is uncertain.
    """

    event_id: str
    chain: str
    address: str
    name: str
    kind: EventKind
    observed_at: float
    previous_observed_at: float
    inferred: bool
    after_gap: bool
    stake: int
    unjailable_after_ms: int | None
    jail_seconds: float | None = None  # on unjailed: observed length of the jail
    unjail_delay_seconds: float | None = None  # on unjailed: from unjailableAfter to unjail


def _event_id(chain: str, address: str, kind: EventKind, observed_at: float, seq: int) -> str:
    # Deterministic: re-deriving the same change after a crash yields the same id.
    key = f"{chain}|{address}|{kind}|{observed_at!r}|{seq}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def track(
    chain: str,
    previous: ChainState | None,
    validators: Sequence[Validator],
    observed_at: float,
    *,
    gap: bool,
) -> tuple[ChainState, list[ValidatorEvent]]:
    """The new state, and the events between `previous` and this valid snapshot.

    Without a previous state (a first run) the snapshot is the baseline: no events, and
    validators already jailed get `jailed_since` = now, the earliest time known.
    """
    current: dict[str, TrackedValidator] = {}
    events: list[ValidatorEvent] = []
    before = previous.validators if previous is not None else {}
    since = previous.observed_at if previous is not None else observed_at

    def emit(
        v: TrackedValidator,
        kind: EventKind,
        *,
        inferred: bool = False,
        measures: Mapping[str, float] = MappingProxyType({}),
    ) -> None:
        seq = sum(1 for e in events if e.address == v.address and e.kind is kind)
        events.append(
            ValidatorEvent(
                event_id=_event_id(chain, v.address, kind, observed_at, seq),
                chain=chain,
                address=v.address,
                name=v.name,
                kind=kind,
                observed_at=observed_at,
                previous_observed_at=since,
                inferred=inferred,
                after_gap=gap,
                stake=v.stake,
                unjailable_after_ms=v.unjailable_after_ms,
                jail_seconds=measures.get("jail_seconds"),
                unjail_delay_seconds=measures.get("unjail_delay_seconds"),
            )
        )

    for validator in validators:
        old = before.get(validator.address)
        if old is not None and _unchanged(old, validator):
            current[validator.address] = old  # no event can follow from it: keep it as it is
            continue
        jailed_since = None
        if validator.jailed:
            jailed_since = old.jailed_since if old is not None and old.jailed else observed_at
        now = TrackedValidator(
            address=validator.address,
            name=validator.name,
            stake=validator.stake,
            active=validator.in_consensus_set,
            jailed=validator.jailed,
            unjailable_after_ms=validator.unjailable_after_ms,
            jailed_since=jailed_since,
        )
        current[validator.address] = now
        if previous is None:
            continue
        if old is None:
            emit(now, EventKind.JOINED)
            if now.jailed:
                emit(now, EventKind.JAILED)
            continue
        if now.active != old.active:
            emit(now, EventKind.ACTIVATED if now.active else EventKind.DEACTIVATED)
        if now.jailed and not old.jailed:
            emit(now, EventKind.JAILED)
        elif old.jailed and not now.jailed:
            emit(now, EventKind.UNJAILED, measures=_unjail_measures(old, observed_at))
        elif _cycled_between_polls(old, now) and not gap:
            emit(now, EventKind.JAILED, inferred=True)
            emit(now, EventKind.UNJAILED, inferred=True)
    if previous is not None:
        for address, old in before.items():
            if address not in current:
                emit(old, EventKind.LEFT)
    return ChainState(observed_at, MappingProxyType(current)), events


def _unchanged(old: TrackedValidator, validator: Validator) -> bool:
    return (
        old.jailed == validator.jailed
        and old.active == validator.in_consensus_set
        and old.stake == validator.stake
        and old.unjailable_after_ms == validator.unjailable_after_ms
        and old.name == validator.name
    )


def _cycled_between_polls(old: TrackedValidator, now: TrackedValidator) -> bool:
    """Unjailed both times, yet `unjailableAfter` moved on: a jail and an unjail in between."""
    return (
        not old.jailed
        and not now.jailed
        and now.unjailable_after_ms is not None
        and now.unjailable_after_ms != old.unjailable_after_ms
        and (old.unjailable_after_ms is None or now.unjailable_after_ms > old.unjailable_after_ms)
    )


def _unjail_measures(old: TrackedValidator, observed_at: float) -> dict[str, float]:
    measures: dict[str, float] = {}
    if old.jailed_since is not None:
        measures["jail_seconds"] = observed_at - old.jailed_since
    if old.unjailable_after_ms is not None:
        measures["unjail_delay_seconds"] = max(0.0, observed_at - old.unjailable_after_ms / 1000)
    return measures
