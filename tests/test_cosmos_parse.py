"""Strict decoding of Cosmos LCD and CometBFT RPC answers (chain-apis.md §2–§3)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from quorumwatch.chains.cosmos.parse import (
    REJECTION_REASONS,
    parse_lcd_validators,
    parse_pool,
    parse_rpc_validators,
    parse_signing_infos,
    parse_slashing_params,
    parse_status,
)
from quorumwatch.endpoints import DataError

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


def test_huge_value_is_not_echoed() -> None:
    """A megabyte-long moniker type error names the field, not the value."""
    body = _with(LCD_VALIDATORS, "validators.0.jailed", "x" * 1_000_000)
    with pytest.raises(DataError) as caught:
        parse_lcd_validators(body)
    assert caught.value.reason == "wrong_type"
    assert len(str(caught.value)) < 200
