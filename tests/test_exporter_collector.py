"""The Collector: names, labels and values rendered from reports; absence when down."""

from __future__ import annotations

import dataclasses
import time
from fractions import Fraction
from types import MappingProxyType

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quorumwatch.jails.statistics import JailCounters
from quorumwatch.labels import safe_text
from quorumwatch.report import JailReport, ReportBoard, SinkStatus, SubnetListing
from tests.builders import (
    chain_settings,
    collector,
    every_kind_board,
    exposition,
    jail_history,
    report,
    validator,
)
from tests.services import metric, parse_samples
from tests.tools import promtool_findings

ANALYSIS_METRICS = {
    "quorumwatch_validators",
    "quorumwatch_stake_tokens",
    "quorumwatch_nakamoto_coefficient",
    "quorumwatch_holders",
    "quorumwatch_largest_stake_ratio",
    "quorumwatch_top_stake_ratio",
    "quorumwatch_herfindahl_index",
    "quorumwatch_effective_holders",
    "quorumwatch_gini_coefficient",
    "quorumwatch_shannon_entropy",
    "quorumwatch_halt_distance",
    "quorumwatch_liveness_margin_ratio",
    "quorumwatch_unattributed_stake_ratio",
    "quorumwatch_entity_stake_ratio",
    "quorumwatch_entity_can_halt",
    "quorumwatch_entity_can_control",
    "quorumwatch_validator_stake_ratio",
    "quorumwatch_validator_jailed",
    "quorumwatch_validator_uptime_ratio",
    "quorumwatch_validator_series_omitted",
}


def value(text: str, metric: str, **labels: str) -> float:
    return parse_samples(text)[(metric, frozenset(labels.items()))]


def names(text: str) -> set[str]:
    return {name for name, _ in parse_samples(text)}


FOUNDATION_SET = [
    *(validator(i, 163) for i in range(1, 6)),
    validator(10, 30),
    validator(11, 7, jailed=True),
    validator(12, 5, active=False),
]
FOUNDATION = {f"0x{i:040x}": "Hyper Foundation" for i in range(1, 6)}


