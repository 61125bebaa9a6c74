"""Strict decoding of configured JSON answers for `kind = "generic"`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumwatch.chains.base import decode_json
from quorumwatch.chains.generic.parse import MAX_STAKE, REJECTION_REASONS, parse_generic
from quorumwatch.columns import ValidatorTable
from quorumwatch.config import GenericSettings
from quorumwatch.models import DataError, Validator, ValidatorStatus

FLAT = GenericSettings(
    list_path="validators",
    id_field="id",
    name_field="name",
    stake_field="stake",
    jailed_field="jailed",
    active_field="active",
)


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": "v1", "name": "One", "stake": 10, "jailed": False, "active": True}
    row.update(changes)
    return row


def _flat(*rows: Any) -> bytes:
    return json.dumps({"validators": list(rows)}).encode()


def _validators(body: bytes, config: GenericSettings = FLAT) -> tuple[Validator, ...]:
    table = parse_generic(body, config).table
    return table.rows(range(len(table)))


def _rejection(body: bytes, config: GenericSettings = FLAT) -> DataError:
    with pytest.raises(DataError) as caught:
        parse_generic(body, config)
    assert caught.value.reason in REJECTION_REASONS
    return caught.value


def test_flat_rows_parse_into_validators() -> None:
    """Id, name, stake, jailed and active are read from each row; statuses follow the flags."""
    body = _flat(_row(), _row(id="v2", name="Two", stake=0, active=False, jailed=True))
    one, two = _validators(body)
    assert (one.address, one.name, one.stake, one.status) == ("v1", "One", 10, "online")
    assert (two.address, two.name, two.stake, two.status) == ("v2", "Two", 0, "jailed")
    assert two.in_consensus_set is False


def test_nested_paths_with_list_index() -> None:
    """`result.0.validators` indexes an array; item fields are dotted paths within each item."""
    config = GenericSettings(
        list_path="result.0.validators",
        id_field="info.operator",
        name_field="info.description.moniker",
        stake_field="tokens.0.amount",
        jailed_field="status.jailed",
        active_field="status.bonded",
    )
    item = {
        "info": {"operator": "valoper1", "description": {"moniker": "M"}},
        "tokens": [{"amount": "123"}, {"amount": "7"}],
        "status": {"jailed": True, "bonded": True},
    }
    body = json.dumps({"result": [{"validators": [item]}, {"validators": []}]}).encode()
    (validator,) = _validators(body, config)
    assert validator.address == "valoper1"
    assert validator.name == "M"
    assert validator.stake == 123
    assert validator.jailed is True
    assert validator.status is ValidatorStatus.JAILED


def test_root_list_and_defaults_without_optional_fields() -> None:
    """list_path "" takes the answer as the list; no flags: active, not jailed; name = id."""
    config = GenericSettings(id_field="0", stake_field="1")
    (validator,) = _validators(b'[["a", 5]]', config)
    assert (validator.address, validator.name, validator.stake) == ("a", "a", 5)
    assert validator.in_consensus_set is True
    assert validator.jailed is False


def test_string_stakes_beyond_2_53_are_exact() -> None:
    """Digit-string and JSON-integer stakes above 2**53 survive exactly, up to 2**128."""
    big = 2**53 + 1
    body = _flat(
        _row(stake=str(big)), _row(id="v2", stake=big), _row(id="v3", stake=str(MAX_STAKE))
    )
    assert parse_generic(body, FLAT).table.stakes.tolist() == [big, big, MAX_STAKE]


def test_leading_zero_string_stake_is_its_value() -> None:
    """A digit string with leading zeros ("007") is the integer 7; "0" is zero."""
    body = _flat(_row(stake="007"), _row(id="v2", stake="0"))
    assert parse_generic(body, FLAT).table.stakes.tolist() == [7, 0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "malformed_json"),
        (b"[1, 2", "malformed_json"),
        (b'{"other": []}', "missing_field"),
        (b'{"validators": null}', "missing_field"),
        (b'{"validators": {}}', "not_a_list"),
        (b'{"validators": "[]"}', "not_a_list"),
        (b"[]", "wrong_type"),
        (b'"validators"', "wrong_type"),
        (b'{"validators": []}', "empty_set"),
    ],
)
def test_list_path_rejections(body: bytes, reason: str) -> None:
    """A missing, null, unreachable, non-array or empty validator list is rejected, by reason."""
    assert _rejection(body).reason == reason


def test_list_index_rejections() -> None:
    """An out-of-range index is missing_field; a name into an array, or a scalar, wrong_type."""
    config = GenericSettings(list_path="result.1", id_field="id", stake_field="stake")
    assert _rejection(b'{"result": [[]]}', config).reason == "missing_field"
    huge = GenericSettings(list_path="result." + "9" * 40, id_field="id", stake_field="stake")
    assert _rejection(b'{"result": [[]]}', huge).reason == "missing_field"
    assert _rejection(b'{"result": {"1": []}}', config).reason == "empty_set"
    named = GenericSettings(list_path="result.x", id_field="id", stake_field="stake")
    assert _rejection(b'{"result": [[]]}', named).reason == "wrong_type"
    assert _rejection(b'{"result": 3}', named).reason == "wrong_type"


@pytest.mark.parametrize("field", ["id", "name", "stake", "jailed", "active"])
def test_missing_or_null_field_is_missing_field(field: str) -> None:
    """Each configured field, absent or null in an item, is missing_field naming item and path."""
    absent = _row()
    del absent[field]
    error = _rejection(_flat(_row(id="v0"), absent))
    assert (error.reason, error.detail) == ("missing_field", f"[1].{field}")
    assert _rejection(_flat(_row(**{field: None}))).reason == "missing_field"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"id": 1}, "wrong_type"),
        ({"id": ""}, "wrong_type"),
        ({"id": "x" * 257}, "wrong_type"),
        ({"id": ["v1"]}, "wrong_type"),
        ({"name": 5}, "wrong_type"),
        ({"stake": 1.0}, "wrong_type"),
        ({"stake": 1e3}, "wrong_type"),
        ({"stake": "1e3"}, "wrong_type"),
        ({"stake": "1.0"}, "wrong_type"),
        ({"stake": "-1"}, "wrong_type"),
        ({"stake": "+1"}, "wrong_type"),
        ({"stake": " 1"}, "wrong_type"),
        ({"stake": ""}, "wrong_type"),
        ({"stake": "١٢"}, "wrong_type"),  # Arabic-Indic digits: not ASCII
        ({"stake": "²"}, "wrong_type"),
        ({"stake": True}, "wrong_type"),
        ({"stake": [1]}, "wrong_type"),
        ({"stake": -1}, "negative_stake"),
        ({"stake": MAX_STAKE + 1}, "absurd_stake"),
        ({"stake": str(MAX_STAKE + 1)}, "absurd_stake"),
        ({"stake": "9" * 5000}, "absurd_stake"),
        ({"jailed": 0}, "wrong_type"),
        ({"jailed": "false"}, "wrong_type"),
        ({"active": 1}, "wrong_type"),
    ],
)
def test_field_value_rejections(changes: dict[str, Any], reason: str) -> None:
    """Wrong types and out-of-range stakes are rejected, with no value in the detail."""
    error = _rejection(_flat(_row(**changes)))
    assert error.reason == reason
    (field,) = changes
    assert error.detail.startswith(f"[0].{field}")
    assert len(error.detail) < 100


def test_item_that_is_not_an_object_is_wrong_type() -> None:
    """A scalar item cannot hold the configured fields: wrong_type."""
    assert _rejection(_flat(_row(), 5)).reason == "wrong_type"


def test_duplicate_ids_are_rejected() -> None:
    """Two items with the same id are duplicate_validator, naming the second item."""
    error = _rejection(_flat(_row(), _row(name="Other")))
    assert (error.reason, error.detail) == ("duplicate_validator", "[1].id appears twice")


@pytest.mark.parametrize(
    "rows",
    [
        [_row(stake=0)],
        [_row(stake="0"), _row(id="v2", stake=0)],
        [_row(stake=0), _row(id="v2", stake=5, active=False)],
    ],
)
def test_no_active_stake_is_zero_stake(rows: list[dict[str, Any]]) -> None:
    """Without positive stake among active validators the set is zero_stake."""
    assert _rejection(_flat(*rows)).reason == "zero_stake"


def test_jailed_active_stake_still_counts_as_active_stake() -> None:
    """A jailed but active validator's stake is in the active set: not zero_stake."""
    (validator,) = _validators(_flat(_row(jailed=True)))
    assert validator.status is ValidatorStatus.JAILED


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats(allow_nan=False)
    | st.sampled_from(["v1", "v2", "", "0", "12", "-3", "1e3", str(2**129), "x"])
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["validators", "id", "name", "stake", "jailed", "active", "0"]),
        children,
        max_size=7,
    )


