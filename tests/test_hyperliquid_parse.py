"""Strict decoding of Hyperliquid `validatorSummaries` and `exchangeStatus` answers."""

from __future__ import annotations

import gc
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumwatch.chains.hyperliquid.parse import (
    REJECTION_REASONS,
    parse_exchange_status,
    parse_validator_summaries,
)
from quorumwatch.columns import NO_TIME, STATUS_JAILED, STATUS_ONLINE, ValidatorTable
from quorumwatch.models import DataError, Validator, ValidatorStatus

# chain-apis.md §1.2: the first element of BlockPI's docs example, verbatim.
BLOCKPI_ROW = (
    '{"validator":"0x000000000056f99d36b6f2e0c51fd41496bbacb8",'
    '"signer":"0x0000000008b0b558419582041f85740344ae8fde","name":"ValiDAO",'
    '"description":"The People’s Validator. Zero seed oils. Yours truly. https://validao.xyz",'
    '"nRecentBlocks":1,"stake":668366174204757,"isJailed":false,"unjailableAfter":null,'
    '"isActive":true,"commission":"0.04","stats":[["day",{"uptimeFraction":"1.0",'
    '"predictedApr":"0.021572699","nSamples":1440}],["week",{"uptimeFraction":"0.9970238095",'
    '"predictedApr":"0.0215084945","nSamples":10080}],["month",{"uptimeFraction":"0.9993055556",'
    '"predictedApr":"0.0215577179","nSamples":43200}]]}'
)
# chain-apis.md §1.2: the constructed jailed-but-active row (invented values).
JAILED_ROW = (
    '{"validator":"0x1111111111111111111111111111111111111111",'
    '"signer":"0x2222222222222222222222222222222222222222","name":"Example Jailed",'
    '"description":"constructed","nRecentBlocks":0,"stake":250000000000000,"isJailed":true,'
    '"unjailableAfter":1767225600000,"isActive":true,"commission":"0.05","stats":[["day",'
    '{"uptimeFraction":"0.0","predictedApr":"0.0","nSamples":1440}],["week",{"uptimeFraction":'
    '"0.8","predictedApr":"0.0","nSamples":10080}],["month",{"uptimeFraction":"0.95",'
    '"predictedApr":"0.0","nSamples":43200}]]}'
)
ADDRESS = "0x00000000000000000000000000000000000000a1"
OTHER = "0x00000000000000000000000000000000000000b2"
REQUIRED_FIELDS = ("validator", "signer", "name", "stake", "isJailed", "isActive")


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(BLOCKPI_ROW)
    row.update(changes)
    return row


def _body(*rows: Any) -> bytes:
    return json.dumps(list(rows)).encode()


def _validators(body: bytes) -> tuple[Validator, ...]:
    table = parse_validator_summaries(body)
    return table.rows(range(len(table)))


def _rejection(body: bytes) -> DataError:
    with pytest.raises(DataError) as caught:
        parse_validator_summaries(body)
    assert caught.value.reason in REJECTION_REASONS
    return caught.value


def _stats(*entries: Any) -> list[Any]:
    return list(entries)


def _period(name: Any, fraction: Any) -> list[Any]:
    return [name, {"uptimeFraction": fraction, "predictedApr": "0.02", "nSamples": 1440}]


# --- accepted rows -----------------------------------------------------------------------------


def test_blockpi_row_parses_exactly() -> None:
    """The verbatim BlockPI row gives stake 668366174204757 exactly and uptime by period name."""
    (validator,) = _validators(f"[{BLOCKPI_ROW}]".encode())
    assert validator.address == "0x000000000056f99d36b6f2e0c51fd41496bbacb8"
    assert validator.name == "ValiDAO"
    assert validator.stake == 668366174204757
    assert validator.in_consensus_set is True
    assert validator.jailed is False
    assert validator.unjailable_after_ms is None
    assert validator.status is ValidatorStatus.ONLINE
    assert dict(validator.uptime_ratio) == {"1d": 1.0, "7d": 0.9970238095, "30d": 0.9993055556}


