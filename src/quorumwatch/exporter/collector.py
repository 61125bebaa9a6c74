"""Prometheus exposition of the latest reports: computed at poll time, rendered at scrape time.

A scrape never calls an API. Values come from the last poll of each chain (they are
cached, as the HELP texts say); when a chain's last poll gave no valid set, its analysis
series are absent rather than 0 or stale.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from quorumwatch import __version__
from quorumwatch.analysis import TOP_N, Threshold
from quorumwatch.endpoints import LATENCY_BUCKETS
from quorumwatch.jails.statistics import UNJAIL_DELAY_BUCKETS
from quorumwatch.labels import safe_text
from quorumwatch.models import Outcome, ValidatorStatus
from quorumwatch.report import holds_majority

if TYPE_CHECKING:
    from quorumwatch.report import ChainReport, ReportBoard, SinkStatus, SubnetListing

_CACHED = " Cached from the last poll."


class QuorumwatchCollector:
    """Satisfies prometheus_client's Collector protocol over a ReportBoard."""

    def __init__(
        self,
        board: ReportBoard,
        max_series: Mapping[str, int],
        clock: Callable[[], float] = time.time,
        *,
        without_validator_series: Collection[str] = frozenset(),
    ) -> None:
        self._board = board
        self._max_series = max_series  # chain -> `max_validator_series`: per-validator series cap
        self._clock = clock  # only for elapsed times, such as the length of a current jail
        # Chains with `validator_series = false`: their entity and chain series stay.
        self._without_validator_series = without_validator_series

    def describe(self) -> list[Metric]:
        # Avoids the registry calling collect() at registration, before any poll.
        return []

    def collect(self) -> Iterator[Metric]:
        reports = list(self._board.reports.values())  # one read: a consistent view
        yield _build_info()
        yield from chain_metrics(reports)
        yield from decentralization_metrics([r for r in reports if r.up])
        yield from entity_metrics([r for r in reports if r.up], self._max_series)
        off = self._without_validator_series
        yield from validator_metrics([r for r in reports if r.up], without_validator_series=off)
        yield from endpoint_metrics(reports)
        yield from jail_metrics(
            reports, self._max_series, self._clock(), without_validator_series=off
        )
        yield from finality_metrics(reports)
        yield from consensus_metrics(reports)
        if self._board.sinks is not None:
            yield from sink_metrics(self._board.sinks)
        if self._board.subnet_listings:
            yield from subnet_list_metrics(self._board.subnet_listings.values())


def _build_info() -> Metric:
    info = GaugeMetricFamily(
        "quorumwatch_build_info", "quorumwatch version, always 1.", labels=["version"]
    )
    info.add_metric([__version__], 1)
    return info


def chain_metrics(reports: Iterable[ChainReport]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "quorumwatch_chain_up",
        "1 if the last poll gave a valid validator set, else 0.",
        labels=["chain"],
    )
    last_success = GaugeMetricFamily(
        "quorumwatch_last_success_timestamp_seconds",
        "Unix time of the last poll that gave a valid validator set.",
        labels=["chain"],
    )
    duration = GaugeMetricFamily(
        "quorumwatch_poll_duration_seconds",
        "Wall time of the last poll, requests and analysis included.",
        labels=["chain"],
    )
    rejections = CounterMetricFamily(
        "quorumwatch_snapshot_rejections",
        "Answers rejected as invalid data, by reason, since the daemon started.",
        labels=["chain", "reason"],
    )
    validators = GaugeMetricFamily(
        "quorumwatch_validators",
        "Registered validators by disjoint status (jailed counts only as jailed)." + _CACHED,
        labels=["chain", "status"],
    )
    stake = GaugeMetricFamily(
        "quorumwatch_stake_tokens",
        "Stake in display tokens by disjoint validator status." + _CACHED,
        labels=["chain", "status"],
    )
    for report in reports:
        up.add_metric([report.chain], 1 if report.up else 0)
        if report.last_success_at is not None:
            last_success.add_metric([report.chain], report.last_success_at)
        duration.add_metric([report.chain], report.poll_duration_seconds)
        for reason, count in sorted(report.rejections.items()):
            rejections.add_metric([report.chain, reason], count)
        if report.validator_set is None or report.totals is None:
            continue
        for status in ValidatorStatus:
            validators.add_metric([report.chain, status.value], report.totals.validators[status])
            stake.add_metric(
                [report.chain, status.value],
                report.validator_set.to_tokens(report.totals.stake[status]),
            )
    yield from (up, last_success, duration, rejections, validators, stake)


