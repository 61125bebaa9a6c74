"""The /api/v1/state document, built from the report board without HTTP."""

from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from quorumwatch.alerting.model import AlertCommit, Severity, alert_document
from quorumwatch.analysis import Grouping, Threshold
from quorumwatch.exporter.state import (
    ENTITY_ROWS,
    NAME_LENGTH,
    SCHEMA,
    entity_rows,
    refresh_seconds,
    state_document,
)
from quorumwatch.jails.statistics import JailCounters
from quorumwatch.report import ChainReport, JailReport, ReportBoard
from tests.builders import address, alert_state, chain_settings, report, validator

NOW = 1060.0  # the builders' reports are polled at 1000


def document(*reports: ChainReport, **settings: Any) -> dict[str, Any]:
    """The document as of NOW for one chain, "hyperliquid", configured with `settings`."""
    board = ReportBoard()
    for published in reports:
        board.publish(published)
    return state_document(board, [chain_settings(**settings)], NOW)


def chain(*reports: ChainReport, **settings: Any) -> dict[str, Any]:
    (only,) = document(*reports, **settings)["chains"]
    result: dict[str, Any] = only
    return result


def jail_report(jailed_since: dict[str, float], names: dict[str, str]) -> JailReport:
    return JailReport(
        counters=JailCounters.zero(),
        windows=MappingProxyType({"1h": 1, "24h": 2, "7d": 4}),
        storm=False,
        jailed_since=MappingProxyType(jailed_since),
        names=MappingProxyType(names),
    )


def test_a_chain_not_polled_yet_is_listed_down_with_nothing_known() -> None:
    """Before its first poll a configured chain is listed, down, with every value null and no
    endpoints, failures or alerts; the document names its schema, version and time."""
    state = document()
    assert state["schema"] == SCHEMA
    assert state["generated_at"] == "1970-01-01T00:17:40.000Z"
    assert isinstance(state["version"], str)
    assert state["chains"] == [
        {
            "chain": "hyperliquid", "kind": "hyperliquid", "up": False,
            "poll_interval_seconds": 30.0, "polled_at": None, "last_success_at": None,
            "last_success_age_seconds": None, "failures": [], "nakamoto": None,
            "holders": None, "entities": None, "liveness_margin_ratio": None,
            "validators": None, "jailed": None, "jail_events": None, "jail_storm": None,
            "endpoints": [], "alerts": [],
        }
    ]  # fmt: skip


def test_an_up_chain_shows_its_analysis_counts_and_endpoints() -> None:
    """An up chain gives Nakamoto coefficients and holders per grouping, status counts, the
    liveness margin, the age of its valid poll and each endpoint's health and latency."""
    validators = [validator(i, stake) for i, stake in enumerate((50, 30, 20), 1)]
    validators.append(validator(4, 100, jailed=True))
    shown = chain(report(validators, endpoints_up=(True, False)))
    assert shown["up"] is True
    assert shown["polled_at"] == "1970-01-01T00:16:40.000Z"
    assert shown["last_success_age_seconds"] == 60.0
    assert shown["nakamoto"] == {
        "validator": {"halt": 1, "majority": 2, "control": 2},
        "entity": {"halt": 1, "majority": 2, "control": 2},
    }
    assert shown["holders"] == {"validator": 4, "entity": 4}
    assert shown["validators"] == {"online": 3, "jailed": 1, "delinquent": 0, "inactive": 0}
    assert shown["liveness_margin_ratio"] == -1 / 6  # 100 of 200 online, less 2/3
    assert shown["endpoints"] == [
        {"name": "ep0", "up": True, "latency_seconds": 0.2,
         "availability": {"5m": 0.75, "1h": 0.75, "24h": None}},
        {"name": "ep1", "up": False, "latency_seconds": 0.2,
         "availability": {"5m": 0.75, "1h": 0.75, "24h": None}},
    ]  # fmt: skip


def test_a_down_chain_keeps_its_jail_counts_but_lists_no_jailed_validators() -> None:
    """A failed poll nulls the analysis and the jailed list (who is jailed is not known) but
    keeps the jail counts, the age of the last valid poll and the failures, sanitised."""
    jails = jail_report({address(1): 950.0}, {address(1): "v1"})
    shown = chain(report(None, failures=("ep0: http_5xx\x1b[2J",), jails=jails))
    assert shown["up"] is False
    assert shown["last_success_age_seconds"] == 160.0
    assert shown["failures"] == ["ep0: http_5xx[2J"]
    assert (shown["nakamoto"], shown["entities"], shown["validators"]) == (None, None, None)
    assert shown["jailed"] is None
    assert shown["jail_events"] == {"1h": 1, "24h": 2, "7d": 4}
    assert shown["jail_storm"] is False


def test_the_liveness_margin_is_null_where_who_votes_is_unknown() -> None:
    """Where the set cannot tell who is voting (Ethereum over JSON), the margin is null, not
    a margin every validator online would give."""
    up = report([validator(1), validator(2)])
    assert up.validator_set is not None
    blind = dataclasses.replace(
        up, validator_set=dataclasses.replace(up.validator_set, liveness_known=False)
    )
    shown = chain(blind)
    assert shown["liveness_margin_ratio"] is None
    assert shown["nakamoto"] is not None


def test_jailed_validators_most_recent_first_with_name_entity_and_length() -> None:
    """The jailed list runs from the latest jail back, each with its name, its entity (null
    when it is its own) and how long it has been jailed as of now."""
    validators = [validator(1, jailed=True), validator(2, jailed=True), validator(3, 5000)]
    jails = jail_report(
        {address(1): 900.0, address(2): 1000.0}, {address(1): "one", address(2): "two"}
    )
    shown = chain(report(validators, entity_of={address(2): "Two Co"}, jails=jails))
    assert shown["jailed"] == [
        {"validator": address(2), "name": "two", "entity": "Two Co",
         "jailed_since": "1970-01-01T00:16:40.000Z", "jailed_seconds": 60.0},
        {"validator": address(1), "name": "one", "entity": None,
         "jailed_since": "1970-01-01T00:15:00.000Z", "jailed_seconds": 160.0},
    ]  # fmt: skip


