"""Alert rules, pure: catalogue, thresholds, `for` durations, hysteresis, chain down, restart.

Every poll goes through `conditions` and then `advance`, as the daemon does; event ids come
from a counter, so every run produces the same events.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quorumwatch.alerting.model import (
    ALERT_NAMES,
    ALWAYS_JUDGED,
    NEEDS_SNAPSHOT,
    AlertEvent,
    AlertState,
    AlertStatus,
    Severity,
)
from quorumwatch.alerting.rules import Condition, RuleMemory, advance, conditions
from quorumwatch.config import AlertSettings, BittensorSettings, ChainSettings, EndpointSettings
from quorumwatch.jails.statistics import JailCounters
from quorumwatch.models import Validator
from quorumwatch.report import ChainReport, JailReport
from tests.builders import chain_settings, report, validator

CHAIN = "hyperliquid"
T0 = 1000.0  # the builders' reports are polled, and last succeeded, at 1000
ZERO_FOR = dict.fromkeys(ALERT_NAMES, 0.0)
NO_STALENESS = 1e9  # data_stale_seconds for sequences that outlive the builders' timestamps


def addr(index: int) -> str:
    return f"0x{index:040x}"


WHALE = {addr(1): "whale"}


def stakes(*big: int, jailed: int = 0, total: int = 3000) -> list[Validator]:
    """Validators 1..n holding `big`, validator 99 jailed holding `jailed`, and validators of
    at most 100 from index 100 on making up `total`."""
    validators = [validator(i, s) for i, s in enumerate(big, 1)]
    if jailed:
        validators.append(validator(99, jailed, jailed=True))
    rest = total - sum(big) - jailed
    for index in itertools.count(100):
        if rest <= 0:
            break
        validators.append(validator(index, min(100, rest)))
        rest -= 100
    return validators


def whale(units: int, **kwargs: Any) -> ChainReport:
    """A report where the entity `whale` holds `units` of 3000."""
    return report(stakes(*([units] if units else []), **kwargs), entity_of=WHALE)


def jail_report(*, storm: bool, jailed_last_hour: int = 0) -> JailReport:
    return JailReport(
        counters=JailCounters(
            jails=jailed_last_hour,
            validator_jails={},
            unjail_delay_bucket_counts=(),
            unjail_delay_sum=0.0,
            unjail_delay_count=0,
        ),
        windows={"1h": jailed_last_hour, "24h": jailed_last_hour, "7d": jailed_last_hour},
        storm=storm,
        jailed_since={},
        names={},
    )


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"event-{next(numbers)}"


@dataclass
class Rules:
    """One chain's alert state driven poll by poll, as the daemon drives it."""

    settings: AlertSettings = field(default_factory=AlertSettings)
    states: dict[str, AlertState] = field(default_factory=dict)
    memory: RuleMemory = field(default_factory=RuleMemory)
    new_id: Callable[[], str] = field(default_factory=counter_ids)
    judged: frozenset[str] = frozenset()

    def poll(self, chain_report: ChainReport, now: float) -> list[AlertEvent]:
        holding, self.judged, self.memory = conditions(
            chain_report, chain_settings(alerts=self.settings), self.states, self.memory, now
        )
        states, events = advance(
            chain_report.chain,
            self.states.values(),
            holding,
            self.judged,
            now,
            for_seconds=self.settings.for_seconds,
            new_id=self.new_id,
        )
        self.states = {s.fingerprint: s for s in states}
        return events

    def of(self, alert: str) -> list[AlertState]:
        return [s for s in self.states.values() if s.alert == alert]

    def firing(self) -> set[str]:
        return {s.alert for s in self.states.values() if s.firing}


def only(events: Sequence[AlertEvent], alert: str) -> list[AlertEvent]:
    return [e for e in events if e.alert == alert]


def alert_settings(**overrides: Any) -> AlertSettings:
    return AlertSettings.model_validate({"for_seconds": ZERO_FOR, **overrides})


# --- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    alert: str
    reports: Sequence[ChainReport]  # polled in turn, at T0, T0 + 1, ...; the last one triggers
    severity: Severity
    labels: Mapping[str, str]
    value: float | None
    threshold: float | None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    now: float | None = None  # the time of the last poll, if not T0 + len(reports) - 1