def finality_metrics(reports: Iterable[ChainReport]) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "quorumwatch_finality_lag_epochs",
        "Epochs from the head to the last finalized checkpoint (2 when healthy); only for chains"
        " with finality checkpoints (Ethereum)." + _CACHED,
        labels=["chain"],
    )
    for report in reports:
        if report.finality_lag_epochs is not None:
            lag.add_metric([report.chain], report.finality_lag_epochs)
    yield lag


def consensus_metrics(reports: Iterable[ChainReport]) -> Iterator[Metric]:
    threshold = GaugeMetricFamily(
        "quorumwatch_consensus_threshold_ratio",
        "Share of stake the chain itself says decides consensus, where it states one (Bittensor:"
        " Yuma's kappa, normalised from a u16)." + _CACHED,
        labels=["chain"],
    )
    authorities = GaugeMetricFamily(
        "quorumwatch_block_authorities",
        "Authorities that author blocks, where a fixed set does (Bittensor: Aura.Authorities)."
        + _CACHED,
        labels=["chain"],
    )
    for report in reports:
        if report.consensus_threshold is not None:
            threshold.add_metric([report.chain], float(report.consensus_threshold))
        if report.block_authorities is not None:
            authorities.add_metric([report.chain], report.block_authorities)
    yield from (threshold, authorities)


def subnet_list_metrics(listings: Iterable[SubnetListing]) -> Iterator[Metric]:
    """How the subnet lists of Bittensor chains of `netuids = "all"` fare, labelled with the
    chain as configured (`tao`), whose subnets are chains of their own (`tao-sn1`)."""
    last_success = GaugeMetricFamily(
        "quorumwatch_subnet_list_last_success_timestamp_seconds",
        'Unix time the subnets of a chain of netuids = "all" were last listed (at start, or'
        " re-listed since).",
        labels=["chain"],
    )
    failures = CounterMetricFamily(
        "quorumwatch_subnet_list_failures",
        'Re-lists of the subnets of a chain of netuids = "all" that failed (no endpoint listed'
        " them) since the daemon started; the subnets watched stayed the same.",
        labels=["chain"],
    )
    for listing in listings:
        last_success.add_metric([listing.chain], listing.last_success_at)
        failures.add_metric([listing.chain], listing.failures)
    yield from (last_success, failures)


def decentralization_metrics(reports: Iterable[ChainReport]) -> Iterator[Metric]:
    by_grouping = ["chain", "grouping"]
    nakamoto = GaugeMetricFamily(
        "quorumwatch_nakamoto_coefficient",
        "Fewest holders whose stake meets the threshold: halt 3S>=T, majority 2S>T, "
        "control 3S>2T." + _CACHED,
        labels=["chain", "grouping", "threshold"],
    )
    holders = GaugeMetricFamily(
        "quorumwatch_holders", "Holders with consensus stake." + _CACHED, labels=by_grouping
    )
    largest = GaugeMetricFamily(
        "quorumwatch_largest_stake_ratio",
        "Share of consensus stake held by the largest holder." + _CACHED,
        labels=by_grouping,
    )
    top = GaugeMetricFamily(
        "quorumwatch_top_stake_ratio",
        "Share of consensus stake held by the top N holders." + _CACHED,
        labels=["chain", "grouping", "top"],
    )
    hhi = GaugeMetricFamily(
        "quorumwatch_herfindahl_index",
        "Herfindahl-Hirschman index of consensus stake, 0..1." + _CACHED,
        labels=by_grouping,
    )
    effective = GaugeMetricFamily(
        "quorumwatch_effective_holders",
        "Effective number of holders, 1/HHI." + _CACHED,
        labels=by_grouping,
    )
    gini = GaugeMetricFamily(
        "quorumwatch_gini_coefficient",
        "Gini coefficient of consensus stake over holders with stake." + _CACHED,
        labels=by_grouping,
    )
    entropy = GaugeMetricFamily(
        "quorumwatch_shannon_entropy",
        "Shannon entropy of stake shares, in bits (log base 2)." + _CACHED,
        labels=by_grouping,
    )
    halt_distance = GaugeMetricFamily(
        "quorumwatch_halt_distance",
        "Further online holders whose loss would halt the chain (0: halted)." + _CACHED,
        labels=by_grouping,
    )
    margin = GaugeMetricFamily(
        "quorumwatch_liveness_margin_ratio",
        "Online consensus stake over total, minus 2/3; negative means halted." + _CACHED,
        labels=["chain"],
    )
    for report in reports:
        if report.analysis is None:
            continue
        # Where who is voting is unknown (Ethereum over JSON), so are margin and distance.
        if report.liveness_known:
            margin.add_metric([report.chain], report.analysis.liveness_margin)
        for grouping, c in report.analysis.groupings.items():
            labels = [report.chain, grouping.value]
            for threshold in Threshold:
                nakamoto.add_metric([*labels, threshold.value], c.nakamoto[threshold])
            holders.add_metric(labels, c.holders)
            largest.add_metric(labels, c.largest_ratio)
            for n in TOP_N:
                top.add_metric([*labels, str(n)], c.top_ratios[n])
            hhi.add_metric(labels, c.herfindahl)
            effective.add_metric(labels, c.effective_count)
            gini.add_metric(labels, c.gini)
            entropy.add_metric(labels, c.entropy_bits)
            if report.liveness_known:
                halt_distance.add_metric(labels, c.halt_distance)
    yield from (nakamoto, holders, largest, top, hhi, effective, gini, entropy)
    yield from (halt_distance, margin)


