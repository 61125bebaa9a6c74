"""The --once probe: policy, Nagios text with perfdata, and the JSON contract."""

from __future__ import annotations

import json
import re
from fractions import Fraction

from quorumwatch.config import ChainSettings
from quorumwatch.models import Validator
from quorumwatch.probe import (
    Status,
    Verdict,
    judge,
    overall,
    render_json,
    render_text,
    unknown,
)
from tests.builders import chain_settings, report, validator

CHAIN = chain_settings()
# Subnet 1 of a Bittensor chain, whose validators author no blocks; kappa is Yuma's default.
SUBNET = ChainSettings.model_validate(
    {
        "name": "tao-sn1",
        "kind": "bittensor",
        "endpoints": [{"name": "finney", "url": "ws://127.0.0.1:9944"}],
        "bittensor": {"netuids": [1]},
    }
)
KAPPA = Fraction(32767, 65535)

FOUNDATION = {f"0x{i:040x}": "Hyper Foundation" for i in range(1, 6)}
HOLDER = {f"0x{1:040x}": "Coldkey Co"}


def spread(count: int, stake: int = 100) -> list[Validator]:
    """`count` equal validators numbered from 100, none attributed."""
    return [validator(100 + i, stake) for i in range(count)]


def largest_entity_perfdata(verdict: Verdict) -> str:
    """The `largest_entity_ratio` item of the verdict's Nagios perfdata."""
    items = render_text([verdict]).split(" | ", 1)[1].split(" ")
    (item,) = (i for i in items if i.startswith("largest_entity_ratio="))
    return item


def nagios_state(item: str) -> Status:
    """The state a perfdata item's value and plain warn;crit thresholds (alert above) give."""
    value, warn, crit = item.split("=", 1)[1].split(";")[:3]
    if crit and float(value) > float(crit):
        return Status.CRITICAL
    if warn and float(value) > float(warn):
        return Status.WARNING
    return Status.OK


class TestJudge:
    def test_entity_above_two_thirds_is_critical_and_named(self) -> None:
        """An entity with more than 2/3 is CRITICAL and the reason names it and its share."""
        validators = [validator(i, 163) for i in range(1, 6)] + spread(5, 37)
        verdict = judge(report(validators, entity_of=FOUNDATION), CHAIN)
        assert verdict.status is Status.CRITICAL
        assert any(
            "Hyper Foundation" in r and "81.50%" in r and "control" in r for r in verdict.reasons
        )

    def test_exactly_two_thirds_is_not_control(self) -> None:
        """An entity holding exactly 2/3 can halt (WARNING) but cannot control."""
        verdict = judge(report([validator(1, 200), validator(2, 100)], entity_of={}), CHAIN)
        assert verdict.status is Status.WARNING
        assert any("can halt" in r for r in verdict.reasons)
        assert not any("control" in r for r in verdict.reasons)

    def test_exactly_one_third_can_halt(self) -> None:
        """An entity with exactly 1/3 of consensus stake makes the chain WARNING."""
        verdict = judge(report([validator(1, 100), *spread(4, 50)]), CHAIN)
        assert verdict.status is Status.WARNING
        assert any("0x0000000000000000000000000000000000000001" in r for r in verdict.reasons)

    def test_decentralised_set_is_ok(self) -> None:
        """Ten equal validators, two healthy endpoints: OK with no reasons."""
        verdict = judge(report(spread(10)), CHAIN)
        assert verdict.status is Status.OK
        assert verdict.reasons == ()

    def test_online_stake_exactly_two_thirds_is_halted(self) -> None:
        """Online stake of exactly 2/3 cannot commit: CRITICAL."""
        validators = [*spread(6), validator(1, 150, jailed=True), validator(2, 150, jailed=True)]
        verdict = judge(report(validators), CHAIN)
        assert verdict.status is Status.CRITICAL
        assert any("cannot commit" in r for r in verdict.reasons)

    def test_low_liveness_margin_warns(self) -> None:
        """A positive liveness margin under 0.05 is WARNING."""
        validators = [*spread(7), validator(1, 330, jailed=True)]  # online 700/1030
        verdict = judge(report(validators), CHAIN)
        assert verdict.status is Status.WARNING
        assert any("liveness margin" in r for r in verdict.reasons)

    def test_policy_threshold_is_configurable(self) -> None:
        """liveness_margin_warning = 0 silences the low-margin warning."""
        settings = chain_settings(policy={"liveness_margin_warning": 0.0})
        validators = [*spread(7), validator(1, 330, jailed=True)]
        assert judge(report(validators, settings=settings), settings).status is Status.OK

    def test_single_healthy_endpoint_warns(self) -> None:
        """With only one endpoint healthy the probe warns of a single point of failure."""
        verdict = judge(report(spread(10), endpoints_up=(True, False)), CHAIN)
        assert verdict.status is Status.WARNING
        assert verdict.reasons == ("only 1 endpoint healthy: a single point of failure",)

    def test_no_valid_set_is_critical(self) -> None:
        """No valid validator set from any endpoint is CRITICAL, naming the failures."""
        verdict = judge(
            report(None, endpoints_up=(False, False), failures=("ep0: timeout", "ep1: http_5xx")),
            CHAIN,
        )
        assert verdict.status is Status.CRITICAL
        assert "ep0: timeout" in verdict.reasons[0]

    def test_overall_is_the_worst(self) -> None:
        """The exit status is the worst chain status."""
        verdicts = [judge(report(spread(10)), CHAIN), judge(report(None), CHAIN)]
        assert overall(verdicts) is Status.CRITICAL


