"""Ethereum source over the beacon-node simulator (and tiny apps for malformed answers): SSZ
and JSON registries, the fallback between them, node and clock checks, finality, failover."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from aiohttp import web

from quorumwatch.chains.ethereum.source import EthereumSource
from quorumwatch.columns import UNATTRIBUTED, DecimalIds
from quorumwatch.config import ChainSettings
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import ValidatorStatus
from quorumwatch.simulator.ethereum import start_ethereum_simulator
from quorumwatch.simulator.ethereum_set import (
    FAR_FUTURE_EPOCH,
    SLOTS_PER_EPOCH,
    expected_stakes,
    read_csv,
    records,
    write_label_files,
)
from quorumwatch.simulator.serving import LoopbackServer
from tests.builders import FakeClock
from tests.ethereum_builders import (
    GENESIS_TIME,
    SLOT,
    encode_beacon_state,
    make_validators,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable
    from pathlib import Path

    import aiohttp

    from quorumwatch.chains.base import FetchResult
    from quorumwatch.models import Validator
    from quorumwatch.simulator.ethereum import RunningEthereumSimulator
    from quorumwatch.simulator.ethereum_set import Registry

NOW = 1_800_000_000.0
N = 200  # validators: above the simulator's minimum, small enough to build in milliseconds
SSZ_STATES = "/eth/v2/debug/beacon/states/"


@contextlib.asynccontextmanager
async def _simulators(*clocks: float) -> AsyncIterator[list[RunningEthereumSimulator]]:
    """One simulator per clock reading, each on the same set (same size and seed)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                await start_ethereum_simulator(validators=N, clock=FakeClock(at))
            )
            for at in clocks
        ]


def _source(
    session: aiohttp.ClientSession,
    *urls: str,
    now: float = NOW,
    chain: dict[str, Any] | None = None,
    **ethereum: Any,
) -> tuple[EthereumSource, EndpointPool]:
    settings = ChainSettings.model_validate(
        {
            "name": "eth",
            "kind": "ethereum",
            "endpoints": [{"name": f"ep{i}", "url": url} for i, url in enumerate(urls)],
            "ethereum": ethereum,
            **(chain or {}),
        }
    )
    pool = EndpointPool(settings.endpoints, session, max_response_bytes=settings.max_response_bytes)
    return EthereumSource(pool, settings, clock=lambda: now), pool


async def _fetch(source: EthereumSource) -> tuple[FetchResult, tuple[Validator, ...]]:
    """The fetch's result, and every row of its set as a `Validator` (a small set)."""
    result = await source.fetch()
    assert result.validator_set is not None, result.failures
    table = result.validator_set.table
    return result, table.rows(range(len(table)))


def _paths(sim: RunningEthereumSimulator) -> list[str]:
    return [request.path for request in sim.requests]


def _registry_requests(sim: RunningEthereumSimulator) -> list[str]:
    """The registry requests `sim` received, in order: SSZ states and JSON validators."""
    return [p for p in _paths(sim) if p.startswith(SSZ_STATES) or p.endswith("/validators")]


def _comparable(validators: Iterable[Validator]) -> set[tuple[str, int, bool, bool]]:
    return {(v.address, v.stake, v.in_consensus_set, v.jailed) for v in validators}


def _head_epoch(sim: RunningEthereumSimulator) -> int:
    return sim.head_slot() // SLOTS_PER_EPOCH


# -- the set's columns ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ssz", "json"])
async def test_the_set_is_columns_over_the_state(
    session: aiohttp.ClientSession, encoding: str
) -> None:
    """The set read over either encoding is columns: ids written on access, no names,
    effective balances as uint64 and status codes as uint8, its attribution as columns of the
    same length."""
    async with _simulators(NOW) as (sim,):
        source, _ = _source(session, sim.base_url, encoding=encoding)
        result = await source.fetch()
    assert result.validator_set is not None
    table, attribution = result.validator_set.table, result.validator_set.attribution
    assert isinstance(table.addresses, DecimalIds)
    assert set(table.names) == {""}
    assert (table.stakes.dtype, table.status.dtype) == (np.dtype(np.uint64), np.dtype(np.uint8))
    assert attribution is not None
    assert attribution.entity_index.shape == (len(table),)


# -- SSZ and JSON ------------------------------------------------------------------------------