CASES = [
    Case(
        "EntityCanControl",
        [whale(2001)],
        Severity.CRITICAL,
        {"chain": CHAIN, "entity": "whale"},
        2001 / 3000,
        2 / 3,
    ),
    Case(
        "EntityCanHalt",
        [whale(1200)],
        Severity.WARNING,
        {"chain": CHAIN, "entity": "whale"},
        0.4,
        1 / 3,
    ),
    Case(
        "EntityHasMajority",
        [whale(1501)],
        Severity.WARNING,
        {"chain": CHAIN, "entity": "whale"},
        1501 / 3000,
        0.5,
    ),
    Case(
        "BlockAuthoritiesLow",
        [report(stakes(), block_authorities=2)],
        Severity.CRITICAL,
        {"chain": CHAIN},
        2.0,
        3.0,
        settings={"block_authorities_min": 3},
    ),
    Case(
        "ChainHalted",
        [report(stakes(jailed=1200))],
        Severity.CRITICAL,
        {"chain": CHAIN},
        1800 / 3000,
        2 / 3,
    ),
    Case(
        "LivenessMarginLow",
        [report(stakes(jailed=910))],
        Severity.WARNING,
        {"chain": CHAIN},
        (1000 - 910) / 3000,
        0.05,
    ),
    Case(
        "NakamotoCoefficientDropped",
        [report(stakes()), report(stakes(400))],
        Severity.WARNING,
        {"chain": CHAIN},
        7.0,
        10.0,
    ),
    Case(
        "ValidatorJailed",
        [report(stakes(jailed=50))],
        Severity.INFO,
        {"chain": CHAIN, "validator": addr(99), "entity": addr(99)},
        None,
        None,
    ),
    Case(
        "FinalityLagging",
        [report(stakes(), finality_lag_epochs=6)],
        Severity.CRITICAL,
        {"chain": CHAIN},
        6.0,
        5.0,
    ),
    Case(
        "JailStorm",
        [report(stakes(), jails=jail_report(storm=True, jailed_last_hour=4))],
        Severity.WARNING,
        {"chain": CHAIN},
        None,
        None,
    ),
    Case(
        "EndpointDown",
        [report(stakes(), endpoints_up=(True, False, True))],
        Severity.WARNING,
        {"chain": CHAIN, "endpoint": "ep1"},
        None,
        None,
    ),
    Case(
        "AllEndpointsDown",
        [report(None, endpoints_up=(False, False))],
        Severity.CRITICAL,
        {"chain": CHAIN},
        0.0,
        None,
        now=T0 - 100 + 90,  # the builders' down report last succeeded at 900: not yet stale
    ),
    Case(
        "SingleEndpoint",
        [report(stakes(), endpoints_up=(True, False, False))],
        Severity.WARNING,
        {"chain": CHAIN},
        1.0,
        2.0,
    ),
    Case(
        "DataStale",
        [report(stakes())],
        Severity.WARNING,
        {"chain": CHAIN},
        91.0,
        90.0,  # 3 poll intervals of 30 s
        now=T0 + 91,
    ),
]


def test_cases_cover_the_catalogue() -> None:
    """The parametrised catalogue cases name every alert in ALERT_NAMES exactly once."""
    assert sorted(c.alert for c in CASES) == sorted(ALERT_NAMES)


@pytest.mark.parametrize("case", CASES, ids=[c.alert for c in CASES])
def test_catalogue_alert_fires_on_its_trigger(case: Case) -> None:
    """The trigger fires one event of the alert with its severity, labels, value and threshold."""
    rules = Rules(settings=alert_settings(**case.settings))
    for step, chain_report in enumerate(case.reports[:-1]):
        assert only(rules.poll(chain_report, T0 + step), case.alert) == []
    now = case.now if case.now is not None else T0 + len(case.reports) - 1
    events = only(rules.poll(case.reports[-1], now), case.alert)
    assert len(events) == 1
    event = events[0]
    assert event.status is AlertStatus.FIRING
    assert event.severity is case.severity
    assert dict(event.labels) == dict(case.labels)
    assert event.value == pytest.approx(case.value)
    assert event.threshold == pytest.approx(case.threshold)
    assert event.chain == CHAIN
    assert (event.starts_at, event.ends_at, event.observed_at) == (now, None, now)


def test_healthy_report_fires_nothing() -> None:
    """A healthy report holds no condition, judges every rule and fires nothing on two polls."""
    rules = Rules(settings=alert_settings())
    healthy = report(stakes(), jails=jail_report(storm=False))
    assert rules.poll(healthy, T0) == []
    assert rules.poll(healthy, T0 + 1) == []
    assert rules.states == {}
    assert rules.judged == ALERT_NAMES


# --- exact thresholds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "fires"), [(1500, False), (1501, True)], ids=["exactly-1/2", "just-above"]
)
def test_entity_at_exactly_one_half_has_no_majority(units: int, fires: bool) -> None:
    """An entity holding exactly 1/2 does not fire EntityHasMajority; one base unit more does."""
    rules = Rules(settings=alert_settings())
    assert bool(only(rules.poll(whale(units), T0), "EntityHasMajority")) is fires


KAPPA = Fraction(32767, 65535)  # Yuma's default