class TestUpChain:
    def test_contract_values(self) -> None:
        """Coefficients, shares and entity flags are exported under the contract names."""
        text = exposition(report(FOUNDATION_SET, entity_of=FOUNDATION))
        assert value(text, "quorumwatch_chain_up", chain="hyperliquid") == 1
        coefficient = "quorumwatch_nakamoto_coefficient"
        assert (
            value(text, coefficient, chain="hyperliquid", grouping="entity", threshold="control")
            == 1
        )
        assert (
            value(text, coefficient, chain="hyperliquid", grouping="validator", threshold="halt")
            == 2
        )
        assert (
            value(
                text,
                "quorumwatch_entity_stake_ratio",
                chain="hyperliquid",
                entity="Hyper Foundation",
            )
            == 815 / 852
        )
        assert (
            value(
                text,
                "quorumwatch_entity_can_control",
                chain="hyperliquid",
                entity="Hyper Foundation",
            )
            == 1
        )
        assert (
            value(
                text,
                "quorumwatch_top_stake_ratio",
                chain="hyperliquid",
                grouping="validator",
                top="3",
            )
            == 489 / 852
        )
        assert value(text, "quorumwatch_unattributed_stake_ratio", chain="hyperliquid") == 37 / 852
        assert (
            value(text, "quorumwatch_build_info", version=__import__("quorumwatch").__version__)
            == 1
        )

    def test_statuses_are_disjoint_and_sum_to_all(self) -> None:
        """Validator counts and stake split online/jailed/inactive, summing to every validator."""
        text = exposition(report(FOUNDATION_SET, entity_of=FOUNDATION))
        counts = {
            s: value(text, "quorumwatch_validators", chain="hyperliquid", status=s)
            for s in ("online", "jailed", "inactive")
        }
        assert counts == {"online": 6, "jailed": 1, "inactive": 1}
        assert sum(counts.values()) == len(FOUNDATION_SET)
        stake = value(text, "quorumwatch_stake_tokens", chain="hyperliquid", status="jailed")
        assert stake == 7 / 10**8

    def test_per_validator_series(self) -> None:
        """Per-validator series carry chain, validator, name and entity labels."""
        text = exposition(report(FOUNDATION_SET, entity_of=FOUNDATION))
        labels = {
            "chain": "hyperliquid",
            "validator": f"0x{1:040x}",
            "name": "validator 1",
            "entity": "Hyper Foundation",
        }
        assert value(text, "quorumwatch_validator_stake_ratio", **labels) == 163 / 852
        assert value(text, "quorumwatch_validator_jailed", **labels) == 0
        assert value(text, "quorumwatch_validator_uptime_ratio", **labels, window="7d") == 0.99
        inactive = {
            "chain": "hyperliquid",
            "validator": f"0x{12:040x}",
            "name": "validator 12",
            "entity": f"0x{12:040x}",
        }
        assert value(text, "quorumwatch_validator_stake_ratio", **inactive) == 0

    def test_validator_series_are_capped(self) -> None:
        """max_validator_series keeps the largest validators and counts the rest as omitted."""
        settings = chain_settings(max_validator_series=2)
        text = exposition(report(FOUNDATION_SET, settings=settings), max_series=2)
        exported = {
            dict(labels)["validator"]
            for name, labels in parse_samples(text)
            if name == "quorumwatch_validator_jailed"
        }
        assert exported == {f"0x{1:040x}", f"0x{2:040x}"}
        assert value(text, "quorumwatch_validator_series_omitted", chain="hyperliquid") == 6

    def test_hostile_names_yield_valid_labels(self) -> None:
        """Control characters, newlines, quotes and 10 kB names still render a parseable scrape."""
        hostile = 'a"b\\c\nd\u202e' + "x" * 10_000
        text = exposition(
            report(
                [validator(1, 10, name=hostile), validator(2, 10)],
                entity_of={f"0x{1:040x}": hostile},
            )
        )
        names_seen = {
            dict(labels).get("name")
            for name, labels in parse_samples(text)
            if name == "quorumwatch_validator_jailed"
        }
        assert all(
            n is not None and len(n) <= 64 and "\n" not in n and "\u202e" not in n
            for n in names_seen
        )

    def test_endpoint_series(self) -> None:
        """Endpoint up, outcome counters, latency histogram, availability and healthy count."""
        text = exposition(report(FOUNDATION_SET, endpoints_up=(True, False)))
        assert value(text, "quorumwatch_endpoint_up", chain="hyperliquid", endpoint="ep1") == 0
        assert (
            value(
                text,
                "quorumwatch_endpoint_requests_total",
                chain="hyperliquid",
                endpoint="ep0",
                outcome="timeout",
            )
            == 1
        )
        assert (
            value(
                text,
                "quorumwatch_endpoint_requests_total",
                chain="hyperliquid",
                endpoint="ep0",
                outcome="http_429",
            )
            == 0
        )
        assert (
            value(
                text,
                "quorumwatch_endpoint_request_duration_seconds_bucket",
                chain="hyperliquid",
                endpoint="ep0",
                le="0.25",
            )
            == 4
        )
        assert (
            value(
                text,
                "quorumwatch_endpoint_request_duration_seconds_bucket",
                chain="hyperliquid",
                endpoint="ep0",
                le="0.1",
            )
            == 0
        )
        assert (
            value(
                text,
                "quorumwatch_endpoint_availability_ratio",
                chain="hyperliquid",
                endpoint="ep0",
                window="5m",
            )
            == 0.75
        )
        assert (
            "quorumwatch_endpoint_availability_ratio",
            frozenset({"chain": "hyperliquid", "endpoint": "ep0", "window": "24h"}.items()),
        ) not in parse_samples(text)
        assert value(text, "quorumwatch_endpoints_healthy", chain="hyperliquid") == 1


class TestDownChain:
    def test_analysis_series_absent_not_zero(self) -> None:
        """With no valid snapshot, chain_up is 0 and no analysis series is exported at all."""
        text = exposition(report(None))
        assert value(text, "quorumwatch_chain_up", chain="hyperliquid") == 0
        assert not ANALYSIS_METRICS & names(text)
        assert value(text, "quorumwatch_last_success_timestamp_seconds", chain="hyperliquid") == 900
        assert (
            value(
                text,
                "quorumwatch_snapshot_rejections_total",
                chain="hyperliquid",
                reason="empty_set",
            )
            == 2
        )

    def test_one_chain_down_leaves_the_other(self) -> None:
        """A down chain does not remove another chain's analysis series."""
        other = report(FOUNDATION_SET, settings=chain_settings(name="other"))
        text = exposition(report(None), other)
        assert value(text, "quorumwatch_chain_up", chain="other") == 1
        assert value(text, "quorumwatch_liveness_margin_ratio", chain="other") > 0


