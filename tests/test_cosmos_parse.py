"""Strict decoding of Cosmos LCD and CometBFT RPC answers (chain-apis.md §2–§3)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumwatch.chains.cosmos.parse import (
    BOND_STATUSES,
    LCD_KEY_TYPES,
    REJECTION_REASONS,
    RPC_KEY_TYPES,
    NodeStatus,
    Page,
    RpcPage,
    SlashingParams,
    parse_lcd_validators,
    parse_pool,
    parse_rpc_validators,
    parse_signing_infos,
    parse_slashing_params,
    parse_status,
)
from quorumwatch.models import DataError

VECTOR_KEY = "kV3qRBIfvOsBRS+YygBbRX/oNgxeGRtmAe4BuKjUB6A="
VECTOR_HEX = "3DC4DD610817606AD4A8F9D762A068A81E8741E2"
VECTOR_VALCONS = "cosmosvalcons18hzd6cggzasx449gl8tk9grg4q0gws0z52nvvy"
VALOPER = "cosmosvaloper1q3jsx9dpfhtyqqgetwpe5tmk8f0ms5qyzfcxmc"  # the docs payload, checksummed

STATUS: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": -1,
    "result": {
        "node_info": {"network": "cosmoshub-4", "version": "0.38.x"},
        "sync_info": {
            "latest_block_height": "1262196",
            "latest_block_time": "2019-08-01T11:52:22.818762194Z",
            "catching_up": False,
        },
    },
}
RPC_VALIDATORS: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 0,
    "result": {
        "block_height": "55",
        "validators": [
            {
                "address": VECTOR_HEX,
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": VECTOR_KEY},
                "voting_power": "239727",
                "proposer_priority": "-11896414",
            }
        ],
        "count": "1",
        "total": "25",
    },
}
LCD_VALIDATORS: dict[str, Any] = {
    "validators": [
        {
            "operator_address": VALOPER,
            "consensus_pubkey": {"@type": "/cosmos.crypto.ed25519.PubKey", "key": VECTOR_KEY},
            "jailed": False,
            "status": "BOND_STATUS_BONDED",
            "tokens": "383301887799",
            "delegator_shares": "383301887799.000000000000000000",
            "description": {"moniker": "SmartNodes", "identity": "D372724899D1EDC8"},
            "unbonding_height": "0",
            "min_self_delegation": "1",
            "some_future_field": 1,
        }
    ],
    "pagination": {"next_key": "FONDBFkE4tEEf7yxWWKOD49jC2NK", "total": "2"},
}
SIGNING_INFOS: dict[str, Any] = {
    "info": [
        {
            "address": VECTOR_VALCONS,
            "start_height": "0",
            "index_offset": "4169",
            "jailed_until": "1970-01-01T00:00:00Z",
            "tombstoned": False,
            "missed_blocks_counter": "17",
        }
    ],
    "pagination": {"next_key": None, "total": "1"},
}
SLASHING_PARAMS: dict[str, Any] = {
    "params": {"signed_blocks_window": "10000", "min_signed_per_window": "0.050000000000000000"}
}


def _body(document: Any) -> bytes:
    return json.dumps(document).encode()


def _with(document: dict[str, Any], path: str, value: Any) -> bytes:
    """`document` with the dotted `path` set to `value` (`DELETE` removes it)."""
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return _body(changed)


DELETE = object()


def test_status_fields() -> None:
    """/status yields the network, height, block time (nanoseconds kept) and catching_up."""
    status = parse_status(_body(STATUS))
    assert status.network == "cosmoshub-4"
    assert status.height == 1262196
    assert status.latest_block_time == pytest.approx(1564660342.818762194)
    assert status.catching_up is False


def test_rpc_validators_page() -> None:
    """An RPC page keeps hex address, key, power, count and total."""
    page = parse_rpc_validators(_body(RPC_VALIDATORS))
    assert (page.block_height, page.count, page.total) == (55, 1, 25)
    (validator,) = page.validators
    assert validator.address == VECTOR_HEX
    assert validator.voting_power == 239727
    assert validator.key.address().hex().upper() == VECTOR_HEX


def test_lcd_validators_page_ignores_unknown_fields() -> None:
    """An LCD page yields validators and the raw next_key and total; unknown keys are ignored."""
    page = parse_lcd_validators(_body(LCD_VALIDATORS))
    (validator,) = page.items
    assert validator.operator_address == VALOPER
    assert validator.tokens == 383301887799
    assert (validator.moniker, validator.identity) == ("SmartNodes", "D372724899D1EDC8")
    assert (page.next_key, page.total) == ("FONDBFkE4tEEf7yxWWKOD49jC2NK", 2)


def test_signing_infos_pool_and_params() -> None:
    """Signing infos, pool bonded tokens and slashing params parse exactly."""
    page = parse_signing_infos(_body(SIGNING_INFOS))
    assert page.next_key is None
    assert page.items[0].missed_blocks == 17
    assert parse_pool(_body({"pool": {"bonded_tokens": "15783637712645"}})) == 15783637712645
    params = parse_slashing_params(_body(SLASHING_PARAMS))
    assert params.min_signed_per_window == Decimal("0.05")
    assert params.max_missed == 9500


def test_max_missed_rounds_min_signed_up() -> None:
    """window − ceil(min_signed × window): 0.0501 of 100 blocks leaves 94 misses."""
    params = {"params": {"signed_blocks_window": "100", "min_signed_per_window": "0.0501"}}
    body = _body(params)
    assert parse_slashing_params(body).max_missed == 94


Parser = Callable[[bytes], object]

REJECTIONS: list[tuple[str, Parser, bytes]] = [
    ("malformed_json", parse_status, b"{"),
    ("wrong_type", parse_status, b"[]"),
    ("rpc_error", parse_status, _body({"jsonrpc": "2.0", "error": {"code": -1}})),
    ("missing_field", parse_status, _with(STATUS, "result.sync_info.catching_up", DELETE)),
    ("wrong_type", parse_status, _with(STATUS, "result.sync_info.catching_up", "false")),
    ("wrong_type", parse_status, _with(STATUS, "result.sync_info.latest_block_time", "yesterday")),
    (
        "wrong_type",
        parse_status,
        _with(STATUS, "result.sync_info.latest_block_time", "2019-08-01T11:52:22.١٢Z"),
    ),
    ("invalid_number", parse_status, _with(STATUS, "result.sync_info.latest_block_height", "-1")),
    ("wrong_type", parse_status, _with(STATUS, "result.sync_info.latest_block_height", 5)),
    (
        "invalid_address",
        parse_rpc_validators,
        _with(RPC_VALIDATORS, "result.validators.0.address", VECTOR_HEX.lower()),
    ),
    (
        "invalid_address",
        parse_rpc_validators,
        _with(RPC_VALIDATORS, "result.validators.0.address", "0" * 40),
    ),
    (
        "unknown_key_type",
        parse_rpc_validators,
        _with(RPC_VALIDATORS, "result.validators.0.pub_key.type", "tendermint/PubKeySr25519"),
    ),
    (
        "invalid_key",
        parse_rpc_validators,
        _with(RPC_VALIDATORS, "result.validators.0.pub_key.value", "not base64!"),
    ),
    (
        "invalid_key",
        parse_rpc_validators,
        _with(RPC_VALIDATORS, "result.validators.0.pub_key.value", "AAAA"),
    ),
    (
        "invalid_number",
        parse_rpc_validators,
        _with(RPC_VALIDATORS, "result.validators.0.voting_power", "0"),
    ),
    ("incomplete_set", parse_rpc_validators, _with(RPC_VALIDATORS, "result.count", "2")),
    (
        "invalid_address",
        parse_lcd_validators,
        _with(LCD_VALIDATORS, "validators.0.operator_address", VECTOR_VALCONS),
    ),
    (
        "invalid_address",
        parse_lcd_validators,
        _with(LCD_VALIDATORS, "validators.0.operator_address", VALOPER[:-1] + "q"),
    ),
    (
        "unknown_key_type",
        parse_lcd_validators,
        _with(LCD_VALIDATORS, "validators.0.consensus_pubkey.@type", "/cosmos.crypto.bls.PubKey"),
    ),
    ("invalid_number", parse_lcd_validators, _with(LCD_VALIDATORS, "validators.0.tokens", "1e9")),
    (
        "invalid_number",
        parse_lcd_validators,
        _with(LCD_VALIDATORS, "validators.0.tokens", "9" * 81),
    ),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "validators.0.status", "BONDED")),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "pagination.next_key", 7)),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "pagination.next_key", "a\nb")),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "pagination.next_key", "k\ud800")),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "pagination.next_key", "k" * 1025)),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "validators.0.description", "")),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "validators.0.description", [])),
    ("missing_field", parse_lcd_validators, _with(LCD_VALIDATORS, "pagination", DELETE)),
    ("wrong_type", parse_lcd_validators, _with(LCD_VALIDATORS, "validators", {})),
    (
        "invalid_address",
        parse_signing_infos,
        _with(SIGNING_INFOS, "info.0.address", VALOPER),
    ),
    ("wrong_type", parse_signing_infos, _with(SIGNING_INFOS, "info.0.tombstoned", 0)),
    ("missing_field", parse_pool, _body({"pool": {}})),
    (
        "invalid_params",
        parse_slashing_params,
        _with(SLASHING_PARAMS, "params.min_signed_per_window", "1.000000000000000000"),
    ),
    (
        "invalid_params",
        parse_slashing_params,
        _with(SLASHING_PARAMS, "params.signed_blocks_window", "0"),
    ),
    (
        "invalid_number",
        parse_slashing_params,
        _with(SLASHING_PARAMS, "params.min_signed_per_window", "NaN"),
    ),
]


@pytest.mark.parametrize(("reason", "parser", "body"), REJECTIONS)
def test_rejections_carry_a_bounded_reason_without_the_value(
    reason: str, parser: Parser, body: bytes
) -> None:
    """Each malformed answer raises DataError with its listed reason, and no echoed value."""
    with pytest.raises(DataError) as caught:
        parser(body)
    assert caught.value.reason == reason
    assert reason in REJECTION_REASONS
    for secret in ("not base64", "yesterday", "9" * 81, 'BONDED"', "1e9"):
        assert secret not in caught.value.detail


def test_hostile_moniker_is_kept_but_lone_surrogates_become_replacement_characters() -> None:
    """Hostile monikers pass through as they are, but each lone surrogate becomes U+FFFD."""
    hostile = "evil\n\x1b[31m\u202e" + "x" * 10_000
    body = _with(LCD_VALIDATORS, "validators.0.description", {"moniker": hostile + "\ud800"})
    (validator,) = parse_lcd_validators(body).items
    assert validator.moniker == hostile + "\ufffd"
    body = _with(LCD_VALIDATORS, "validators.0.description", {"identity": "\udfff\U0001f600"})
    (validator,) = parse_lcd_validators(body).items
    assert (validator.moniker, validator.identity) == ("", "\ufffd\U0001f600")


@pytest.mark.parametrize(
    ("reason", "parser", "body"),
    [
        (
            "rpc_error",
            parse_rpc_validators,
            _body({"error": {"code": -1}, "result": {"validators": 5}}),
        ),
        ("missing_field", parse_status, _body({"jsonrpc": "2.0", "error": None, "result": None})),
        (
            "wrong_type",
            parse_rpc_validators,
            _body({**RPC_VALIDATORS, "result": {**RPC_VALIDATORS["result"], "validators": [None]}}),
        ),
        ("wrong_type", parse_lcd_validators, _body({**LCD_VALIDATORS, "validators": [None]})),
        ("wrong_type", parse_signing_infos, _body({**SIGNING_INFOS, "info": [[]]})),
        (
            "wrong_type",
            parse_lcd_validators,
            _with(LCD_VALIDATORS, "validators.0.description", {"moniker": None}),
        ),
        ("missing_field", parse_lcd_validators, _with(LCD_VALIDATORS, "validators.0.jailed", None)),
        (
            "invalid_number",
            parse_status,
            _with(STATUS, "result.sync_info.latest_block_height", str(2**63)),
        ),
        (
            "absurd_stake",
            parse_lcd_validators,
            _with(LCD_VALIDATORS, "validators.0.tokens", str(2**200)),
        ),
    ],
)
def test_envelope_nulls_and_bounds(reason: str, parser: Parser, body: bytes) -> None:
    """An RPC error comes before any fault in the result; a null row is wrong_type, a null
    field missing_field, a null moniker wrong_type; numbers beyond their bounds are refused."""
    with pytest.raises(DataError) as caught:
        parser(body)
    assert caught.value.reason == reason


def test_the_first_row_s_fault_is_reported() -> None:
    """With faults in two rows, the first one's is reported, whether a check or a type says it;
    a lone surrogate in a key does not change that."""
    rows = [copy.deepcopy(LCD_VALIDATORS["validators"][0]) for _ in range(2)]
    rows[0]["consensus_pubkey"]["key"] = "AAAA"
    rows[1]["jailed"] = "no"
    document = {**LCD_VALIDATORS, "validators": rows}
    for body in (_body(document), _body({"\ud800": 1, **document})):
        with pytest.raises(DataError) as caught:
            parse_lcd_validators(body)
        assert (caught.value.reason, caught.value.detail[:13]) == ("invalid_key", "validators[0]")
    rows.reverse()
    with pytest.raises(DataError) as caught:
        parse_lcd_validators(_body(document))
    assert (caught.value.reason, caught.value.detail[:13]) == ("wrong_type", "validators[0]")


def test_absent_or_null_description_gives_empty_names() -> None:
    """A validator without a description, or with a null one, has an empty moniker and identity."""
    for body in (
        _with(LCD_VALIDATORS, "validators.0.description", DELETE),
        _with(LCD_VALIDATORS, "validators.0.description", None),
    ):
        (validator,) = parse_lcd_validators(body).items
        assert (validator.moniker, validator.identity) == ("", "")


def test_huge_value_is_not_echoed() -> None:
    """A megabyte-long moniker type error names the field, not the value."""
    body = _with(LCD_VALIDATORS, "validators.0.jailed", "x" * 1_000_000)
    with pytest.raises(DataError) as caught:
        parse_lcd_validators(body)
    assert caught.value.reason == "wrong_type"
    assert len(str(caught.value)) < 200


# --- fuzzing ----------------------------------------------------------------------------------

# A DataError names the document and field, never the value: its detail stays this short.
MAX_DETAIL_CHARS = 200
POOL: dict[str, Any] = {"pool": {"bonded_tokens": "15783637712645", "not_bonded_tokens": "0"}}


def _keys(document: Any) -> set[str]:
    """Every object key anywhere in `document`."""
    if isinstance(document, dict):
        return set(document) | {k for value in document.values() for k in _keys(value)}
    if isinstance(document, list):
        return {k for value in document for k in _keys(value)}
    return set()


# Each parser, its well-formed example, and the type a success returns.
FUZZED: list[tuple[Parser, dict[str, Any], type]] = [
    (parse_status, STATUS, NodeStatus),
    (parse_rpc_validators, RPC_VALIDATORS, RpcPage),
    (parse_lcd_validators, LCD_VALIDATORS, Page),
    (parse_pool, POOL, int),
    (parse_signing_infos, SIGNING_INFOS, Page),
    (parse_slashing_params, SLASHING_PARAMS, SlashingParams),
]
FUZZ_IDS = [parser.__name__ for parser, _, _ in FUZZED]
RESULT_TYPES = [(parser, expected) for parser, _, expected in FUZZED]
FIELD_NAMES = sorted(
    {"jsonrpc", "id", "error", "result", "x"}
    | {key for _, document, _ in FUZZED for key in _keys(document)}
)
# Values near each field's edge: numbers as odd strings, keys and addresses valid or nearly,
# times that are impossible or written in non-ASCII digits, and long or non-ASCII text.
EDGE_STRINGS = [
    *("", "0", "1", "17", "-1", "+1", " 1", "1 ", "1e9", "0x10", "1.5", "0.05", "1.0"),
    *("NaN", "Infinity", "-0", "١٢", "²", "9" * 80, "9" * 81, "0." + "0" * 17 + "1"),
    *("1" + "0" * 40 + ".5", str(2**63 - 1), str(2**63), str(2**256), str(2**256 + 1)),
    *(VECTOR_KEY, VECTOR_KEY[:-1], "AAAA", "not base64!", "A" * 44, "Ag" + "A" * 42),
    *(VECTOR_HEX, VECTOR_HEX.lower(), "0" * 40, VECTOR_VALCONS, VALOPER, VALOPER.upper()),
    *("cosmos1" + "q" * 38, "a1qqqqqq", "1qqqqqqq", "valoper1qqqqqqqqqqqq"),
    *(*RPC_KEY_TYPES, *LCD_KEY_TYPES, *BOND_STATUSES, "tendermint/PubKeySr25519"),
    *("2019-08-01T11:52:22.818762194Z", "1970-01-01T00:00:00Z", "0000-01-01T00:00:00Z"),
    *("9999-12-31T23:59:59.999999999Z", "2019-02-30T00:00:00Z", "2019-08-01T25:00:00Z"),
    *("2019-08-01T11:52:22.١٢Z", "٢٠١٩-08-01T11:52:22Z", "2019-08-01T11:52:22+01:00"),
    *("cosmoshub-4", "FONDBFkE4tEEf7yxWWKOD49jC2NK", "+/+/", "k" * 1025, "\ud800", "\x00\n"),
]
_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(EDGE_STRINGS)
)
_JSON = st.recursive(
    _LEAF,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=30,
)
# Fragments that make nesting, escapes and numbers more likely than uniform bytes would.
_SYNTAX = (b"{", b"}", b"[", b"]", b":", b",", b'"', b"\\", b"\\u", b"d800", b" ", b"-")
_SCALARS = (b"null", b"true", b"0", b"1e999", b"9" * 5000, b"NaN", b"\xff", b"\xc3", b"\x00")
_NAMES = (b'"result"', b'"validators"', b'"pagination"', b'"params"', b'"pool"', b'"info"')
_TOKENS = st.sampled_from([*_SYNTAX, *_SCALARS, *_NAMES, b"\xef\xbb\xbf"])


@st.composite
def _mutated(draw: st.DrawFn, template: Any) -> Any:
    """`template` with each member kept, dropped, replaced by random JSON, or mutated inside."""
    if isinstance(template, dict):
        result = {}
        for key, value in template.items():
            choice = draw(st.sampled_from(["keep", "keep", "mutate", "mutate", "drop", "replace"]))
            if choice == "keep":
                result[key] = value
            elif choice == "mutate":
                result[key] = draw(_mutated(value))
            elif choice == "replace":
                result[key] = draw(_JSON)
        return result
    if isinstance(template, list):
        items = [draw(_mutated(item)) for item in template]
        return draw(st.sampled_from([items, items * 2, [], [*items, draw(_JSON)]]))
    return draw(st.just(template) | st.sampled_from(EDGE_STRINGS) | _LEAF)


def _outcome(parser: Parser, expected: type, body: bytes) -> str:
    """ "ok" for a result of the parser's type, else the DataError reason (detail bounded);
    any other exception escapes and fails the test."""
    try:
        result = parser(body)
    except DataError as exc:
        if len(exc.detail) >= MAX_DETAIL_CHARS:
            return f"unbounded detail for {exc.reason}"
        return exc.reason
    return "ok" if isinstance(result, expected) else "unexpected result"


_FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Each document goes to every parser: generating it costs far more than parsing it.
@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=_JSON)
def test_random_json_parses_or_raises_data_error(document: Any) -> None:
    """Any JSON value gives each parser its result or a DataError with a listed, bounded
    reason."""
    body = json.dumps(document).encode()
    outcomes = {
        parser.__name__: _outcome(parser, expected, body) for parser, expected in RESULT_TYPES
    }
    unexpected = {name: o for name, o in outcomes.items() if o not in {"ok", *REJECTION_REASONS}}
    assert unexpected == {}


@pytest.mark.parametrize(("parser", "expected"), RESULT_TYPES, ids=FUZZ_IDS)
@_FUZZ
@given(body=st.binary(max_size=200) | st.lists(_TOKENS, max_size=40).map(b"".join))
def test_random_bytes_parse_or_raise_data_error(
    parser: Parser, expected: type, body: bytes
) -> None:
    """Any byte string (bad UTF-8, lone surrogates, huge numbers) gives a result or DataError."""
    assert _outcome(parser, expected, body) in {"ok", *REJECTION_REASONS}


@pytest.mark.slow
@pytest.mark.parametrize(("parser", "template", "expected"), FUZZED, ids=FUZZ_IDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_plausible_documents_parse_or_raise_data_error(
    parser: Parser, template: dict[str, Any], expected: type, data: st.DataObject
) -> None:
    """The example with members dropped, replaced or mutated gives a result or a DataError."""
    document = data.draw(_mutated(template))
    assert _outcome(parser, expected, json.dumps(document).encode()) in {"ok", *REJECTION_REASONS}


@pytest.mark.parametrize("parser", [parser for parser, _ in RESULT_TYPES], ids=FUZZ_IDS)
def test_deep_nesting_is_malformed_json(parser: Parser) -> None:
    """100,000 nested arrays are malformed_json, not a RecursionError."""
    with pytest.raises(DataError) as caught:
        parser(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.reason == "malformed_json"