_JSON = st.recursive(_SCALARS, _containers, max_leaves=40)
# A field's value is checked as one value: a container of more than a few values reaches no
# more of that check, and most of the cost of a row is generating its fields.
_FIELD_VALUE = st.recursive(_SCALARS, _containers, max_leaves=6)


def _outcome(body: bytes, config: GenericSettings) -> str:
    """ "ok" for a non-empty table, else the DataError reason."""
    try:
        table = parse_generic(body, config).table
    except DataError as exc:
        return exc.reason
    return "ok" if isinstance(table, ValidatorTable) and len(table) else "unexpected result"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _JSON,
    st.sampled_from(
        [
            FLAT,
            GenericSettings(id_field="0", stake_field="1"),
            GenericSettings(list_path="validators.0", id_field="id", stake_field="stake.0"),
        ]
    ),
)
@pytest.mark.slow
def test_random_json_gives_validators_or_data_error(document: Any, config: GenericSettings) -> None:
    """Any JSON value gives validators or a DataError with a known reason, never anything else."""
    assert _outcome(json.dumps(document).encode(), config) in {"ok", *REJECTION_REASONS}


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({}, optional={"stake": _FIELD_VALUE, "active": _FIELD_VALUE}),
        max_size=3,
    )
)
def test_random_field_values_in_valid_rows_give_validators_or_data_error(
    overrides: list[dict[str, Any]],
) -> None:
    """Random stake/active values in otherwise valid rows give validators or a DataError."""
    rows = [_row(id=f"v{index}", **changes) for index, changes in enumerate(overrides)]
    assert _outcome(_flat(*rows), FLAT) in {"ok", *REJECTION_REASONS}


