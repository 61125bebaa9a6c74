"""Jail storms, pure: whether the validators jailed within a window make a storm."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from quorumwatch.jails.events import EventKind, ValidatorEvent

if TYPE_CHECKING:
    from quorumwatch.config import JailStormSettings


def jailed_in_window(events: Iterable[ValidatorEvent], start: float) -> dict[str, int]:
    """Validators jailed at or after `start`, with their stake when jailed (latest jail)."""
    jailed: dict[str, int] = {}
    for event in events:
        if event.kind is EventKind.JAILED and event.observed_at >= start:
            jailed[event.address] = event.stake
    return jailed


def is_storm(jailed: Mapping[str, int], total_stake: int, settings: JailStormSettings) -> bool:
    """Whether the validators jailed within the storm window make a storm."""
    if len(jailed) >= settings.min_validators:
        return True
    if total_stake <= 0:
        return False
    # Exact: the configured ratio as the decimal it was written as (0.07, not the binary float
    # just above it), so exactly X % of the stake is a storm, even for stakes above 2**53.
    ratio = Fraction(repr(settings.min_stake_ratio))
    return sum(jailed.values()) * ratio.denominator >= ratio.numerator * total_stake
