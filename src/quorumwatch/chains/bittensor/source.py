"""Bittensor source: one subnet's permit holders over a subtensor node's WebSocket JSON-RPC.

Per endpoint and poll, on one socket, everything at the finalized head's hash: its header
(the block number, the set's version), the runtime version, the V15 metadata when the
specVersion is new (kept per specVersion), `Timestamp.Now` (checked against our clock),
the subnet's selective metagraph, and the Aura authorities. Any failure fails the endpoint
and the next one is tried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quorumwatch.chains.base import ChainSource, VersionedSet
from quorumwatch.chains.bittensor.parse import (
    Metagraph,
    metagraph_request,
    parse_block_number,
    parse_hash,
    parse_hex,
    parse_metagraph,
    parse_spec_version,
    rpc_result,
)
from quorumwatch.chains.bittensor.rpc import RpcSocket
from quorumwatch.chains.bittensor.scale import (
    METADATA_AT_VERSION_ARGUMENT,
    RuntimeMetadata,
    decode_metadata,
)
from quorumwatch.models import DataError

if TYPE_CHECKING:
    from quorumwatch.endpoints import Endpoint

MAX_MOMENT_MS = 2**40 * 1000  # beyond year 36812: garbage, not a date


class BittensorSource(ChainSource):
    """The permit holders of the configured subnet from the first endpoint that serves them."""

    kind = "bittensor"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        section = self._settings.bittensor
        assert section is not None  # ChainSource checks its section first
        # Settings give each subnet its own chain (config.per_subnet; "all" once listed, by
        # chains.bittensor.subnets).
        if section.netuids == "all" or len(section.netuids) != 1:
            raise ValueError("a bittensor source reads one subnet: expand the chain first")
        (self._netuid,) = section.netuids
        self._metadata: RuntimeMetadata | None = None

    async def _attempt(self, endpoint: Endpoint) -> VersionedSet:
        socket = await RpcSocket.open(self._pool, endpoint)
        try:
            return await self._read(endpoint, socket)
        finally:
            await socket.close()

    async def _read(self, endpoint: Endpoint, socket: RpcSocket) -> VersionedSet:
        head = await socket.call("chain_getFinalizedHead", [], _head)
        block = await socket.call("chain_getHeader", [head], _block_number)
        spec = await socket.call("state_getRuntimeVersion", [head], _spec_version)
        metadata = await self._metadata_of(socket, spec, head)
        now_ms = await socket.call(
            "state_getStorage", [metadata.storage_key(*_NOW), head], _moment(metadata)
        )
        self._check_clock(endpoint, now_ms / 1000, subject="block")
        method, argument = metagraph_request(metadata, self._netuid)
        graph = await socket.call(
            "state_call", [method, argument, head], _metagraph(metadata, self._netuid, block)
        )
        authorities = await socket.call(
            "state_getStorage", [metadata.storage_key(*_AUTHORITIES), head], _count(metadata)
        )
        return VersionedSet(
            graph.table,
            block,
            attribution=graph.attribution,
            consensus_threshold=graph.kappa,
            block_authorities=authorities,
        )

    async def _metadata_of(self, socket: RpcSocket, spec: int, head: str) -> RuntimeMetadata:
        """The runtime's metadata, read again only when its specVersion changes."""
        if self._metadata is None or self._metadata.spec_version != spec:
            self._metadata = await socket.call(
                "state_call",
                ["Metadata_metadata_at_version", METADATA_AT_VERSION_ARGUMENT, head],
                lambda body: decode_metadata(spec, _hex_result(body, "state_call")),
            )
        return self._metadata


_NOW = ("Timestamp", "Now")
_AUTHORITIES = ("Aura", "Authorities")


def _head(body: bytes) -> str:
    return parse_hash(rpc_result(body, "chain_getFinalizedHead"), "chain_getFinalizedHead")


def _block_number(body: bytes) -> int:
    return parse_block_number(rpc_result(body, "chain_getHeader"))


def _spec_version(body: bytes) -> int:
    return parse_spec_version(rpc_result(body, "state_getRuntimeVersion"))


def _hex_result(body: bytes, method: str) -> bytes:
    return parse_hex(rpc_result(body, method), method)


def _stored(metadata: RuntimeMetadata, body: bytes, pallet: str, item: str) -> Any:
    result = rpc_result(body, "state_getStorage")
    if result is None:
        raise DataError("missing_field", f"{pallet}.{item}: nothing stored")
    return metadata.storage_value(pallet, item, parse_hex(result, "state_getStorage"))


def _moment(metadata: RuntimeMetadata) -> Callable[[bytes], int]:
    """A decoder of `Timestamp.Now`: the block's time in Unix milliseconds."""

    def decode(body: bytes) -> int:
        moment = _stored(metadata, body, *_NOW)
        if not isinstance(moment, int) or not 0 <= moment <= MAX_MOMENT_MS:
            raise DataError("wrong_type", "Timestamp.Now: expected Unix milliseconds")
        return moment

    return decode


def _count(metadata: RuntimeMetadata) -> Callable[[bytes], int]:
    """A decoder of `Aura.Authorities`: how many there are."""

    def decode(body: bytes) -> int:
        authorities = _stored(metadata, body, *_AUTHORITIES)
        if not isinstance(authorities, list):
            raise DataError("wrong_type", "Aura.Authorities: expected a list")
        return len(authorities)

    return decode


def _metagraph(metadata: RuntimeMetadata, netuid: int, block: int) -> Callable[[bytes], Metagraph]:
    """A decoder of the subnet's metagraph, which must be of the block the header named."""

    def decode(body: bytes) -> Metagraph:
        graph = parse_metagraph(metadata, _hex_result(body, "state_call"), netuid)
        if graph.block != block:
            raise DataError("wrong_block", f"a metagraph of block {graph.block}, not {block}")
        return graph

    return decode