def entity_metrics(
    reports: Iterable[ChainReport], max_series: Mapping[str, int]
) -> Iterator[Metric]:
    unattributed = GaugeMetricFamily(
        "quorumwatch_unattributed_stake_ratio",
        "Share of consensus stake whose validator is in no entity map." + _CACHED,
        labels=["chain"],
    )
    share = GaugeMetricFamily(
        "quorumwatch_entity_stake_ratio",
        "Share of consensus stake held by an entity." + _CACHED,
        labels=["chain", "entity"],
    )
    can_halt = GaugeMetricFamily(
        "quorumwatch_entity_can_halt",
        "1 if the entity alone holds at least 1/3 of consensus stake (3S>=T)." + _CACHED,
        labels=["chain", "entity"],
    )
    can_control = GaugeMetricFamily(
        "quorumwatch_entity_can_control",
        "1 if the entity alone holds more than 2/3 of consensus stake (3S>2T)." + _CACHED,
        labels=["chain", "entity"],
    )
    majority = GaugeMetricFamily(
        "quorumwatch_entity_has_majority",
        "1 if the entity alone holds more than the chain's consensus threshold of consensus stake"
        " (quorumwatch_consensus_threshold_ratio where stated, else 1/2: 2S>T)." + _CACHED,
        labels=["chain", "entity"],
    )
    absent = GaugeMetricFamily(
        "quorumwatch_entity_members_absent",
        "Validators the built-in or configured entity map names for the entity that are not in"
        " the validator set (a renamed or departed member)." + _CACHED,
        labels=["chain", "entity"],
    )
    for report in reports:
        if report.analysis is None:
            continue
        for name, count in sorted(report.absent_members.items()):
            absent.add_metric([report.chain, safe_text(name)], count)
        unattributed.add_metric([report.chain], report.analysis.unattributed_ratio)
        # A validator that is its own entity already has its validator series; it gets entity
        # series only when it alone can halt, so that entity alerts see it too.
        exported = (e for e in report.analysis.entities if e.attributed or e.can_halt)
        for entity in itertools.islice(exported, max_series[report.chain]):
            labels = {"chain": report.chain, "entity": safe_text(entity.name)}
            _add(share, labels, entity.ratio)
            _add(can_halt, labels, int(entity.can_halt))
            _add(can_control, labels, int(entity.can_control))
            line = report.majority_line
            total = report.analysis.total_stake
            _add(majority, labels, int(holds_majority(entity.stake, total, line)))
    yield from (unattributed, share, can_halt, can_control, majority, absent)


