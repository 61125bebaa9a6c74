"""What the poll loops publish and the sinks report: one immutable report per chain, the board
that holds the latest of each, the firing alerts, the alert sinks' delivery status and how
the subnet lists of Bittensor chains fare. Pure data; readers (the collector, the status page,
the rules, the probe) never import the I/O side."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quorumwatch.alerting.model import AlertCommit, AlertState
    from quorumwatch.analysis import ChainAnalysis
    from quorumwatch.columns import StatusTotals
    from quorumwatch.jails.statistics import JailCounters
    from quorumwatch.models import Outcome, Validator, ValidatorSet

HALF = Fraction(1, 2)


def holds_majority(stake: int, total: int, line: Fraction) -> bool:
    """Whether `stake` is strictly more than `line` of `total`, exactly (S·d > n·T)."""
    return total > 0 and stake * line.denominator > line.numerator * total


@dataclass(frozen=True, slots=True)
class EndpointView:
    """An immutable copy of one endpoint's accounting, for exposition; the pool makes it."""

    name: str
    up: bool
    requests: Mapping[Outcome, int]
    latency_bucket_counts: tuple[int, ...]  # cumulative, one per LATENCY_BUCKETS bound
    latency_sum: float
    latency_count: int
    last_latency_seconds: float | None
    availability: Mapping[str, float | None]
    clock_skew_seconds: float | None


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What one poll of one chain established. `analysis` is None unless `up`."""

    chain: str
    polled_at: float
    up: bool
    validator_set: ValidatorSet | None
    analysis: ChainAnalysis | None
    entity_of: Mapping[str, str]
    failures: tuple[str, ...]
    last_success_at: float | None
    endpoints: tuple[EndpointView, ...]
    rejections: Mapping[str, int]
    poll_duration_seconds: float
    totals: StatusTotals | None = None
    exported_validators: tuple[Validator, ...] = ()
    jails: JailReport | None = None
    monitoring_since: float | None = None  # when this process began polling the chain
    endpoints_disagree: bool | None = None  # None: no second set at the same height this poll
    finality_lag_epochs: int | None = None  # head epoch − finalized epoch; None: not known
    # The share of stake the chain says decides consensus (Bittensor: kappa); None: not stated.
    consensus_threshold: Fraction | None = None
    block_authorities: int | None = None  # Aura authorities (Bittensor); None: not known
    # Per entity of the configured and built-in map, how many of its members this poll's set
    # lacks; empty when the source attributed the set itself, or the chain is down.
    absent_members: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def liveness_known(self) -> bool:
        """Whether this poll's set tells who is voting, so that the liveness margin holds."""
        return self.validator_set is not None and self.validator_set.liveness_known

    @property
    def majority_line(self) -> Fraction:
        """The share above which one entity decides consensus alone: the chain's own
        threshold where it states one, else one half."""
        return HALF if self.consensus_threshold is None else self.consensus_threshold

    @property
    def healthy_endpoints(self) -> int:
        return sum(e.up for e in self.endpoints)


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """Delivery of alert events, kept current by the sinks for exposition."""

    outbox_events: int
    outbox_oldest_created_at: float | None  # when the oldest pending event was committed
    outbox_dropped_events: int  # dropped from the full outbox, ever (kept across restarts)
    events_generated: Mapping[tuple[str, str], int]  # (alert, status) -> count
    mqtt_connected: bool | None  # None: MQTT not enabled
    alertmanager_failures: int | None  # None: Alertmanager not configured

    @property
    def outbox_oldest_age_seconds(self) -> float | None:
        """The oldest pending event's age as of now (the scrape); None when none is pending."""
        if self.outbox_oldest_created_at is None:
            return None
        return max(0.0, time.time() - self.outbox_oldest_created_at)


@dataclass(frozen=True, slots=True)
class SubnetListing:
    """How the listing of a Bittensor chain of `netuids = "all"` (the chain as configured,
    `tao`, not one of its subnets) fares while the daemon runs."""

    chain: str
    last_success_at: float  # the listing at start, or the last re-list that succeeded
    failures: int  # re-lists that failed since the daemon started


@dataclass(slots=True)
class ReportBoard:
    """The latest report per chain, each chain's firing alerts and each subnet listing;
    replaced whole, so a reader sees one consistent view."""

    reports: Mapping[str, ChainReport] = field(default_factory=dict)
    sinks: SinkStatus | None = None
    firing: Mapping[str, tuple[AlertState, ...]] = field(default_factory=dict)
    subnet_listings: Mapping[str, SubnetListing] = field(default_factory=dict)

    def publish(self, report: ChainReport) -> None:
        self.reports = MappingProxyType({**self.reports, report.chain: report})

    def withdraw(self, chain: str) -> None:
        """The chain is watched no more (a deregistered subnet): its report and firing alerts
        leave the board, and with them its series and its place on the status page."""
        self.reports = MappingProxyType({c: r for c, r in self.reports.items() if c != chain})
        self.firing = MappingProxyType({c: a for c, a in self.firing.items() if c != chain})

    def listed(self, listing: SubnetListing) -> None:
        self.subnet_listings = MappingProxyType({**self.subnet_listings, listing.chain: listing})

    def alerts_committed(self, commit: AlertCommit) -> None:
        """An alert listener: the chain's firing alerts, exactly as the evaluator committed them
        (the firing set MQTT retains and Alertmanager is sent). An evaluation that changed
        none leaves the mapping as it is: a new one would make /metrics render anew."""
        firing = tuple(commit.firing)
        if commit.chain not in self.firing or self.firing[commit.chain] != firing:
            self.firing = MappingProxyType({**self.firing, commit.chain: firing})


@dataclass(frozen=True, slots=True)
class JailReport:
    """The jail history of a chain as of one poll."""

    counters: JailCounters
    windows: Mapping[str, int]  # jail events per window
    storm: bool
    jailed_since: Mapping[str, float]  # currently jailed: address -> observed jail start
    names: Mapping[str, str]  # address -> last known name, for validators with jails
