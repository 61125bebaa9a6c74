"""Subtensor answers decoded strictly: the JSON-RPC envelope, headers, and the selective
metagraph (the mainnet recording's and built ones) into permit holders, entities and kappa."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from quorumwatch.chains.bittensor.parse import (
    API,
    Metagraph,
    metagraph_fields,
    metagraph_request,
    parse_block_number,
    parse_hash,
    parse_hex,
    parse_metagraph,
    parse_spec_version,
    rpc_result,
)
from quorumwatch.chains.bittensor.scale import RuntimeMetadata, decode_metadata
from quorumwatch.columns import STATUS_INACTIVE, STATUS_ONLINE
from quorumwatch.models import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "bittensor"
A, B, C = (
    "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM",
    "5C62Ck4UrFPiBtoCmeSrgF7x9yv9mn38446dhCpsi2mLHiFT",
    "5C7LYpP2ZH3tpKbvVvwiVe54AapxErdPBbvkYhe6y9ZBkqWt",
)


@pytest.fixture(scope="module")
def metadata() -> RuntimeMetadata:
    answer = (FIXTURES / "metadata_v15_spec343.hex").read_text().strip()
    return decode_metadata(343, bytes.fromhex(answer[2:]))


def _recorded_metagraph() -> bytes:
    recording = json.loads((FIXTURES / "sn1_block_6852690.json").read_text())
    (call,) = (
        c
        for c in recording["calls"]
        if c["method"] == "state_call" and c["params"][0].endswith("get_selective_mechagraph")
    )
    return parse_hex(call["result"], "state_call")


def _identity(name: str) -> dict[str, str]:
    keys = ("url", "github_repo", "image", "discord", "description", "additional")
    return {"name": name, **dict.fromkeys(keys, "")}


def _encoded(metadata: RuntimeMetadata, **fields: Any) -> bytes:
    value: dict[str, Any] = dict.fromkeys(metagraph_fields(metadata))
    value.update(
        netuid=7,
        block=100,
        kappa=32767,
        hotkeys=[A, B, C],
        coldkeys=[A, B, C],
        identities=[None, None, None],
        active=[True, False, True],
        validator_permit=[True, True, False],
        total_stake=[600, 400, 50],
    )
    value.update(fields)
    type_id = metadata.api_output_type(API, "get_selective_mechagraph")
    return metadata.encode(type_id, value)


def _parse(metadata: RuntimeMetadata, **fields: Any) -> Metagraph:
    return parse_metagraph(metadata, _encoded(metadata, **fields), 7)


def test_recorded_metagraph_decodes_to_its_readme_facts(metadata: RuntimeMetadata) -> None:
    """Subnet 1 at block 6,852,690: 12 permit holders of max 128 (10 active), 12 coldkeys,
    the largest 645,173,460,056,565 of 1,696,880,514,237,877 active rao, kappa 32767."""
    graph = parse_metagraph(metadata, _recorded_metagraph(), 1)
    table = graph.table
    assert (len(table), graph.block) == (12, 6_852_690)
    assert list(table.status).count(STATUS_ONLINE) == 10
    active = table.stakes[table.status == STATUS_ONLINE]
    assert (int(active.max()), int(active.sum())) == (645_173_460_056_565, 1_696_880_514_237_877)
    assert round(int(table.stakes.max()) / int(table.stakes.sum()), 4) == 0.3766
    assert len(graph.attribution.entity_names) == 12
    assert graph.kappa == Fraction(32767, 65535)


def test_request_asks_for_the_fields_by_their_positions(metadata: RuntimeMetadata) -> None:
    """The call names get_selective_mechagraph with netuid 7 (u16), mechanism 0 and the
    indexes of netuid, block, kappa, hotkeys, coldkeys, identities, active, validator_permit
    and total_stake in spec 343's SelectiveMetagraph."""
    method, argument = metagraph_request(metadata, 7)
    indexes = [0, 7, 23, 52, 53, 54, 56, 57, 69]
    expected = bytes([7, 0, 0, len(indexes) << 2]) + b"".join(
        i.to_bytes(2, "little") for i in indexes
    )
    assert (method, argument) == (f"{API}_get_selective_mechagraph", "0x" + expected.hex())