async def test_ssz_and_json_give_the_same_set_but_for_liveness(
    session: aiohttp.ClientSession,
) -> None:
    """Over SSZ and over JSON the same validators (ids, stakes, active, slashed) come back and
    add up to the registry's own totals; SSZ knows liveness and marks delinquents, JSON has
    liveness unknown and no delinquent."""
    async with _simulators(NOW) as (sim,):
        ssz_source, _ = _source(session, sim.base_url, encoding="ssz")
        json_source, _ = _source(session, sim.base_url, encoding="json")
        ssz_result, over_ssz = await _fetch(ssz_source)
        json_result, over_json = await _fetch(json_source)
        truth = expected_stakes(records(sim.registry), _head_epoch(sim), {}, {})
    assert _registry_requests(sim) == [
        "/eth/v2/debug/beacon/states/head",
        "/eth/v1/beacon/states/head/validators",
    ]
    assert _comparable(over_ssz) == _comparable(over_json)
    in_set = sum(
        n for status, n in truth.status_counts.items() if status.startswith(("pending_", "active_"))
    )
    assert len(over_ssz) == in_set
    assert sum(v.stake for v in over_ssz if v.in_consensus_set) == truth.total
    assert len({v.address for v in over_ssz}) == len(over_ssz)
    assert ssz_result.validator_set is not None
    assert json_result.validator_set is not None
    assert ssz_result.validator_set.liveness_known is True
    assert any(v.status is ValidatorStatus.DELINQUENT for v in over_ssz)
    assert json_result.validator_set.liveness_known is False
    assert not any(v.delinquent for v in over_json)
    assert ssz_result.validator_set.token_decimals == 9


@pytest.mark.parametrize("status", [404, 406, 415, 501])
async def test_auto_falls_back_to_json_when_ssz_is_refused(
    session: aiohttp.ClientSession, status: int
) -> None:
    """With encoding auto, an SSZ state refused with `status` is read as JSON from the same
    endpoint: no failure, liveness unknown."""
    async with _simulators(NOW) as (sim,):
        sim.faults.ssz_refused = status
        source, pool = _source(session, sim.base_url)
        result, validators = await _fetch(source)
    assert result.failures == ()
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep0"
    assert result.validator_set.liveness_known is False
    assert validators
    assert _registry_requests(sim) == [
        "/eth/v2/debug/beacon/states/head",
        "/eth/v1/beacon/states/head/validators",
    ]
    assert pool.endpoints[0].up is True


@pytest.mark.parametrize(
    ("encoding", "status", "failure"),
    [
        ("auto", 500, "ep0: state: http_5xx (HTTP 500)"),
        ("ssz", 406, "ep0: state: http_4xx (HTTP 406)"),
        ("ssz", 404, "ep0: state: http_4xx (HTTP 404)"),
    ],
    ids=["auto-500", "ssz-406", "ssz-404"],
)
async def test_no_fallback_fails_the_endpoint(
    session: aiohttp.ClientSession, encoding: str, status: int, failure: str
) -> None:
    """A 500 under auto, or any refusal under ssz, fails the endpoint with that failure and
    never asks for the JSON validators."""
    async with _simulators(NOW) as (sim,):
        sim.faults.ssz_refused = status
        source, pool = _source(session, sim.base_url, encoding=encoding)
        result = await source.fetch()
    assert result.validator_set is None
    assert result.failures == (failure,)
    assert _registry_requests(sim) == ["/eth/v2/debug/beacon/states/head"]
    assert pool.endpoints[0].up is False


async def test_json_encoding_never_asks_for_ssz(session: aiohttp.ClientSession) -> None:
    """With encoding json the registry comes from the JSON validators alone, filtered to the
    statuses that are in the set."""
    async with _simulators(NOW) as (sim,):
        source, _ = _source(session, sim.base_url, encoding="json")
        await _fetch(source)
    [request] = [r for r in sim.requests if r.path.endswith("/validators")]
    assert _registry_requests(sim) == ["/eth/v1/beacon/states/head/validators"]
    assert request.accept == "application/json"
    assert "exited" not in request.query
    assert "active_ongoing" in request.query


# -- node, clock and fork checks ----------------------------------------------------------------


async def test_syncing_node_is_rejected_and_the_next_serves(
    session: aiohttp.ClientSession,
) -> None:
    """A syncing ep0 is rejected with catching_up before any state is read; ep1 serves."""
    async with _simulators(NOW, NOW) as (syncing, healthy):
        syncing.faults.syncing = True
        source, pool = _source(session, syncing.base_url, healthy.base_url)
        result, _ = await _fetch(source)
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert result.rejection_reasons == ("catching_up",)
    assert result.failures == ("ep0: syncing: 1000 slots behind",)
    assert _paths(syncing) == ["/eth/v1/node/syncing"]
    assert [e.up for e in pool.endpoints] == [False, True]


