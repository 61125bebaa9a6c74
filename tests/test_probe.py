"""The --once probe: policy, Nagios text with perfdata, and the JSON contract."""

from __future__ import annotations

import json
import re

from quorumwatch.config import PolicySettings
from quorumwatch.models import Validator
from quorumwatch.probe import Status, judge, overall, render_json, render_text, unknown
from tests.builders import chain_settings, report, validator

POLICY = PolicySettings()

FOUNDATION = {f"0x{i:040x}": "Hyper Foundation" for i in range(1, 6)}


def spread(count: int, stake: int = 100) -> list[Validator]:
    """`count` equal validators numbered from 100, none attributed."""
    return [validator(100 + i, stake) for i in range(count)]


class TestJudge:
    def test_entity_above_two_thirds_is_critical_and_named(self) -> None:
        """An entity with more than 2/3 is CRITICAL and the reason names it and its share."""
        validators = [validator(i, 163) for i in range(1, 6)] + spread(5, 37)
        verdict = judge(report(validators, entity_of=FOUNDATION), POLICY)
        assert verdict.status is Status.CRITICAL
        assert any(
            "Hyper Foundation" in r and "81.50%" in r and "control" in r for r in verdict.reasons
        )

    def test_exactly_two_thirds_is_not_control(self) -> None:
        """An entity holding exactly 2/3 can halt (WARNING) but cannot control."""
        verdict = judge(report([validator(1, 200), validator(2, 100)], entity_of={}), POLICY)
        assert verdict.status is Status.WARNING
        assert any("can halt" in r for r in verdict.reasons)
        assert not any("control" in r for r in verdict.reasons)

    def test_exactly_one_third_can_halt(self) -> None:
        """An entity with exactly 1/3 of consensus stake makes the chain WARNING."""
        verdict = judge(report([validator(1, 100), *spread(4, 50)]), POLICY)
        assert verdict.status is Status.WARNING
        assert any("0x0000000000000000000000000000000000000001" in r for r in verdict.reasons)

    def test_decentralised_set_is_ok(self) -> None:
        """Ten equal validators, two healthy endpoints: OK with no reasons."""
        verdict = judge(report(spread(10)), POLICY)
        assert verdict.status is Status.OK
        assert verdict.reasons == ()

    def test_online_stake_exactly_two_thirds_is_halted(self) -> None:
        """Online stake of exactly 2/3 cannot commit: CRITICAL."""
        validators = [*spread(6), validator(1, 150, jailed=True), validator(2, 150, jailed=True)]
        verdict = judge(report(validators), POLICY)
        assert verdict.status is Status.CRITICAL
        assert any("cannot commit" in r for r in verdict.reasons)

    def test_low_liveness_margin_warns(self) -> None:
        """A positive liveness margin under 0.05 is WARNING."""
        validators = [*spread(7), validator(1, 330, jailed=True)]  # online 700/1030
        verdict = judge(report(validators), POLICY)
        assert verdict.status is Status.WARNING
        assert any("liveness margin" in r for r in verdict.reasons)

    def test_policy_threshold_is_configurable(self) -> None:
        """liveness_margin_warning = 0 silences the low-margin warning."""
        settings = chain_settings(policy={"liveness_margin_warning": 0.0})
        validators = [*spread(7), validator(1, 330, jailed=True)]
        assert judge(report(validators, settings=settings), settings.policy).status is Status.OK

    def test_single_healthy_endpoint_warns(self) -> None:
        """With only one endpoint healthy the probe warns of a single point of failure."""
        verdict = judge(report(spread(10), endpoints_up=(True, False)), POLICY)
        assert verdict.status is Status.WARNING
        assert verdict.reasons == ("only 1 endpoint healthy: a single point of failure",)

    def test_no_valid_set_is_critical(self) -> None:
        """No valid validator set from any endpoint is CRITICAL, naming the failures."""
        verdict = judge(
            report(None, endpoints_up=(False, False), failures=("ep0: timeout", "ep1: http_5xx")),
            POLICY,
        )
        assert verdict.status is Status.CRITICAL
        assert "ep0: timeout" in verdict.reasons[0]

    def test_overall_is_the_worst(self) -> None:
        """The exit status is the worst chain status."""
        verdicts = [judge(report(spread(10)), POLICY), judge(report(None), POLICY)]
        assert overall(verdicts) is Status.CRITICAL


class TestText:
    def test_one_nagios_line_per_chain_with_perfdata(self) -> None:
        """Text output is `QUORUMWATCH STATUS - chain: reasons | perfdata`, one line per chain."""
        output = render_text([judge(report(spread(10)), POLICY), judge(report(None), POLICY)])
        lines = output.splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("QUORUMWATCH OK - hyperliquid: ")
        assert lines[1].startswith("QUORUMWATCH CRITICAL - hyperliquid: no endpoint returned")
        perfdata = lines[0].split(" | ", 1)[1]
        assert "nakamoto_halt_entity=4;;;1" in perfdata
        assert "endpoints_healthy=2;2:;1:;0;2" in perfdata
        for item in perfdata.split(" "):
            assert re.fullmatch(r"('[^']+'|[a-z_0-9]+)=-?[0-9.]+(s|%)?(;[^; ]*){0,4}", item), item

    def test_hostile_entity_name_stays_on_one_line(self) -> None:
        """A newline or bidi override in a name cannot add lines to the Nagios output."""
        validators = [validator(1, 900), *spread(2)]
        verdict = judge(
            report(validators, entity_of={validators[0].address: "Evil\n\u202eCo"}), POLICY
        )
        output = render_text([verdict])
        assert len(output.splitlines()) == 1
        assert "\u202e" not in output


class TestJson:
    def test_contract_fields(self) -> None:
        """The JSON document carries exactly the documented fields and types."""
        validators = [validator(i, 163) for i in range(1, 6)] + spread(5, 37)
        document = json.loads(
            render_json([judge(report(validators, entity_of=FOUNDATION), POLICY)])
        )
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
        document = json.loads(render_json([judge(report(None), POLICY)]))
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
