"""A loopback subtensor node: WebSocket JSON-RPC at `/`, answering the calls a Bittensor source
makes, with metagraphs SCALE-encoded (cyscale) from mainnet's own V15 type registry (the
metadata answer of spec 343, shipped compressed beside this module).

Subnets: 1 concentrated (one coldkey above half the stake), 2 healthy, 3 with inactive permit
holders, 4 with no permit holder, and 5 the demo, whose largest coldkey gains stake every block
until it holds the majority. Tests inject per-method faults with `set_fault`, and register or
deregister a subnet while it serves by changing `subnets` (the subnets it lists and serves).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from aiohttp import WSMsgType, web

from quorumwatch.chains.bittensor.parse import API, METAGRAPH_FIELDS, compact, metagraph_fields
from quorumwatch.chains.bittensor.scale import (
    METADATA_AT_VERSION_ARGUMENT,
    SS58_FORMAT,
    RuntimeMetadata,
    decode_metadata,
)
from quorumwatch.chains.bittensor.subnets import NETWORKS_ADDED
from quorumwatch.simulator.serving import REQUEST_LOG_LENGTH, LoopbackServer
from quorumwatch.simulator.solana import base58

SPEC_VERSION = 343
FIRST_BLOCK = 6_852_690
BLOCK_SECONDS = 12
TAO = 10**9  # rao
DEFAULT_KAPPA = 32767  # Yuma's default: 32767 / 65535, just under one half
_METADATA_FILE = Path(__file__).with_name("bittensor_metadata_v15.scale.gz")
_IDENTITY_FIELDS = ("url", "github_repo", "image", "discord", "description", "additional")

FaultKind = Literal["error", "result", "close"]


@dataclass(frozen=True, slots=True)
class Neuron:
    """One UID as served: its keys (32-byte seeds of SS58 addresses), stake in rao."""

    hotkey: str
    coldkey: str
    total_stake: int
    permit: bool = True
    active: bool = True
    identity: str | None = None  # the coldkey's on-chain identity name


@dataclass(frozen=True, slots=True)
class Subnet:
    netuid: int
    neurons: tuple[Neuron, ...]
    kappa: int = DEFAULT_KAPPA
    # Stake (rao) the first neuron gains each block: a subnet whose concentration moves.
    growth_per_block: int = 0

    def at(self, blocks: int) -> Subnet:
        """The subnet `blocks` blocks after the simulator started."""
        if not self.growth_per_block:
            return self
        first = self.neurons[0]
        grown = replace(first, total_stake=first.total_stake + self.growth_per_block * blocks)
        return replace(self, neurons=(grown, *self.neurons[1:]))


@dataclass(slots=True)
class Fault:
    """What the node does instead of answering a method: a JSON-RPC error, a given result,
    or closing the socket."""

    kind: FaultKind
    result: Any = None


def account(seed: int) -> str:
    """A deterministic SS58 address: prefix, public key and the first two bytes of its
    BLAKE2b-512 checksum, in base58."""
    payload = bytes([SS58_FORMAT]) + seed.to_bytes(32, "big")
    checksum = hashlib.blake2b(b"SS58PRE" + payload, digest_size=64).digest()[:2]
    return base58(payload + checksum)


def _neurons(
    stakes: Sequence[int], *, inactive: Sequence[int] = (), first: int
) -> tuple[Neuron, ...]:
    return tuple(
        Neuron(
            hotkey=account(first + 2 * index),
            coldkey=account(first + 2 * index + 1),
            total_stake=stake * TAO,
            active=index not in inactive,
            identity=f"validator-{first + index}" if index % 2 == 0 else None,
        )
        for index, stake in enumerate(stakes)
    )


SUBNETS: Mapping[int, Subnet] = {
    # One coldkey holds 600 of 1,000: above kappa, it sets the subnet's incentives alone.
    1: Subnet(
        1,
        (
            *_neurons([600, 250, 150], first=1000),
            Neuron(account(999), account(998), 40 * TAO, permit=False),
        ),
    ),
    # Ten equal validators: any six of them make the majority.
    2: Subnet(2, _neurons([100] * 10, first=2000)),
    # Four permit holders, two of them inactive (400 of 1,000 stake).
    3: Subnet(3, _neurons([300, 300, 200, 200], inactive=(2, 3), first=3000)),
    # Miners only: no UID holds a validator permit.
    4: Subnet(
        4, tuple(Neuron(account(4000 + i), account(4100 + i), TAO, permit=False) for i in range(3))
    ),
    # The demo: one coldkey's delegations grow 10 TAO a block from 400 of 1,000; 20 blocks
    # (4 minutes) in it holds 600 of 1,200, one half, over kappa: EntityHasMajority fires.
    5: Subnet(5, _neurons([400, 200, 200, 200], first=5000), growth_per_block=10 * TAO),
}


@cache
def metadata() -> tuple[bytes, RuntimeMetadata]:
    """The served metadata answer (`Option<OpaqueMetadata>`) and its decoding."""
    answer = gzip.decompress(_METADATA_FILE.read_bytes())
    return answer, decode_metadata(SPEC_VERSION, answer)


def encode_metagraph(subnet: Subnet, block: int) -> bytes:
    """`subnet`'s selective metagraph, every field a source reads present, others None."""
    _, runtime = metadata()
    neurons = subnet.neurons
    value: dict[str, Any] = dict.fromkeys(metagraph_fields(runtime))
    value.update(
        netuid=subnet.netuid,
        block=block,
        kappa=subnet.kappa,
        hotkeys=[n.hotkey for n in neurons],
        coldkeys=[n.coldkey for n in neurons],
        identities=[_identity(n.identity) for n in neurons],
        active=[n.active for n in neurons],
        validator_permit=[n.permit for n in neurons],
        total_stake=[n.total_stake for n in neurons],
    )
    assert set(METAGRAPH_FIELDS) <= value.keys()
    return runtime.encode(runtime.api_output_type(API, "get_selective_mechagraph"), value)