@pytest.mark.parametrize(
    ("offset", "reason"), [(-3600, "stale_block"), (3600, "future_block")], ids=["past", "future"]
)
async def test_head_far_from_the_clock_rejects_the_endpoint(
    session: aiohttp.ClientSession, offset: int, reason: str
) -> None:
    """A head slot dated an hour off our clock (either way) rejects ep0 before its state is
    read, keeping the skew; ep1 serves."""
    async with _simulators(NOW + offset, NOW) as (skewed, healthy):
        source, pool = _source(session, skewed.base_url, healthy.base_url)
        result, _ = await _fetch(source)
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert result.rejection_reasons == (reason,)
    assert _paths(skewed) == ["/eth/v1/node/syncing", "/eth/v1/beacon/genesis"]
    assert pool.endpoints[0].up is False
    assert pool.endpoints[0].clock_skew_seconds == offset


class _BeaconStub(LoopbackServer):
    """A beacon node of 4 validators at SLOT, serving its SSZ state with `fork_headers`."""

    def __init__(self, fork_headers: dict[str, str]) -> None:
        super().__init__()
        self.fork_headers = fork_headers
        self.paths: list[str] = []

    def build(self) -> web.Application:
        app = web.Application()
        epoch = SLOT // SLOTS_PER_EPOCH
        root = "0x" + "00" * 32
        checkpoint = {"epoch": str(epoch - 2), "root": root}
        answers = {
            "/eth/v1/node/syncing": {
                "head_slot": str(SLOT),
                "sync_distance": "0",
                "is_syncing": False,
                "is_optimistic": False,
                "el_offline": False,
            },
            "/eth/v1/beacon/genesis": {
                "genesis_time": str(GENESIS_TIME),
                "genesis_validators_root": root,
                "genesis_fork_version": "0x00000000",
            },
            "/eth/v1/beacon/states/head/finality_checkpoints": {
                "previous_justified": checkpoint,
                "current_justified": checkpoint,
                "finalized": checkpoint,
            },
        }
        state = encode_beacon_state(make_validators(4), "fulu")

        async def handle(request: web.Request) -> web.StreamResponse:
            self.paths.append(request.path)
            if request.path in answers:
                return web.json_response({"data": answers[request.path]})
            if request.path == "/eth/v2/debug/beacon/states/head":
                return web.Response(
                    body=state, content_type="application/octet-stream", headers=self.fork_headers
                )
            return web.json_response({"code": 404, "message": "not here"}, status=404)

        app.router.add_get("/{tail:.*}", handle)
        return app


@contextlib.asynccontextmanager
async def _stub(fork_headers: dict[str, str]) -> AsyncIterator[_BeaconStub]:
    async with _BeaconStub(fork_headers) as stub:
        await stub.serve(stub.build(), "127.0.0.1", 0)
        yield stub