def test_names_are_sanitised_and_capped_but_markup_is_left_to_the_page() -> None:
    """Entity and validator names lose control and bidi characters and are capped at
    NAME_LENGTH; markup stays as typed (the page renders it as text); a lone validator's
    entity row carries the validator's own name."""
    markup = "<script>alert(1)</script>"
    validators = [
        validator(1, 3000, name="\u202eevil\x1b[31m"),
        validator(2, 2000, name="L" * 10_000),
        validator(3, 1000, name=markup),
    ]
    entity_of = {address(2): markup + "\u200b"}
    rows = chain(report(validators, entity_of=entity_of))["entities"]
    assert [(r["name"], r["validator_name"]) for r in rows] == [
        (address(1), "evil[31m"),
        (markup, None),
        (address(3), markup),
    ]
    capped = chain(report(validators, entity_of={address(2): "E" * 10_000}))["entities"]
    assert len(capped[1]["name"]) == NAME_LENGTH


def test_entity_rows_colour_the_coalitions_exactly_at_one_third_and_two_thirds() -> None:
    """With three equal entities the first alone is the halt coalition (1/3 reaches halt) and
    the other two complete control; cumulative shares are exact."""
    up = report([validator(i, 1) for i in range(1, 4)])
    assert up.analysis is not None
    rows = entity_rows(up.analysis, 1000, {})
    assert [r["coalition"] for r in rows] == ["halt", "control", "control"]
    assert [r["cumulative_stake_ratio"] for r in rows] == [1 / 3, 2 / 3, 1.0]


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=40))
def test_halt_rows_and_control_rows_count_as_the_entity_nakamoto_coefficients(
    stakes: list[int],
) -> None:
    """However the stake is spread, the "halt" rows are as many as the entity halt coefficient
    and the "halt" and "control" rows together as many as the control coefficient."""
    up = report([validator(i, stake) for i, stake in enumerate(stakes, 1)])
    assert up.analysis is not None
    rows = entity_rows(up.analysis, 1000, {})
    nakamoto = up.analysis.groupings[Grouping.ENTITY].nakamoto
    coalitions = [r["coalition"] for r in rows]
    assert coalitions.count("halt") == nakamoto[Threshold.HALT]
    assert coalitions.count("halt") + coalitions.count("control") == nakamoto[Threshold.CONTROL]
    assert rows[-1]["cumulative_stake_ratio"] == 1.0


def test_entity_rows_stop_where_smaller_entities_could_be_missing() -> None:
    """Rows end after the largest max(max_validator_series, 4) entities, before a named
    entity the analysis adds out of rank, and never exceed ENTITY_ROWS."""
    validators = [validator(i, 1000 - i) for i in range(1, 11)]
    small = report(validators, entity_of={address(10): "Small Co"})
    assert small.analysis is not None
    assert "Small Co" in [e.name for e in small.analysis.entities[4:]]
    assert [r["name"] for r in entity_rows(small.analysis, 0, {})] == [
        address(i) for i in range(1, 5)
    ]
    many = report([validator(i, 1000 + i) for i in range(1, ENTITY_ROWS + 51)])
    assert many.analysis is not None
    assert len(entity_rows(many.analysis, 1000, {})) == ENTITY_ROWS


def test_firing_alerts_come_from_the_last_commit_most_severe_first() -> None:
    """The chain lists the alerts the evaluator's last commit holds firing, critical before
    warning, as their shared alert document; pending ones and earlier commits do not show."""
    critical = alert_state("EntityCanControl", entity="big")
    warning = dataclasses.replace(
        alert_state("EntityCanHalt", entity="big"), severity=Severity.WARNING
    )
    pending = alert_state("EntityCanHalt", entity="other", firing=False)
    board = ReportBoard()
    board.alerts_committed(AlertCommit("hyperliquid", (alert_state("DataStale"),)))
    board.alerts_committed(AlertCommit("hyperliquid", (warning, pending, critical)))
    (shown,) = state_document(board, [chain_settings()], NOW)["chains"]
    assert shown["alerts"] == [alert_document(critical), alert_document(warning)]


def test_chains_follow_the_configuration_order() -> None:
    """Chains are listed in the order they are configured, whichever reported first."""
    board = ReportBoard()
    board.publish(dataclasses.replace(report([validator(1)]), chain="b"))
    chains = [chain_settings(name="a"), chain_settings(name="b")]
    assert [c["chain"] for c in state_document(board, chains, NOW)["chains"]] == ["a", "b"]


def test_refresh_follows_the_fastest_poll_between_half_a_second_and_five() -> None:
    """The page refreshes at the fastest chain's poll interval, clamped to 0.5..5 s."""
    assert refresh_seconds([chain_settings(poll_interval_seconds=0.05)]) == 0.5
    fast = [chain_settings(poll_interval_seconds=30), chain_settings(poll_interval_seconds=2)]
    assert refresh_seconds(fast) == 2
    assert refresh_seconds([chain_settings(poll_interval_seconds=300)]) == 5


def test_the_document_is_strict_json() -> None:
    """A full document serialises without NaN or infinity and reads back equal."""
    jails = jail_report({address(1): 900.0}, {address(1): "one"})
    state = document(report([validator(1, jailed=True), validator(2)], jails=jails))
    assert json.loads(json.dumps(state, allow_nan=False)) == state
