"""Jail statistics, pure: per-validator jail counts and timings, and the unjail-delay buckets."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

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
    """Monotonic jail counters of one chain, kept across restarts and event pruning.

    Also what some events add to them (`counted`): the counters only ever grow by `+`.
    """

    jails: int  # all jail events of the chain, inferred included
    validator_jails: Mapping[str, int]  # address -> jail events
    unjail_delay_bucket_counts: tuple[int, ...]  # cumulative, one per UNJAIL_DELAY_BUCKETS bound
    unjail_delay_sum: float
    unjail_delay_count: int

    @classmethod
    def zero(cls) -> JailCounters:
        """The counters of a chain never seen."""
        return cls(0, MappingProxyType({}), (0,) * len(UNJAIL_DELAY_BUCKETS), 0.0, 0)

    @classmethod
    def counted(cls, events: Iterable[ValidatorEvent]) -> JailCounters:
        """What `events` (each newly recorded) add: a jail counts for the chain and its
        validator, inferred included; an unjail with a delay falls in every bucket whose bound
        the delay does not exceed, and adds to the delay sum and count. Other events, and
        unjails without a delay, count nothing."""
        jails: dict[str, int] = {}
        buckets = [0] * len(UNJAIL_DELAY_BUCKETS)
        delay_sum: float = 0
        delay_count = 0
        for event in events:
            if event.kind is EventKind.JAILED:
                jails[event.address] = jails.get(event.address, 0) + 1
            elif event.kind is EventKind.UNJAILED and event.unjail_delay_seconds is not None:
                delay = event.unjail_delay_seconds
                for i, bound in enumerate(UNJAIL_DELAY_BUCKETS):
                    buckets[i] += delay <= bound
                delay_sum += delay
                delay_count += 1
        return cls(
            jails=sum(jails.values()),
            validator_jails=MappingProxyType(dict(sorted(jails.items()))),
            unjail_delay_bucket_counts=tuple(buckets),
            unjail_delay_sum=delay_sum,
            unjail_delay_count=delay_count,
        )

    def __add__(self, other: JailCounters) -> JailCounters:
        validator_jails = dict(self.validator_jails)
        for address, jails in other.validator_jails.items():
            validator_jails[address] = validator_jails.get(address, 0) + jails
        return JailCounters(
            jails=self.jails + other.jails,
            validator_jails=MappingProxyType(dict(sorted(validator_jails.items()))),
            unjail_delay_bucket_counts=tuple(
                a + b
                for a, b in zip(
                    self.unjail_delay_bucket_counts, other.unjail_delay_bucket_counts, strict=True
                )
            ),
            unjail_delay_sum=self.unjail_delay_sum + other.unjail_delay_sum,
            unjail_delay_count=self.unjail_delay_count + other.unjail_delay_count,
        )