def test_promtool_finds_nothing_in_a_scrape_of_every_kind() -> None:
    """promtool check metrics finds nothing in a scrape of one chain of every kind with jail
    history, a down chain and both sinks, where every quorumwatch family has samples."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector(every_kind_board(JAIL_NOW), clock=lambda: JAIL_NOW))
    text = generate_latest(registry).decode()
    empty = [
        family.name
        for family in text_string_to_metric_families(text)
        if family.name.startswith("quorumwatch_") and not family.samples
    ]
    assert empty == []
    assert promtool_findings(text) == set()


# --- jail history -----------------------------------------------------------------------------

JAIL_NOW = 1_767_225_600.0
V1 = f"0x{1:040x}"
V11 = f"0x{11:040x}"  # jailed in FOUNDATION_SET
HOSTILE_NAME = "evil\nname\u202e" + "x" * 1000
# Unjail delays 30, 200, 4000 and 100000 s, cumulative per UNJAIL_DELAY_BUCKETS bound.
DELAY_BUCKETS = {
    "0.0": 0,
    "60.0": 1,
    "300.0": 2,
    "900.0": 2,
    "1800.0": 2,
    "3600.0": 2,
    "7200.0": 3,
    "21600.0": 3,
    "86400.0": 3,
}


def jail_report(*, storm: bool = True) -> JailReport:
    """Five jails (V11 three, V1 two), V11 jailed for the last 600 s of JAIL_NOW."""
    return JailReport(
        counters=JailCounters(
            jails=5,
            validator_jails=MappingProxyType({V1: 2, V11: 3}),
            unjail_delay_bucket_counts=tuple(DELAY_BUCKETS.values()),
            unjail_delay_sum=104_230.0,
            unjail_delay_count=4,
        ),
        windows=MappingProxyType({"1h": 1, "24h": 3, "7d": 5}),
        storm=storm,
        jailed_since=MappingProxyType({V11: JAIL_NOW - 600}),
        names=MappingProxyType({V1: "validator 1", V11: HOSTILE_NAME}),
    )


def identity(address: str, name: str, entity: str) -> dict[str, str]:
    return {"chain": "hyperliquid", "validator": address, "name": name, "entity": entity}


class TestJailMetrics:
    def test_jail_metrics_from_a_jail_report(self) -> None:
        """Counters (as `_total`), windows, current jail length from the injected clock, the
        unjail delay histogram, jailed stake ratio and storm render under the contract names."""
        text = exposition(
            report(FOUNDATION_SET, entity_of=FOUNDATION, jails=jail_report()), now=JAIL_NOW
        )
        chain = {"chain": "hyperliquid"}
        safe_name = safe_text(HOSTILE_NAME)
        assert value(text, "quorumwatch_jail_events_total", **chain) == 5
        per_validator = "quorumwatch_validator_jail_events_total"
        assert value(text, per_validator, **identity(V11, safe_name, V11)) == 3
        assert value(text, per_validator, **identity(V1, "validator 1", "Hyper Foundation")) == 2
        for window, count in {"1h": 1, "24h": 3, "7d": 5}.items():
            assert value(text, "quorumwatch_jail_events_in_window", **chain, window=window) == count
        jailed_for = "quorumwatch_validator_jailed_seconds"
        assert value(text, jailed_for, **identity(V11, safe_name, V11)) == 600
        assert [
            dict(labels)["validator"] for n, labels in parse_samples(text) if n == jailed_for
        ] == [V11]
        assert value(text, "quorumwatch_jailed_stake_ratio", **chain) == 7 / 852
        assert value(text, "quorumwatch_jail_storm", **chain) == 1
        assert "# TYPE quorumwatch_jail_events_total counter" in text
        assert "# TYPE quorumwatch_validator_jail_events_total counter" in text
        assert "# TYPE quorumwatch_jail_events_in_window gauge" in text
        assert "# TYPE quorumwatch_unjail_delay_seconds histogram" in text

    def test_hostile_names_in_jail_labels(self) -> None:
        """A hostile name in the jail report's names gives a one-line label of at most 64
        characters, without the bidi override."""
        text = exposition(report(FOUNDATION_SET, jails=jail_report()), now=JAIL_NOW)
        names_seen = {
            dict(labels)["name"]
            for name, labels in parse_samples(text)
            if name
            in ("quorumwatch_validator_jail_events_total", "quorumwatch_validator_jailed_seconds")
        }
        assert names_seen == {"validator 1", safe_text(HOSTILE_NAME)}
        assert all(len(n) <= 64 and "\n" not in n and "\u202e" not in n for n in names_seen)

    def test_unjail_delay_histogram_is_cumulative(self) -> None:
        """Histogram buckets are the counters' cumulative counts, non-decreasing by bound,
        with +Inf equal to _count, and _sum the delay sum."""
        text = exposition(report(FOUNDATION_SET, jails=jail_report()), now=JAIL_NOW)
        buckets = {
            dict(labels)["le"]: v
            for (name, labels), v in parse_samples(text).items()
            if name == "quorumwatch_unjail_delay_seconds_bucket"
        }
        assert buckets == {**DELAY_BUCKETS, "+Inf": 4}
        ordered = [buckets[le] for le in sorted(buckets, key=float)]
        assert ordered == sorted(ordered)
        chain = {"chain": "hyperliquid"}
        assert value(text, "quorumwatch_unjail_delay_seconds_count", **chain) == buckets["+Inf"]
        assert value(text, "quorumwatch_unjail_delay_seconds_sum", **chain) == 104_230

    def test_jailed_seconds_follows_the_collector_clock(self) -> None:
        """The current jail's length is the collector's now minus the jail start, per scrape."""
        r = report(FOUNDATION_SET, jails=jail_report())
        labels = identity(V11, safe_text(HOSTILE_NAME), V11)
        for elapsed in (600.0, 4200.5):
            text = exposition(r, now=JAIL_NOW - 600 + elapsed)
            assert value(text, "quorumwatch_validator_jailed_seconds", **labels) == elapsed

    def test_down_chain_drops_jailed_seconds_and_ratio_keeps_counters(self) -> None:
        """While the chain is down, current jail lengths and the jailed stake ratio are absent,
        while counters, windows, histogram and storm are still exported."""
        text = exposition(report(None, jails=jail_report(storm=False)), now=JAIL_NOW)
        present = names(text)
        assert "quorumwatch_validator_jailed_seconds" not in present
        assert "quorumwatch_jailed_stake_ratio" not in present
        chain = {"chain": "hyperliquid"}
        assert value(text, "quorumwatch_jail_events_total", **chain) == 5
        assert value(text, "quorumwatch_jail_events_in_window", **chain, window="7d") == 5
        assert value(text, "quorumwatch_unjail_delay_seconds_count", **chain) == 4
        assert value(text, "quorumwatch_jail_storm", **chain) == 0
        assert (
            value(
                text,
                "quorumwatch_validator_jail_events_total",
                **identity(V1, "validator 1", V1),
            )
            == 2
        )

    def test_per_validator_jail_series_are_capped(self) -> None:
        """max_validator_series keeps the most jailed validators' counters only."""
        settings = chain_settings(max_validator_series=1)
        text = exposition(
            report(FOUNDATION_SET, settings=settings, jails=jail_report()),
            now=JAIL_NOW,
            max_series=1,
        )
        exported = [
            dict(labels)["validator"]
            for name, labels in parse_samples(text)
            if name == "quorumwatch_validator_jail_events_total"
        ]
        assert exported == [V11]
        assert value(text, "quorumwatch_jail_events_total", chain="hyperliquid") == 5

    def test_no_jail_report_no_jail_series(self) -> None:
        """Without a jail report (no store), no jail history series is exported."""
        text = exposition(report(FOUNDATION_SET), now=JAIL_NOW)
        assert not {
            "quorumwatch_jail_events_total",
            "quorumwatch_jail_events_in_window",
            "quorumwatch_validator_jailed_seconds",
            "quorumwatch_unjail_delay_seconds_count",
            "quorumwatch_jail_storm",
        } & names(text)


