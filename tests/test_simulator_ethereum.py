"""The Ethereum beacon-node simulator: the SSZ state read back by an independent reader, the
JSON validators and their filters, the toggles and presets, and the set's expected facts."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from quorumwatch.simulator import ethereum_json
from quorumwatch.simulator.ethereum import (
    DEFAULT_SEED,
    DEFAULT_VALIDATORS,
    PRESETS,
    RunningEthereumSimulator,
    shipped_label_files,
    start_ethereum_simulator,
)
from quorumwatch.simulator.ethereum_set import (
    CUSTODIAN,
    CUSTODIANS,
    LIDO_ENTITY,
    OPERATORS,
    PROTOCOL,
    STATUS_SHORTHANDS,
    STATUSES,
    Registry,
    build_set,
    expected_stakes,
    label_rows,
    operator_rows,
    read_csv,
    records,
    write_label_files,
)

NOW = 1_800_000_000.0
N = 300
SSZ = {"Accept": "application/octet-stream"}

# The Fulu BeaconState with the mainnet preset, read off consensus-specs
# (specs/fulu/beacon-chain.md and the containers it inherits): each field's size in the fixed
# part, "var" for a variable-size field (a 4-byte offset there).
FULU_STATE = """
genesis_time 8 | genesis_validators_root 32 | slot 8 | fork 16 | latest_block_header 112
block_roots 262144 | state_roots 262144 | historical_roots var | eth1_data 72
eth1_data_votes var | eth1_deposit_index 8 | validators var | balances var
randao_mixes 2097152 | slashings 65536 | previous_epoch_participation var
current_epoch_participation var | justification_bits 1 | previous_justified_checkpoint 40
current_justified_checkpoint 40 | finalized_checkpoint 40 | inactivity_scores var
current_sync_committee 24624 | next_sync_committee 24624 | latest_execution_payload_header var
next_withdrawal_index 8 | next_withdrawal_validator_index 8 | historical_summaries var
deposit_requests_start_index 8 | deposit_balance_to_consume 8 | exit_balance_to_consume 8
earliest_exit_epoch 8 | consolidation_balance_to_consume 8 | earliest_consolidation_epoch 8
pending_deposits var | pending_partial_withdrawals var | pending_consolidations var
proposer_lookahead 512
"""
# Element sizes of the lists (Validator is 121 bytes; the payload header is one container).
ELEMENT = {
    "historical_roots": 32,
    "eth1_data_votes": 72,
    "validators": 121,
    "balances": 8,
    "previous_epoch_participation": 1,
    "current_epoch_participation": 1,
    "inactivity_scores": 8,
    "historical_summaries": 64,
    "pending_deposits": 192,
    "pending_partial_withdrawals": 24,
    "pending_consolidations": 16,
}
# The spec's Validator, in order: 48 + 32 + 8 + 1 + 4 · 8 = 121 bytes.
VALIDATOR_FIELDS: tuple[str, ...] = ("pubkey", "withdrawal_credentials", "effective_balance")
VALIDATOR_FIELDS += ("slashed", "activation_eligibility_epoch", "activation_epoch")
VALIDATOR_FIELDS += ("exit_epoch", "withdrawable_epoch")
# Prysm's generated fastssz code: BeaconStateFulu.SizeSSZ() starts from 2737225 and
# ExecutionPayloadHeaderDeneb.SizeSSZ() from 584.
PRYSM_FULU_FIXED = 2_737_225
PRYSM_PAYLOAD_HEADER_FIXED = 584


@dataclass(frozen=True)
class DecodedState:
    fixed: dict[str, bytes]
    lists: dict[str, bytes]

    def validator(self, index: int) -> dict[str, Any]:
        values = struct.unpack_from("<48s32sQ?QQQQ", self.lists["validators"], 121 * index)
        return dict(zip(VALIDATOR_FIELDS, values, strict=True))

    def u64(self, field: str, index: int = 0) -> int:
        data = self.fixed.get(field) or self.lists[field]
        value: int = struct.unpack_from("<Q", data, 8 * index)[0]
        return value


def decode_state(body: bytes) -> DecodedState:
    """A minimal SSZ reader: the fixed part by FULU_STATE, each list from its offset to the
    next one's (the last to the end); every size must add up exactly."""
    fields = [item.split() for line in FULU_STATE.strip().splitlines() for item in line.split("|")]
    fixed: dict[str, bytes] = {}
    offsets: list[tuple[str, int]] = []
    position = 0
    for name, size in fields:
        if size == "var":
            offsets.append((name, struct.unpack_from("<I", body, position)[0]))
            position += 4
        else:
            fixed[name] = body[position : position + int(size)]
            position += int(size)
    assert offsets[0][1] == position, "the first variable part starts right after the fixed"
    lists: dict[str, bytes] = {}
    ends = [offset for _, offset in offsets[1:]] + [len(body)]
    for (name, start), end in zip(offsets, ends, strict=True):
        assert start <= end <= len(body), name
        lists[name] = body[start:end]
        if name in ELEMENT:
            assert len(lists[name]) % ELEMENT[name] == 0, name
    return DecodedState(fixed, lists)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sim() -> AsyncIterator[RunningEthereumSimulator]:
    async with await start_ethereum_simulator(validators=N, clock=Clock()) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def fetch_state(
    session: aiohttp.ClientSession, sim: RunningEthereumSimulator, state_id: str = "head"
) -> bytes:
    async with session.get(
        f"{sim.base_url}/eth/v2/debug/beacon/states/{state_id}", headers=SSZ
    ) as r:
        assert r.status == 200
        assert r.headers["Eth-Consensus-Version"] == "fulu"
        assert r.headers["Content-Type"] == "application/octet-stream"
        return await r.read()


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def validators(
    session: aiohttp.ClientSession, sim: RunningEthereumSimulator, query: str = ""
) -> list[dict[str, Any]]:
    url = f"{sim.base_url}/eth/v1/beacon/states/head/validators{query}"
    status, document = await get_json(session, url)
    assert status == 200, document
    rows: list[dict[str, Any]] = document["data"]
    return rows