def subnet(**alerts: Any) -> ChainSettings:
    """Subnet 1 of a Bittensor chain, as one chain `tao-sn1`."""
    return ChainSettings(
        name="tao-sn1",
        kind="bittensor",
        endpoints=[EndpointSettings(name="n", url="ws://127.0.0.1:1")],
        bittensor=BittensorSettings(netuids=[1]),
        alerts=alert_settings(**alerts),
    )


def test_majority_is_over_the_chains_own_threshold_and_critical_on_bittensor() -> None:
    """On a bittensor chain stating kappa 32767/65535, exactly 1/2 is over kappa and fires
    EntityHasMajority as critical with kappa as its threshold; a stated threshold of 0.6 holds
    back 0.55."""
    bittensor = subnet()

    def holding(units: int, threshold: Fraction) -> list[Condition]:
        chain_report = report(
            stakes(units), entity_of=WHALE, settings=bittensor, consensus_threshold=threshold
        )
        found, _, _ = conditions(chain_report, bittensor, {}, RuleMemory(), T0)
        return [c for c in found if c.alert == "EntityHasMajority"]

    (fired,) = holding(1500, KAPPA)
    assert (fired.severity, fired.value, fired.threshold) == (
        Severity.CRITICAL,
        0.5,
        float(KAPPA),
    )
    assert holding(1650, Fraction(3, 5)) == []


def test_bft_lines_on_a_subnet_are_shares_pointing_to_the_majority() -> None:
    """On a Bittensor subnet EntityCanHalt, EntityCanControl and NakamotoCoefficientDropped keep
    their names and severities but speak of shares of the subnet's validator stake, never of
    halting or controlling, and point to EntityHasMajority, whose text names the incentives."""
    settings = subnet(nakamoto_halt_min=2, data_stale_seconds=NO_STALENESS)
    chain_report = report(
        stakes(2100), entity_of=WHALE, settings=settings, consensus_threshold=KAPPA
    )
    found, _, _ = conditions(chain_report, settings, {}, RuleMemory(), T0)
    by_alert = {c.alert: c for c in found}
    share = "of subnet tao-sn1's validator stake."
    expected = {
        "EntityCanHalt": (Severity.WARNING, f"One entity holds at least 1/3 {share}"),
        "EntityCanControl": (Severity.CRITICAL, f"One entity holds more than 2/3 {share}"),
        "NakamotoCoefficientDropped": (Severity.WARNING, f"Fewer entities now hold 1/3 {share}"),
    }
    for alert, (severity, summary) in expected.items():
        condition = by_alert[alert]
        assert (condition.severity, condition.summary) == (severity, summary)
        assert "author no blocks" in condition.description
        assert "EntityHasMajority" in condition.description
        assert "can halt" not in condition.description + condition.summary
    majority = by_alert["EntityHasMajority"]
    assert majority.description.endswith("(49.999%): it sets the subnet's incentives alone.")


def test_bft_lines_on_a_bft_chain_say_halt_and_control() -> None:
    """On a chain whose validators author the blocks the 1/3 and 2/3 alerts say that the entity
    can halt or control the chain, and EntityHasMajority claims no incentives."""
    settings = chain_settings(alerts=alert_settings(nakamoto_halt_min=2))
    found, _, _ = conditions(
        report(stakes(2100), entity_of=WHALE, settings=settings), settings, {}, RuleMemory(), T0
    )
    summaries = {c.alert: c.summary for c in found}
    assert summaries["EntityCanHalt"] == f"One entity can halt {CHAIN}."
    assert summaries["EntityCanControl"] == f"One entity can control {CHAIN}."
    assert summaries["NakamotoCoefficientDropped"] == f"Fewer entities can now halt {CHAIN}."
    assert not any("subnet" in c.description for c in found)


def test_block_authorities_alert_only_where_counted() -> None:
    """BlockAuthoritiesLow holds below block_authorities_min (1 by default: none left), not at
    it, and never for a chain that reports no authorities."""

    def holding(count: int | None) -> bool:
        found, _, _ = conditions(
            report(stakes(), block_authorities=count),
            chain_settings(alerts=alert_settings(data_stale_seconds=NO_STALENESS)),
            {},
            RuleMemory(),
            T0,
        )
        return "BlockAuthoritiesLow" in {c.alert for c in found}

    assert [holding(n) for n in (None, 1, 0)] == [False, False, True]


@pytest.mark.parametrize(
    ("units", "fires"), [(1000, True), (999, False)], ids=["exactly-1/3", "just-below"]
)
def test_entity_at_exactly_one_third_can_halt(units: int, fires: bool) -> None:
    """An entity holding exactly 1/3 fires EntityCanHalt; one base unit less does not."""
    rules = Rules(settings=alert_settings())
    assert bool(only(rules.poll(whale(units), T0), "EntityCanHalt")) is fires