def test_jail_risk_ratio_is_exported_only_where_known() -> None:
    """A validator with a jail risk gets quorumwatch_validator_jail_risk_ratio; others none."""
    risky = dataclasses.replace(validator(1, 10), jail_risk_ratio=0.25)
    text = exposition(report([risky, validator(2, 10)]))
    labels = {"chain": "hyperliquid", "validator": risky.address, "name": "validator 1"}
    assert (
        value(text, "quorumwatch_validator_jail_risk_ratio", **labels, entity=risky.address) == 0.25
    )
    risks = [
        labels
        for name, labels in parse_samples(text)
        if name == "quorumwatch_validator_jail_risk_ratio"
    ]
    assert len(risks) == 1


def test_endpoints_disagree_is_exported_only_after_a_comparison() -> None:
    """quorumwatch_endpoints_disagree is present (0/1) only when a comparison was made."""
    compared = dataclasses.replace(report(FOUNDATION_SET), endpoints_disagree=True)
    assert value(exposition(compared), "quorumwatch_endpoints_disagree", chain="hyperliquid") == 1
    assert "quorumwatch_endpoints_disagree" not in names(exposition(report(FOUNDATION_SET)))


# --- alert delivery (sinks) ------------------------------------------------------------------


def sink_status(dropped: int) -> SinkStatus:
    return SinkStatus(
        outbox_events=7,
        outbox_oldest_created_at=time.time() - 12.5,
        outbox_dropped_events=dropped,
        events_generated={("EntityCanHalt", "firing"): 3},
        mqtt_connected=False,
        alertmanager_failures=None,
    )


