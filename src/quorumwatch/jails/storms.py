"""Jail storms, pure: whether the validators jailed within a window make a storm."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from quorumwatch.jails.events import EventKind, ValidatorEvent

if TYPE_CHECKING:
    from quorumwatch.config import JailStormSettings


def jailed_in_window(
    events: Iterable[ValidatorEvent], start: float, total_stake: int
) -> dict[str, Fraction]:
    """Validators jailed at or after `start`, with their share of the consensus stake when
    jailed (latest jail): their stake over the chain's total at that poll, or over
    `total_stake` for an event stored without one. No share of a total of zero."""
    jailed: dict[str, Fraction] = {}
    for event in events:
        if event.kind is EventKind.JAILED and event.observed_at >= start:
            total = total_stake if event.total_stake is None else event.total_stake
            jailed[event.address] = Fraction(event.stake, total) if total > 0 else Fraction(0)
    return jailed


def is_storm(jailed: Mapping[str, Fraction], settings: JailStormSettings) -> bool:
    """Whether the validators jailed within the storm window, with their shares of the stake
    when jailed, make a storm."""
    if len(jailed) >= settings.min_validators:
        return True
    # Exact: the configured ratio as the decimal it was written as (0.07, not the binary float
    # just above it), so exactly X % of the stake is a storm, even for stakes above 2**53.
    return sum(jailed.values(), Fraction(0)) >= Fraction(repr(settings.min_stake_ratio))