@pytest.mark.parametrize(
    ("units", "fires"), [(2000, False), (2001, True)], ids=["exactly-2/3", "just-above"]
)
def test_entity_at_exactly_two_thirds_is_not_control(units: int, fires: bool) -> None:
    """An entity holding exactly 2/3 does not fire EntityCanControl; one base unit more does."""
    rules = Rules(settings=alert_settings())
    assert bool(only(rules.poll(whale(units), T0), "EntityCanControl")) is fires


@pytest.mark.parametrize(
    ("jailed", "fires"), [(1000, True), (999, False)], ids=["online-exactly-2/3", "just-above"]
)
def test_online_stake_at_exactly_two_thirds_is_halted(jailed: int, fires: bool) -> None:
    """Online stake of exactly 2/3 fires ChainHalted; one base unit more online does not."""
    rules = Rules(settings=alert_settings())
    assert bool(only(rules.poll(report(stakes(jailed=jailed)), T0), "ChainHalted")) is fires


# --- `for` durations and the lifecycle -----------------------------------------------------


def test_pending_until_held_for_exactly_the_for_duration() -> None:
    """EndpointDown (for 300 s) pends silently until held exactly 300 s, then fires once."""
    rules = Rules(settings=AlertSettings(data_stale_seconds=NO_STALENESS))
    down = report(stakes(), endpoints_up=(True, False, True))
    assert rules.poll(down, T0) == []
    [pending] = rules.of("EndpointDown")
    assert (pending.pending_since, pending.starts_at, pending.firing) == (T0, None, False)
    assert rules.poll(down, T0 + 299.999) == []
    [event] = rules.poll(down, T0 + 300)
    assert (event.alert, event.status, event.starts_at) == (
        "EndpointDown",
        AlertStatus.FIRING,
        T0 + 300,
    )
    assert rules.poll(down, T0 + 330) == []


def test_configured_for_duration_overrides_the_default() -> None:
    """A configured `for` of 60 s delays EntityCanHalt (default 0) until 60 s have passed."""
    rules = Rules(settings=AlertSettings(for_seconds={"EntityCanHalt": 60.0}))
    assert only(rules.poll(whale(1200), T0), "EntityCanHalt") == []
    assert only(rules.poll(whale(1200), T0 + 59), "EntityCanHalt") == []
    assert len(only(rules.poll(whale(1200), T0 + 60), "EntityCanHalt")) == 1


def test_condition_gone_while_pending_never_fires() -> None:
    """An endpoint recovering while EndpointDown pends emits no event, now or later."""
    rules = Rules(settings=AlertSettings(data_stale_seconds=NO_STALENESS))
    assert rules.poll(report(stakes(), endpoints_up=(True, False, True)), T0) == []
    assert rules.poll(report(stakes(), endpoints_up=(True, True, True)), T0 + 100) == []
    assert rules.states == {}
    assert rules.poll(report(stakes(), endpoints_up=(True, True, True)), T0 + 400) == []


def test_resolved_event_carries_the_firing_start_and_ends_now() -> None:
    """Resolved: same fingerprint and starts_at as the firing, ends_at = now, a new event_id."""
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    [fired] = only(rules.poll(whale(1200), T0), "EntityCanHalt")
    [resolved] = only(rules.poll(whale(300), T0 + 50), "EntityCanHalt")
    assert resolved.status is AlertStatus.RESOLVED
    assert (resolved.fingerprint, resolved.labels) == (fired.fingerprint, fired.labels)
    assert (resolved.starts_at, resolved.ends_at, resolved.observed_at) == (T0, T0 + 50, T0 + 50)
    assert resolved.event_id != fired.event_id
    assert rules.of("EntityCanHalt") == []


def test_firing_alert_does_not_fire_again_while_it_holds() -> None:
    """A held condition fires once; later polls update its value but emit nothing."""
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    assert len(rules.poll(report(stakes(jailed=1200)), T0)) > 0
    assert rules.poll(report(stakes(jailed=1200)), T0 + 30) == []
    [halted] = rules.of("ChainHalted")
    assert halted.starts_at == T0


def test_default_event_ids_are_unique() -> None:
    """Without `new_id`, every event gets a distinct event_id."""
    holding, judged, _ = conditions(
        report(stakes(jailed=1200), endpoints_up=(False, False)),
        chain_settings(),
        {},
        RuleMemory(),
        T0 + 1000,
    )
    _, events = advance(CHAIN, [], holding, judged, T0 + 1000, for_seconds=ZERO_FOR)
    assert len(events) >= 5
    assert len({e.event_id for e in events}) == len(events)


# --- hysteresis ----------------------------------------------------------------------------