def test_jailed_active_row_is_jailed_and_in_consensus_set() -> None:
    """The constructed row is active and jailed, keeps unjailableAfter, and has status jailed."""
    table = parse_validator_summaries(f"[{BLOCKPI_ROW},{JAILED_ROW}]".encode())
    assert table.status.tolist() == [STATUS_ONLINE, STATUS_JAILED]
    assert table.unjailable_after_ms is not None
    assert table.unjailable_after_ms.tolist() == [NO_TIME, 1_767_225_600_000]
    jailed = table.row(1)
    assert jailed.in_consensus_set is True
    assert jailed.jailed is True
    assert jailed.online is False
    assert jailed.status is ValidatorStatus.JAILED
    assert jailed.stake == 250_000_000_000_000
    assert jailed.unjailable_after_ms == 1_767_225_600_000
    assert dict(jailed.uptime_ratio) == {"1d": 0.0, "7d": 0.8, "30d": 0.95}


def test_stake_above_2_pow_53_stays_exact() -> None:
    """A stake of 2**53 + 1 (not representable as a float) comes back as that exact int."""
    stake = 2**53 + 1
    assert float(stake) != stake
    table = parse_validator_summaries(_body(_row(stake=stake)))
    assert table.stakes.dtype == np.uint64
    assert int(table.stakes[0]) == stake


def test_stake_at_2_pow_128_minus_1_is_accepted() -> None:
    """The largest accepted stake is 2**128 - 1, kept exact as a Python int beside the others."""
    table = parse_validator_summaries(_body(_row(stake=2**128 - 1), _row(validator=OTHER)))
    assert table.stakes.tolist() == [2**128 - 1, 668366174204757]


def test_address_is_lowercased() -> None:
    """A mixed-case validator address is returned lower-cased."""
    table = parse_validator_summaries(_body(_row(validator="0x" + "aB" * 20)))
    assert list(table.addresses) == ["0x" + "ab" * 20]


def test_stats_period_order_is_irrelevant_and_unknown_periods_ignored() -> None:
    """Shuffled periods map by name, and an unknown period (even a malformed one) is skipped."""
    stats = _stats(
        _period("month", "0.3"),
        _period("year", "7"),  # unknown, so its out-of-range fraction is never read
        _period("day", "0.1"),
        _period("week", "0.2"),
    )
    (validator,) = _validators(_body(_row(stats=stats)))
    assert dict(validator.uptime_ratio) == {"30d": 0.3, "1d": 0.1, "7d": 0.2}


@pytest.mark.parametrize("stats", [None, []])
def test_absent_or_empty_stats_give_no_uptime(stats: Any) -> None:
    """A null or empty `stats` is accepted with no uptime ratios."""
    assert dict(parse_validator_summaries(_body(_row(stats=stats))).uptime_ratio) == {}


def test_inactive_zero_stake_rows_are_accepted_beside_a_staked_active_set() -> None:
    """Zero stake on an inactive row is fine while the active set holds stake."""
    table = parse_validator_summaries(_body(_row(), _row(validator=OTHER, stake=0, isActive=False)))
    assert table.stakes.tolist() == [668366174204757, 0]


# --- rejected answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'[{"validator": ', "malformed_json"),
        (b"\xff\xfe\x00garbage", "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        (b"", "malformed_json"),
        (b'{"validators": []}', "not_a_list"),
        (b"null", "not_a_list"),
        (b'"[]"', "not_a_list"),
        (b"[]", "empty_set"),
        (b"[1]", "wrong_type"),
    ],
)
def test_document_level_rejections(body: bytes, reason: str) -> None:
    """Undecodable, non-array, empty or non-object-row documents are rejected by reason."""
    assert _rejection(body).reason == reason


