from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from quorumwatch.simulator.scenario import (
    DEFAULT_UNJAILABLE_AFTER_MS,
    EmptySetFault,
    HttpStatusFault,
    LatencyFault,
    MalformedJsonFault,
    ScenarioError,
    Step,
    TimeoutFault,
    ValidatorSpec,
    available_scenarios,
    hype_to_base_units,
    load_scenario,
    parse_scenario,
    render_validator_summaries,
)

if TYPE_CHECKING:
    from pathlib import Path

    from quorumwatch.simulator.scenario import JsonObject, JsonValue

HF_ADDRESSES = frozenset(
    {
        "0x5ac99df645f3414876c816caa18b2d234024b487",
        "0xa82fe73bbd768bc15d1ef2f6142a21ff8bd762ad",
        "0x80f0cd23da5bf3a0101110cfd0f89c8a69a1384d",
        "0xdf35aee8ef5658686142acd1e5ab5dbcdf8c51e8",
        "0x66be52ec79f829cc88e5778a255e2cb9492798fd",
    }
)
ALICE = "0x00000000000000000000000000000000000000a1"
BOB = "0x00000000000000000000000000000000000000b2"
CAROL = "0x00000000000000000000000000000000000000c3"


def _document(*steps: JsonObject) -> JsonObject:
    return {"name": "test", "steps": list(steps)}


def _base_step() -> JsonObject:
    return {
        "repeat": 2,
        "validators": [
            {"validator": ALICE, "name": "Alice", "stake": 300},
            {"validator": BOB, "name": "Bob", "stake_hype": "1.5"},
        ],
    }


def _by_address(step: Step) -> dict[str, ValidatorSpec]:
    return {spec.validator: spec for spec in step.validators}


def _total(step: Step) -> int:
    return sum(spec.stake for spec in step.validators)


@pytest.mark.parametrize("name", ["foundation-2025", "healthy", "flaky-api"])
def test_bundled_scenario_loads_by_name(name: str) -> None:
    """Each bundled scenario is listed, loads by name and renders every step."""
    scenario = load_scenario(name)
    assert name in available_scenarios()
    assert scenario.name == name
    assert all(render_validator_summaries(step) for step in scenario.steps)


def test_foundation_holds_exactly_81_4_percent_of_404_5m_hype_in_every_step() -> None:
    """The five Foundation nodes hold exactly 81.4% of exactly 404,500,000 HYPE throughout."""
    for step in load_scenario("foundation-2025").steps:
        total = _total(step)
        foundation = sum(spec.stake for spec in step.validators if spec.validator in HF_ADDRESSES)
        assert total == 404_500_000 * 10**8
        assert foundation * 1000 == 814 * total


def test_foundation_set_has_16_active_validators_with_named_foundation_nodes() -> None:
    """Every step lists 16 active validators, HF1..HF5 named and HF5 signing with its hot key."""
    for step in load_scenario("foundation-2025").steps:
        validators = _by_address(step)
        assert len(validators) == 16
        assert all(spec.active for spec in step.validators)
        assert {validators[address].name for address in HF_ADDRESSES} == {
            f"Hyper Foundation {n}" for n in range(1, 6)
        }
        hf5 = validators["0x66be52ec79f829cc88e5778a255e2cb9492798fd"]
        assert hf5.signer == "0x5795ab6e71ecbefa255fc4728cc34893ba992d44"


def test_foundation_timeline_jails_and_unjails_another_third_party_validator() -> None:
    """One third party starts jailed; a second one is jailed mid-timeline and later unjailed."""
    steps = load_scenario("foundation-2025").steps

    def jailed(step: Step) -> set[str]:
        return {spec.validator for spec in step.validators if spec.jailed}

    assert len(jailed(steps[0])) == 1
    assert not jailed(steps[0]) & HF_ADDRESSES
    assert any(len(jailed(step)) == 2 for step in steps)
    assert jailed(steps[-1]) == jailed(steps[0])


def test_healthy_set_is_spread_out_with_three_small_inactive_validators() -> None:
    """healthy: 24 active, 3 small inactive, none jailed, no one above 8% of stake."""
    (step,) = load_scenario("healthy").steps
    total = _total(step)
    active = [spec for spec in step.validators if spec.active]
    inactive = [spec for spec in step.validators if not spec.active]
    assert len(active) == 24
    assert len(inactive) == 3
    assert not any(spec.jailed for spec in step.validators)
    assert all(spec.stake * 100 <= 8 * total for spec in step.validators)
    assert max(spec.stake for spec in inactive) < min(spec.stake for spec in active)