def test_entity_share_hysteresis() -> None:
    """EntityCanHalt: fires at 1/3, silent at 1/3−0.001, resolves < 1/3−0.005, refires at 1/3."""
    rules = Rules(settings=alert_settings(hysteresis_ratio=0.005))
    assert len(only(rules.poll(whale(1000), T0), "EntityCanHalt")) == 1
    assert only(rules.poll(whale(997), T0 + 1), "EntityCanHalt") == []  # 1/3 − 0.001
    [held] = rules.of("EntityCanHalt")
    assert held.firing
    assert held.value == pytest.approx(997 / 3000)
    assert only(rules.poll(whale(986), T0 + 2), "EntityCanHalt") == []
    [resolved] = only(rules.poll(whale(984), T0 + 3), "EntityCanHalt")  # < 1/3 − 0.005
    assert resolved.status is AlertStatus.RESOLVED
    assert only(rules.poll(whale(997), T0 + 4), "EntityCanHalt") == []  # not back at 1/3
    [again] = only(rules.poll(whale(1000), T0 + 5), "EntityCanHalt")
    assert again.status is AlertStatus.FIRING


def test_entity_share_exactly_at_hysteresis_line_still_holds() -> None:
    """A firing EntityCanHalt at exactly 1/3 − hysteresis keeps firing, with no event."""
    rules = Rules(settings=alert_settings(hysteresis_ratio=0.005))
    rules.poll(whale(1000), T0)
    assert only(rules.poll(whale(985), T0 + 1), "EntityCanHalt") == []  # exactly 1/3 − 0.005
    assert "EntityCanHalt" in rules.firing()


def test_control_share_hysteresis() -> None:
    """EntityCanControl fires above 2/3, holds at 2/3 − 0.001 and resolves below 2/3 − 0.005."""
    rules = Rules(settings=alert_settings(hysteresis_ratio=0.005))
    assert len(only(rules.poll(whale(2001), T0), "EntityCanControl")) == 1
    assert only(rules.poll(whale(1997), T0 + 1), "EntityCanControl") == []
    [resolved] = only(rules.poll(whale(1984), T0 + 2), "EntityCanControl")
    assert resolved.status is AlertStatus.RESOLVED


def test_liveness_margin_hysteresis() -> None:
    """LivenessMarginLow (min 0.05, hysteresis 0.005): fires 0.049, silent 0.051, resolves 0.056."""
    rules = Rules(
        settings=alert_settings(
            liveness_margin_min=0.05, hysteresis_ratio=0.005, data_stale_seconds=NO_STALENESS
        )
    )
    [fired] = only(rules.poll(report(stakes(jailed=853)), T0), "LivenessMarginLow")
    assert fired.value == pytest.approx(0.049)
    assert fired.threshold == 0.05
    assert only(rules.poll(report(stakes(jailed=847)), T0 + 1), "LivenessMarginLow") == []
    assert "LivenessMarginLow" in rules.firing()
    [resolved] = only(rules.poll(report(stakes(jailed=832)), T0 + 2), "LivenessMarginLow")
    assert resolved.status is AlertStatus.RESOLVED


def test_chain_halted_hysteresis() -> None:
    """ChainHalted fires at 2/3 online, holds at margin 0.0033, resolves at margin 0.0067."""
    rules = Rules(settings=alert_settings(hysteresis_ratio=0.005))
    assert len(only(rules.poll(report(stakes(jailed=1000)), T0), "ChainHalted")) == 1
    assert only(rules.poll(report(stakes(jailed=990)), T0 + 1), "ChainHalted") == []
    assert "ChainHalted" in rules.firing()
    [resolved] = only(rules.poll(report(stakes(jailed=980)), T0 + 2), "ChainHalted")
    assert resolved.status is AlertStatus.RESOLVED


HYSTERESIS = Fraction(5, 1000)


@settings(max_examples=150, deadline=None, derandomize=True)
@example([1000, 985, 1000])  # exactly at the hysteresis line: not below it
@given(
    st.lists(
        st.one_of(
            st.integers(0, 3000),
            st.integers(975, 1010),
            st.sampled_from([984, 985, 986, 999, 1000, 1001]),  # the two lines, either side
        ),
        min_size=1,
        max_size=25,
    )
)
def test_entity_share_pages_once_per_upward_crossing(shares: list[int]) -> None:
    """EntityCanHalt firings ≤ 1 + upward crossings of 1/3 from below 1/3 − hysteresis."""
    rules = Rules(settings=alert_settings(hysteresis_ratio=0.005, data_stale_seconds=NO_STALENESS))
    firings = crossings = 0
    below = False  # below 1/3 − hysteresis since the last crossing
    for step, units in enumerate(shares):
        events = rules.poll(whale(units), T0 + step)
        firings += sum(
            e.status is AlertStatus.FIRING and e.labels.get("entity") == "whale"
            for e in only(events, "EntityCanHalt")
        )
        share = Fraction(units, 3000)
        if share < Fraction(1, 3) - HYSTERESIS:
            below = True
        elif share >= Fraction(1, 3) and below:
            crossings += 1
            below = False
    assert firings <= crossings + 1


