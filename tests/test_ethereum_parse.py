"""Strict decoding of the beacon API's JSON: golden answers, exact uint64s, rejections, fuzzing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumwatch.chains.ethereum.parse import (
    MAX_U64,
    REJECTION_REASONS,
    Checkpoint,
    parse_finality_checkpoints,
    parse_genesis,
    parse_syncing,
    parse_validators,
)
from quorumwatch.chains.ethereum.ssz import FAR_FUTURE_EPOCH, BeaconValidators
from quorumwatch.models import DataError
from tests.ethereum_builders import (
    GENESIS_TIME,
    SLOT,
    make_validators,
    validator_row,
    validators_answer,
    validators_json,
)

PUBKEY = (
    "0x93247f2209abcacf57b75a51dafae777f9dd38bc7053d1af526f220a7489a6d3"
    "a2753e5f3e8b1cfe39b56f43611df74a"
)
LIDO_VAULT = "b9d7934878b5fb9610b3fe8a5e441e8fad7e293f"
# The reference example (chain-apis.md §6), with a real execution address in the credentials.
REFERENCE = (
    '{"execution_optimistic": false, "finalized": false, "data": [{"index": "1", '
    '"balance": "32001234567", "status": "active_ongoing", "validator": {"pubkey": "'
    + PUBKEY
    + '",'
    ' "withdrawal_credentials": "0x010000000000000000000000' + LIDO_VAULT + '", '
    '"effective_balance": "32000000000", "slashed": false, "activation_eligibility_epoch": "0", '
    '"activation_epoch": "0", "exit_epoch": "18446744073709551615", '
    '"withdrawable_epoch": "18446744073709551615"}}]}'
).encode()


def _validators(body: bytes) -> BeaconValidators:
    return parse_validators(body, slot=SLOT, genesis_time=GENESIS_TIME)


def _rejection(parse: Callable[[bytes], object], body: bytes) -> DataError:
    with pytest.raises(DataError) as caught:
        parse(body)
    return caught.value


def test_reference_answer_gives_every_column() -> None:
    state = _validators(REFERENCE)
    assert state.count == 1
    assert state.indices.tolist() == [1]
    assert bytes(state.pubkeys[0]).hex() == PUBKEY[2:]
    assert bytes(state.withdrawal_credentials[0]) == b"\x01" + bytes(11) + bytes.fromhex(LIDO_VAULT)
    assert state.effective_balance.tolist() == [32_000_000_000]
    assert state.balances.tolist() == [32_001_234_567]
    assert state.slashed.tolist() == [False]
    assert state.activation_epoch.tolist() == [0]
    assert state.exit_epoch.tolist() == [FAR_FUTURE_EPOCH]
    assert state.previous_epoch_participation is None
    assert (state.slot, state.genesis_time) == (SLOT, GENESIS_TIME)
    assert (state.execution_optimistic, state.finalized) == (False, False)
    for column in (state.indices, state.effective_balance, state.balances, state.exit_epoch):
        assert column.dtype == np.uint64
        assert not column.flags.writeable
    assert state.pubkeys.shape == (1, 48)
    assert state.slashed.dtype == np.bool_


def test_columns_match_the_set_the_answer_was_made_from() -> None:
    expected = make_validators(
        5,
        effective_balance=[0, 1, 2**63, MAX_U64, 32 * 10**9],
        slashed=[True, False, True, False, False],
        activation_epoch=[0, 7, MAX_U64, 2**63 + 1, 3],
        exit_epoch=[1, 2, 3, FAR_FUTURE_EPOCH, 10**19],
        balances=[MAX_U64, 0, 2**63, 2**63 - 1, 12345678901234567890],
        participation=None,
    )
    state = _validators(validators_json(expected))
    for name in BeaconValidators.__dataclass_fields__:
        if name not in {"execution_optimistic", "finalized"}:
            assert np.array_equal(getattr(state, name), getattr(expected, name)), name


def test_rows_keep_answer_order_and_their_own_indices() -> None:
    """A filtered answer lists some indices, in any order: row i is validator indices[i]."""
    validators = make_validators(3, participation=None)
    rows = [validator_row(validators, i, index=str(index)) for i, index in enumerate([9, 2, 2**40])]
    state = _validators(validators_answer(rows))
    assert state.indices.tolist() == [9, 2, 2**40]
    assert np.array_equal(state.pubkeys, validators.pubkeys)


def test_flags_may_be_absent_but_not_mistyped() -> None:
    row = validator_row(make_validators(1), 0)
    state = _validators(json.dumps({"data": [row]}).encode())
    assert (state.execution_optimistic, state.finalized) == (None, None)
    state = _validators(validators_answer([row], execution_optimistic=True))
    assert state.execution_optimistic is True
    for flag in ("execution_optimistic", "finalized"):
        error = _rejection(_validators, validators_answer([row], **{flag: "yes"}))
        assert error.reason == "wrong_type"


_SET = make_validators(3, participation=None)


def _answer_with(row: int = 1, /, **changes: Any) -> bytes:
    rows = [validator_row(_SET, i, **(changes if i == row else {})) for i in range(3)]
    return validators_answer(rows)


@pytest.mark.parametrize(
    "value",
    [
        str(2**64),
        "99999999999999999999",
        "000000000000000000001",  # 21 characters
        "-1",
        "+1",
        " 1",
        "1 ",
        "1.0",
        "1e3",
        "0x10",
        "",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit, not an ASCII one
        "1,2",  # the separator a column's strings are joined with
        "1" * 5000,
    ],
)
@pytest.mark.parametrize("field", ["index", "balance", "validator__effective_balance"])
def test_decimal_strings_must_be_uint64(field: str, value: str) -> None:
    error = _rejection(_validators, _answer_with(**{field: value}))
    assert error.reason == "invalid_number"
    assert f"data[1].{field.replace('__', '.')}" in error.detail


@pytest.mark.parametrize(
    "field",
    [
        "validator__activation_eligibility_epoch",
        "validator__activation_epoch",
        "validator__exit_epoch",
        "validator__withdrawable_epoch",
    ],
)
def test_every_epoch_is_checked(field: str) -> None:
    assert _rejection(_validators, _answer_with(**{field: str(2**64)})).reason == "invalid_number"
    assert _validators(_answer_with(**{field: str(MAX_U64)})).count == 3


def test_leading_zeros_are_read_as_decimal() -> None:
    state = _validators(_answer_with(balance="0007", validator__exit_epoch="00"))
    assert state.balances[1] == 7
    assert state.exit_epoch[1] == 0


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("validator__pubkey", PUBKEY[:-2], "invalid_key"),  # 47 bytes
        ("validator__pubkey", PUBKEY + "00", "invalid_key"),  # 49 bytes
        ("validator__pubkey", PUBKEY[2:] + "00", "invalid_key"),  # no 0x
        ("validator__pubkey", "0X" + PUBKEY[2:], "invalid_key"),
        ("validator__pubkey", PUBKEY[:-1] + "g", "invalid_key"),
        ("validator__pubkey", PUBKEY[:10] + " " + PUBKEY[11:], "invalid_key"),  # fromhex skips it
        ("validator__pubkey", PUBKEY[:10] + "\u0663" + PUBKEY[11:], "invalid_key"),
        ("validator__withdrawal_credentials", "0x" + "01" * 31, "invalid_hex"),
        ("validator__withdrawal_credentials", "0x" + "01" * 33, "invalid_hex"),
        ("validator__withdrawal_credentials", "0x", "invalid_hex"),
    ],
)
def test_byte_strings_must_be_exact_hex(field: str, value: str, reason: str) -> None:
    error = _rejection(_validators, _answer_with(**{field: value}))
    assert error.reason == reason
    assert "data[1].validator." in error.detail


def test_upper_case_hex_is_accepted() -> None:
    state = _validators(_answer_with(validator__pubkey=PUBKEY.upper().replace("0X", "0x")))
    assert bytes(state.pubkeys[1]).hex() == PUBKEY[2:]


def test_an_index_listed_twice_is_a_duplicate() -> None:
    error = _rejection(_validators, _answer_with(2, index="0"))
    assert error.reason == "duplicate_validator"
    assert error.detail == "validators.data[2].index appears twice"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "malformed_json"),
        (b"{", "malformed_json"),
        (b"\xff", "malformed_json"),
        (b'{"data": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "malformed_json"),
        (b"[]", "wrong_type"),
        (b"null", "wrong_type"),
        (b"{}", "missing_field"),
        (b'{"data": {}}', "wrong_type"),
        (b'{"data": []}', "empty_set"),
        (b'{"data": [1]}', "wrong_type"),
        (_answer_with(index=...), "missing_field"),
        (_answer_with(validator=...), "missing_field"),
        (_answer_with(validator__pubkey=...), "missing_field"),
        (_answer_with(validator__withdrawable_epoch=...), "missing_field"),
        (_answer_with(status=...), "missing_field"),
        (_answer_with(index=1), "wrong_type"),
        (_answer_with(balance=32 * 10**9), "wrong_type"),
        (_answer_with(validator__slashed="false"), "wrong_type"),
        (_answer_with(validator__slashed=0), "wrong_type"),
        (_answer_with(validator__pubkey=None), "wrong_type"),
        (_answer_with(status="active"), "wrong_type"),
        (_answer_with(validator=[]), "wrong_type"),
    ],
)
def test_malformed_answers_are_rejected_with_their_reason(body: bytes, reason: str) -> None:
    assert _rejection(_validators, body).reason == reason


def test_details_name_the_field_never_the_value() -> None:
    """Values are chosen by whoever runs the endpoint: none reaches a log line or a label."""
    marker = "EVIL\u202etext"
    for changes in (
        {"status": marker},
        {"index": marker},
        {"validator__pubkey": marker},
        {"validator__withdrawal_credentials": marker},
        {"validator__slashed": marker},
        {"validator__exit_epoch": marker},
    ):
        error = _rejection(_validators, _answer_with(**changes))
        assert "EVIL" not in str(error), changes
        assert "data[1]" in error.detail, changes


def test_every_status_of_the_spec_is_accepted() -> None:
    statuses = [
        "pending_initialized",
        "pending_queued",
        "active_ongoing",
        "active_exiting",
        "active_slashed",
        "exited_unslashed",
        "exited_slashed",
        "withdrawal_possible",
        "withdrawal_done",
    ]
    validators = make_validators(len(statuses), participation=None)
    rows = [validator_row(validators, i, status=s) for i, s in enumerate(statuses)]
    assert _validators(validators_answer(rows)).count == len(statuses)


# --- Node, genesis and finality ---------------------------------------------------------------

ROOT = "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
SYNCING: dict[str, Any] = {
    "head_slot": "11532800",
    "sync_distance": "0",
    "is_syncing": False,
    "is_optimistic": False,
    "el_offline": False,
}
GENESIS: dict[str, Any] = {
    "genesis_time": "1606824023",
    "genesis_validators_root": ROOT,
    "genesis_fork_version": "0x00000000",
}


def _checkpoint(epoch: str, root: str = ROOT) -> dict[str, str]:
    return {"epoch": epoch, "root": root}


FINALITY: dict[str, Any] = {
    "previous_justified": _checkpoint("360398"),
    "current_justified": _checkpoint("360399"),
    "finalized": _checkpoint("360398"),
}


def _answer(data: dict[str, Any], **changes: Any) -> bytes:
    """`{"data": …}` with fields changed (`...` drops one); the flags of a state answer."""
    data = {k: v for k, v in {**data, **changes}.items() if v is not ...}
    return json.dumps({"execution_optimistic": False, "finalized": True, "data": data}).encode()


def test_syncing_golden() -> None:
    syncing = parse_syncing(_answer(SYNCING))
    assert syncing.head_slot == 11_532_800
    assert syncing.sync_distance == 0
    assert (syncing.is_syncing, syncing.is_optimistic, syncing.el_offline) == (False,) * 3


def test_genesis_golden() -> None:
    genesis = parse_genesis(_answer(GENESIS))
    assert genesis.genesis_time == 1_606_824_023
    assert genesis.genesis_validators_root == bytes.fromhex(ROOT[2:])
    assert genesis.genesis_fork_version == bytes(4)


def test_finality_checkpoints_golden() -> None:
    finality = parse_finality_checkpoints(_answer(FINALITY))
    root = bytes.fromhex(ROOT[2:])
    assert finality.previous_justified == Checkpoint(360_398, root)
    assert finality.current_justified == Checkpoint(360_399, root)
    assert finality.finalized == Checkpoint(360_398, root)
    assert finality.execution_optimistic is False


_FINAL = parse_finality_checkpoints


@pytest.mark.parametrize(
    ("parse", "body", "reason"),
    [
        (parse_syncing, b"{]", "malformed_json"),
        (parse_syncing, _answer(SYNCING, head_slot=str(2**64)), "invalid_number"),
        (parse_syncing, _answer(SYNCING, sync_distance="-3"), "invalid_number"),
        (parse_syncing, _answer(SYNCING, head_slot=5), "wrong_type"),
        (parse_syncing, _answer(SYNCING, is_syncing="false"), "wrong_type"),
        (parse_syncing, _answer(SYNCING, el_offline=...), "missing_field"),
        (parse_syncing, _answer(SYNCING, is_optimistic=None), "wrong_type"),
        (parse_syncing, b'{"head_slot": "1"}', "missing_field"),
        (parse_genesis, _answer(GENESIS, genesis_time="1606824023.5"), "invalid_number"),
        (parse_genesis, _answer(GENESIS, genesis_validators_root=ROOT[:-2]), "invalid_hex"),
        (parse_genesis, _answer(GENESIS, genesis_validators_root=ROOT[2:] + "00"), "invalid_hex"),
        (parse_genesis, _answer(GENESIS, genesis_fork_version="0x000000"), "invalid_hex"),
        (parse_genesis, _answer(GENESIS, genesis_fork_version="0x0000000000"), "invalid_hex"),
        (parse_genesis, _answer(GENESIS, genesis_fork_version=...), "missing_field"),
        (_FINAL, _answer(FINALITY, finalized=_checkpoint("1", ROOT + "0")), "invalid_hex"),
        (_FINAL, _answer(FINALITY, finalized=_checkpoint(str(2**64))), "invalid_number"),
        (_FINAL, _answer(FINALITY, current_justified=...), "missing_field"),
        (_FINAL, _answer(FINALITY, previous_justified={"epoch": "1"}), "missing_field"),
        (_FINAL, _answer(FINALITY, finalized=None), "wrong_type"),
    ],
)
def test_node_answers_are_checked(
    parse: Callable[[bytes], object], body: bytes, reason: str
) -> None:
    assert _rejection(parse, body).reason == reason


def test_large_values_stay_exact() -> None:
    syncing = parse_syncing(_answer(SYNCING, head_slot=str(MAX_U64), sync_distance=str(2**63)))
    assert (syncing.head_slot, syncing.sync_distance) == (MAX_U64, 2**63)
    finality = _FINAL(_answer(FINALITY, finalized=_checkpoint(str(MAX_U64))))
    assert finality.finalized.epoch == MAX_U64


# --- Fuzzing: a result or a DataError with a known reason, nothing else -----------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_PARSERS: list[Callable[[bytes], object]] = [
    _validators,
    parse_syncing,
    parse_genesis,
    parse_finality_checkpoints,
]


def _outcome(parse: Callable[[bytes], object], body: bytes) -> str:
    try:
        parse(body)
    except DataError as exc:
        return exc.reason
    return "ok"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_PARSERS), _JSON | st.fixed_dictionaries({"data": _JSON}))
def test_random_json_parses_or_raises_data_error(
    parse: Callable[[bytes], object], document: Any
) -> None:
    assert _outcome(parse, json.dumps(document).encode()) in {"ok", *REJECTION_REASONS}


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_parse_or_raise_data_error(body: bytes) -> None:
    for parse in _PARSERS:
        assert _outcome(parse, body) in {"ok", *REJECTION_REASONS}


_ROW_FIELDS = [
    "index",
    "balance",
    "status",
    "validator",
    "validator__pubkey",
    "validator__withdrawal_credentials",
    "validator__effective_balance",
    "validator__slashed",
    "validator__exit_epoch",
]
_VALUES = (
    _JSON
    | st.from_regex(r"(0x)?[0-9a-fA-F ]{0,100}", fullmatch=True)
    | st.integers(-1, 2**65).map(str)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.sampled_from(_ROW_FIELDS), _VALUES, max_size=3), min_size=1, max_size=3
    )
)
def test_random_field_values_in_valid_rows_parse_or_raise_data_error(
    changes: list[dict[str, Any]],
) -> None:
    validators = make_validators(len(changes), participation=None)
    rows = [validator_row(validators, i, **change) for i, change in enumerate(changes)]
    assert _outcome(_validators, validators_answer(rows)) in {"ok", *REJECTION_REASONS}
