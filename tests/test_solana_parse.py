"""Strict parsing of Solana JSON-RPC answers: golden cases, every rejection reason, fuzzing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumwatch.chains.solana.parse import (
    MAX_U64,
    REJECTION_REASONS,
    BlockTime,
    parse_block_time,
    parse_epoch_info,
    parse_vote_accounts,
)
from quorumwatch.columns import (
    STATUS_DELINQUENT,
    STATUS_INACTIVE,
    STATUS_ONLINE,
    ValidatorTable,
)
from quorumwatch.models import DataError, Validator, ValidatorStatus

VOTE = "3ZT31jkAGhUaw8jsy4bTknwBMP8i4Eueh52By4zXcsVw"
NODE = "B97CCUW3AEZFGy6uUg6zUdnNYvnVq5VG8PUtb2HayTDD"
# The reference example (chain-apis.md §5), verbatim.
REFERENCE = (
    b'{"jsonrpc":"2.0","result":{"current":[{"commission":0,"epochVoteAccount":true,'
    b'"epochCredits":[[1,64,0],[2,192,64]],"nodePubkey":"B97CCUW3AEZFGy6uUg6zUdnNYvnVq5VG8PUtb2HayTDD",'
    b'"lastVote":147,"activatedStake":42,"votePubkey":"3ZT31jkAGhUaw8jsy4bTknwBMP8i4Eueh52By4zXcsVw"}],'
    b'"delinquent":[]},"id":1}'
)
EPOCH_REFERENCE = (
    b'{"jsonrpc":"2.0","result":{"absoluteSlot":166598,"blockHeight":166500,"epoch":27,'
    b'"slotIndex":2790,"slotsInEpoch":8192,"transactionCount":22661093},"id":1}'
)


def _key(n: int) -> str:
    """A distinct valid 44-character base58 key."""
    return f"{n:0>8}".replace("0", "z") + "1" * 36


def _row(n: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "commission": 5,
        "epochVoteAccount": True,
        "epochCredits": [[1, 64, 0]],
        "nodePubkey": _key(1000 + n),
        "lastVote": 1000,
        "activatedStake": 10**9,
        "votePubkey": _key(n),
        "rootSlot": 968,
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def _body(current: list[Any], delinquent: list[Any] | None = None) -> bytes:
    result = {"current": current, "delinquent": delinquent or []}
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": 1}).encode()


def _validators(body: bytes) -> tuple[Validator, ...]:
    table = parse_vote_accounts(body)
    return table.rows(range(len(table)))


def _reason(body: bytes) -> str:
    with pytest.raises(DataError) as caught:
        parse_vote_accounts(body)
    return caught.value.reason


def test_reference_example_parses_to_one_online_validator() -> None:
    """The documented example gives one validator: vote key as address, identity as name,
    42 lamports, in the set, online, not delinquent, not jailed."""
    assert _validators(REFERENCE) == (
        Validator(
            address=VOTE,
            name=NODE,
            stake=42,
            in_consensus_set=True,
            jailed=False,
            delinquent=False,
        ),
    )
    assert _validators(REFERENCE)[0].status is ValidatorStatus.ONLINE


def test_delinquent_and_unstaked_accounts_are_classified() -> None:
    """A delinquent staked account is delinquent, a zero-stake one inactive, u64 max exact."""
    body = _body(
        [_row(1, activatedStake=MAX_U64), _row(2, activatedStake=0, rootSlot=None)],
        [_row(3, activatedStake=7), _row(4, activatedStake=0, epochCredits=...)],
    )
    table = parse_vote_accounts(body)
    assert table.stakes.dtype == np.uint64
    assert table.stakes.tolist() == [MAX_U64, 0, 7, 0]
    assert table.status.tolist() == [
        STATUS_ONLINE,
        STATUS_INACTIVE,
        STATUS_DELINQUENT,
        STATUS_INACTIVE,
    ]


@pytest.mark.parametrize(
    ("current", "delinquent", "detail"),
    [
        ([_row(1), _row(1, nodePubkey=_key(9))], [], "current[1].votePubkey appears twice"),
        ([_row(1)], [_row(1)], "delinquent[0].votePubkey appears twice"),
    ],
)
def test_a_duplicate_names_its_second_listing(
    current: list[Any], delinquent: list[Any], detail: str
) -> None:
    """A vote account listed twice is duplicate_validator naming the list and row of its
    second listing."""
    with pytest.raises(DataError) as caught:
        parse_vote_accounts(_body(current, delinquent))
    assert (caught.value.reason, caught.value.detail) == ("duplicate_validator", detail)


def test_epoch_info_reference_gives_the_epoch() -> None:
    """The documented getEpochInfo example gives epoch 27 at absolute slot 166598."""
    info = parse_epoch_info(EPOCH_REFERENCE)
    assert (info.epoch, info.absolute_slot) == (27, 166598)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b'{"jsonrpc":"2.0","error":{"code":-32601,"message":"x"},"id":1}', "rpc_error"),
        (b"[]", "wrong_type"),
        (b'{"jsonrpc":"1.0","result":{"current":[],"delinquent":[]},"id":1}', "wrong_type"),
        (b'{"jsonrpc":"2.0","id":1}', "missing_field"),
        (b'{"jsonrpc":"2.0","result":[],"id":1}', "wrong_type"),
        (b'{"jsonrpc":"2.0","result":{"current":[]},"id":1}', "missing_field"),
        (b'{"jsonrpc":"2.0","result":{"current":{},"delinquent":[]},"id":1}', "wrong_type"),
        (_body([]), "empty_set"),
        (_body([_row(1, activatedStake=0)], [_row(2, activatedStake=0)]), "zero_stake"),
        (_body([_row(1)], [_row(1)]), "duplicate_validator"),
        (_body([_row(1), _row(1, nodePubkey=_key(9))]), "duplicate_validator"),
        (_body([_row(1, votePubkey="0x" + "a" * 40)]), "invalid_address"),
        (_body([_row(1, nodePubkey="short")]), "invalid_address"),
        (_body([_row(1, votePubkey="O" * 44)]), "invalid_address"),
        (_body([_row(1, votePubkey=12)]), "wrong_type"),
        (_body([_row(1, votePubkey=...)]), "missing_field"),
        (_body([_row(1, activatedStake=...)]), "missing_field"),
        (_body([_row(1, activatedStake=-1)]), "negative_stake"),
        (_body([_row(1, activatedStake=MAX_U64 + 1)]), "absurd_stake"),
        (_body([_row(1, activatedStake="1")]), "wrong_type"),
        (_body([_row(1, activatedStake=1.0)]), "wrong_type"),
        (_body([_row(1, activatedStake=True)]), "wrong_type"),
        (_body([_row(1, commission=101)]), "wrong_type"),
        (_body([_row(1, commission=-1)]), "wrong_type"),
        (_body([_row(1, epochVoteAccount=1)]), "wrong_type"),
        (_body([_row(1, lastVote=-1)]), "wrong_type"),
        (_body([_row(1, lastVote=...)]), "missing_field"),
        (_body([_row(1, rootSlot="5")]), "wrong_type"),
        (_body([_row(1, epochCredits=[[1, 2]])]), "wrong_type"),
        (_body(["row"]), "wrong_type"),
    ],
)
def test_vote_accounts_rejections(body: bytes, reason: str) -> None:
    """Each malformed getVoteAccounts answer raises DataError with exactly `reason`."""
    assert _reason(body) == reason


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (_row(1, lastVote=MAX_U64 + 1), "wrong_type"),
        (_row(1, rootSlot=MAX_U64 + 1), "wrong_type"),
        (_row(1, epochCredits=[[1, MAX_U64 + 1, 0]]), "wrong_type"),
        (_row(1, epochCredits=[[1, 2, 3, 4]]), "wrong_type"),
        (_row(1, epochCredits=None, rootSlot=None), "ok"),
        (_row(1, lastVote=MAX_U64), "ok"),
        (_row(1, votePubkey="\ud800" * 40), "invalid_address"),
        (_row(1, votePubkey=_key(1) + "\n"), "invalid_address"),
        (_row(1, activatedStake=-(2**70)), "negative_stake"),
        (_row(1, commission=None), "missing_field"),
    ],
)
def test_u64_bounds_keys_and_nulls(row: dict[str, Any], reason: str) -> None:
    """A u64 is 0..2**64-1 however large the number, a key is base58 only, a null required
    field is missing."""
    if reason == "ok":
        assert parse_vote_accounts(_body([row]))
    else:
        assert _reason(_body([row])) == reason


@pytest.mark.parametrize(
    ("current", "delinquent", "reason"),
    [
        ([_row(1, activatedStake=-1), _row(2, commission="5")], [], "negative_stake"),
        ([_row(1, commission="5"), _row(2, activatedStake=-1)], [], "wrong_type"),
        ([_row(1, votePubkey="short")], [_row(2, lastVote=None)], "invalid_address"),
        ([_row(1)], [_row(2, activatedStake=MAX_U64 + 1), "row"], "absurd_stake"),
    ],
)
def test_the_first_row_s_fault_is_reported(
    current: list[Any], delinquent: list[Any], reason: str
) -> None:
    """With faults in two rows, the first one's is reported, current before delinquent."""
    assert _reason(_body(current, delinquent)) == reason


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"error": {"code": -32005}, "result": {"current": 5}}, "rpc_error"),
        ({"error": None, "result": {"current": 5}}, "rpc_error"),
        ({"jsonrpc": "1.0", "result": {"current": 5}}, "wrong_type"),
        ({"jsonrpc": 2.0, "result": {"current": [], "delinquent": []}}, "wrong_type"),
        ({"result": None}, "missing_field"),
        ({"result": {"current": 5}, "\ud800": 1}, "wrong_type"),
    ],
)
def test_envelope_faults_come_before_faults_in_the_result(
    envelope: dict[str, Any], reason: str
) -> None:
    """An error object (of any value), a wrong `jsonrpc` or no result is reported before
    anything wrong inside the result."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, **envelope}).encode()
    assert _reason(body) == reason


def test_rejection_detail_never_contains_the_value() -> None:
    """A rejected value (a huge stake) appears nowhere in the DataError message."""
    huge = 10**30 + 123_456_789
    with pytest.raises(DataError) as caught:
        parse_vote_accounts(_body([_row(1, activatedStake=huge)]))
    assert str(huge) not in str(caught.value)
    assert "current[0].activatedStake" in caught.value.detail


def _epoch(**changes: Any) -> bytes:
    result: dict[str, Any] = {
        "absoluteSlot": 166598,
        "blockHeight": 166500,
        "epoch": 27,
        "slotIndex": 2790,
        "slotsInEpoch": 8192,
        "transactionCount": 22661093,
    }
    result.update(changes)
    result = {k: v for k, v in result.items() if v is not ...}
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": 1}).encode()


def test_epoch_info_accepts_null_transaction_count() -> None:
    """transactionCount null (nodes without history) still gives the epoch."""
    assert parse_epoch_info(_epoch(transactionCount=None)).epoch == 27


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "malformed_json"),
        (b'{"jsonrpc":"2.0","error":{"code":-32005,"message":"behind"},"id":1}', "rpc_error"),
        (_epoch(epoch=...), "missing_field"),
        (_epoch(epoch=-1), "wrong_type"),
        (_epoch(absoluteSlot="1"), "wrong_type"),
        (_epoch(slotIndex=8192), "wrong_type"),
        (_epoch(slotsInEpoch=0, slotIndex=0), "wrong_type"),
        (_epoch(absoluteSlot=5), "wrong_type"),
        (_epoch(transactionCount=1.5), "wrong_type"),
    ],
)
def test_epoch_info_rejections(body: bytes, reason: str) -> None:
    """Each malformed getEpochInfo answer raises DataError with exactly `reason`."""
    with pytest.raises(DataError) as caught:
        parse_epoch_info(body)
    assert caught.value.reason == reason


_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4
    )


_JSON = st.recursive(_SCALARS, _containers, max_leaves=20)
# A field's value is checked as one value: a container of more than a few values reaches no
# more of that check, and most of the cost of a row is generating its fields.
_FIELD_VALUE = st.recursive(_SCALARS, _containers, max_leaves=6)


def _outcome(body: bytes) -> str:
    try:
        table = parse_vote_accounts(body)
    except DataError as exc:
        return exc.reason
    return "ok" if isinstance(table, ValidatorTable) and len(table) else "unexpected result"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSON)
def test_random_json_either_parses_or_raises_data_error(document: Any) -> None:
    """Any JSON value gives validators or a DataError with a known reason, never anything else."""
    assert _outcome(json.dumps(document).encode()) in {"ok", *REJECTION_REASONS}


_FIELDS = ("activatedStake", "commission", "epochVoteAccount", "lastVote", "rootSlot", "votePubkey")


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(_FIELDS), _FIELD_VALUE, max_size=3), max_size=3))
def test_random_field_values_in_valid_rows_parse_or_raise_data_error(
    overrides: list[dict[str, Any]],
) -> None:
    """Random field values in otherwise valid rows give validators or a known DataError."""
    rows = [_row(index + 1, **changes) for index, changes in enumerate(overrides)]
    assert _outcome(_body(rows[:2], rows[2:])) in {"ok", *REJECTION_REASONS}


def _rpc(**fields: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, **fields}).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_rpc(result=1_574_721_591), BlockTime(1_574_721_591)),  # the documented example
        (_rpc(result=None), BlockTime(None)),
        (
            _rpc(error={"code": -32004, "message": "Block not available for slot 5"}),
            BlockTime(None),
        ),
        (_rpc(error={"code": -32007, "message": "Slot 5 was skipped"}), BlockTime(None)),
        (
            _rpc(error={"code": -32009, "message": "Slot 5 was skipped, or missing"}),
            BlockTime(None),
        ),
    ],
    ids=["seconds", "null", "not_available", "skipped", "skipped_long_term"],
)
def test_block_time_is_seconds_or_unknown(body: bytes, expected: BlockTime) -> None:
    """getBlockTime gives Unix seconds, or no time for a null, unavailable or skipped slot."""
    assert parse_block_time(body) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>", "malformed_json"),
        (_rpc(error={"code": -32603, "message": "Internal error"}), "rpc_error"),
        (_rpc(result="1574721591"), "wrong_type"),
        (_rpc(result=-1), "wrong_type"),
        (_rpc(result=2**64), "wrong_type"),
        (_rpc(result=1.5), "wrong_type"),
        (json.dumps([1]).encode(), "wrong_type"),
    ],
    ids=["html", "internal_error", "string", "negative", "huge", "float", "array"],
)
def test_block_time_rejections(body: bytes, reason: str) -> None:
    """A broken getBlockTime answer is a DataError with its reason, never a time."""
    with pytest.raises(DataError) as caught:
        parse_block_time(body)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": -32004.0}, BlockTime(None)),
        ({"code": [1]}, "rpc_error"),
        ({"code": {"a": 1}}, "rpc_error"),
        ({"code": True}, "rpc_error"),
    ],
)
def test_block_time_error_code_of_any_type(error: dict[str, Any], expected: Any) -> None:
    """A code equal to a no-block code means no time; any other, of any type, is rpc_error
    (an unhashable code used to escape as a TypeError)."""
    body = _rpc(error=error, result="garbage")
    if isinstance(expected, BlockTime):
        assert parse_block_time(body) == expected
    else:
        with pytest.raises(DataError) as caught:
            parse_block_time(body)
        assert caught.value.reason == expected


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"epoch": MAX_U64 + 1}, "wrong_type"),
        ({"transactionCount": MAX_U64 + 1}, "wrong_type"),
        ({"blockHeight": None}, "missing_field"),
        ({"slotIndex": 8192, "epoch": None}, "missing_field"),
    ],
)
def test_epoch_info_bounds_and_nulls(fields: dict[str, Any], reason: str) -> None:
    """Every epoch field is a u64 however large the number; a null one is missing."""
    with pytest.raises(DataError) as caught:
        parse_epoch_info(_epoch(**fields))
    assert caught.value.reason == reason


@pytest.mark.parametrize("parser", [parse_vote_accounts, parse_epoch_info, parse_block_time])
def test_deep_nesting_is_malformed_json(parser: Callable[[bytes], object]) -> None:
    """100,000 nested arrays are malformed_json, not a RecursionError."""
    with pytest.raises(DataError) as caught:
        parser(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.reason == "malformed_json"