def test_outbox_dropped_events_is_an_unlabelled_counter_also_at_zero() -> None:
    """quorumwatch_outbox_dropped_events_total is a counter without labels carrying the
    kept count, exported as 0 before any drop, beside quorumwatch_outbox_events and the
    oldest event's age, derived at the scrape from its creation time."""
    text = exposition(sinks=sink_status(dropped=4242))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["quorumwatch_outbox_dropped_events"].type == "counter"
    assert value(text, "quorumwatch_outbox_dropped_events_total") == 4242
    assert value(text, "quorumwatch_outbox_events") == 7
    assert 12.5 <= value(text, "quorumwatch_outbox_oldest_event_age_seconds") < 60
    assert (
        value(exposition(sinks=sink_status(dropped=0)), "quorumwatch_outbox_dropped_events_total")
        == 0
    )


def test_finality_lag_is_exported_only_where_known() -> None:
    """quorumwatch_finality_lag_epochs carries a chain's lag when its source reports one, and
    is absent for a chain without finality checkpoints and for a chain that is down."""
    ethereum = report(FOUNDATION_SET, settings=chain_settings(name="eth"), finality_lag_epochs=3)
    down = report(None, settings=chain_settings(name="down"))
    text = exposition(ethereum, report(FOUNDATION_SET), down)
    lags = {
        dict(labels)["chain"]: sample
        for (name, labels), sample in parse_samples(text).items()
        if name == "quorumwatch_finality_lag_epochs"
    }
    assert lags == {"eth": 3}


def test_entity_series_are_not_copies_of_validator_series() -> None:
    """Entity series exist for named entities and for a lone validator that can halt alone,
    never for a validator that is merely its own entity."""
    whale = validator(20, 450)  # 450 of 852 + 450, over 1/3: it can halt alone, unnamed
    text = exposition(report([*FOUNDATION_SET, whale], entity_of=FOUNDATION))
    entities = {
        dict(labels)["entity"]
        for (name, labels), _ in parse_samples(text).items()
        if name == "quorumwatch_entity_stake_ratio"
    }
    assert entities == {"Hyper Foundation", whale.address}


def test_absent_entity_members_are_exported_per_entity() -> None:
    """quorumwatch_entity_members_absent carries each mapped entity's count of members
    missing from the set, zero included."""
    absent = MappingProxyType({"Foundation": 2, "Other": 0})
    polled = dataclasses.replace(report(FOUNDATION_SET), absent_members=absent)
    samples = {
        (s.labels["entity"], s.value)
        for family in text_string_to_metric_families(exposition(polled))
        if family.name == "quorumwatch_entity_members_absent"
        for s in family.samples
    }
    assert samples == {("Foundation", 2.0), ("Other", 0.0)}