# --- NakamotoCoefficientDropped ------------------------------------------------------------


def test_nakamoto_dropped_holds_below_the_level_it_fell_from() -> None:
    """Coefficient 10→7 fires; at 9, 4, 9 it holds silently (threshold 10); back at 10 resolves."""
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    assert rules.poll(report(stakes()), T0) == []
    [fired] = only(rules.poll(report(stakes(400)), T0 + 1), "NakamotoCoefficientDropped")
    assert (fired.value, fired.threshold) == (7.0, 10.0)
    for step, units in ((2, 200), (3, 700), (4, 250)):  # coefficients 9, 4, 9
        assert (
            only(rules.poll(report(stakes(units)), T0 + step), "NakamotoCoefficientDropped") == []
        )
        [held] = rules.of("NakamotoCoefficientDropped")
        assert held.firing
        assert held.threshold == 10.0
    assert rules.of("NakamotoCoefficientDropped")[0].value == 9.0
    [resolved] = only(rules.poll(report(stakes()), T0 + 5), "NakamotoCoefficientDropped")
    assert resolved.status is AlertStatus.RESOLVED
    assert resolved.starts_at == T0 + 1


def test_nakamoto_below_configured_minimum_fires() -> None:
    """Minimum 12 fires at coefficient 10 (value 10, threshold 12); minimum 10 does not."""
    rules = Rules(settings=alert_settings(nakamoto_halt_min=12))
    [fired] = only(rules.poll(report(stakes()), T0), "NakamotoCoefficientDropped")
    assert (fired.value, fired.threshold, fired.severity) == (10.0, 12.0, Severity.WARNING)
    calm = Rules(settings=alert_settings(nakamoto_halt_min=10))
    assert only(calm.poll(report(stakes()), T0), "NakamotoCoefficientDropped") == []


def test_nakamoto_drop_waits_out_its_for_duration() -> None:
    """A persisting fall 10→7 fires after its `for` of 60 s though the coefficient stays at 7."""
    rules = Rules(
        settings=AlertSettings(
            for_seconds={"NakamotoCoefficientDropped": 60.0}, data_stale_seconds=NO_STALENESS
        )
    )
    rules.poll(report(stakes()), T0)
    assert only(rules.poll(report(stakes(400)), T0 + 30), "NakamotoCoefficientDropped") == []
    assert only(rules.poll(report(stakes(400)), T0 + 60), "NakamotoCoefficientDropped") == []
    [fired] = only(rules.poll(report(stakes(400)), T0 + 90), "NakamotoCoefficientDropped")
    assert (fired.value, fired.threshold) == (7.0, 10.0)


# --- ValidatorJailed and JailStorm ---------------------------------------------------------


def test_jailed_validator_is_info() -> None:
    """A jailed validator not watched fires ValidatorJailed with severity info."""
    rules = Rules(settings=alert_settings(watched_validators=[addr(7)]))
    [event] = only(rules.poll(report(stakes(jailed=50)), T0), "ValidatorJailed")
    assert event.severity is Severity.INFO


@pytest.mark.parametrize(
    ("reported", "watched"),
    [
        ("0x" + "ab" * 20, "0x" + "AB" * 20),
        ("0x" + "Ab" * 20, "0x" + "ab" * 20),
    ],
    ids=["watched-upper", "reported-mixed"],
)
def test_watched_jailed_validator_is_warning(reported: str, watched: str) -> None:
    """A jailed watched validator is warning, whatever the case of either address."""
    jailed = dataclasses.replace(validator(99, 50, jailed=True), address=reported)
    rules = Rules(settings=alert_settings(watched_validators=[watched]))
    [event] = only(rules.poll(report([*stakes(total=2950), jailed]), T0), "ValidatorJailed")
    assert event.severity is Severity.WARNING
    assert event.labels["validator"] == reported


def test_unjailed_validator_resolves() -> None:
    """ValidatorJailed resolves once the validator is no longer jailed."""
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    rules.poll(report(stakes(jailed=50)), T0)
    [resolved] = only(rules.poll(report(stakes()), T0 + 1), "ValidatorJailed")
    assert resolved.status is AlertStatus.RESOLVED


def test_jail_storm_unjudged_without_jail_history() -> None:
    """A firing JailStorm stays silently through jails None; a storm-free report resolves it."""
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    rules.poll(report(stakes(), jails=jail_report(storm=True, jailed_last_hour=4)), T0)
    before = rules.of("JailStorm")
    assert only(rules.poll(report(stakes(), jails=None), T0 + 1), "JailStorm") == []
    assert rules.of("JailStorm") == before
    [resolved] = only(
        rules.poll(report(stakes(), jails=jail_report(storm=False)), T0 + 2), "JailStorm"
    )
    assert resolved.status is AlertStatus.RESOLVED