def test_permit_holders_make_the_set(metadata: RuntimeMetadata) -> None:
    """Only UIDs with a permit are validators, at their total_stake; an inactive one is
    inactive; ids are hotkeys."""
    graph = _parse(metadata)
    assert list(graph.table.addresses) == [A, B]
    assert [int(s) for s in graph.table.stakes] == [600, 400]
    assert list(graph.table.status) == [STATUS_ONLINE, STATUS_INACTIVE]


def test_entities_are_coldkeys_named_by_their_own_identity(metadata: RuntimeMetadata) -> None:
    """Hotkeys of one coldkey are one entity; a coldkey is named by its identity's name unless
    another coldkey claims the same name, which leaves both named by their keys."""
    graph = _parse(
        metadata,
        coldkeys=[C, C, A],
        validator_permit=[True, True, True],
        identities=[_identity("Opentensor"), _identity("Opentensor"), _identity("x")],
    )
    assert graph.attribution.entity_index.tolist() == [0, 0, 1]
    assert graph.attribution.entity_names == ["Opentensor", "x"]
    clash = _parse(
        metadata,
        validator_permit=[True, True, True],
        identities=[_identity("Same"), _identity("Same"), None],
    )
    assert clash.attribution.entity_names == [A, B, C]


@pytest.mark.parametrize(
    ("fields", "netuid", "reason"),
    [
        ({"validator_permit": [False, False, False]}, 7, "empty_set"),
        ({"total_stake": None}, 7, "missing_field"),
        ({"active": [True, True]}, 7, "wrong_type"),
        ({"hotkeys": [A, A, C]}, 7, "duplicate_validator"),
        ({"total_stake": [0, 400, 50], "active": [True, False, True]}, 7, "zero_stake"),
        ({}, 8, "wrong_subnet"),
    ],
)
def test_bad_metagraphs_are_refused(
    metadata: RuntimeMetadata, fields: dict[str, Any], netuid: int, reason: str
) -> None:
    """No permit holder, a field left out, per-UID lists of different lengths, a hotkey twice,
    no active stake, or another subnet's metagraph: refused by reason."""
    with pytest.raises(DataError) as caught:
        parse_metagraph(metadata, _encoded(metadata, **fields), netuid)
    assert caught.value.reason == reason


def test_absent_subnet_and_truncated_answer(metadata: RuntimeMetadata) -> None:
    """None (no such subnet) is no_subnet; a metagraph cut short is undecodable_scale."""
    with pytest.raises(DataError) as absent:
        parse_metagraph(metadata, b"\x00", 7)
    assert absent.value.reason == "no_subnet"
    with pytest.raises(DataError) as truncated:
        parse_metagraph(metadata, _encoded(metadata)[:-3], 7)
    assert truncated.value.reason == "undecodable_scale"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x"}}', "rpc_error"),
        (b'{"jsonrpc":"1.0","id":1,"result":"0x"}', "wrong_type"),
        (b'{"jsonrpc":"2.0","id":1}', "missing_field"),
        (b"[1]", "wrong_type"),
        (b"{", "malformed_json"),
    ],
)
def test_bad_envelopes_are_refused(body: bytes, reason: str) -> None:
    """An error object, a wrong version, no result, no object, or no JSON: refused by reason."""
    with pytest.raises(DataError) as caught:
        rpc_result(body, "m")
    assert caught.value.reason == reason


def test_results_of_each_shape() -> None:
    """A hash, hex bytes, a header's number and a runtime's specVersion are read exactly; a
    result of another shape is wrong_type."""
    assert parse_hash("0x" + "ab" * 32, "m") == "0x" + "ab" * 32
    assert parse_hex("0x0102", "m") == b"\x01\x02"
    assert parse_block_number({"number": "0x689052", "parentHash": "0x00"}) == 6_852_690
    assert parse_spec_version({"specName": "node-subtensor", "specVersion": 343}) == 343
    for bad in (
        lambda: parse_hash("0xab", "m"),
        lambda: parse_hex("0x123", "m"),
        lambda: parse_block_number({"number": 5}),
        lambda: parse_spec_version({"specVersion": -1}),
    ):
        with pytest.raises(DataError) as caught:
            bad()
        assert caught.value.reason == "wrong_type"