class TestWithoutValidatorSeries:
    """`validator_series = false` on a chain: none of its per-validator series, everything else."""

    PER_VALIDATOR = frozenset(
        {
            "quorumwatch_validator_stake_ratio",
            "quorumwatch_validator_jailed",
            "quorumwatch_validator_uptime_ratio",
            "quorumwatch_validator_jail_risk_ratio",
            "quorumwatch_validator_jail_events_total",
            "quorumwatch_validator_jailed_seconds",
        }
    )

    def scrape(self) -> str:
        risky = [dataclasses.replace(v, jail_risk_ratio=0.1) for v in FOUNDATION_SET]
        jails = jail_history(V11, JAIL_NOW - 600)
        return exposition(
            report(risky, entity_of=FOUNDATION, jails=jails),
            report(risky, entity_of=FOUNDATION, settings=chain_settings(name="other"), jails=jails),
            now=JAIL_NOW,
            without_validator_series={"hyperliquid"},
        )

    def series_by_chain(self, text: str) -> dict[str, set[str]]:
        chains: dict[str, set[str]] = {}
        for name, labels in parse_samples(text):
            chains.setdefault(dict(labels).get("chain", ""), set()).add(name)
        return chains

    def test_no_per_validator_series_for_that_chain_only(self) -> None:
        """The chain has no per-validator series, and counts all its validators as omitted;
        another chain keeps every one of them."""
        text = self.scrape()
        chains = self.series_by_chain(text)
        assert not self.PER_VALIDATOR & chains["hyperliquid"]
        assert chains["other"] >= self.PER_VALIDATOR
        omitted = "quorumwatch_validator_series_omitted"
        assert value(text, omitted, chain="hyperliquid") == len(FOUNDATION_SET)
        assert value(text, omitted, chain="other") == 0

    def test_entity_and_chain_series_stay(self) -> None:
        """The chain keeps the same entity, concentration, jail and endpoint series as a chain
        with per-validator series."""
        text = self.scrape()
        chains = self.series_by_chain(text)
        assert chains["hyperliquid"] == chains["other"] - self.PER_VALIDATOR
        entity = {"chain": "hyperliquid", "entity": "Hyper Foundation"}
        assert value(text, "quorumwatch_entity_can_control", **entity) == 1


def test_consensus_threshold_authorities_and_majority_are_exported() -> None:
    """A chain stating kappa 32767/65535 and 4 block authorities exports both, and
    quorumwatch_entity_has_majority is 1 for an entity over kappa and 0 below it; a chain
    stating neither exports neither gauge."""
    whale = [validator(1, 500), validator(2, 400), validator(3, 100)]
    stated = report(
        whale,
        entity_of={validator(1, 0).address: "whale", validator(2, 0).address: "second"},
        settings=chain_settings(name="tao-sn1"),
        consensus_threshold=Fraction(32767, 65535),
        block_authorities=4,
    )
    samples = parse_samples(exposition(stated, report(FOUNDATION_SET)))
    assert metric(samples, "quorumwatch_consensus_threshold_ratio", chain="tao-sn1") == (
        32767 / 65535
    )
    assert metric(samples, "quorumwatch_block_authorities", chain="tao-sn1") == 4
    majority = {
        entity: metric(samples, "quorumwatch_entity_has_majority", chain="tao-sn1", entity=entity)
        for entity in ("whale", "second")
    }
    assert majority == {"whale": 1, "second": 0}
    assert {
        dict(labels)["chain"]
        for (name, labels) in samples
        if name in ("quorumwatch_consensus_threshold_ratio", "quorumwatch_block_authorities")
    } == {"tao-sn1"}


def test_subnet_lists_are_exported_per_chain_of_all_subnets() -> None:
    """Each chain of "all" subnets has its last listing time and its failed re-lists (a
    counter), labelled with the chain as configured; a board without one exports neither."""
    board = ReportBoard()
    board.publish(report(FOUNDATION_SET))
    without = generate_latest(_registry(board)).decode()
    board.listed(SubnetListing("tao", last_success_at=1_750_000_000.0, failures=3))
    text = generate_latest(_registry(board)).decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["quorumwatch_subnet_list_failures"] == "counter"
    assert value(text, "quorumwatch_subnet_list_failures_total", chain="tao") == 3
    last = value(text, "quorumwatch_subnet_list_last_success_timestamp_seconds", chain="tao")
    assert last == 1_750_000_000.0
    assert not {n for n in names(without) if n.startswith("quorumwatch_subnet_list")}


def _registry(board: ReportBoard) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector(board))
    return registry