@pytest.mark.parametrize("field", [*REQUIRED_FIELDS, "unjailableAfter"])
def test_absent_required_field_is_missing_field(field: str) -> None:
    """Each required key, when absent from a row, is rejected as missing_field naming it."""
    row = _row()
    del row[field]
    error = _rejection(_body(row))
    assert error.reason == "missing_field"
    assert field in error.detail


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_null_required_field_is_missing_field(field: str) -> None:
    """A required field set to null is missing_field, never read as zero or false."""
    assert _rejection(_body(_row(**{field: None}))).reason == "missing_field"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"stake": 668366174204757.0}, "stake"),
        ({"stake": 1.5}, "stake"),
        ({"stake": "668366174204757"}, "stake"),
        ({"stake": True}, "stake"),
        ({"isJailed": 0}, "isJailed"),
        ({"isJailed": 1}, "isJailed"),
        ({"isJailed": "false"}, "isJailed"),
        ({"isActive": 1}, "isActive"),
        ({"name": 42}, "name"),
        ({"name": ["ValiDAO"]}, "name"),
        ({"validator": 1}, "validator"),
        ({"signer": False}, "signer"),
        ({"unjailableAfter": "1767225600000"}, "unjailableAfter"),
        ({"unjailableAfter": 1.7e12}, "unjailableAfter"),
        ({"unjailableAfter": -1}, "unjailableAfter"),
        ({"unjailableAfter": 2**63}, "unjailableAfter"),
        ({"stats": {"day": {"uptimeFraction": "1.0"}}}, "stats"),
        ({"stats": [["day"]]}, "stats"),
        ({"stats": [["day", "1.0"]]}, "stats"),
        ({"stats": [["day", {"uptimeFraction": "1.0"}, "extra"]]}, "stats"),
        ({"stats": ["day"]}, "stats"),
        ({"stats": [[1, {"uptimeFraction": "1.0"}]]}, "stats"),
        ({"stats": [_period("day", 1.0)]}, "uptimeFraction"),
        ({"stats": [_period("day", None)]}, "uptimeFraction"),
        ({"stats": [_period("day", "high")]}, "uptimeFraction"),
        ({"stats": [_period("day", "NaN")]}, "uptimeFraction"),
        ({"stats": [_period("week", "Infinity")]}, "uptimeFraction"),
        ({"stats": [_period("week", "1.0000001")]}, "uptimeFraction"),
        ({"stats": [_period("month", "-0.1")]}, "uptimeFraction"),
    ],
)
def test_ill_typed_field_is_wrong_type(changes: dict[str, Any], field: str) -> None:
    """An ill-typed field (float/string/bool stake, 0/1 flags, bad stats, an unjailableAfter
    outside 0..2**63-1 ms) is wrong_type."""
    error = _rejection(_body(_row(**changes)))
    assert error.reason == "wrong_type"
    assert field in error.detail


@pytest.mark.parametrize(
    "changes",
    [
        {"validator": "0x1234"},
        {"validator": "000000000056f99d36b6f2e0c51fd41496bbacb8aa"},
        {"validator": "0x000000000056f99d36b6f2e0c51fd41496bbacbg"},
        {"validator": "0x000000000056f99d36b6f2e0c51fd41496bbacb8\n"},
        {"signer": "0x" + "0" * 41},
        {"signer": ""},
    ],
)
def test_malformed_address_is_invalid_address(changes: dict[str, str]) -> None:
    """A validator or signer that is not 0x plus 40 hex digits is invalid_address."""
    assert _rejection(_body(_row(**changes))).reason == "invalid_address"


def test_same_address_differing_in_case_is_duplicate_validator() -> None:
    """Two rows whose validator differs only in letter case are duplicate_validator."""
    lower = "0x00000000000000000000000000000000000000ab"
    error = _rejection(
        _body(_row(validator=lower), _row(validator=lower.upper().replace("X", "x")))
    )
    assert error.reason == "duplicate_validator"
    assert "[1]" in error.detail


@pytest.mark.parametrize(("stake", "reason"), [(-1, "negative_stake"), (2**128, "absurd_stake")])
def test_out_of_range_stake(stake: int, reason: str) -> None:
    """A negative stake is negative_stake; one of 2**128 or more is absurd_stake."""
    assert _rejection(_body(_row(stake=stake))).reason == reason


@pytest.mark.parametrize(
    "rows",
    [
        [{"stake": 0}],
        [{"stake": 0}, {"validator": OTHER, "stake": 0}],
        [{"isActive": False}],
        [{"isActive": False}, {"validator": OTHER, "isActive": False, "stake": 5}],
        [{"stake": 0}, {"validator": OTHER, "isActive": False}],
    ],
)
def test_no_stake_in_active_set_is_zero_stake(rows: list[dict[str, Any]]) -> None:
    """An answer whose active set holds no stake (or has no active row) is zero_stake."""
    assert _rejection(_body(*(_row(**r) for r in rows))).reason == "zero_stake"


@pytest.mark.parametrize(
    "changes",
    [
        {"validator": "0x" + "Z" * 10_000},
        {"signer": "S" * 10_000},
        {"name": ["N" * 10_000]},
        {"stake": "9" * 10_000},
        {"stake": -(10**4000)},
        {"stake": 10**4000},
        {"isJailed": "J" * 10_000},
        {"unjailableAfter": "U" * 10_000},
        {"stats": [_period("day", "7" * 10_000)]},
        {"stats": "T" * 10_000},
    ],
)
def test_data_error_detail_never_contains_the_offending_value(changes: dict[str, Any]) -> None:
    """A 10 kB offending value appears neither in the DataError detail nor in its message."""
    error = _rejection(_body(_row(**changes)))
    assert len(str(error)) < 200
    for marker in ("ZZZZ", "SSSS", "NNNN", "9999", "0000000000", "JJJJ", "UUUU", "7777", "TTTT"):
        assert marker not in error.detail