# --- chain down, staleness -----------------------------------------------------------------


def test_chain_down_keeps_snapshot_alerts_and_judges_the_rest() -> None:
    """Chain down: snapshot states and memory unchanged, only ALWAYS_JUDGED rules judged."""
    rules = Rules(settings=AlertSettings(for_seconds={"LivenessMarginLow": 300.0}))
    rules.poll(report(stakes()), T0)  # entity halt coefficient 10
    rules.poll(report(stakes(400, jailed=900)), T0 + 1)  # coefficient 2, margin 0.033
    snapshot = {k: s for k, s in rules.states.items() if s.alert in NEEDS_SNAPSHOT}
    assert {s.alert for s in snapshot.values() if s.firing} == {
        "ValidatorJailed",
        "NakamotoCoefficientDropped",
    }
    assert {s.alert for s in snapshot.values() if not s.firing} == {"LivenessMarginLow"}
    memory = rules.memory
    events = rules.poll(report(None, endpoints_up=(False, False)), T0 + 400)
    assert [(e.alert, e.status) for e in events] == [("DataStale", AlertStatus.FIRING)]
    assert rules.judged == ALWAYS_JUDGED
    assert rules.memory == memory
    assert {k: s for k, s in rules.states.items() if s.alert in NEEDS_SNAPSHOT} == snapshot
    assert {s.alert for s in rules.states.values() if not s.firing} >= {
        "EndpointDown",
        "AllEndpointsDown",
    }


def test_chain_down_then_back_resolves_what_cleared() -> None:
    """Back from an outage, cleared snapshot alerts resolve and held ones stay firing silently."""
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    rules.poll(whale(1200, jailed=50), T0)
    assert {"EntityCanHalt", "ValidatorJailed"} <= rules.firing()
    assert only(rules.poll(report(None), T0 + 30), "EntityCanHalt") == []
    events = rules.poll(whale(1200), T0 + 60)
    assert [(e.alert, e.status) for e in events if e.alert in NEEDS_SNAPSHOT] == [
        ("ValidatorJailed", AlertStatus.RESOLVED)
    ]
    assert "EntityCanHalt" in rules.firing()


def test_data_stale_defaults_to_three_poll_intervals() -> None:
    """DataStale holds past 3 poll intervals: 90 s at 30 s polls, 180 s at 60 s polls."""
    rules = Rules(settings=alert_settings())
    assert only(rules.poll(report(stakes()), T0 + 90), "DataStale") == []
    [stale] = only(rules.poll(report(stakes()), T0 + 90.5), "DataStale")
    assert (stale.value, stale.threshold) == (90.5, 90.0)
    slow = report(stakes(), settings=chain_settings(poll_interval_seconds=60.0))
    holding, _, _ = conditions(
        slow, chain_settings(poll_interval_seconds=60.0), {}, RuleMemory(), T0 + 180
    )
    assert [c.alert for c in holding] == []
    holding, _, _ = conditions(
        slow, chain_settings(poll_interval_seconds=60.0), {}, RuleMemory(), T0 + 181
    )
    assert [(c.alert, c.threshold) for c in holding] == [("DataStale", 180.0)]


def test_data_stale_threshold_is_configurable() -> None:
    """With data_stale_seconds 10, DataStale holds at 11 s of age but not at 10 s."""
    rules = Rules(settings=alert_settings(data_stale_seconds=10.0))
    assert only(rules.poll(report(stakes()), T0 + 10), "DataStale") == []
    [stale] = only(rules.poll(report(stakes()), T0 + 11), "DataStale")
    assert (stale.value, stale.threshold) == (11.0, 10.0)


# --- restart -------------------------------------------------------------------------------


def _before_restart() -> Rules:
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    rules.poll(report(stakes()), T0)
    rules.poll(report(stakes(1200, jailed=50), entity_of=WHALE), T0 + 30)
    return rules


def test_restart_does_not_refire_firing_alerts() -> None:
    """Persisted states + RuleMemory() + same report: no events, starts_at kept, all firing."""
    before = _before_restart()
    assert {"EntityCanHalt", "ValidatorJailed", "NakamotoCoefficientDropped"} <= before.firing()
    persisted = list(before.states.values())
    restarted = Rules(
        settings=before.settings, states={s.fingerprint: s for s in persisted}, new_id=lambda: "x"
    )
    assert restarted.poll(report(stakes(1200, jailed=50), entity_of=WHALE), T0 + 600) == []
    assert {k: s.starts_at for k, s in restarted.states.items()} == {
        s.fingerprint: s.starts_at for s in persisted
    }