def _identity(name: str | None) -> dict[str, str] | None:
    if name is None:
        return None
    return {"name": name, **dict.fromkeys(_IDENTITY_FIELDS, "")}


class RunningBittensorSimulator(LoopbackServer):
    """A subtensor node over WebSocket; its chain advances a block every 12 s of its clock."""

    def __init__(
        self,
        subnets: Mapping[int, Subnet],
        clock: Callable[[], float],
        authorities: int,
    ) -> None:
        super().__init__()
        self.subnets = dict(subnets)
        self.authorities = authorities
        self._clock = clock
        self._started = clock()
        self._faults: dict[str, Fault] = {}
        self.calls: list[str] = []
        self.block_age_seconds = 0.0  # how far Timestamp.Now lags our clock

    @property
    def base_url(self) -> str:
        return "ws" + super().base_url.removeprefix("http")

    def set_fault(self, method: str, kind: FaultKind, result: Any = None) -> None:
        """Answer `method` (a JSON-RPC method, or a runtime API function of state_call)
        with the fault instead, until cleared."""
        self._faults[method] = Fault(kind, result)

    def clear_faults(self) -> None:
        self._faults.clear()

    def block(self) -> int:
        return FIRST_BLOCK + int((self._clock() - self._started) // BLOCK_SECONDS)

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._socket)
        return app

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=0)
        await socket.prepare(request)
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                continue
            call = json.loads(message.data)
            method, params = call.get("method"), call.get("params") or []
            if len(self.calls) < REQUEST_LOG_LENGTH:
                self.calls.append(method)
            fault = self._faults.get(method) or (
                self._faults.get(params[0]) if method == "state_call" and params else None
            )
            if fault is not None and fault.kind == "close":
                await socket.close()
                break
            if fault is not None and fault.kind == "error":
                answer: dict[str, Any] = {"error": {"code": -32000, "message": "simulated"}}
            elif fault is not None:
                answer = {"result": fault.result}
            else:
                answer = self.answer(method, params)
            await socket.send_str(json.dumps({"jsonrpc": "2.0", "id": call.get("id"), **answer}))
        return socket

    def answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        """The JSON-RPC answer (its `result` or `error`) to `method(params)`."""
        block = self.block()
        head = "0x" + block.to_bytes(32, "big").hex()
        _, runtime = metadata()
        if method == "chain_getFinalizedHead":
            return {"result": head}
        if method == "chain_getHeader":
            return {"result": {"number": hex(block), "parentHash": "0x" + "00" * 32}}
        if method == "state_getRuntimeVersion":
            return {"result": {"specName": "node-subtensor", "specVersion": SPEC_VERSION}}
        if method == "state_getKeysPaged" and params[:1] == [NETWORKS_ADDED]:
            netuids = sorted(self.subnets)
            return {"result": [NETWORKS_ADDED + n.to_bytes(2, "little").hex() for n in netuids]}
        if method == "state_getStorage":
            return {"result": self._storage(runtime, params[0])}
        if method == "state_call" and params[:2] == [
            "Metadata_metadata_at_version",
            METADATA_AT_VERSION_ARGUMENT,
        ]:
            return {"result": "0x" + metadata()[0].hex()}
        if method == "state_call" and params[0] == f"{API}_get_selective_mechagraph":
            netuid = int.from_bytes(bytes.fromhex(params[1][2:6]), "little")
            subnet = self.subnets.get(netuid)
            raw = (
                b"\x00"
                if subnet is None
                else encode_metagraph(subnet.at(block - FIRST_BLOCK), block)
            )
            return {"result": "0x" + raw.hex()}
        return {"error": {"code": -32601, "message": "Method not found"}}

    def _storage(self, runtime: RuntimeMetadata, key: str) -> str | None:
        if key == runtime.storage_key("Timestamp", "Now"):
            now_ms = int((self._clock() - self.block_age_seconds) * 1000)
            return "0x" + now_ms.to_bytes(8, "little").hex()
        if key == runtime.storage_key("Aura", "Authorities"):
            return "0x" + (compact(self.authorities) + bytes(32) * self.authorities).hex()
        return None


async def start_bittensor_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    subnets: Mapping[int, Subnet] = SUBNETS,
    clock: Callable[[], float] = time.time,
    authorities: int = 4,
) -> RunningBittensorSimulator:
    """Start a simulated subtensor node on host:port (0 picks a free port)."""
    metadata()  # decode once, before the first poll's deadline runs
    simulator = RunningBittensorSimulator(subnets, clock, authorities)
    await simulator.serve(simulator.build(), host, port)
    return simulator