def test_deep_nesting_is_malformed_json() -> None:
    """100,000 nested arrays are malformed_json, not a RecursionError."""
    assert _rejection(b"[" * 100_000 + b"]" * 100_000).reason == "malformed_json"


# --- decoding: a generic answer's shape is known at run time, so it is decoded untyped ----------

_ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=()), max_size=12),  # lone surrogates too
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(blacklist_categories=()), max_size=4), children)
    ),
    max_leaves=30,
)


def _same(left: Any, right: Any) -> bool:
    """Equal, and of the same types throughout (so 1 is not 1.0 nor True, and -0.0 not 0.0)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == list(right) and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, float):
        return repr(left) == repr(right)
    return bool(left == right)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ANY_JSON, st.booleans())
def test_decoding_gives_what_json_loads_gives(document: Any, ascii_only: bool) -> None:
    """msgspec's decoding gives json.loads's values exactly: integers of any size as ints,
    floats to the bit, key order, lone surrogates (escaped, or raw as json.loads allows)."""
    body = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert _same(decode_json(body), json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf[1]",
        "[1]".encode("utf-16"),
        b"[NaN, Infinity, -Infinity]",
        b"[1e400, -1e400, 1e-400]",
        b'["\\ud800", "\\udfff\\ud800", "\xed\xa0\x80"]',
        b'{"a": 1, "a": 2}',
        b"[" + b"9" * 4300 + b"]",
    ],
    ids=["bom", "utf16", "nan", "out_of_range", "surrogates", "repeated_key", "4300_digits"],
)
def test_what_msgspec_refuses_is_decoded_as_json_loads_decodes_it(body: bytes) -> None:
    """A byte-order mark, UTF-16, NaN, out-of-range floats and lone surrogates are decoded
    as json.loads decodes them, a repeated key keeps its last value."""
    assert repr(decode_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize(
    "body",
    [b"[" + b"9" * 4301 + b"]", b'["\xff"]', b"[1,]", b"[" * 100_000, b"\x00[1]"],
    ids=["4301_digits", "invalid_utf8", "trailing_comma", "deep", "nul"],
)
def test_what_json_loads_refuses_is_malformed_json(body: bytes) -> None:
    """What json.loads refuses, an integer of over 4,300 digits included, is malformed_json."""
    assert _refused_by_json_loads(body)
    assert _rejection(body).reason == "malformed_json"


def _refused_by_json_loads(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return True
    return False


def test_json_integer_stakes_are_exact_up_to_2_pow_128() -> None:
    """Stakes written as JSON integers are exact however large; above 2**128 is absurd_stake."""
    body = _flat(_row(stake=2**64), _row(id="v2", stake=MAX_STAKE))
    assert parse_generic(body, FLAT).table.stakes.tolist() == [2**64, MAX_STAKE]
    assert _rejection(_flat(_row(stake=MAX_STAKE + 1))).reason == "absurd_stake"


TIMED = FLAT.model_copy(update={"time_field": "meta.time"})


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1_750_000_000, "s", 1_750_000_000.0),
        (1_750_000_000.5, "s", 1_750_000_000.5),
        (1_750_000_000_250, "ms", 1_750_000_000.25),
        ("2025-06-15T15:06:40Z", "s", 1_750_000_000.0),
        ("2025-06-15T17:06:40.123456789+02:00", "s", 1_750_000_000.123456),
    ],
    ids=["seconds", "fraction", "milliseconds", "rfc3339_utc", "rfc3339_offset_nanos"],
)
def test_time_field_gives_the_answer_time_in_unix_seconds(
    value: Any, unit: str, expected: float
) -> None:
    """`time_field` is read as Unix seconds, milliseconds or an RFC 3339 time with an offset."""
    config = TIMED.model_copy(update={"time_unit": unit})
    body = json.dumps({"validators": [_row()], "meta": {"time": value}}).encode()
    assert parse_generic(body, config).observed_at == pytest.approx(expected, abs=1e-6)


def test_without_time_field_the_answer_has_no_time() -> None:
    """Without `time_field` no time is read, even when the answer carries one."""
    body = json.dumps({"validators": [_row()], "meta": {"time": 1}}).encode()
    assert parse_generic(body, FLAT).observed_at is None


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({}, "missing_field"),
        ({"time": None}, "missing_field"),
        ({"time": True}, "wrong_type"),
        ({"time": -1}, "wrong_type"),
        ({"time": 2**64}, "wrong_type"),
        ({"time": "2025-06-15T15:06:40"}, "wrong_type"),  # no offset: whose local time?
        ({"time": "yesterday"}, "wrong_type"),
        ({"time": "9" * 10_000}, "wrong_type"),
    ],
    ids=["absent", "null", "bool", "negative", "huge", "naive", "words", "10k_digits"],
)
def test_bad_time_field_is_rejected(meta: dict[str, Any], reason: str) -> None:
    """A configured time that is absent, naive or implausible rejects the answer."""
    body = json.dumps({"validators": [_row()], "meta": meta}).encode()
    assert _rejection(body, TIMED).reason == reason


@pytest.mark.parametrize(
    "bad_id",
    ["v\n1", "v\x1b1", "v\u202e1", "v\u200b1", "v 1", "v\ud8001", "v\u20281"],
    ids=["newline", "escape", "bidi", "zero_width", "space", "surrogate", "line_separator"],
)
def test_unprintable_id_is_rejected(bad_id: str) -> None:
    """An id (a label as is) with a control, format, surrogate or space character is rejected."""
    assert _rejection(_flat(_row(id=bad_id))).reason == "wrong_type"


def test_lone_surrogate_in_a_name_becomes_a_replacement_character() -> None:
    """A name sent as the JSON escape \\ud800 is kept, with U+FFFD in place of the surrogate."""
    body = _flat(_row(name="a\ud800b"))  # json.dumps escapes the surrogate as \ud800
    assert b"\\ud800" in body
    assert list(parse_generic(body, FLAT).table.names) == ["a\ufffdb"]
