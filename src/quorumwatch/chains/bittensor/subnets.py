"""`netuids = "all"`: the subnets a chain lists, each made its own chain, and kept current.

The list is the keys of `SubtensorModule.NetworksAdded` (a map from netuid, hashed with
Identity, so each key ends in the netuid's two little-endian bytes) at the finalized head,
from the first endpoint that answers. It is read when `run` starts (a chain whose subnets
cannot be listed then is an error), and, while the daemon runs, again every
`subnet_refresh_seconds` (`SubnetWatch`): a subnet registered since starts being watched, one
deregistered stops. A re-list that fails changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from quorumwatch.chains.base import EndpointRejectedError
from quorumwatch.chains.bittensor import SubnetListError
from quorumwatch.chains.bittensor.parse import parse_hash, rpc_result
from quorumwatch.chains.bittensor.rpc import RpcSocket
from quorumwatch.chains.bittensor.twox import storage_key_of
from quorumwatch.config import lists_subnets, subnet_chain
from quorumwatch.endpoints import EndpointPool
from quorumwatch.models import DataError
from quorumwatch.report import SubnetListing

if TYPE_CHECKING:
    import aiohttp

    from quorumwatch.config import ChainSettings, Settings
    from quorumwatch.report import ReportBoard

NETWORKS_ADDED = storage_key_of("SubtensorModule", "NetworksAdded")
MAX_SUBNETS = 65536  # a u16 netuid: more keys than that is no subnet list
_NETUID_HEX_DIGITS = 4  # the key's last two bytes, as hex

log = structlog.get_logger(__name__)


async def expand_all(settings: Settings, session: aiohttp.ClientSession) -> Settings:
    """`settings` with each Bittensor chain of "all" subnets replaced by one chain per subnet
    the chain lists now; SubnetListError when one cannot be listed. (The configuration
    refuses any other chain named like one of these: see config.Settings.)"""
    chains: list[ChainSettings] = []
    for chain in settings.chains:
        if lists_subnets(chain):
            chains += [subnet_chain(chain, n) for n in await list_subnets(chain, session)]
        else:
            chains.append(chain)
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


class SubnetWatch:
    """A chain of "all" subnets while the daemon runs: the subnets listed at start (`netuids`),
    listed again every `subnet_refresh_seconds`. A subnet newly listed is handed to `start` as
    its chain; the chain of one no longer listed (deregistered) to `stop`; each change is
    logged once. A re-list that fails changes nothing: it is logged and counted. How the
    listing fares is on the board (`SubnetListing`)."""

    def __init__(
        self,
        chain: ChainSettings,
        netuids: Sequence[int],
        session: aiohttp.ClientSession,
        board: ReportBoard,
        *,
        start: Callable[[ChainSettings], None],
        stop: Callable[[ChainSettings], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        section = chain.bittensor
        assert section is not None  # lists_subnets(chain)
        self.chain = chain
        self._interval = section.refresh_seconds
        self._session = session
        self._board = board
        self._start = start
        self._stop = stop
        self._clock = clock
        self._watched = {netuid: subnet_chain(chain, netuid) for netuid in netuids}
        self._listing = SubnetListing(chain.name, last_success_at=clock(), failures=0)
        board.listed(self._listing)

    @property
    def chains(self) -> list[ChainSettings]:
        """The chains of the subnets watched now."""
        return list(self._watched.values())

    async def run(self) -> None:
        """List the subnets again every `subnet_refresh_seconds`, forever."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # a bug in one re-list must not end the watch
                log.exception("subnet re-list crashed", chain=self.chain.name)
                self._failed()

    async def refresh(self) -> None:
        """List the subnets once: start the new ones, stop those gone; on failure, neither."""
        try:
            listed = await list_subnets(self.chain, self._session)
        except SubnetListError as exc:
            log.warning(
                "subnets not listed again: watching the same",
                chain=self.chain.name,
                error=str(exc),
            )
            self._failed()
            return
        for netuid in listed:
            if netuid not in self._watched:
                subnet = subnet_chain(self.chain, netuid)
                log.info("subnet listed: watching it", chain=subnet.name, netuid=netuid)
                self._watched[netuid] = subnet
                self._start(subnet)
        for netuid in sorted(self._watched.keys() - set(listed)):
            subnet = self._watched.pop(netuid)
            log.info("subnet no longer listed: not watching it", chain=subnet.name, netuid=netuid)
            await self._stop(subnet)
        self._publish(replace(self._listing, last_success_at=self._clock()))

    def _failed(self) -> None:
        self._publish(replace(self._listing, failures=self._listing.failures + 1))

    def _publish(self, listing: SubnetListing) -> None:
        self._listing = listing
        self._board.listed(listing)


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
