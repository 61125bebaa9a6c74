"""A loopback aiohttp server that plays a Solana JSON-RPC node.

``POST /`` answers ``getVoteAccounts``, ``getEpochInfo`` and ``getBlockTime`` in the shapes of
the real node (other methods get JSON-RPC error -32601, an unparsable body -32700). Without explicit
accounts it serves a deterministic synthetic set of mainnet size: heavy-tailed (Pareto)
stakes, a few unstaked accounts, and some delinquent ones. Tests replace the set with
`set_accounts` and inject per-method faults with `set_fault`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from quorumwatch.simulator.serving import LoopbackServer

LAMPORTS_PER_SOL = 10**9
SLOTS_PER_EPOCH = 432_000
DELINQUENT_SLOT_DISTANCE = 128
FIRST_SLOT = 700 * SLOTS_PER_EPOCH + 1_234
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58(data: bytes) -> str:
    """Bitcoin-alphabet base58 of `data` (leading zero bytes become '1')."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(_BASE58[digit])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


@dataclass(frozen=True, slots=True)
class VoteAccountSpec:
    """One vote account as served; stake in lamports."""

    vote_pubkey: str
    node_pubkey: str
    activated_stake: int
    delinquent: bool = False
    commission: int = 5


def synthetic_accounts(
    count: int = 1500, delinquent: int = 30, seed: int = 1
) -> list[VoteAccountSpec]:
    """A deterministic mainnet-like set: Pareto stakes (α = 1.2), ~4 % unstaked, and
    `delinquent` accounts chosen at random (unstaked ones included)."""
    rng = random.Random(seed)
    late = set(rng.sample(range(count), min(delinquent, count)))
    accounts = []
    for index in range(count):
        if rng.random() < 0.04:
            stake = 0
        else:
            sol = min(rng.paretovariate(1.2) * 50_000, 15_000_000)
            stake = int(sol) * LAMPORTS_PER_SOL + rng.randrange(LAMPORTS_PER_SOL)
        accounts.append(
            VoteAccountSpec(
                vote_pubkey=base58(rng.randbytes(32)),
                node_pubkey=base58(rng.randbytes(32)),
                activated_stake=stake,
                delinquent=index in late,
                commission=rng.choice((0, 0, 5, 7, 10, 100)),
            )
        )
    return accounts


class RunningSolanaSimulator(LoopbackServer):
    """A Solana JSON-RPC node; see `start_solana_simulator`."""

    def __init__(self, accounts: Sequence[VoteAccountSpec], clock: Callable[[], float]) -> None:
        super().__init__()
        self.slot = FIRST_SLOT  # advances by one per request; tests may set it
        self.requests: dict[str, int] = {}
        self._accounts = tuple(accounts)
        self._faults: dict[str, tuple[int, bytes | None]] = {}
        self._clock = clock

    @property
    def accounts(self) -> tuple[VoteAccountSpec, ...]:
        return self._accounts

    def set_accounts(self, accounts: Sequence[VoteAccountSpec]) -> None:
        """Serve `accounts` from the next request on."""
        self._accounts = tuple(accounts)

    def set_fault(self, method: str, *, status: int = 200, body: bytes | None = None) -> None:
        """Answer `method` with HTTP `status` and, if given, `body` verbatim, until cleared."""
        self._faults[method] = (status, body)

    def clear_faults(self) -> None:
        self._faults.clear()

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._rpc)
        return app

    async def _rpc(self, request: web.Request) -> web.Response:
        try:
            call = json.loads(await request.read())
        except ValueError:
            return _rpc_error(None, -32700, "Parse error")
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _rpc_error(None, -32600, "Invalid request")
        method: str = call["method"]
        call_id = call.get("id")
        self.requests[method] = self.requests.get(method, 0) + 1
        self.slot += 1
        fault = self._faults.get(method)
        if fault is not None:
            status, body = fault
            return web.Response(status=status, body=body or b"", content_type="application/json")
        params = call.get("params") or [{}]
        options = params[0] if isinstance(params, list) and params else {}
        if method == "getVoteAccounts":
            keep = isinstance(options, dict) and options.get("keepUnstakedDelinquents") is True
            return _rpc_result(call_id, self._vote_accounts(keep_unstaked_delinquents=keep))
        if method == "getEpochInfo":
            return _rpc_result(call_id, self._epoch_info())
        if method == "getBlockTime":
            if not isinstance(params, list) or not params or type(params[0]) is not int:
                return _rpc_error(call_id, -32602, "Invalid params: expected a slot")
            # Every slot asked about is the newest one: it was produced just now.
            return _rpc_result(call_id, int(self._clock()))
        return _rpc_error(call_id, -32601, "Method not found")

    def _vote_accounts(self, *, keep_unstaked_delinquents: bool) -> dict[str, Any]:
        current: list[dict[str, Any]] = []
        late: list[dict[str, Any]] = []
        epoch = self.slot // SLOTS_PER_EPOCH
        for account in self._accounts:
            unstaked_delinquent = account.delinquent and not account.activated_stake
            if unstaked_delinquent and not keep_unstaked_delinquents:
                continue  # as the node does: unstaked delinquents are dropped by default
            behind = DELINQUENT_SLOT_DISTANCE + 400 if account.delinquent else 2
            row = {
                "commission": account.commission,
                "epochVoteAccount": account.activated_stake > 0,
                "epochCredits": [[epoch - 1, 400_000, 10_000], [epoch, 410_000, 400_000]],
                "nodePubkey": account.node_pubkey,
                "lastVote": self.slot - behind,
                "activatedStake": account.activated_stake,
                "votePubkey": account.vote_pubkey,
                "rootSlot": self.slot - behind - 32,
            }
            (late if account.delinquent else current).append(row)
        return {"current": current, "delinquent": late}

    def _epoch_info(self) -> dict[str, Any]:
        return {
            "absoluteSlot": self.slot,
            "blockHeight": self.slot - 20_000,
            "epoch": self.slot // SLOTS_PER_EPOCH,
            "slotIndex": self.slot % SLOTS_PER_EPOCH,
            "slotsInEpoch": SLOTS_PER_EPOCH,
            "transactionCount": 3 * self.slot,
        }


def _rpc_result(call_id: Any, result: Any) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "result": result, "id": call_id})


def _rpc_error(call_id: Any, code: int, message: str) -> web.Response:
    error = {"code": code, "message": message}
    return web.json_response({"jsonrpc": "2.0", "error": error, "id": call_id})


async def start_solana_simulator(
    accounts: Sequence[VoteAccountSpec] | None = None,
    *,
    count: int = 1500,
    delinquent: int = 30,
    seed: int = 1,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], float] = time.time,
) -> RunningSolanaSimulator:
    """Serve `accounts` (default: `synthetic_accounts(count, delinquent, seed)`) on host:port."""
    if accounts is None:
        accounts = synthetic_accounts(count, delinquent, seed)
    simulator = RunningSolanaSimulator(accounts, clock)
    await simulator.serve(simulator.build(), host, port)
    return simulator
