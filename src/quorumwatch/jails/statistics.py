"""Jail statistics, pure: per-validator jail counts and timings, and the unjail-delay buckets."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from quorumwatch.jails.events import EventKind, ValidatorEvent

UNJAIL_DELAY_BUCKETS: tuple[float, ...] = (0, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True, slots=True)
class ValidatorJailStats:
    address: str
    name: str
    jails: int
    inferred_jails: int
    mean_seconds_between_jails: float | None
    median_seconds_to_unjail: float | None
    last_jailed_at: float | None


def jail_statistics(events: Iterable[ValidatorEvent]) -> list[ValidatorJailStats]:
    """Per validator with at least one jail: counts, mean time between jails and median time
    to unjail (observed jail lengths; inferred cycles have none). Most jailed first."""
    jail_times: dict[str, list[float]] = {}
    inferred: dict[str, int] = {}
    durations: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e.observed_at):
        names[event.address] = event.name
        if event.kind is EventKind.JAILED:
            jail_times.setdefault(event.address, []).append(event.observed_at)
            inferred[event.address] = inferred.get(event.address, 0) + int(event.inferred)
        elif event.kind is EventKind.UNJAILED and event.jail_seconds is not None:
            durations.setdefault(event.address, []).append(event.jail_seconds)
    stats = []
    for address, times in jail_times.items():
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        stats.append(
            ValidatorJailStats(
                address=address,
                name=names[address],
                jails=len(times),
                inferred_jails=inferred.get(address, 0),
                mean_seconds_between_jails=statistics.fmean(gaps) if gaps else None,
                median_seconds_to_unjail=(
                    statistics.median(durations[address]) if address in durations else None
                ),
                last_jailed_at=times[-1],
            )
        )
    return sorted(stats, key=lambda s: (-s.jails, s.address))


@dataclass(frozen=True, slots=True)
class JailCounters:
    """Monotonic jail counters of one chain, kept across restarts and event pruning."""

    jails: int  # all jail events of the chain, inferred included
    validator_jails: Mapping[str, int]  # address -> jail events
    unjail_delay_bucket_counts: tuple[int, ...]  # cumulative, one per UNJAIL_DELAY_BUCKETS bound
    unjail_delay_sum: float
    unjail_delay_count: int