def test_restart_resolves_what_resolved_while_down() -> None:
    """After a restart, firing alerts no longer holding resolve with their original starts_at."""
    before = _before_restart()
    started = {s.alert: s.starts_at for s in before.states.values()}
    restarted = Rules(settings=before.settings, states=dict(before.states))
    events = restarted.poll(report(stakes(jailed=50), entity_of=WHALE), T0 + 600)
    assert sorted((e.alert, e.status, e.starts_at, e.ends_at) for e in events) == [
        ("EntityCanHalt", AlertStatus.RESOLVED, started["EntityCanHalt"], T0 + 600),
        (
            "NakamotoCoefficientDropped",
            AlertStatus.RESOLVED,
            started["NakamotoCoefficientDropped"],
            T0 + 600,
        ),
    ]
    assert restarted.firing() == {"ValidatorJailed"}


# --- fingerprints and hostile names --------------------------------------------------------


def test_fingerprints_distinct_across_chains() -> None:
    """The same condition on two chains has two fingerprints; on one chain it keeps one."""
    settings_other = chain_settings(name="other")
    here, _, _ = conditions(whale(1200), chain_settings(), {}, RuleMemory(), T0)
    again, _, _ = conditions(whale(1200), chain_settings(), {}, RuleMemory(), T0 + 5)
    there, _, _ = conditions(
        report(stakes(1200), entity_of=WHALE, settings=settings_other),
        settings_other,
        {},
        RuleMemory(),
        T0,
    )
    assert [c.fingerprint for c in here] == [c.fingerprint for c in again]
    assert not {c.fingerprint for c in here} & {c.fingerprint for c in there}


def _is_safe(text: str) -> bool:
    return (
        len(text) <= 64
        and text.isprintable()
        and not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)
    )


def test_hostile_entity_names_give_safe_labels() -> None:
    """Newline, bidi and 10 kB entity names give safe, distinct labels and JSON that round-trips."""
    hostile = {
        addr(1): "evil\nname",
        addr(2): "\u202etxt.exe",
        addr(3): "x" * 10_000,
    }
    rules = Rules(settings=alert_settings())
    events = only(
        rules.poll(report(stakes(1000, 1000, 1000), entity_of=hostile), T0), "EntityCanHalt"
    )
    assert len(events) == 3
    assert len({e.fingerprint for e in events}) == 3
    for event in events:
        assert all(_is_safe(value) for value in event.labels.values())
        assert "\n" not in event.description
        assert not any(unicodedata.category(c) == "Cf" for c in event.description)
        assert json.loads(event.to_json())["labels"] == dict(event.labels)
    assert {e.labels["entity"] for e in events} >= {"evil name", "txt.exe"}


def test_data_stale_waits_after_a_fresh_start() -> None:
    """Without any valid set yet, DataStale holds only once monitoring has run past 90 s."""
    fresh = dataclasses.replace(report(None), last_success_at=None, monitoring_since=T0)
    holding, _, _ = conditions(fresh, chain_settings(), {}, RuleMemory(), T0 + 90)
    assert "DataStale" not in {c.alert for c in holding}
    holding, _, _ = conditions(fresh, chain_settings(), {}, RuleMemory(), T0 + 91)
    assert "DataStale" in {c.alert for c in holding}


def test_finality_lagging_fires_only_beyond_the_limit() -> None:
    """FinalityLagging holds above `finality_lag_max_epochs` (5 by default), not at it, and
    never for a chain without finality checkpoints."""

    def holding(lag: int | None, **alerts: Any) -> set[str]:
        found, _, _ = conditions(
            report(stakes(), finality_lag_epochs=lag),
            chain_settings(alerts=alert_settings(data_stale_seconds=NO_STALENESS, **alerts)),
            {},
            RuleMemory(),
            T0,
        )
        return {c.alert for c in found}

    assert "FinalityLagging" not in holding(None)
    assert "FinalityLagging" not in holding(5)
    assert "FinalityLagging" in holding(6)
    assert "FinalityLagging" not in holding(6, finality_lag_max_epochs=6)


def test_finality_lagging_carries_over_while_the_chain_is_down() -> None:
    """A firing FinalityLagging neither resolves nor fires again while no valid set arrives."""
    rules = Rules(settings=alert_settings(data_stale_seconds=NO_STALENESS))
    fired = only(rules.poll(report(stakes(), finality_lag_epochs=9), T0), "FinalityLagging")
    assert [e.status for e in fired] == [AlertStatus.FIRING]
    assert only(rules.poll(report(None), T0 + 30), "FinalityLagging") == []
    assert "FinalityLagging" in rules.firing()
    resolved = only(rules.poll(report(stakes(), finality_lag_epochs=2), T0 + 60), "FinalityLagging")
    assert [e.status for e in resolved] == [AlertStatus.RESOLVED]