def validator_metrics(
    reports: Iterable[ChainReport], *, without_validator_series: Collection[str] = frozenset()
) -> Iterator[Metric]:
    identity = ["chain", "validator", "name", "entity"]
    share = GaugeMetricFamily(
        "quorumwatch_validator_stake_ratio",
        "Validator's share of consensus stake (0 outside the consensus set)." + _CACHED,
        labels=identity,
    )
    jailed = GaugeMetricFamily(
        "quorumwatch_validator_jailed", "1 if the validator is jailed." + _CACHED, labels=identity
    )
    uptime = GaugeMetricFamily(
        "quorumwatch_validator_uptime_ratio",
        "Uptime the chain reports for the validator over a window." + _CACHED,
        labels=[*identity, "window"],
    )
    jail_risk = GaugeMetricFamily(
        "quorumwatch_validator_jail_risk_ratio",
        "Missed blocks in the signing window over the number that gets a validator jailed "
        "(Cosmos); 1 means it is about to be jailed." + _CACHED,
        labels=identity,
    )
    omitted = GaugeMetricFamily(
        "quorumwatch_validator_series_omitted",
        "Validators left out of per-validator series by max_validator_series, or all of them"
        " with validator_series = false.",
        labels=["chain"],
    )
    for report in reports:
        if report.validator_set is None or report.analysis is None:
            continue
        total = report.analysis.total_stake
        exported = () if report.chain in without_validator_series else report.exported_validators
        omitted.add_metric([report.chain], len(report.validator_set.table) - len(exported))
        for v in exported:
            entity = report.entity_of.get(v.address, v.address)
            labels = {
                "chain": report.chain,
                "validator": v.address,
                "name": safe_text(v.name),
                "entity": safe_text(entity),
            }
            _add(share, labels, v.stake / total if v.in_consensus_set else 0.0)
            _add(jailed, labels, int(v.jailed))
            if v.jail_risk_ratio is not None:
                _add(jail_risk, labels, v.jail_risk_ratio)
            for window, ratio in sorted(v.uptime_ratio.items()):
                _add(uptime, {**labels, "window": window}, ratio)
    yield from (share, jailed, uptime, jail_risk, omitted)


def _add(family: Metric, labels: dict[str, str], value: float) -> None:
    """A sample of `family` with `labels` by name: one dict shared by the families of one
    entity or validator, where `add_metric` zips one per family (a large set's thousands of
    series made that a fifth of a rendering)."""
    family.add_sample(family.name, labels, value)


def endpoint_metrics(reports: Iterable[ChainReport]) -> Iterator[Metric]:
    by_endpoint = ["chain", "endpoint"]
    up = GaugeMetricFamily(
        "quorumwatch_endpoint_up",
        "1 if the endpoint's last request succeeded with current data.",
        labels=by_endpoint,
    )
    requests = CounterMetricFamily(
        "quorumwatch_endpoint_requests",
        "Requests to the endpoint by outcome.",
        labels=["chain", "endpoint", "outcome"],
    )
    duration = HistogramMetricFamily(
        "quorumwatch_endpoint_request_duration_seconds",
        "Request latency, failures included.",
        labels=by_endpoint,
    )
    availability = GaugeMetricFamily(
        "quorumwatch_endpoint_availability_ratio",
        "Share of requests that succeeded over the window (absent without requests).",
        labels=["chain", "endpoint", "window"],
    )
    skew = GaugeMetricFamily(
        "quorumwatch_endpoint_clock_skew_seconds",
        "Endpoint clock (exchangeStatus time) minus local clock at the last probe.",
        labels=by_endpoint,
    )
    disagree = GaugeMetricFamily(
        "quorumwatch_endpoints_disagree",
        "1 if two endpoints gave different sets at the same height (compare_endpoints).",
        labels=["chain"],
    )
    healthy = GaugeMetricFamily(
        "quorumwatch_endpoints_healthy",
        "Endpoints up; 1 means a single point of failure.",
        labels=["chain"],
    )
    for report in reports:
        healthy.add_metric([report.chain], report.healthy_endpoints)
        if report.endpoints_disagree is not None:
            disagree.add_metric([report.chain], int(report.endpoints_disagree))
        for e in report.endpoints:
            labels = [report.chain, e.name]
            up.add_metric(labels, int(e.up))
            for outcome in Outcome:
                requests.add_metric([*labels, outcome.value], e.requests.get(outcome, 0))
            buckets = [
                (_bound(b), count)
                for b, count in zip(LATENCY_BUCKETS, e.latency_bucket_counts, strict=True)
            ]
            buckets.append(("+Inf", e.latency_count))
            duration.add_metric(labels, buckets, e.latency_sum)
            for window, ratio in e.availability.items():
                if ratio is not None:
                    availability.add_metric([*labels, window], ratio)
            if e.clock_skew_seconds is not None:
                skew.add_metric(labels, e.clock_skew_seconds)
    yield from (up, requests, duration, availability, skew, healthy, disagree)


