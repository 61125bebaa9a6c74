"""A simulated Cosmos SDK LCD and CometBFT RPC on one aiohttp app, for tests and demos.

The set is generated from a seed: `validators` bonded (the CometBFT set), `jailed`
jailed (unbonding, out of the set; the first one tombstoned) and `unbonded` unbonded.
LCD lists page by `page_limit` with standard-base64 `next_key`s holding `+`, `/` and
`=`, and every walk ends with an empty last page. Tests read `validators` for a hand
computation, flip `faults`, and inspect `requests` for what the client asked (the last
`REQUEST_LOG_LENGTH` requests).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from quorumwatch.chains.cosmos import bech32
from quorumwatch.simulator.serving import REQUEST_LOG_LENGTH, LoopbackServer

BONDED = "BOND_STATUS_BONDED"
UNBONDING = "BOND_STATUS_UNBONDING"
UNBONDED = "BOND_STATUS_UNBONDED"
POWER_REDUCTION = 10**6
SIGNED_BLOCKS_WINDOW = 10_000
MIN_SIGNED_PER_WINDOW = "0.050000000000000000"
MAX_MISSED = 9_500  # 10000 − ceil(0.05 × 10000)
HEIGHT = 1_000_000
_KEY_PREFIX = b"\xfb\xff\xbf"  # base64 "+/+/": every next_key holds "+", "/" and "="
_CODEC_TYPES = {
    "ed25519": "/cosmos.crypto.ed25519.PubKey",
    "secp256k1": "/cosmos.crypto.secp256k1.PubKey",
}
_RPC_TYPES = {"ed25519": "tendermint/PubKeyEd25519", "secp256k1": "tendermint/PubKeySecp256k1"}


@dataclass(frozen=True, slots=True)
class SimValidator:
    """One simulated validator, as a test computes expectations from it."""

    operator_address: str
    moniker: str
    identity: str
    key_type: str
    key: bytes
    tokens: int
    status: str
    jailed: bool
    tombstoned: bool
    voting_power: int  # 0 unless in the CometBFT set
    missed_blocks: int | None  # None: no signing info (never bonded)

    @property
    def consensus_address(self) -> bytes:
        return _consensus_address(self.key_type, self.key)

    @property
    def hex_address(self) -> str:
        return self.consensus_address.hex().upper()

    @property
    def valcons(self) -> str:
        return _valcons(self.key_type, self.key)


# Every signing-info answer lists each validator's: encoded once per key, not per request.
@functools.lru_cache(maxsize=4096)
def _valcons(key_type: str, key: bytes) -> str:
    return bech32.encode("cosmosvalcons", _consensus_address(key_type, key))


def _consensus_address(key_type: str, key: bytes) -> bytes:
    digest = hashlib.sha256(key).digest()
    if key_type == "ed25519":
        return digest[:20]
    return hashlib.new("ripemd160", digest).digest()


@dataclass(slots=True)
class CosmosFaults:
    """Knobs a test may turn while the simulator runs."""

    chain_id: str
    catching_up: bool = False
    block_age_seconds: float = 0.0
    fail_page: tuple[str, int] | None = None  # (path, 0-based page): answer HTTP 500
    rpc_total_offset: int = 0  # added to /validators `total`: Σcount ≠ total
    hidden_operator: str | None = None  # left out of the LCD validators list
    pool_offset: int = 0  # added to the pool's bonded_tokens


@dataclass(frozen=True, slots=True)
class SimRequest:
    path: str
    raw_query: str
    query: dict[str, str]


def generate_validators(
    *, validators: int, jailed: int, unbonded: int, seed: int
) -> tuple[SimValidator, ...]:
    """The deterministic simulated set, sorted by operator address (the LCD order)."""
    rng = random.Random(seed)
    out = []
    for index in range(validators + jailed + unbonded):
        key_type = "secp256k1" if index % 7 == 3 else "ed25519"
        key = rng.randbytes(32)
        if key_type == "secp256k1":
            key = bytes([2 + index % 2]) + key
        operator = bech32.encode("cosmosvaloper", rng.randbytes(20))
        if index < validators:
            power = int(rng.paretovariate(1.16) * 20_000)
            status, is_jailed = BONDED, False
            missed: int | None = {0: 4_750, 1: 9_500, 2: 1}.get(index, rng.randrange(0, 300))
        elif index < validators + jailed:
            power = rng.randrange(1_000, 50_000)
            status, is_jailed, missed = UNBONDING, True, 0  # a downtime jail resets the counter
        else:
            power = rng.randrange(0, 2_000)
            status, is_jailed = UNBONDED, False
            missed = None if index == validators + jailed + unbonded - 1 else 0
        out.append(
            SimValidator(
                operator_address=operator,
                moniker=f"validator-{index:03d}",
                identity=f"{index % 16:016X}",
                key_type=key_type,
                key=key,
                tokens=power * POWER_REDUCTION + rng.randrange(POWER_REDUCTION),
                status=status,
                jailed=is_jailed,
                tombstoned=index == validators and jailed > 0,
                voting_power=power if status == BONDED else 0,
                missed_blocks=missed,
            )
        )
    return tuple(sorted(out, key=lambda v: v.operator_address))


def page_key(offset: int) -> str:
    return base64.b64encode(_KEY_PREFIX + offset.to_bytes(2, "big")).decode()


class RunningCosmosSimulator(LoopbackServer):
    """A Cosmos node serving both LCD and RPC on `base_url`; see `start_cosmos_simulator`."""

    def __init__(
        self,
        validators: tuple[SimValidator, ...],
        faults: CosmosFaults,
        page_limit: int,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self.validators = validators
        self.faults = faults
        self.page_limit = page_limit
        self.clock = clock
        self.requests: deque[SimRequest] = deque(maxlen=REQUEST_LOG_LENGTH)
        self.app = web.Application()
        self.app.router.add_get("/status", self.status)
        self.app.router.add_get("/validators", self.rpc_validators)
        self.app.router.add_get("/cosmos/staking/v1beta1/validators", self.lcd_validators)
        self.app.router.add_get("/cosmos/staking/v1beta1/pool", self.pool)
        self.app.router.add_get("/cosmos/slashing/v1beta1/signing_infos", self.signing_infos)
        self.app.router.add_get("/cosmos/slashing/v1beta1/params", self.slashing_params)

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            SimRequest(request.path, request.rel_url.raw_query_string, dict(request.query))
        )

    async def status(self, request: web.Request) -> web.Response:
        self._record(request)
        moment = datetime.fromtimestamp(self.clock() - self.faults.block_age_seconds, UTC)
        return web.json_response(
            {
                "jsonrpc": "2.0",
                "id": -1,
                "result": {
                    "node_info": {"network": self.faults.chain_id, "version": "0.38.17"},
                    "sync_info": {
                        "latest_block_height": str(HEIGHT),
                        "latest_block_time": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
                        "catching_up": self.faults.catching_up,
                    },
                    "validator_info": {"address": "0" * 40, "voting_power": "0"},
                },
            }
        )

    async def rpc_validators(self, request: web.Request) -> web.Response:
        self._record(request)
        active = sorted(
            (v for v in self.validators if v.voting_power > 0),
            key=lambda v: (-v.voting_power, v.hex_address),
        )
        try:
            page = int(request.query.get("page", "1"))
            per_page = min(int(request.query.get("per_page", "30")), 100)
        except ValueError:
            return _rpc_error("invalid page")
        if self.faults.fail_page == ("/validators", page - 1):
            return web.json_response({"error": "injected"}, status=500)
        start = (page - 1) * per_page
        if page < 1 or per_page < 1 or (start >= len(active) and page > 1):
            return _rpc_error("page out of range")
        rows = active[start : start + per_page]
        return web.json_response(
            {
                "jsonrpc": "2.0",
                "id": -1,
                "result": {
                    "block_height": request.query.get("height", str(HEIGHT)),
                    "validators": [
                        {
                            "address": v.hex_address,
                            "pub_key": {
                                "type": _RPC_TYPES[v.key_type],
                                "value": base64.b64encode(v.key).decode(),
                            },
                            "voting_power": str(v.voting_power),
                            "proposer_priority": "0",
                        }
                        for v in rows
                    ],
                    "count": str(len(rows)),
                    "total": str(len(active) + self.faults.rpc_total_offset),
                },
            }
        )

    def _page(self, request: web.Request, items: list[Any], list_name: str) -> web.Response:
        """A Cosmos SDK page of `items`; unknown keys get the SDK's code 3 error."""
        self._record(request)
        key = request.query.get("pagination.key")
        offsets = {page_key(o): o for o in range(len(items) + 1)}
        if key is None:
            offset = 0
        elif key in offsets:
            offset = offsets[key]
        else:
            return web.json_response(
                {"code": 3, "message": "illegal base64 data at input byte 0", "details": []},
                status=400,
            )
        limit = min(int(request.query.get("pagination.limit", "100") or 100), self.page_limit)
        if self.faults.fail_page == (request.path, offset // self.page_limit):
            return web.json_response({"code": 13, "message": "injected"}, status=500)
        rows = items[offset : offset + limit]
        next_key = page_key(offset + len(rows)) if rows else None  # an empty last page
        counted = key is None and request.query.get("pagination.count_total") == "true"
        return web.json_response(
            {
                list_name: rows,
                "pagination": {
                    "next_key": next_key,
                    "total": str(len(items)) if counted else "0",
                },
            }
        )

    async def lcd_validators(self, request: web.Request) -> web.Response:
        rows = [
            {
                "operator_address": v.operator_address,
                "consensus_pubkey": {
                    "@type": _CODEC_TYPES[v.key_type],
                    "key": base64.b64encode(v.key).decode(),
                },
                "jailed": v.jailed,
                "status": v.status,
                "tokens": str(v.tokens),
                "delegator_shares": f"{v.tokens}.000000000000000000",
                "description": {
                    "moniker": v.moniker,
                    "identity": v.identity,
                    "website": "",
                    "security_contact": "",
                    "details": "",
                },
                "unbonding_height": "0",
                "unbonding_time": "1970-01-01T00:00:00Z",
                "min_self_delegation": "1",
            }
            for v in self.validators
            if v.operator_address != self.faults.hidden_operator
        ]
        return self._page(request, rows, "validators")

    async def pool(self, request: web.Request) -> web.Response:
        self._record(request)
        bonded = sum(v.tokens for v in self.validators if v.status == BONDED)
        not_bonded = sum(v.tokens for v in self.validators if v.status != BONDED)
        return web.json_response(
            {
                "pool": {
                    "bonded_tokens": str(bonded + self.faults.pool_offset),
                    "not_bonded_tokens": str(not_bonded),
                }
            }
        )

    async def signing_infos(self, request: web.Request) -> web.Response:
        rows = [
            {
                "address": v.valcons,
                "start_height": "0",
                "index_offset": "4169",
                "jailed_until": "9999-12-31T23:59:59Z" if v.tombstoned else "1970-01-01T00:00:00Z",
                "tombstoned": v.tombstoned,
                "missed_blocks_counter": str(v.missed_blocks),
            }
            for v in sorted(self.validators, key=lambda v: v.valcons)
            if v.missed_blocks is not None
        ]
        return self._page(request, rows, "info")

    async def slashing_params(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.json_response(
            {
                "params": {
                    "signed_blocks_window": str(SIGNED_BLOCKS_WINDOW),
                    "min_signed_per_window": MIN_SIGNED_PER_WINDOW,
                    "downtime_jail_duration": "600s",
                    "slash_fraction_double_sign": "0.050000000000000000",
                    "slash_fraction_downtime": "0.000100000000000000",
                }
            }
        )


def _rpc_error(message: str) -> web.Response:
    return web.json_response(
        {"jsonrpc": "2.0", "id": -1, "error": {"code": -32603, "message": message}}, status=500
    )


async def start_cosmos_simulator(
    *,
    validators: int = 180,
    jailed: int = 5,
    unbonded: int = 20,
    page_limit: int = 50,
    chain_id: str = "cosmoshub-4",
    seed: int = 1,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] = time.time,
) -> RunningCosmosSimulator:
    """Start serving the LCD and RPC paths; `port=0` picks a free port."""
    generated = generate_validators(
        validators=validators, jailed=jailed, unbonded=unbonded, seed=seed
    )
    simulator = RunningCosmosSimulator(
        generated, CosmosFaults(chain_id=chain_id), page_limit, clock
    )
    await simulator.serve(simulator.app, host, port)
    return simulator