# -- the SSZ state ------------------------------------------------------------------------------


def test_the_reader_layout_is_the_fulu_container_prysm_sizes() -> None:
    """The test's own reading of the spec gives the fixed size Prysm's generated code uses."""
    sizes = [
        item.split()[1] for line in FULU_STATE.strip().splitlines() for item in line.split("|")
    ]
    assert sum(4 if size == "var" else int(size) for size in sizes) == PRYSM_FULU_FIXED
    assert len(sizes) == 38  # Electra's 37 fields and proposer_lookahead


async def test_ssz_state_decodes_structurally_and_adds_up(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    """Every list has whole elements, the registry lists agree on N, the payload header is the
    Deneb one with empty extra_data, and nothing is left over."""
    body = await fetch_state(session, sim)
    state = decode_state(body)
    registry_lists = ("previous_epoch_participation", "current_epoch_participation")
    assert len(state.lists["validators"]) == 121 * N
    assert len(state.lists["balances"]) == 8 * N
    assert len(state.lists["inactivity_scores"]) == 8 * N
    assert all(len(state.lists[name]) == N for name in registry_lists)
    header = state.lists["latest_execution_payload_header"]
    assert len(header) == PRYSM_PAYLOAD_HEADER_FIXED
    assert struct.unpack_from("<I", header, 436)[0] == PRYSM_PAYLOAD_HEADER_FIXED  # extra_data
    total = PRYSM_FULU_FIXED + sum(len(part) for part in state.lists.values())
    assert total == len(body)
    assert state.fixed["fork"] == bytes.fromhex("05000000") + bytes.fromhex(
        "06000000"
    ) + struct.pack("<Q", 411_392)


async def test_ssz_state_agrees_with_the_other_endpoints(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    state = decode_state(await fetch_state(session, sim))
    _, genesis = await get_json(session, f"{sim.base_url}/eth/v1/beacon/genesis")
    _, syncing = await get_json(session, f"{sim.base_url}/eth/v1/node/syncing")
    _, finality = await get_json(
        session, f"{sim.base_url}/eth/v1/beacon/states/head/finality_checkpoints"
    )
    assert state.u64("genesis_time") == int(genesis["data"]["genesis_time"])
    assert (
        "0x" + state.fixed["genesis_validators_root"].hex()
        == (genesis["data"]["genesis_validators_root"])
    )
    assert state.u64("slot") == int(syncing["data"]["head_slot"])
    assert state.u64("slot") == (int(NOW) - state.u64("genesis_time")) // 12
    finalized = state.fixed["finalized_checkpoint"]
    assert struct.unpack_from("<Q", finalized)[0] == int(finality["data"]["finalized"]["epoch"])
    assert "0x" + finalized[8:].hex() == finality["data"]["finalized"]["root"]
    pubkeys = {state.validator(i)["pubkey"] for i in range(N)}
    committee = state.fixed["current_sync_committee"]
    assert {committee[48 * k : 48 * k + 48] for k in range(512)} <= pubkeys
    lookahead = struct.unpack("<64Q", state.fixed["proposer_lookahead"])
    assert all(0 <= index < N for index in lookahead)


async def test_json_validators_match_the_ssz_registry(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    """Every validator of the unfiltered JSON list is the SSZ record, field by field, as
    decimal strings (balances in gwei) and 0x hex."""
    state = decode_state(await fetch_state(session, sim))
    rows = await validators(session, sim)
    assert [row["index"] for row in rows] == [str(i) for i in range(N)]
    for i, row in enumerate(rows):
        record = state.validator(i)
        served = row["validator"]
        assert served["pubkey"] == "0x" + record["pubkey"].hex()
        assert served["withdrawal_credentials"] == "0x" + record["withdrawal_credentials"].hex()
        assert served["slashed"] is record["slashed"]
        for name in ("effective_balance", "activation_eligibility_epoch", "activation_epoch"):
            assert served[name] == str(record[name])
        assert served["exit_epoch"] == str(record["exit_epoch"])
        assert served["withdrawable_epoch"] == str(record["withdrawable_epoch"])
        assert row["balance"] == str(state.u64("balances", i))


async def test_same_seed_same_bytes_and_another_seed_differs(
    session: aiohttp.ClientSession,
) -> None:
    bodies = []
    for seed in (DEFAULT_SEED, DEFAULT_SEED, DEFAULT_SEED + 1):
        async with await start_ethereum_simulator(
            validators=N, seed=seed, clock=Clock()
        ) as simulator:
            body = await fetch_state(session, simulator)
            rows = await validators(session, simulator)
            bodies.append((body, rows))
    assert bodies[0] == bodies[1]
    assert bodies[0][0] != bodies[2][0]
    assert bodies[0][1] != bodies[2][1]


async def test_accept_negotiation_and_the_ssz_refusal_toggle(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    """JSON (or a zero-quality SSZ) is a 406; a refused SSZ answers the configured status and
    the JSON validators keep working for the fallback."""
    url = f"{sim.base_url}/eth/v2/debug/beacon/states/head"
    for accept, expected in (
        ("application/json", 406),
        ("application/octet-stream;q=0", 406),
        ("application/json;q=0.9, application/octet-stream", 200),
    ):
        async with session.get(url, headers={"Accept": accept}) as response:
            assert response.status == expected, accept
    for refused in (404, 406, 415, 501):
        sim.faults.ssz_refused = refused
        async with session.get(url, headers=SSZ) as response:
            assert response.status == refused
            assert (await response.json())["code"] == refused
    assert sim.requests[-1].accept == "application/octet-stream"
    assert sim.requests[-1].path == "/eth/v2/debug/beacon/states/head"
    assert len(await validators(session, sim)) == N


# -- the validators endpoint ----------------------------------------------------------------


async def test_status_filters_select_the_planned_counts(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    planned = sim.built.planned_statuses
    assert all(planned[status] > 0 for status in STATUSES)
    for status in STATUSES:
        rows = await validators(session, sim, f"?status={status}")
        assert [row["status"] for row in rows] == [status] * planned[status]
    for shorthand, members in STATUS_SHORTHANDS.items():
        rows = await validators(session, sim, f"?status={shorthand}")
        assert len(rows) == sum(planned[status] for status in members)
        assert {row["status"] for row in rows} == set(members)
    both = await validators(session, sim, "?status=pending&status=withdrawal_done")
    pending = planned["pending_initialized"] + planned["pending_queued"]
    assert len(both) == pending + planned["withdrawal_done"]
    code, error = await get_json(
        session, f"{sim.base_url}/eth/v1/beacon/states/head/validators?status=asleep"
    )
    assert (code, error["code"]) == (400, 400)


async def test_ids_by_index_and_pubkey_at_most_64(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    everyone = await validators(session, sim)
    pubkey = everyone[17]["validator"]["pubkey"]
    rows = await validators(session, sim, f"?id=3,{pubkey.upper().replace('0X', '0x')}&id=999")
    assert [row["index"] for row in rows] == ["3", "17"]  # index order; unknown ids skipped
    unknown = "0x" + "ab" * 48
    assert await validators(session, sim, f"?id={unknown}") == []
    ids = ",".join(str(i) for i in range(64))
    assert len(await validators(session, sim, f"?id={ids}&status=active")) <= 64
    base = f"{sim.base_url}/eth/v1/beacon/states/head/validators"
    status, error = await get_json(session, f"{base}?id={ids},64")
    assert (status, error["code"]) == (414, 414)
    status, _ = await get_json(session, f"{base}?id=seventeen")
    assert status == 400


async def test_post_filters_ids_and_statuses_without_the_get_limit(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/eth/v1/beacon/states/head/validators"
    everyone = await validators(session, sim)
    ids = [str(i) for i in range(0, N, 3)] + [everyone[1]["validator"]["pubkey"]]
    async with session.post(url, json={"ids": ids, "statuses": ["active"]}) as response:
        rows = (await response.json())["data"]
    wanted = {0, 1, *range(0, N, 3)}
    expected = [
        r for r in everyone if int(r["index"]) in wanted and r["status"].startswith("active")
    ]
    assert rows == expected
    async with session.post(url, json={"ids": None, "statuses": None}) as response:
        assert len((await response.json())["data"]) == N
    async with session.post(url, json={}) as response:
        assert len((await response.json())["data"]) == N
    for bad in ([1, 2], {"ids": [1]}, {"statuses": "active"}):
        async with session.post(url, json=bad) as response:
            assert response.status == 400
    async with session.post(url, data=b"{not json") as response:
        assert response.status == 400


async def test_large_selections_stream_in_blocks(
    monkeypatch: pytest.MonkeyPatch, session: aiohttp.ClientSession
) -> None:
    """Above the direct-render size rows come from cached blocks: across block boundaries, with
    the first selected row in a later block, the body is still one valid JSON document."""
    monkeypatch.setattr(ethereum_json, "BLOCK_ROWS", 1_000)
    async with await start_ethereum_simulator(validators=5_000, clock=Clock()) as big:
        everyone = await validators(session, big)
        assert [row["index"] for row in everyone] == [str(i) for i in range(5_000)]
        active = await validators(session, big, "?status=active")
        assert active == [row for row in everyone if row["status"].startswith("active")]
        assert len(active) > 4_096
        pending = await validators(session, big, "?status=pending")  # only the last block
        assert pending == [row for row in everyone if row["status"].startswith("pending")]


# -- chain, toggles, presets, updates -------------------------------------------------------


async def test_head_follows_the_clock_and_state_ids_resolve(session: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with await start_ethereum_simulator(validators=N, clock=clock) as node:
        base = f"{node.base_url}/eth/v1/beacon/states"
        _, syncing = await get_json(session, f"{node.base_url}/eth/v1/node/syncing")
        head = int(syncing["data"]["head_slot"])
        clock.now += 12 * 40
        _, syncing = await get_json(session, f"{node.base_url}/eth/v1/node/syncing")
        assert int(syncing["data"]["head_slot"]) == head + 40
        head += 40
        assert decode_state(await fetch_state(session, node)).u64("slot") == head
        older = decode_state(await fetch_state(session, node, str(head - 5)))
        assert older.u64("slot") == head - 5
        finalized = decode_state(await fetch_state(session, node, "finalized"))
        assert finalized.u64("slot") == (head // 32 - 2) * 32
        status, checkpoints = await get_json(session, f"{base}/{head - 5}/finality_checkpoints")
        assert status == 200
        assert checkpoints["finalized"] is False
        for state_id, expected in (
            (str(head + 1), 404),
            (str(head - 9_000), 404),
            ("genesis", 404),
            ("0x" + "00" * 32, 404),
            ("current", 400),
        ):
            status, _ = await get_json(session, f"{base}/{state_id}/finality_checkpoints")
            assert status == expected, state_id


async def test_syncing_and_stalled_finality_toggles(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    _, before = await get_json(session, f"{sim.base_url}/eth/v1/node/syncing")
    sim.faults.syncing = True
    _, during = await get_json(session, f"{sim.base_url}/eth/v1/node/syncing")
    assert during["data"]["is_syncing"] is True
    assert int(during["data"]["sync_distance"]) == sim.faults.sync_distance
    assert int(during["data"]["head_slot"]) == int(before["data"]["head_slot"]) - 1_000
    sim.faults.syncing = False
    sim.faults.finality_lag_epochs = 100
    url = f"{sim.base_url}/eth/v1/beacon/states/head/finality_checkpoints"
    _, finality = await get_json(session, url)
    head_epoch = int(before["data"]["head_slot"]) // 32
    assert int(finality["data"]["finalized"]["epoch"]) == head_epoch - 100
    state = decode_state(await fetch_state(session, sim))
    assert state.fixed["justification_bits"] == b"\x00"
    assert struct.unpack_from("<Q", state.fixed["finalized_checkpoint"])[0] == head_epoch - 100


async def test_presets(session: aiohttp.ClientSession) -> None:
    assert set(PRESETS) >= {"mainnet", "finality-stalled"}
    async with await start_ethereum_simulator(
        validators=2_000, preset="finality-stalled", clock=Clock()
    ) as stalled:
        state = decode_state(await fetch_state(session, stalled))
        head_epoch = state.u64("slot") // 32
        finalized = struct.unpack_from("<Q", state.fixed["finalized_checkpoint"])[0]
        assert head_epoch - finalized == 64
        facts = expected_stakes(records(stalled.registry), head_epoch, {}, {})
        assert 0.33 < facts.missing_target / facts.total < 0.40  # finality cannot be reached
        assert max(np.frombuffer(state.lists["inactivity_scores"], "<u8")) == 4 * 64
    async with await start_ethereum_simulator(
        validators=N, preset="json-only", clock=Clock()
    ) as json_only:
        url = f"{json_only.base_url}/eth/v2/debug/beacon/states/head"
        async with session.get(url, headers=SSZ) as response:
            assert response.status == 406
    with pytest.raises(ValueError, match="finality-stalled"):
        await start_ethereum_simulator(validators=N, preset="nope")


async def test_update_changes_what_is_served(
    sim: RunningEthereumSimulator, session: aiohttp.ClientSession
) -> None:
    before = await fetch_state(session, sim)
    await validators(session, sim)  # render and cache

    def slash_seven(registry: Registry) -> None:
        registry.validators["slashed"][7] = 1
        registry.validators["effective_balance"][7] = 2_048 * 10**9

    sim.update(slash_seven)
    after = decode_state(await fetch_state(session, sim))
    assert after.validator(7)["slashed"] is True
    assert after.validator(7)["effective_balance"] == 2_048 * 10**9
    assert len(before) == PRYSM_FULU_FIXED + sum(len(p) for p in after.lists.values())
    row = (await validators(session, sim, "?id=7"))[0]
    assert row["validator"]["slashed"] is True
    assert row["validator"]["effective_balance"] == "2048000000000"


# -- the set, its labels and its expected facts --------------------------------------------


def truth(built: Any, mask: np.ndarray[Any, Any]) -> int:
    total: int = built.registry.validators["effective_balance"][mask].sum().item()
    return total


def test_expected_stakes_agree_with_the_generators_truth() -> None:
    """`expected_stakes` (plain Python over records and the label files) and the generator's
    own owner columns (vectorised) give the same totals per entity and operator."""
    built = build_set(DEFAULT_VALIDATORS, DEFAULT_SEED)
    labels = dict(label_rows(built))
    operators = dict(operator_rows(built))
    facts = expected_stakes(records(built.registry), built.base_epoch, labels, operators)
    v = built.registry.validators
    epoch = built.base_epoch
    active = (v["activation_epoch"] <= epoch) & (epoch < v["exit_epoch"])
    assert facts.total == truth(built, active)
    assert facts.by_entity[LIDO_ENTITY] == truth(built, active & (built.owner_kind == PROTOCOL))
    for number, name in enumerate(CUSTODIANS):
        mine = active & (built.owner_kind == CUSTODIAN) & (built.owner_id == number)
        assert facts.by_entity.get(name, 0) == truth(built, mine), name
    for number, name in enumerate(OPERATORS):
        assert facts.by_operator[name] == truth(built, active & (built.operator == number))
    assert facts.status_counts == dict(built.planned_statuses)
    assert sum(facts.by_address.values()) == sum(facts.by_entity.values()) == facts.total
    assert sum(facts.by_operator.values()) == facts.total
    assert 0.25 < facts.by_entity[LIDO_ENTITY] / facts.total < 0.31
    assert 0.01 < facts.missing_target / facts.total < 0.05


def nakamoto(stakes: Mapping[str, int], total: int, threshold: float) -> int:
    """Smallest number of groups holding more than `threshold` of `total`."""
    running = 0
    for count, stake in enumerate(sorted(stakes.values(), reverse=True), start=1):
        running += stake
        if running > threshold * total:
            return count
    raise AssertionError("the groups do not reach the threshold")


def test_groupings_give_distinct_nakamoto_coefficients() -> None:
    """The shape a client should find: by entity, Lido and the largest custodian can stop
    finality; raw addresses split the custodians (Lido's vault stays one address); node
    operators split Lido too."""
    built = build_set(DEFAULT_VALIDATORS, DEFAULT_SEED)
    labels, operators = (read_csv(Path(str(f))) for f in shipped_label_files())
    facts = expected_stakes(records(built.registry), built.base_epoch, labels, operators)
    by_entity = nakamoto(facts.by_entity, facts.total, 1 / 3)
    by_operator = nakamoto(facts.by_operator, facts.total, 1 / 3)
    by_address = nakamoto(facts.by_address, facts.total, 1 / 3)
    assert by_entity == 2
    assert by_entity < by_address < by_operator
    assert nakamoto(facts.by_entity, facts.total, 2 / 3) > by_entity


def test_shipped_label_files_are_those_of_the_default_set(tmp_path: Path) -> None:
    labels, operators = write_label_files(
        tmp_path, validators=DEFAULT_VALIDATORS, seed=DEFAULT_SEED
    )
    shipped_labels, shipped_operators = shipped_label_files()
    assert labels.read_text() == shipped_labels.read_text(encoding="utf-8")
    assert operators.read_text() == shipped_operators.read_text(encoding="utf-8")
    lines = labels.read_text().splitlines()
    assert lines[0] == "key,entity"
    keys = [line.split(",")[0] for line in lines[1:]]
    assert all(len(key) in (42, 98) and key == key.lower() for key in keys)
    assert any(len(key) == 98 for key in keys)  # custodians' 0x00 validators, by pubkey
    assert "0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f" not in keys
    assert {line.split(",")[1] for line in lines[1:]} == set(CUSTODIANS)
    operator_lines = operators.read_text().splitlines()[1:]
    assert {line.split(",")[1] for line in operator_lines} == set(OPERATORS)
    assert all(len(line.split(",")[0]) == 98 for line in operator_lines)


def test_set_shape_and_bounds() -> None:
    built = build_set(1_000, 3)
    v = built.registry.validators
    prefixes = set(v["withdrawal_credentials"][:, 0].tolist())
    assert prefixes == {0, 1, 2}
    compounding = v["withdrawal_credentials"][:, 0] == 2
    balances = v["effective_balance"]
    assert (balances % 10**9 == 0).all()
    assert balances.max() <= 2_048 * 10**9
    assert balances[compounding].max() > 32 * 10**9
    assert (balances[~compounding] <= 32 * 10**9).all()
    assert len({bytes(key) for key in v["pubkey"]}) == 1_000
    assert ((v["pubkey"][:, 0] >> 6) == 0b10).all()  # compressed, not infinity
    with pytest.raises(ValueError, match="validators"):
        build_set(10)