def jail_metrics(
    reports: Iterable[ChainReport],
    max_series: Mapping[str, int],
    now: float,
    *,
    without_validator_series: Collection[str] = frozenset(),
) -> Iterator[Metric]:
    identity = ["chain", "validator", "name", "entity"]
    total = CounterMetricFamily(
        "quorumwatch_jail_events",
        "Validators jailed (inferred jail/unjail cycles included), kept across restarts.",
        labels=["chain"],
    )
    per_validator = CounterMetricFamily(
        "quorumwatch_validator_jail_events",
        "Times the validator was jailed, kept across restarts.",
        labels=identity,
    )
    windows = GaugeMetricFamily(
        "quorumwatch_jail_events_in_window",
        "Validators jailed within the window.",
        labels=["chain", "window"],
    )
    jailed_for = GaugeMetricFamily(
        "quorumwatch_validator_jailed_seconds",
        "Length of the validator's current jail, from when it was first seen jailed.",
        labels=identity,
    )
    delay = HistogramMetricFamily(
        "quorumwatch_unjail_delay_seconds",
        "Time from unjailableAfter to the observed unjail.",
        labels=["chain"],
    )
    jailed_stake = GaugeMetricFamily(
        "quorumwatch_jailed_stake_ratio",
        "Share of consensus stake that is jailed." + _CACHED,
        labels=["chain"],
    )
    storm = GaugeMetricFamily(
        "quorumwatch_jail_storm",
        "1 while enough validators or stake were jailed within the storm window.",
        labels=["chain"],
    )
    for report in reports:
        jails = report.jails
        if report.analysis is not None:
            analysis = report.analysis
            offline = analysis.total_stake - analysis.online_stake
            jailed_stake.add_metric([report.chain], offline / analysis.total_stake)
        if jails is None:
            continue
        counters = jails.counters
        total.add_metric([report.chain], counters.jails)
        validator_series = report.chain not in without_validator_series
        ranked = sorted(counters.validator_jails.items(), key=lambda item: (-item[1], item[0]))
        for address, count in ranked[: max_series[report.chain] if validator_series else 0]:
            per_validator.add_metric(_identity(report, address, jails.names), count)
        for window, count in jails.windows.items():
            windows.add_metric([report.chain, window], count)
        buckets = [
            (_bound(b), n)
            for b, n in zip(UNJAIL_DELAY_BUCKETS, counters.unjail_delay_bucket_counts, strict=True)
        ]
        buckets.append(("+Inf", counters.unjail_delay_count))
        delay.add_metric([report.chain], buckets, counters.unjail_delay_sum)
        storm.add_metric([report.chain], int(jails.storm))
        if report.up and validator_series:
            for address, since in sorted(jails.jailed_since.items()):
                jailed_for.add_metric(
                    _identity(report, address, jails.names), max(0.0, now - since)
                )
    yield from (total, per_validator, windows, jailed_for, delay, jailed_stake, storm)


def sink_metrics(status: SinkStatus) -> Iterator[Metric]:
    outbox = GaugeMetricFamily(
        "quorumwatch_outbox_events", "Alert events committed but not yet acknowledged by MQTT."
    )
    outbox.add_metric([], status.outbox_events)
    yield outbox
    if status.outbox_oldest_age_seconds is not None:
        oldest = GaugeMetricFamily(
            "quorumwatch_outbox_oldest_event_age_seconds",
            "Age of the oldest alert event waiting in the outbox.",
        )
        oldest.add_metric([], status.outbox_oldest_age_seconds)
        yield oldest
    dropped = CounterMetricFamily(
        "quorumwatch_outbox_dropped_events",
        "Undelivered alert events dropped, oldest first, because the outbox was full"
        " (mqtt.max_outbox_events); kept across restarts.",
    )
    dropped.add_metric([], status.outbox_dropped_events)
    yield dropped
    events = CounterMetricFamily(
        "quorumwatch_events",
        "Alert events generated, by alert and status; kept across restarts.",
        labels=["alert", "status"],
    )
    for (alert, event_status), count in sorted(status.events_generated.items()):
        events.add_metric([alert, event_status], count)
    yield events
    if status.mqtt_connected is not None:
        connected = GaugeMetricFamily(
            "quorumwatch_mqtt_connected", "1 while connected to the MQTT broker."
        )
        connected.add_metric([], int(status.mqtt_connected))
        yield connected
    if status.alertmanager_failures is not None:
        failures = CounterMetricFamily(
            "quorumwatch_alertmanager_push_failures",
            "Pushes to Alertmanager that failed since the daemon started.",
        )
        failures.add_metric([], status.alertmanager_failures)
        yield failures


def _identity(report: ChainReport, address: str, names: Mapping[str, str]) -> list[str]:
    entity = report.entity_of.get(address, address)
    return [report.chain, address, safe_text(names.get(address, "")), safe_text(entity)]


def _bound(value: float) -> str:
    return repr(float(value))