class TestMajority:
    def test_majority_on_a_bft_chain_is_a_warning_naming_the_holder(self) -> None:
        """An entity over 1/2 but not 2/3 of a BFT chain is WARNING, one reason naming it, its
        share and the majority."""
        verdict = judge(report([validator(1, 600), *spread(4)], entity_of=HOLDER), CHAIN)
        assert verdict.status is Status.WARNING
        assert verdict.reasons == (
            "entity Coldkey Co holds 60.00% of consensus stake, more than 1/2:"
            " it holds the majority and can halt the chain",
        )

    def test_exactly_one_half_is_no_majority(self) -> None:
        """An entity holding exactly 1/2 of a BFT chain gets the halt reason, not the majority."""
        verdict = judge(report([validator(1, 400), *spread(4)], entity_of=HOLDER), CHAIN)
        assert verdict.reasons == (
            "entity Coldkey Co holds 50.00% of consensus stake, at least 1/3:"
            " it can halt the chain",
        )

    def test_control_on_a_bft_chain_stands_for_the_majority(self) -> None:
        """Over 2/3 of a BFT chain, the one reason is control (CRITICAL); without that policy
        the majority (WARNING) is reported instead."""
        validators = [validator(1, 700), *spread(3)]
        assert judge(report(validators, entity_of=HOLDER), CHAIN).reasons == (
            "entity Coldkey Co holds 70.00% of consensus stake, more than 2/3:"
            " it can control the chain",
        )
        lenient = chain_settings(policy={"critical_when_entity_can_control": False})
        verdict = judge(report(validators, entity_of=HOLDER, settings=lenient), lenient)
        assert verdict.status is Status.WARNING
        assert verdict.reasons[0].endswith(
            "more than 1/2: it holds the majority and can halt the chain"
        )

    def test_over_kappa_on_a_subnet_is_critical_naming_the_holder(self) -> None:
        """On a Bittensor subnet an entity over kappa (at exactly 1/2 and at 3/4) is CRITICAL, one
        reason naming it, its share, kappa and the incentives it sets; not control."""
        for stake in (400, 1200):  # 50% and 75%
            verdict = judge(
                report(
                    [validator(1, stake), *spread(4)],
                    entity_of=HOLDER,
                    settings=SUBNET,
                    consensus_threshold=KAPPA,
                ),
                SUBNET,
            )
            share = f"{stake / (stake + 400):.2%}"
            assert verdict.status is Status.CRITICAL
            assert verdict.reasons == (
                f"entity Coldkey Co holds {share} of consensus stake, more than the chain's"
                " consensus threshold (49.999%): it sets the subnet's incentives alone",
            )

    def test_a_third_of_a_subnet_is_a_share_not_a_halt(self) -> None:
        """On a Bittensor subnet 1/3 to kappa is WARNING, as EntityCanHalt, but the reason says
        that a subnet's validators author no blocks, not that the holder can halt the chain."""
        verdict = judge(
            report(
                [validator(1, 200), *spread(4)],
                entity_of=HOLDER,
                settings=SUBNET,
                consensus_threshold=KAPPA,
            ),
            SUBNET,
        )
        assert verdict.status is Status.WARNING
        assert verdict.reasons == (
            "entity Coldkey Co holds 33.33% of consensus stake, at least 1/3:"
            " a subnet's validators author no blocks, so it cannot halt the chain",
        )

    def test_hostile_holder_name_is_sanitised_in_text_and_json(self) -> None:
        """A majority holder named with a newline and a bidi override makes one Nagios line and
        valid JSON, with neither character in the reason."""
        validators = [validator(1, 900), *spread(2)]
        hostile = {validators[0].address: "Evil\n\u202eCo"}
        verdict = judge(
            report(validators, entity_of=hostile, settings=SUBNET, consensus_threshold=KAPPA),
            SUBNET,
        )
        (reason,) = verdict.reasons
        assert "incentives" in reason
        assert "\n" not in reason
        assert "\u202e" not in reason
        assert len(render_text([verdict]).splitlines()) == 1
        assert json.loads(render_json([verdict]))["chains"][0]["reasons"] == [reason]