def test_ten_kilobyte_name_is_valid_and_kept() -> None:
    """A 10 kB display name is a valid string: accepted as is (names are display only)."""
    table = parse_validator_summaries(_body(_row(name="N" * 10_000)))
    assert list(table.names) == ["N" * 10_000]


# --- decoding: msgspec, with json.loads deciding what msgspec refuses ---------------------------


def test_lone_surrogate_in_a_name_becomes_a_replacement_character() -> None:
    """A name sent as the JSON escape \\ud800 is kept, with U+FFFD in place of the surrogate,
    while an escaped surrogate pair stays the character it encodes."""
    body = _body(_row(name="a\ud800b"), _row(validator=OTHER, name="\U0001f600"))
    assert b"\\ud800" in body
    assert list(parse_validator_summaries(body).names) == ["a\ufffdb", "\U0001f600"]


def test_byte_order_mark_is_accepted_as_json_loads_accepts_it() -> None:
    """An answer behind a UTF-8 byte-order mark parses, as it always did."""
    table = parse_validator_summaries(b"\xef\xbb\xbf" + _body(_row()))
    assert table.stakes.tolist() == [668366174204757]


@pytest.mark.parametrize(
    "unread",
    [b'"\xff"', b"[" * 100_000 + b"]" * 100_000, b'"\xed\xa0\x80\xff"'],
    ids=["invalid_utf8", "deep_nesting", "surrogate_then_invalid_utf8"],
)
def test_undecodable_value_in_an_unread_field_is_malformed_json(unread: bytes) -> None:
    """Invalid UTF-8 or 100,000 nested arrays in a field the parser skips still make the
    answer malformed_json, though the typed decode never looks inside it."""
    body = _body(_row(description="placeholder")).replace(b'"placeholder"', unread)
    assert _rejection(body).reason == "malformed_json"


def test_five_thousand_digit_numbers() -> None:
    """A 5,000-digit stake is malformed_json (json.loads will not convert it); the same number
    in a field the parser skips is skipped with it, never converted."""
    huge = b"9" * 5_000
    body = _body(_row(stake=1, nRecentBlocks=2)).replace(b'"stake": 1', b'"stake": ' + huge)
    assert _rejection(body).reason == "malformed_json"
    body = _body(_row(nRecentBlocks=2)).replace(b'"nRecentBlocks": 2', b'"nRecentBlocks": ' + huge)
    assert parse_validator_summaries(body).stakes.tolist() == [668366174204757]


def test_a_repeated_key_keeps_its_last_value() -> None:
    """As with json.loads, the last of two `stake` keys counts, whichever one is ill-typed."""
    body = _body(_row(stake=5))
    table = parse_validator_summaries(body.replace(b'"stake": 5', b'"stake": "x", "stake": 7'))
    assert table.stakes.tolist() == [7]
    last_bad = body.replace(b'"stake": 5', b'"stake": 7, "stake": "x"')
    assert _rejection(last_bad).reason == "wrong_type"


@pytest.mark.parametrize(
    ("early", "late", "reason"),
    [
        ({"validator": "0x1234"}, {"name": 42}, "invalid_address"),
        ({"stake": -1}, {"isActive": "yes"}, "negative_stake"),
        ({"stats": [_period("day", "2")]}, {"signer": None}, "wrong_type"),
        ({"name": 42}, {"validator": "0x1234"}, "wrong_type"),
    ],
)
def test_the_earlier_row_s_fault_is_reported(
    early: dict[str, Any], late: dict[str, Any], reason: str
) -> None:
    """With faults in two rows, the first row's is reported, whether a type says it or a check."""
    error = _rejection(_body(_row(**early), _row(**{"validator": OTHER, **late})))
    assert (error.reason, error.detail[:3]) == (reason, "[0]")


