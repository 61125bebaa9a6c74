"""`netuids = "all"`: the subnets a chain lists when `run` starts, each made its own chain.

The list is the keys of `SubtensorModule.NetworksAdded` (a map from netuid, hashed with
Identity, so each key ends in the netuid's two little-endian bytes) at the finalized head,
from the first endpoint that answers. It is read once: a subnet registered later is watched
after a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quorumwatch.chains.base import EndpointRejectedError
from quorumwatch.chains.bittensor import SubnetListError
from quorumwatch.chains.bittensor.parse import parse_hash, rpc_result
from quorumwatch.chains.bittensor.rpc import RpcSocket
from quorumwatch.chains.bittensor.twox import storage_key_of
from quorumwatch.config import per_subnet
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import DataError

if TYPE_CHECKING:
    import aiohttp

    from quorumwatch.config import ChainSettings, Settings

NETWORKS_ADDED = storage_key_of("SubtensorModule", "NetworksAdded")
MAX_SUBNETS = 65536  # a u16 netuid: more keys than that is no subnet list
_NETUID_HEX_DIGITS = 4  # the key's last two bytes, as hex


async def expand_all(settings: Settings, session: aiohttp.ClientSession) -> Settings:
    """`settings` with each Bittensor chain of "all" subnets replaced by one chain per subnet
    the chain lists now; SubnetListError when one cannot be listed."""
    chains: list[ChainSettings] = []
    for chain in settings.chains:
        section = chain.bittensor
        if section is None or section.netuids != "all":
            chains.append(chain)
            continue
        netuids = await list_subnets(chain, session)
        listed = section.model_copy(update={"netuids": netuids})
        chains += per_subnet(chain.model_copy(update={"bittensor": listed}))
    names = [chain.name for chain in chains]
    clashing = sorted({name for name in names if names.count(name) > 1})
    if clashing:
        raise SubnetListError(f"chain names clash once subnets are listed: {', '.join(clashing)}")
    return settings.model_copy(update={"chains": chains})


async def list_subnets(chain: ChainSettings, session: aiohttp.ClientSession) -> list[int]:
    """The netuids the chain lists, from the first of its endpoints that answers."""
    pool = EndpointPool(chain.endpoints, session, max_response_bytes=chain.max_response_bytes)
    failures = []
    for endpoint in pool.endpoints:
        try:
            socket = await RpcSocket.open(pool, endpoint)
            try:
                head = await socket.call("chain_getFinalizedHead", [], _head)
                keys = await socket.call(
                    "state_getKeysPaged", [NETWORKS_ADDED, MAX_SUBNETS, None, head], _keys
                )
            finally:
                await socket.close()
        except EndpointRejectedError as exc:
            failures.append(f"{endpoint.name}: {exc.description}")
            continue
        if keys:
            return keys
        failures.append(f"{endpoint.name}: no subnet listed")
    raise SubnetListError(
        f"chain {chain.name}: no endpoint listed the subnets ({'; '.join(failures)})"
    )


def _head(body: bytes) -> str:
    return parse_hash(rpc_result(body, "chain_getFinalizedHead"), "chain_getFinalizedHead")


def _keys(body: bytes) -> list[int]:
    result: Any = rpc_result(body, "state_getKeysPaged")
    if not isinstance(result, list) or len(result) > MAX_SUBNETS:
        raise DataError("wrong_type", "state_getKeysPaged.result: expected a list of keys")
    netuids = []
    for key in result:
        if (
            not isinstance(key, str)
            or not key.startswith(NETWORKS_ADDED)
            or len(key) != len(NETWORKS_ADDED) + _NETUID_HEX_DIGITS
        ):
            raise DataError("metadata_mismatch", "NetworksAdded: a key is not prefix and netuid")
        try:
            netuids.append(int.from_bytes(bytes.fromhex(key[-_NETUID_HEX_DIGITS:]), "little"))
        except ValueError:
            raise DataError("wrong_type", "NetworksAdded: a key is not hex") from None
    return sorted(set(netuids))