def test_flaky_api_exercises_each_fault_in_turn_then_recovers() -> None:
    """flaky-api runs latency, 429+Retry-After, 429, 503, timeout, malformed, empty, healthy."""
    scenario = load_scenario("flaky-api")
    faults = [step.fault for step in scenario.steps]
    assert faults[0] is None
    assert faults[1] == LatencyFault(seconds=0.2)
    assert isinstance(faults[2], HttpStatusFault)
    assert (faults[2].status, faults[2].retry_after) == (429, 1)
    assert isinstance(faults[3], HttpStatusFault)
    assert (faults[3].status, faults[3].retry_after) == (429, None)
    assert isinstance(faults[4], HttpStatusFault)
    assert faults[4].status == 503
    assert isinstance(faults[5], TimeoutFault)
    assert isinstance(faults[6], MalformedJsonFault)
    assert isinstance(faults[7], EmptySetFault)
    assert faults[8:] == [None]
    assert {step.validators for step in scenario.steps} == {
        load_scenario("healthy").steps[0].validators
    }


def test_changes_patch_and_remove_drop_validators_by_address() -> None:
    """changes patch fields of existing validators, add new ones, and remove drops them."""
    scenario = parse_scenario(
        _document(
            _base_step(),
            {"changes": {ALICE: {"jailed": True}, CAROL: {"name": "Carol", "stake": 7}}},
            {"remove": [BOB], "changes": {ALICE: {"jailed": False, "stake_hype": "2"}}},
            {"fault": {"kind": "empty_set"}},
        )
    )
    first, patched, removed, inherited = scenario.steps
    assert [spec.validator for spec in patched.validators] == [ALICE, BOB, CAROL]
    assert _by_address(patched)[ALICE].jailed
    assert _by_address(patched)[ALICE].stake == _by_address(first)[ALICE].stake
    assert _by_address(patched)[CAROL].stake == 7
    assert [spec.validator for spec in removed.validators] == [ALICE, CAROL]
    assert _by_address(removed)[ALICE].stake == 2 * 10**8
    assert inherited.validators == removed.validators


def test_jailed_default_unjailable_time_is_recomputed_after_unjail() -> None:
    """A jailed validator gets a fixed unjailableAfter by default, and null once unjailed."""
    scenario = parse_scenario(
        _document(
            _base_step(),
            {"changes": {BOB: {"jailed": True}}},
            {"changes": {BOB: {"jailed": False}}},
        )
    )
    unjailable = [_by_address(step)[BOB].unjailable_after_ms for step in scenario.steps]
    assert unjailable == [None, DEFAULT_UNJAILABLE_AFTER_MS, None]


@pytest.mark.parametrize(
    ("hype", "base_units"),
    [
        ("1.5", 150_000_000),
        ("0.00000001", 1),
        ("404500000", 40_450_000_000_000_000),
        ("123456789.12345678", 12_345_678_912_345_678),
        ("1E+3", 100_000_000_000),
    ],
)
def test_stake_hype_converts_exactly_to_base_units(hype: str, base_units: int) -> None:
    """stake_hype decimal strings convert to 1e-8 units with no rounding."""
    assert hype_to_base_units(hype) == base_units


@pytest.mark.parametrize(
    ("hype", "problem"),
    [
        ("0.000000001", "not a multiple of 1e-8"),
        ("1.000000015", "not a multiple of 1e-8"),
        ("abc", "not a decimal number"),
        ("-1", "non-negative"),
        ("Infinity", "finite"),
    ],
)
def test_stake_hype_rejects_amounts_that_would_round_or_are_not_stakes(
    hype: str, problem: str
) -> None:
    """Sub-1e-8, non-numeric, negative and infinite stake_hype values are refused."""
    with pytest.raises(ScenarioError, match=problem):
        hype_to_base_units(hype)


def test_stake_hype_error_names_the_validator_field() -> None:
    """A bad stake_hype inside a scenario names its step and validator index."""
    document = _document(
        {"validators": [{"validator": ALICE, "name": "A", "stake_hype": "0.000000001"}]}
    )
    with pytest.raises(ScenarioError, match=r"^steps\[0\]\.validators\[0\]\.stake_hype: "):
        parse_scenario(document)


