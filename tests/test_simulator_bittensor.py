"""The simulated subtensor node: its subnets, block clock, and faults as served."""

from __future__ import annotations

from fractions import Fraction

import aiohttp

from quorumwatch.chains.bittensor.parse import parse_metagraph
from quorumwatch.simulator.bittensor import (
    FIRST_BLOCK,
    SUBNETS,
    TAO,
    encode_metagraph,
    metadata,
    start_bittensor_simulator,
)


def test_subnets_are_concentrated_healthy_inactive_and_empty() -> None:
    """Subnet 1's largest coldkey holds 600 of 1,000 permit stake; subnet 2 ten equal 100s;
    subnet 3 two of four permit holders inactive; subnet 4 no permit holder."""
    assert sorted(SUBNETS) == [1, 2, 3, 4, 5]
    permitted = {
        netuid: [n for n in subnet.neurons if n.permit] for netuid, subnet in SUBNETS.items()
    }
    assert [n.total_stake // TAO for n in permitted[1]] == [600, 250, 150]
    assert [n.total_stake // TAO for n in permitted[2]] == [100] * 10
    assert [n.active for n in permitted[3]] == [True, True, False, False]
    assert permitted[4] == []


def test_demo_subnet_crosses_kappa_twenty_blocks_in() -> None:
    """Subnet 5's largest coldkey holds 590 of 1,190 (below kappa) 19 blocks in and 600 of
    1,200 (one half, above kappa 32767/65535) 20 blocks in."""

    def share(blocks: int) -> Fraction:
        stakes = [n.total_stake for n in SUBNETS[5].at(blocks).neurons]
        return Fraction(stakes[0], sum(stakes))

    kappa = Fraction(32767, 65535)
    assert (share(19), share(20)) == (Fraction(590, 1190), Fraction(1, 2))
    assert share(19) < kappa < share(20)


def test_encoded_metagraph_decodes_to_its_subnet() -> None:
    """A subnet's encoded metagraph decodes, with the registry it was encoded with, to its
    permit holders' hotkeys and the given block."""
    _, runtime = metadata()
    graph = parse_metagraph(runtime, encode_metagraph(SUBNETS[3], 42), 3)
    assert list(graph.table.addresses) == [n.hotkey for n in SUBNETS[3].neurons]
    assert graph.block == 42


async def test_node_answers_and_injects_faults(session: aiohttp.ClientSession) -> None:
    """The head is the block of the simulator's clock; an injected error replaces an answer
    until cleared; an unknown method is JSON-RPC error -32601."""
    now = [1000.0]
    async with await start_bittensor_simulator(clock=lambda: now[0]) as sim:
        now[0] += 25  # two 12 s blocks
        async with session.ws_connect(sim.base_url) as socket:

            async def call(method: str) -> dict[str, object]:
                await socket.send_json({"jsonrpc": "2.0", "id": 1, "method": method, "params": []})
                answer: dict[str, object] = await socket.receive_json()
                return answer

            head = await call("chain_getFinalizedHead")
            assert int(str(head["result"]), 16) == FIRST_BLOCK + 2
            sim.set_fault("chain_getFinalizedHead", "error")
            assert "error" in await call("chain_getFinalizedHead")
            sim.clear_faults()
            assert "result" in await call("chain_getFinalizedHead")
            unknown = await call("author_submitExtrinsic")
            assert unknown["error"] == {"code": -32601, "message": "Method not found"}