class TestText:
    def test_one_nagios_line_per_chain_with_perfdata(self) -> None:
        """Text output is `QUORUMWATCH STATUS - chain: reasons | perfdata`, one line per chain."""
        output = render_text([judge(report(spread(10)), CHAIN), judge(report(None), CHAIN)])
        lines = output.splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("QUORUMWATCH OK - hyperliquid: ")
        assert lines[1].startswith("QUORUMWATCH CRITICAL - hyperliquid: no endpoint returned")
        perfdata = lines[0].split(" | ", 1)[1]
        assert "nakamoto_halt_entity=4;;;1" in perfdata
        assert "endpoints_healthy=2;2:;1:;0;2" in perfdata
        for item in perfdata.split(" "):
            assert re.fullmatch(r"('[^']+'|[a-z_0-9]+)=-?[0-9.]+(s|%)?(;[^; ]*){0,4}", item), item

    def test_largest_entity_thresholds_are_the_bft_lines(self) -> None:
        """Where validators author blocks, largest_entity_ratio warns above 1/3, critical above
        2/3."""
        verdict = judge(report(spread(10)), CHAIN)
        assert (
            largest_entity_perfdata(verdict)
            == "largest_entity_ratio=0.100000;0.333333;0.666667;0;1"
        )

    def test_largest_entity_is_critical_above_kappa_on_a_subnet(self) -> None:
        """On a Bittensor subnet, largest_entity_ratio is critical above kappa, not 2/3."""
        subnet = report(spread(10), settings=SUBNET, consensus_threshold=KAPPA)
        verdict = judge(subnet, SUBNET)
        assert (
            largest_entity_perfdata(verdict)
            == "largest_entity_ratio=0.100000;0.333333;0.499992;0;1"
        )

    def test_largest_entity_thresholds_give_the_verdicts_status(self) -> None:
        """For a largest entity off the lines, on either kind, with the entity policy on or off,
        the state largest_entity_ratio's thresholds give is the verdict's status."""
        quiet = {"warning_when_entity_can_halt": False, "critical_when_entity_can_control": False}
        for policy in ({}, quiet):
            chain = chain_settings(policy=policy)
            subnet = SUBNET.model_copy(update={"policy": chain.policy})
            for settings, kappa in ((chain, None), (subnet, KAPPA)):
                for stake in (200, 400, 550, 700, 900):
                    validators = [validator(1, stake), *spread((1000 - stake) // 10, 10)]
                    polled = report(validators, settings=settings, consensus_threshold=kappa)
                    verdict = judge(polled, settings)
                    state = nagios_state(largest_entity_perfdata(verdict))
                    assert state is verdict.status, (settings.name, policy, stake)

    def test_hostile_entity_name_stays_on_one_line(self) -> None:
        """A newline or bidi override in a name cannot add lines to the Nagios output."""
        validators = [validator(1, 900), *spread(2)]
        verdict = judge(
            report(validators, entity_of={validators[0].address: "Evil\n\u202eCo"}), CHAIN
        )
        output = render_text([verdict])
        assert len(output.splitlines()) == 1
        assert "\u202e" not in output


class TestJson:
    def test_contract_fields(self) -> None:
        """The JSON document carries exactly the documented fields and types."""
        validators = [validator(i, 163) for i in range(1, 6)] + spread(5, 37)
        document = json.loads(render_json([judge(report(validators, entity_of=FOUNDATION), CHAIN)]))
        assert document["status"] == "CRITICAL"
        (chain,) = document["chains"]
        assert set(chain) == {
            "chain",
            "status",
            "reasons",
            "nakamoto",
            "largest_entity",
            "validators",
            "liveness_margin_ratio",
            "endpoints",
        }
        assert chain["nakamoto"] == {
            "validator": {"halt": 3, "majority": 4, "control": 5},
            "entity": {"halt": 1, "majority": 1, "control": 1},
        }
        assert chain["largest_entity"] == {"name": "Hyper Foundation", "stake_ratio": 0.815}
        assert chain["validators"] == {"online": 10, "jailed": 0, "delinquent": 0, "inactive": 0}
        assert chain["endpoints"] == [
            {"name": "ep0", "up": True, "latency_seconds": 0.2},
            {"name": "ep1", "up": True, "latency_seconds": 0.2},
        ]

    def test_down_chain_has_nulls_not_zeros(self) -> None:
        """A chain without a valid set reports null analysis fields, never 0."""
        document = json.loads(render_json([judge(report(None), CHAIN)]))
        chain = document["chains"][0]
        assert chain["nakamoto"] is None
        assert chain["largest_entity"] is None
        assert chain["validators"] is None
        assert chain["liveness_margin_ratio"] is None

    def test_unknown_in_both_formats(self) -> None:
        """The probe's own failure is UNKNOWN in text and JSON."""
        assert unknown("config error: x", "text") == "QUORUMWATCH UNKNOWN - config error: x"
        assert json.loads(unknown("config error: x", "json")) == {
            "status": "UNKNOWN",
            "error": "config error: x",
            "chains": [],
        }