def _many(count: int, **changes_at: dict[str, Any]) -> bytes:
    rows = [_row(validator=f"0x{index + 1:040x}", stats=None) for index in range(count)]
    for index, changes in changes_at.items():
        rows[int(index.removeprefix("at"))].update(changes)
    return _body(*rows)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"validator": "0x" + "a" * 39}, "invalid_address"),
        ({"validator": "0x" + "a" * 40 + "\n"}, "invalid_address"),
        ({"signer": "0X" + "a" * 40}, "invalid_address"),
        ({"signer": "0x" + "\u00e9" * 40}, "invalid_address"),
        ({"stake": -1}, "negative_stake"),
        ({"stake": 2**128}, "absurd_stake"),
        ({"stats": [_period("week", "NaN")]}, "wrong_type"),
    ],
)
def test_a_fault_in_a_large_set_names_its_row(changes: dict[str, Any], reason: str) -> None:
    """In a set of 3,000, whose columns are checked at once, a fault names the row it is in."""
    error = _rejection(_many(3_000, at1234=changes))
    assert (error.reason, error.detail.split(".")[0]) == (reason, "[1234]")


def test_mixed_case_addresses_in_a_large_set_are_lowercased() -> None:
    """Upper-case hex digits anywhere in a large set are lowercased in the address column,
    and a mixed-case signer is accepted."""
    table = parse_validator_summaries(
        _many(3_000, at7={"validator": "0x" + "AB" * 20, "signer": "0x" + "Cd" * 20})
    )
    assert table.addresses[7] == "0x" + "ab" * 20
    assert table.addresses[8] == f"0x{9:040x}"


def test_a_large_set_adds_no_object_per_validator_for_the_collector() -> None:
    """Parsing 3,000 validators leaves fewer than 100 more objects for the cyclic garbage
    collector to scan: the table is columns, not one object per validator."""
    body = _many(3_000, at7={"unjailableAfter": 1, "stats": [_period("day", "0.5")]})
    gc.collect()
    before = len(gc.get_objects())
    table = parse_validator_summaries(body)
    assert len(gc.get_objects()) - before < 100
    assert len(table) == 3_000


# --- exchangeStatus ----------------------------------------------------------------------------


def test_exchange_status_time_is_milliseconds_to_seconds() -> None:
    """exchangeStatus time 1750000000123 ms is 1750000000.123 s."""
    body = b'{"time": 1750000000123, "specialStatuses": null}'
    assert parse_exchange_status(body) == pytest.approx(1_750_000_000.123, abs=1e-6)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{}", "missing_field"),
        (b'{"time": null}', "missing_field"),
        (b'{"time": "1750000000123"}', "wrong_type"),
        (b'{"time": 1750000000123.5}', "wrong_type"),
        (b'{"time": true}', "wrong_type"),
        (b'{"time": -1}', "wrong_type"),
        pytest.param(b'{"time": 1' + b"0" * 400 + b"}", "wrong_type", id="time-1e400"),
        (b"[1750000000123]", "wrong_type"),
        (b'{"time": 17', "malformed_json"),
    ],
)
def test_exchange_status_rejections(body: bytes, reason: str) -> None:
    """A missing, ill-typed, negative or float-overflowing exchangeStatus time is rejected."""
    with pytest.raises(DataError) as caught:
        parse_exchange_status(body)
    assert caught.value.reason == reason


# --- fuzzing -----------------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.sampled_from([ADDRESS, OTHER, "day", "week", "month", "1.0", "0.5"])
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from([*REQUIRED_FIELDS, "unjailableAfter", "stats", "uptimeFraction", "x"]),
        children,
        max_size=9,
    )


_JSON = st.recursive(_SCALARS, _containers, max_leaves=40)
# A field's value is checked as one value: a container of more than a few values reaches no
# more of that check, and most of the cost of a row is generating its fields.
_FIELD_VALUE = st.recursive(_SCALARS, _containers, max_leaves=6)


def _outcome(body: bytes) -> str:
    """ "ok" for a non-empty table, else the DataError reason."""
    try:
        table = parse_validator_summaries(body)
    except DataError as exc:
        return exc.reason
    return "ok" if isinstance(table, ValidatorTable) and len(table) else "unexpected result"


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSON)
def test_random_json_either_parses_or_raises_data_error(document: Any) -> None:
    """Any JSON value gives validators or a DataError with a known reason, never anything else."""
    assert _outcome(json.dumps(document).encode()) in {"ok", *REJECTION_REASONS}


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({}, optional={"stake": _FIELD_VALUE, "isActive": _FIELD_VALUE}),
        max_size=3,
    )
)
def test_random_field_values_in_valid_rows_parse_or_raise_data_error(
    overrides: list[dict[str, Any]],
) -> None:
    """Random stake/isActive values in otherwise valid rows give validators or a DataError."""
    rows = [
        _row(validator=f"0x{index + 1:040x}", **changes) for index, changes in enumerate(overrides)
    ]
    assert _outcome(_body(*rows)) in {"ok", *REJECTION_REASONS}