@pytest.mark.parametrize(
    ("extra_steps", "message"),
    [
        (
            [{}, {"fault": {"kind": "foo"}}],
            r"^steps\[2\]\.fault\.kind: unknown fault 'foo'",
        ),
        ([{"repeat": 0}], r"^steps\[1\]\.repeat: must be at least 1"),
        ([{"fault": {"kind": "latency"}}], r"^steps\[1\]\.fault\.seconds: required field"),
        (
            [{"fault": {"kind": "latency", "seconds": float("nan")}}],
            r"^steps\[1\]\.fault\.seconds: expected a finite number",
        ),
        (
            [{"fault": {"kind": "raw", "body": [], "applies_to": "x"}}],
            r"^steps\[1\]\.fault\.applies_to: 'x' is not one of",
        ),
        ([{"changes": {CAROL: {"jailed": True}}}], rf"^steps\[1\]\.changes\.{CAROL}\.name: "),
        ([{"changes": {ALICE: {"jailed": "yes"}}}], rf"^steps\[1\]\.changes\.{ALICE}\.jailed: "),
        ([{"remove": [CAROL]}], r"^steps\[1\]\.remove\[0\]: .* not in the previous step's set"),
        ([{"colour": "red"}], r"^steps\[1\]\.colour: unknown field"),
        ([{"validators": [], "remove": [ALICE]}], r"^steps\[1\]: 'validators' cannot be"),
    ],
)
def test_invalid_scenarios_name_the_offending_field(
    extra_steps: list[JsonObject], message: str
) -> None:
    """Validation errors start with the path of the bad field."""
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_document(_base_step(), *extra_steps))


def test_first_step_must_list_validators() -> None:
    """A scenario whose first step only patches is rejected."""
    with pytest.raises(ScenarioError, match=r"^steps\[0\]\.validators: the first step"):
        parse_scenario(_document({"changes": {}}))


def test_bad_address_and_duplicate_address_are_rejected() -> None:
    """Validator addresses must be 0x + 40 hex digits and unique within a set."""
    short: JsonObject = {"validators": [{"validator": "0x12", "name": "A", "stake": 1}]}
    with pytest.raises(ScenarioError, match=r"^steps\[0\]\.validators\[0\]\.validator: '0x12'"):
        parse_scenario(_document(short))
    twice: JsonObject = {"validators": [{"validator": ALICE, "name": "A", "stake": 1}] * 2}
    with pytest.raises(ScenarioError, match=r"^steps\[0\]\.validators\[1\]\.validator: dup"):
        parse_scenario(_document(twice))


def test_unknown_scenario_name_lists_the_bundled_ones() -> None:
    """An unknown name that is not a file either lists the available scenarios."""
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'") as raised:
        load_scenario("nope")
    assert "flaky-api, foundation-2025, healthy" in str(raised.value)


def test_scenario_loads_from_a_file_path(tmp_path: Path) -> None:
    """A path to an existing file is loaded instead of a bundled name."""
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(_document(_base_step())), encoding="utf-8")
    assert load_scenario(str(path)) == parse_scenario(_document(_base_step()))


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    """Invalid JSON and invalid content both report which file was at fault."""
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.json: invalid JSON"):
        load_scenario(str(broken))
    empty = tmp_path / "empty.json"
    empty.write_text('{"name": "e", "steps": []}', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"empty\.json: steps: must contain"):
        load_scenario(str(empty))


def test_http_status_body_keeps_strings_as_text_and_encodes_json() -> None:
    """http_status bodies: strings go out as text/plain, other JSON (even null) as JSON."""
    specs: list[JsonValue] = [
        {"kind": "http_status", "status": 500, "body": None},
        {"kind": "http_status", "status": 403, "body": "<html>blocked</html>"},
        {"kind": "http_status", "status": 502},
    ]
    faults = [
        parse_scenario(_document(_base_step(), {"fault": spec})).steps[1].fault for spec in specs
    ]
    assert faults == [
        HttpStatusFault(status=500, body="null", content_type="application/json"),
        HttpStatusFault(status=403, body="<html>blocked</html>", content_type="text/plain"),
        HttpStatusFault(status=502),
    ]