@pytest.mark.parametrize(
    "headers",
    [{}, {"Eth-Consensus-Version": "gloas"}, {"Eth-Consensus-Version": ""}],
    ids=["missing", "unknown", "empty"],
)
async def test_ssz_state_of_no_known_fork_is_unknown_fork(
    session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """An SSZ state whose Eth-Consensus-Version header is missing or names no supported fork
    is rejected as unknown_fork, without a JSON fallback."""
    async with _stub(headers) as stub:
        source, _ = _source(session, stub.base_url, now=GENESIS_TIME + 12 * SLOT)
        result = await source.fetch()
    assert result.validator_set is None
    assert result.rejection_reasons == ("unknown_fork",)
    assert not any(p.endswith("/validators") for p in stub.paths)


async def test_fork_header_name_is_case_insensitive(session: aiohttp.ClientSession) -> None:
    """A node that writes the header name in lower case (as HTTP allows) is read: 4
    validators at 32 ETH."""
    async with _stub({"eth-consensus-version": "fulu"}) as stub:
        source, _ = _source(session, stub.base_url, now=GENESIS_TIME + 12 * SLOT)
        result, validators = await _fetch(source)
    assert result.rejection_reasons == ()
    assert [(v.address, v.stake) for v in validators] == [(str(i), 32 * 10**9) for i in range(4)]


# -- finality and the finalized state -----------------------------------------------------------


@pytest.mark.parametrize("lag", [0, 2, 7])
async def test_finality_lag_is_head_epoch_minus_finalized_epoch(
    session: aiohttp.ClientSession, lag: int
) -> None:
    """finality_lag_epochs is the head's epoch less the finalized checkpoint's epoch."""
    async with _simulators(NOW) as (sim,):
        sim.faults.finality_lag_epochs = lag
        source, _ = _source(session, sim.base_url)
        result, _ = await _fetch(source)
    assert result.finality_lag_epochs == lag


def _activate_at(index_and_epoch: dict[int, int]) -> Any:
    def mutate(registry: Registry) -> None:
        for index, epoch in index_and_epoch.items():
            registry.validators["activation_eligibility_epoch"][index] = epoch - 1
            registry.validators["activation_epoch"][index] = epoch

    return mutate


def _ongoing(sim: RunningEthereumSimulator, count: int) -> list[int]:
    """`count` validators active with no exit planned, unslashed, at the head."""
    v = sim.registry.validators
    ongoing = (v["exit_epoch"] == np.uint64(FAR_FUTURE_EPOCH)) & (v["slashed"] == 0)
    ongoing &= v["activation_epoch"] <= np.uint64(_head_epoch(sim) - 10)
    return [int(i) for i in np.flatnonzero(ongoing)[:count]]


@pytest.mark.parametrize("encoding", ["ssz", "json"])
async def test_finalized_state_is_read_at_the_finalized_epoch(
    session: aiohttp.ClientSession, encoding: str
) -> None:
    """With state finalized (finality 3 epochs behind), the finalized state is requested and
    classified at the finalized epoch: a validator activated at that epoch is active, one
    activated an epoch later is still pending; at the head both are active."""
    async with _simulators(NOW) as (sim,):
        sim.faults.finality_lag_epochs = 3
        finalized = _head_epoch(sim) - 3
        at_finalized, after = _ongoing(sim, 2)
        sim.update(_activate_at({at_finalized: finalized, after: finalized + 1}))
        finalized_source, _ = _source(session, sim.base_url, state="finalized", encoding=encoding)
        head_source, _ = _source(session, sim.base_url, encoding=encoding)
        _, from_finalized = await _fetch(finalized_source)
        _, from_head = await _fetch(head_source)
    state = {v.address: v.in_consensus_set for v in from_finalized}
    assert (state[str(at_finalized)], state[str(after)]) == (True, False)
    head = {v.address: v.in_consensus_set for v in from_head}
    assert (head[str(at_finalized)], head[str(after)]) == (True, True)
    expected = {
        "ssz": "/eth/v2/debug/beacon/states/finalized",
        "json": "/eth/v1/beacon/states/finalized/validators",
    }
    assert _registry_requests(sim)[0] == expected[encoding]


# -- polls, failover and comparison -------------------------------------------------------------


async def test_genesis_is_fetched_once_per_endpoint_across_polls(
    session: aiohttp.ClientSession,
) -> None:
    """Three polls comparing two endpoints ask each for its genesis once, its state thrice."""
    async with _simulators(NOW, NOW) as sims:
        urls = [sim.base_url for sim in sims]
        source, _ = _source(session, *urls, chain={"compare_endpoints": True})
        for _ in range(3):
            await _fetch(source)
    for sim in sims:
        assert _paths(sim).count("/eth/v1/beacon/genesis") == 1
        assert _paths(sim).count("/eth/v2/debug/beacon/states/head") == 3


async def test_endpoint_refusing_everything_fails_over(session: aiohttp.ClientSession) -> None:
    """An ep0 answering 503 to every request is down after its first request; ep1 serves."""

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"code": 503, "message": "down"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    async with LoopbackServer() as refusing, _simulators(NOW) as (sim,):
        await refusing.serve(app, "127.0.0.1", 0)
        source, pool = _source(session, refusing.base_url, sim.base_url)
        result, _ = await _fetch(source)
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep1"
    assert result.failures == ("ep0: http_5xx (HTTP 503)",)
    assert [e.up for e in pool.endpoints] == [False, True]


@pytest.mark.parametrize("state", ["head", "finalized"])
async def test_compared_endpoints_at_the_same_slot_agree_across_encodings(
    session: aiohttp.ClientSession, state: str
) -> None:
    """An SSZ node and a JSON-only node on the same set, read at the same `state`, are
    compared (same slot) and agree."""
    async with _simulators(NOW, NOW) as (ssz_node, json_node):
        json_node.faults.ssz_refused = 406
        source, _ = _source(
            session,
            ssz_node.base_url,
            json_node.base_url,
            chain={"compare_endpoints": True},
            state=state,
        )
        result, _ = await _fetch(source)
    assert result.validator_set is not None
    assert result.validator_set.endpoint == "ep0"
    assert result.validator_set.liveness_known is True  # ep0's set is the one used
    assert result.endpoints_disagree is False


async def test_compared_endpoints_with_different_stakes_disagree(
    session: aiohttp.ClientSession,
) -> None:
    """Two nodes at the same slot, one with a validator's effective balance changed, disagree."""
    async with _simulators(NOW, NOW) as (first, second):
        [index] = _ongoing(second, 1)

        def halve(registry: Registry) -> None:
            registry.validators["effective_balance"][index] //= 2

        second.update(halve)
        source, _ = _source(
            session, first.base_url, second.base_url, chain={"compare_endpoints": True}
        )
        result, _ = await _fetch(source)
    assert result.endpoints_disagree is True


# -- attribution --------------------------------------------------------------------------------


async def test_label_files_group_the_stake_as_the_independent_count(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With the simulator's labels and operators files, active stake per entity and per
    operator is what expected_stakes computes: the same stakes per group, and for the named
    entities the same names (expected_stakes names the unnamed ones by address, while the
    source leaves a validator alone behind its address unnamed: its own holder; operators are
    groups without names)."""
    labels, operators = write_label_files(tmp_path, validators=N)
    async with _simulators(NOW) as (sim,):
        source, _ = _source(
            session, sim.base_url, labels_file=str(labels), operators_file=str(operators)
        )
        result, validators = await _fetch(source)
        truth = expected_stakes(
            records(sim.registry), _head_epoch(sim), read_csv(labels), read_csv(operators)
        )
    assert result.validator_set is not None
    attribution = result.validator_set.attribution
    assert attribution is not None
    assert attribution.operator_index is not None
    by_entity: dict[str, int] = {}
    by_operator: dict[tuple[str, int], int] = {}
    for v, entity_id, operator_id in zip(
        validators,
        attribution.entity_index.tolist(),
        attribution.operator_index.tolist(),
        strict=True,
    ):
        if v.in_consensus_set:
            entity = v.address if entity_id == UNATTRIBUTED else attribution.entity_names[entity_id]
            operator = (v.address, 0) if operator_id == UNATTRIBUTED else ("", operator_id)
            by_entity[entity] = by_entity.get(entity, 0) + v.stake
            by_operator[operator] = by_operator.get(operator, 0) + v.stake
    for grouped, expected in ((by_entity, truth.by_entity), (by_operator, truth.by_operator)):
        assert sorted(grouped.values()) == sorted(expected.values())
    named = {name: stake for name, stake in truth.by_entity.items() if not name.startswith("0x")}
    assert {name: by_entity[name] for name in named} == named
    assert "Lido" in by_entity


async def test_configured_entity_keys_match_in_any_case(session: aiohttp.ClientSession) -> None:
    """[[chains.entities]] naming one validator's pubkey and another's withdrawal address in
    upper case attribute both validators."""
    async with _simulators(NOW) as (sim,):
        by_pubkey, by_address = _ongoing(sim, 2)
        pubkey = bytes(sim.registry.validators["pubkey"][by_pubkey]).hex()
        credentials = bytes(sim.registry.validators["withdrawal_credentials"][by_address])
        assert credentials[0] in (1, 2)
        entities = [
            {"name": "Keyed", "validators": [f"0X{pubkey.upper()}"]},
            {"name": "Addressed", "validators": [f"0X{credentials[12:].hex().upper()}"]},
        ]
        source, _ = _source(session, sim.base_url, chain={"entities": entities})
        result, _ = await _fetch(source)
    assert result.validator_set is not None
    attribution = result.validator_set.attribution
    assert attribution is not None
    ids = list(result.validator_set.table.addresses)
    entity_ids = [attribution.entity_index[ids.index(str(i))] for i in (by_pubkey, by_address)]
    assert [attribution.entity_names[i] for i in entity_ids] == ["Keyed", "Addressed"]


async def test_a_state_whose_set_is_empty_is_rejected_not_a_crash(
    session: aiohttp.ClientSession,
) -> None:
    """A state in which every validator has exited fails the endpoint with `empty_set` (the
    poll goes on to the next endpoint), rather than raising out of the fetch."""
    async with _simulators(NOW, NOW) as (empty, healthy):

        def exit_all(registry: Registry) -> None:
            registry.validators["exit_epoch"][:] = 1
            registry.validators["withdrawable_epoch"][:] = 1

        empty.update(exit_all)
        source, _ = _source(session, empty.base_url, healthy.base_url, encoding="ssz")
        result, validators = await _fetch(source)
    assert result.rejection_reasons == ("empty_set",)
    assert result.failures[0].startswith("ep0: state: empty_set")
    assert len(validators) > 0
